"""Comparing two runs' files: what differs in their results, and in the versions and data that made them."""
from __future__ import annotations

import json
from pathlib import Path

from jaxgd.io.files import read_arrays
from jaxgd.runs.rundir import STATE_FILE

#: Fields of a run's files that record when and how long, not what: left out of comparisons.
WALL_CLOCK_FIELDS = ("wall_seconds", "first_epoch_seconds", "environment")


#: Environment fields whose differences ``jaxgd rerun`` reports beside its verdict.
PROVENANCE = ("jaxgd", "jax", "jaxlib", "optax", "numpy", "python", "backend", "device_kind", "device_count", "x64",
              "XLA_FLAGS")


def compare_runs(a: Path, b: Path, files=("metrics.json",), arrays=("params.npz", STATE_FILE)) -> list[str]:
    """Differences between ``b``, a replay, and ``a``, the recorded run: their result files, wall-clock fields aside
    (empty if none). An array file ``a`` lacks is not compared (``model_state.npz``: a model without batch
    statistics, or a run recorded before jaxgd wrote it); one that ``a`` has and ``b`` lacks is a difference."""

    def strip(obj):
        return {k: v for k, v in obj.items() if k not in WALL_CLOCK_FIELDS} if isinstance(obj, dict) else obj

    diffs = []
    for name in files:
        x, y = (strip(json.loads((d / name).read_text())) for d in (a, b))
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                diffs.append(f"{name}: {key} differs")
    for name in arrays:
        if not (a / name).is_file():
            continue
        if not (b / name).is_file():
            diffs.append(f"{name}: missing")
            continue
        fa, fb = read_arrays(a / name), read_arrays(b / name)  # bounded: a zip bomb is refused, not inflated
        for key in sorted(set(fa) | set(fb)):
            if key not in fa or key not in fb or fa[key].dtype != fb[key].dtype or fa[key].shape != fb[key].shape \
                    or fa[key].tobytes() != fb[key].tobytes():
                diffs.append(f"{name}: {key} differs")
    return diffs


def provenance_differences(a: Path, b: Path) -> list[str]:
    """Versions, platform and data that differ between two runs' records (``metrics.json``, ``config.json``)."""
    out = []
    try:
        env_a, env_b = (json.loads((d / "metrics.json").read_text()).get("environment", {}) for d in (a, b))
        conf_a, conf_b = (json.loads((d / "config.json").read_text()) for d in (a, b))
    except (OSError, ValueError):
        return ["the runs' records could not be read"]
    for field in PROVENANCE:
        if env_a.get(field) != env_b.get(field):
            out.append(f"{field} was {env_a.get(field)!r}, now {env_b.get(field)!r}")
    if conf_a.get("data_digest") != conf_b.get("data_digest"):
        out.append(f"the data differ: digest {conf_a.get('data_digest')} recorded, {conf_b.get('data_digest')} now")
    return out
