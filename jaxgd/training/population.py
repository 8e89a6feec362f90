"""Populations: many networks — seeds, learning rates, data conditions — trained as one program.

``jaxgd.fit(keys, ...)`` with a batch of keys trains one network per key. This
module holds what a population adds on top: per-condition data variants
(:class:`Conditions`), grids of conditions x seeds, and sweeps of hyperparameters x seeds
(their statistics are in :mod:`jaxgd.analysis.statistics`).
"""
from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.errors import InvalidArgument
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
            raise InvalidArgument("Conditions.arrays must be a non-empty dict of per-condition arrays.")
        index = np.asarray(self.index)
        if index.shape != (members,) or not np.issubdtype(index.dtype, np.integer):
            raise InvalidArgument(f"Conditions.index must be {members} integers (one per member), got shape {index.shape}.")
        num = None
        for name, value in self.arrays.items():
            if name not in SPLIT_ARRAYS:
                raise InvalidArgument(f"Unknown condition array {name!r}; use {', '.join(SPLIT_ARRAYS)}.")
            base = getattr(data, name)
            value = np.asarray(value)
            if value.shape[1:] != base.shape:
                raise InvalidArgument(f"Condition array {name} has shape {value.shape}; expected (conditions, *{base.shape}).")
            num = value.shape[0] if num is None else num
            if value.shape[0] != num:
                raise InvalidArgument(f"Condition arrays disagree on the number of conditions ({num} vs {value.shape[0]}).")
            if name.startswith("y_") and (value.min() < 0 or value.max() >= data.num_classes):
                raise InvalidArgument(f"Condition array {name} has labels outside [0, {data.num_classes}).")
            if name.startswith("x_") and not np.all(np.isfinite(value)):
                raise InvalidArgument(f"Condition array {name} contains NaN or infinite values.")
        if index.min() < 0 or index.max() >= num:
            raise InvalidArgument(f"Conditions.index refers to condition {index.max()} but only {num} are given.")

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


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A labelled grid of hyperparameters x seeds, laid out as one population (group-major).

    Attributes:
      keys: ``(G * seeds,)`` keys; with ``same_inits`` every group reuses the same ``seeds`` keys.
      hyperparams: ``{name: (G * seeds,)}``, for ``fit(..., hyperparams=)``.
      group: ``(G * seeds,)`` int, each member's group.
      groups: one label per group, ``{name: value}``.
    """

    keys: jax.Array
    hyperparams: dict
    group: np.ndarray
    groups: list

    @property
    def labels(self) -> list[dict]:
        """Each member's label."""
        return [self.groups[g] for g in self.group]


def sweep(key: jax.Array, values: dict, seeds: int, *, same_inits: bool = True) -> Sweep:
    """Every combination of ``values`` (``{hyperparameter: [values]}``, the last name varying fastest) x ``seeds``.

    Example:
      >>> s = jaxgd.sweep(jax.random.key(0), {"weight_decay": [0, 1e-4, 1e-3, 1e-2]}, seeds=5)
      >>> result = jaxgd.fit(s.keys, model, data, config, hyperparams=s.hyperparams)
      >>> jaxgd.grouped_stats(result.final("test_accuracy"), s.group, result.diverged, labels=s.groups)
    """
    if not isinstance(values, dict) or not values:
        raise InvalidArgument(f"sweep needs a non-empty dict of hyperparameter -> values, got {values!r:.80}.")
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise InvalidArgument(f"seeds must be a positive integer, got {seeds!r}.")
    names = list(values)
    axes = []
    for name in names:
        v = np.asarray(values[name], np.float64).reshape(-1)
        if v.size == 0:
            raise InvalidArgument(f"sweep: no values for {name!r}.")
        axes.append(v)
    combos = list(itertools.product(*axes))
    keys, group = grid(key, len(combos), int(seeds), same_inits=same_inits)
    hyperparams = {name: np.repeat(np.asarray([c[i] for c in combos], np.float32), seeds)
                   for i, name in enumerate(names)}
    labels = [{name: float(c[i]) for i, name in enumerate(names)} for c in combos]
    return Sweep(keys=keys, hyperparams=hyperparams, group=group, groups=labels)
