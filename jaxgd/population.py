"""Populations: many networks — seeds, learning rates, data conditions — trained as one program.

``jaxgd.fit(keys, ...)`` with a batch of keys trains one network per key. This
module holds what a population adds on top: per-condition data variants
(:class:`Conditions`), grids of conditions x seeds, and statistics that leave
out diverged members.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.data.dataset import Dataset

SPLIT_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass(frozen=True, eq=False)
class Conditions:
    """Data variants for a population: each member trains on one condition's data.

    Attributes:
      arrays: any of ``x_train``, ``y_train``, ``x_test``, ``y_test`` with a leading
        condition axis ``(C, ...)``; arrays not given are the dataset's, shared by all.
        E.g. ``{"y_train": (C, n_train)}`` for label corruptions, or
        ``{"x_train": (C, n, d), "x_test": (C, m, d)}`` for input randomizations.
      index: ``(S,)`` int, the condition of each member.

    The arrays are stored once per condition and read by index inside the step:
    nothing is copied per member.
    """

    arrays: dict
    index: np.ndarray

    def check(self, data: Dataset, members: int) -> None:
        """Raises ``ValueError`` naming the first array that does not fit ``data`` or the population."""
        if not isinstance(self.arrays, dict) or not self.arrays:
            raise ValueError("Conditions.arrays must be a non-empty dict of per-condition arrays.")
        index = np.asarray(self.index)
        if index.shape != (members,) or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"Conditions.index must be {members} integers (one per member), got shape {index.shape}.")
        num = None
        for name, value in self.arrays.items():
            if name not in SPLIT_ARRAYS:
                raise ValueError(f"Unknown condition array {name!r}; use {', '.join(SPLIT_ARRAYS)}.")
            base = getattr(data, name)
            value = np.asarray(value)
            if value.shape[1:] != base.shape:
                raise ValueError(f"Condition array {name} has shape {value.shape}; expected (conditions, *{base.shape}).")
            num = value.shape[0] if num is None else num
            if value.shape[0] != num:
                raise ValueError(f"Condition arrays disagree on the number of conditions ({num} vs {value.shape[0]}).")
            if name.startswith("y_") and (value.min() < 0 or value.max() >= data.num_classes):
                raise ValueError(f"Condition array {name} has labels outside [0, {data.num_classes}).")
            if name.startswith("x_") and not np.all(np.isfinite(value)):
                raise ValueError(f"Condition array {name} contains NaN or infinite values.")
        if index.min() < 0 or index.max() >= num:
            raise ValueError(f"Conditions.index refers to condition {index.max()} but only {num} are given.")

    @property
    def num_conditions(self) -> int:
        return int(np.asarray(next(iter(self.arrays.values()))).shape[0])


def grid(key: jax.Array, num_conditions: int, seeds: int, *, same_inits: bool = True):
    """Keys and condition indices for ``num_conditions x seeds`` members, condition-major.

    With ``same_inits`` every condition uses the same ``seeds`` keys, so conditions
    differ only in their data.

    Returns:
      ``(keys (C * seeds,), condition_index (C * seeds,))``.
    """
    if same_inits:
        keys = jnp.tile(jax.random.split(key, seeds), (num_conditions,))
    else:
        keys = jax.random.split(key, num_conditions * seeds)
    return keys, np.repeat(np.arange(num_conditions), seeds)


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
