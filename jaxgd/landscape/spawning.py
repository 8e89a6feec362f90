"""Spawning: children trained from one trunk's state at several epochs, each with its own data order.

Frankle, Dziugaite, Roy and Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis"
(ICML 2020, arXiv 1912.05671): train a trunk; at epoch ``k`` copy its whole state (parameters,
optimizer buffers, step) into children that differ only in their SGD noise (their data order) and
train each to the end. If the children end in one linearly connected basin (no barrier on the line
between them), the network was *stable* at ``k``; the barrier is its *instability*.

:func:`spawn` trains the trunk once, in segments that end at each spawn epoch (the segments chain the
trunk's state exactly, so the trunk is the run it would be uninterrupted), then trains the children of
every ``k`` together as one population (``fit(..., start=...)``).
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.errors import InvalidArgument
from jaxgd.training.config import TrainConfig
from jaxgd.training.fit import fit, prepare
from jaxgd.training.optim import schedule_factor
from jaxgd.training.result import FitResult
from jaxgd.training.spec import from_compute_layout
from jaxgd.training.state import as_key, branch


class Spawned(NamedTuple):
    """What :func:`spawn` returns.

    Attributes:
      epochs: the spawn epochs ``k``, increasing.
      trunk: ``{k: parameters}``, the trunk at each spawn epoch in the model's layout (for a stateful model
        ``(params, state)`` pairs).
      children: every child as one population (``FitResult``): members ``i * K .. i * K + K - 1`` were spawned at
        ``epochs[i]``; each trained to the trunk's last epoch (see :func:`spawn`).
      spawned_at: ``(S,)`` the spawn epoch of each child.
    """

    epochs: tuple[int, ...]
    trunk: dict[int, Any]
    children: FitResult
    spawned_at: np.ndarray

    def group(self, k: int) -> np.ndarray:
        """The members of :attr:`children` spawned at epoch ``k``."""
        return np.flatnonzero(self.spawned_at == k)


def until_end(step, *, schedule, end: int, total_steps: int, steps_per_epoch: int):
    """The learning-rate factor of a spawned run: the trunk's ``schedule`` over the trunk's ``total_steps``, and 0
    from step ``end`` on, so that every child stops at the trunk's last epoch whenever it was spawned."""
    factor = schedule_factor(schedule, step, total_steps, steps_per_epoch)
    factor = jnp.ones((), jnp.float32) if factor is None else factor
    return jnp.where(step < end, factor, 0.0)


def spawn(key, model, data, config: TrainConfig, *, epochs=(0, 1, 2, 4), children: int = 4, metrics=None,
          devices=None, checkpoint=None, checkpoint_every: int = 1, progress: bool = False) -> Spawned:
    """Trains a trunk for ``config.epochs`` epochs and, at each epoch ``k`` of ``epochs``, ``children`` copies of its
    state with their own data orders, all children as one population.

    Every child is trained to the trunk's end (``config.epochs`` epochs in all, as Frankle et al. do): a child
    spawned at ``k`` trains ``config.epochs - k`` epochs. In the one population every child runs
    ``config.epochs - min(epochs)`` epochs and the learning rate of a child is 0 once its step count reaches the
    trunk's last step (:func:`until_end`), so its parameters stay at the end; a schedule keeps the trunk's course
    (``"cosine"`` decays over the trunk's steps for every child).

    Args:
      key: one key: the trunk's from ``split(key)[0]``, the children's from ``split(key)[1]`` folded with ``k``.
      model, data, config: as for :func:`jaxgd.fit`; ``config.data_order`` must be ``"per_seed"`` (the children
        differ only in their data order).
      epochs: the spawn epochs, each in ``[0, config.epochs)``.
      children: children per spawn epoch (at least 2: the barrier is measured between children).
      metrics, devices, progress: as for :func:`jaxgd.fit` (the children's population is spread over ``devices``;
        the trunk runs on the first local device).
      checkpoint: a directory: the trunk's segments and the children checkpoint there (``trunk-<k>/``,
        ``children/``) and resume bit-identically.

    Returns:
      A :class:`Spawned`.
    """
    ks = tuple(sorted(set(int(k) for k in epochs)))
    if not ks or ks[0] < 0 or ks[-1] >= config.epochs or any(isinstance(k, bool) for k in epochs):
        raise InvalidArgument(f"spawn epochs must be integers in [0, {config.epochs}), got {tuple(epochs)!r}.")
    if isinstance(children, bool) or not isinstance(children, int) or children < 2:
        raise InvalidArgument(f"spawn needs at least 2 children per epoch (a barrier is between two), got {children!r}.")
    if config.data_order != "per_seed":
        raise InvalidArgument("spawn's children differ only in their data order: use data_order='per_seed'.")
    key = as_key(key)
    if key.ndim != 0:
        raise InvalidArgument(f"spawn takes one key (the trunk's), got shape {key.shape}.")
    config.validate(data.n_train)
    steps = 1 if config.batch_size is None else data.n_train // config.batch_size
    config = config.replace(schedule=functools.partial(
        until_end, schedule=config.schedule, end=steps * config.epochs, total_steps=steps * config.epochs,
        steps_per_epoch=steps))
    k_trunk, k_children = jax.random.split(key)
    where = lambda name: None if checkpoint is None else f"{checkpoint}/{name}"  # noqa: E731

    trunk_keys = k_trunk[None]  # a population of one on one device: the state has one member and no padding
    one_device = jax.local_devices()[:1]
    prepared = prepare(trunk_keys, model, data, config, devices=one_device)
    state, done, trunk_states = prepared.state, 0, {}
    for k in ks:
        if k > done:
            state = fit(trunk_keys, model, data, config.replace(epochs=k - done), start=state, devices=one_device,
                        checkpoint=where(f"trunk-{k}"), checkpoint_every=checkpoint_every).state
            done = k
        trunk_states[k] = jax.tree.map(lambda a: np.asarray(a[0]) if not _is_key(a) else a[0], state)

    keys = jnp.concatenate([jax.random.split(jax.random.fold_in(k_children, k), children) for k in ks])
    starts = [branch(trunk_states[k], keys[i * children:(i + 1) * children]) for i, k in enumerate(ks)]
    start = jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *starts)
    result = fit(keys, model, data, config.replace(epochs=config.epochs - ks[0]), start=start, metrics=metrics,
                 devices=devices, checkpoint=where("children"), checkpoint_every=checkpoint_every, progress=progress)
    trunk = {k: _network(from_compute_layout(prepared.spec, s.params), s.model_state) for k, s in trunk_states.items()}
    return Spawned(ks, trunk, result, np.repeat(np.asarray(ks), children))


def _network(params, model_state):
    return params if model_state is None else (params, model_state)


def _is_key(a) -> bool:
    return jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key)
