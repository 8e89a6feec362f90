"""A population too large for one program, trained ``max_members`` at a time (``fit(..., max_members=)``)."""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.training.progress import AXES
from jaxgd.training.result import FitResult


def fit_in_chunks(run, keys, member, conditions, max_members, checkpoint) -> FitResult:
    """Trains a population ``max_members`` at a time with ``run`` (one chunk's :func:`jaxgd.fit`); the last chunk
    is padded so all share one program. ``first_epoch_seconds`` is the first chunk's."""
    start = time.perf_counter()
    members = int(keys.shape[0])
    results = []
    for lo in range(0, members, max_members):
        take = np.arange(lo, lo + max_members) % members  # pad the last chunk by wrapping around
        sub_conditions = None if conditions is None else dataclasses.replace(conditions,
                                                                             index=member["condition"][take])
        file = None if checkpoint is None else checkpoint / f"members-{lo:06d}-{lo + max_members:06d}.npz"
        results.append(run(keys[take], member=jax.tree.map(lambda a: a[take], member), conditions=sub_conditions,
                           checkpoint_file=file))
    keep = [min(max_members, members - lo) for lo in range(0, members, max_members)]
    cat = lambda *xs: np.concatenate([np.asarray(x)[:k] for x, k in zip(xs, keep)])  # noqa: E731
    epochs = max(r.epochs_run for r in results)
    history = {axis: max((r.history[axis] for r in results), key=len) for axis in AXES if axis in results[0].history}
    for name in results[0].history:
        if name not in AXES:
            history[name] = cat(*[pad_history(r.history[name], len(history["epoch"])) for r in results])
    params = jax.tree.map(lambda *xs: jnp.concatenate([x[:k] for x, k in zip(xs, keep)]),
                          *[r.params for r in results])
    return FitResult(params=params, history=history,
                     initial={k: cat(*[r.initial[k] for r in results]) for k in results[0].initial},
                     diverged=cat(*[r.diverged for r in results]),
                     diverged_epoch=cat(*[r.diverged_epoch for r in results]), epochs_run=epochs,
                     state=results[-1].state, wall_seconds=time.perf_counter() - start, config=results[0].config,
                     num_members=members, num_devices=results[0].num_devices, model=results[0].model,
                     hyperparams={k: cat(*[r.hyperparams[k] for r in results]) for k in results[0].hyperparams},
                     examples=None if results[0].examples is None else
                     {k: cat(*[r.examples[k] for r in results]) for k in results[0].examples},
                     first_epoch_seconds=results[0].first_epoch_seconds,
                     model_state=None if results[0].model_state is None else
                     jax.tree.map(lambda *xs: jnp.concatenate([x[:k] for x, k in zip(xs, keep)]),
                                  *[r.model_state for r in results]))


def pad_history(values: np.ndarray, length: int) -> np.ndarray:
    """Pads a chunk that stopped early (all members diverged or reached the target) with NaN."""
    missing = length - values.shape[-1]
    return values if missing == 0 else np.concatenate([values, np.full(values.shape[:-1] + (missing,), np.nan)], -1)
