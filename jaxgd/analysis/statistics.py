"""Statistics over a population's members that leave diverged members out and count them."""
from __future__ import annotations

import numpy as np

from jaxgd.errors import InvalidArgument


def member_stats(values, diverged=None) -> dict:
    """Mean, std, min and max over members, leaving out diverged ones (and counting them)."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.ones(values.shape[0], bool) if diverged is None else ~np.asarray(diverged, bool)
    ok &= np.isfinite(values)
    kept = values[ok]
    nan = float("nan")
    return {
        "mean": float(kept.mean()) if kept.size else nan,
        "std": float(kept.std()) if kept.size else nan,
        "min": float(kept.min()) if kept.size else nan,
        "max": float(kept.max()) if kept.size else nan,
        "members": int(kept.size),
        "excluded": int(values.shape[0] - kept.size),
    }


def grouped_stats(values, group, diverged=None, *, labels: list | None = None, confidence: float = 0.95) -> list[dict]:
    """:func:`member_stats` per group, with a ``confidence`` t-interval of the mean over the non-diverged members.

    Args:
      values: ``(S,)`` one value per member (e.g. ``result.final("test_accuracy")``).
      group: ``(S,)`` each member's group index (``Sweep.group``, ``Conditions.index``).
      diverged: ``(S,)`` flags; diverged members are left out and counted.
      labels: one dict per group, merged into its row.

    Returns:
      One row per group: ``{**label, "group", "mean", "std", "min", "max", "members", "excluded",
      "ci_low", "ci_high"}`` (``std`` with ``ddof=1`` for the interval, ``nan`` below two members).
    """
    from scipy import stats

    values = np.asarray(values, np.float64)
    group = np.asarray(group)
    if group.shape != values.shape[:1]:
        raise InvalidArgument(f"group must give one group per member: {values.shape[0]} values, {group.shape} groups.")
    diverged = np.zeros(values.shape[0], bool) if diverged is None else np.asarray(diverged, bool)
    rows = []
    for g in range(int(group.max()) + 1 if group.size else 0):
        mask = group == g
        row = {**(labels[g] if labels is not None else {}), "group": g,
               **member_stats(values[mask], diverged[mask])}
        kept = values[mask & ~diverged & np.isfinite(values)]
        if kept.size >= 2:
            half = stats.t.ppf(0.5 + confidence / 2, kept.size - 1) * kept.std(ddof=1) / np.sqrt(kept.size)
            row.update(ci_low=float(kept.mean() - half), ci_high=float(kept.mean() + half))
        else:
            row.update(ci_low=float("nan"), ci_high=float("nan"))
        rows.append(row)
    return rows


def bootstrap_ci(values, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values`` (NaN left out): the ``confidence`` central range of
    the means of ``resamples`` resamples drawn with replacement by a NumPy generator seeded with ``seed``.

    Returns:
      ``(low, high)``; ``(nan, nan)`` for no values. Values that are not independent (barriers of pairs that share a
      network) make the interval narrower than an interval over independent draws would be.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(low), float(high)
