"""What a run carries from step to step: parameters, optimizer state, step counters and data-order keys.

Everything random comes from one key per network: ``jax.random.split(key)`` gives the
initialisation key and the data-order key, and ``jax.random.fold_in(key, NOISE)`` the noise key
of a stochastic run (dropout masks, augmentation), folded with the step at every step. A
population is a batch of keys, and its state has a leading member axis.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.errors import InvalidArgument, InvalidType
from jaxgd.models import init_variables
from jaxgd.training.spec import to_compute_layout


class TrainState(NamedTuple):
    """Everything a run carries between chunks; leaves gain a leading axis in populations."""

    params: Any  # in the spec's compute layout (see jaxgd.training.spec.to_compute_layout), ([S,] ...)
    opt_state: Any  # optax state with the injected hyperparameters, ([S,] ...)
    step: jax.Array  # ([S],) int32: optimizer steps taken
    data_key: jax.Array  # typed key, ([S],) per member or () for a shared order
    examples: Any = None  # with record_examples: see empty_record, ([S,] ...) each
    model_state: Any = None  # a stateful model's state (batch statistics), ([S,] ...); None for a pure model
    noise_key: Any = None  # typed key, ([S],): each member's own draws (dropout, augmentation); None if none


#: What the noise key folds into a member's key (any constant: it keeps the initialisation and data-order keys,
#: and so every run without noise, as they were).
NOISE = 0x6E6F6973


def empty_record(n: int) -> dict:
    """The per-example record of one network before its first evaluation (see :func:`jaxgd.training.loop.record_examples`):
    ``learned_at``, ``forgets``, ``correct`` and ``first_correct`` ``(n,)``, ``first_epoch`` ``()``."""
    return {"learned_at": jnp.full((n,), -1, jnp.int32), "forgets": jnp.zeros((n,), jnp.int32),
            "correct": jnp.zeros((n,), bool), "first_correct": jnp.zeros((n,), bool),
            "first_epoch": jnp.array(-1, jnp.int32)}


def as_key(key) -> jax.Array:
    """A typed PRNG key (or batch of keys) from a typed key, raw ``uint32`` key data or an int seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        if not -2 ** 63 <= int(key) < 2 ** 63:
            raise InvalidArgument(f"An integer seed must fit in a signed 64-bit integer, got {key}.")
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, (list, tuple, np.ndarray, jax.Array)):
        arr = jnp.asarray(key)
        if arr.dtype == jnp.uint32 and arr.ndim >= 1 and arr.shape[-1] == 2:
            return jax.random.wrap_key_data(arr)
    raise InvalidType(f"key must be a jax.random.key, raw uint32 key data or an int seed, got {key!r:.80}.")


def init_state(key: jax.Array, spec, hyperparams: dict, data_seed: int = 0) -> TrainState:
    """Initial parameters, optimizer state and data-order key(s) from ``key`` (``(S,)`` for a population).

    Args:
      key: one typed key, or ``(S,)`` keys for a population (``spec.population``).
      spec: the run's :class:`jaxgd.training.spec.Spec` (model, optimizer, compute layout).
      hyperparams: the optimizer's numeric hyperparameters, scalars or ``(S,)`` arrays.
      data_seed: the seed of a shared data order.
    """
    def one(k, hp):
        k_init, k_data = jax.random.split(k)
        params, model_state = init_variables(spec.model, k_init)
        params = to_compute_layout(spec, params)
        opt_state = spec.optimizer.transform(hp).init(params)
        examples = empty_record(spec.n_train) if spec.record_examples else None
        noise = jax.random.fold_in(k, NOISE) if spec.noisy else None
        return TrainState(params, opt_state, jnp.zeros((), jnp.int32), k_data, examples, model_state, noise)

    hyperparams = {k: jnp.asarray(v, jnp.float32) for k, v in hyperparams.items() if k in spec.optimizer.numeric}
    if not spec.population:
        return one(key, hyperparams)
    state = jax.vmap(one)(key, hyperparams)
    if spec.shared_order:
        state = state._replace(data_key=jax.random.key(data_seed))
    return state


def start_from(fresh: TrainState, start: TrainState) -> TrainState:
    """``start`` as a run's initial state, checked against the state the run would make itself (``fresh``).

    The parameters, optimizer buffers, step, data-order and noise keys and model state are ``start``'s;
    the hyperparameters held in the optimizer state are the run's own (``fresh``'s), and so is the
    per-example record (``record_examples`` starts anew). ``start`` must be in the run's compute layout
    (:func:`jaxgd.training.spec.to_compute_layout`), as ``FitResult.state`` and :func:`branch` are.
    """
    if not isinstance(start, TrainState):
        raise InvalidType(f"start must be a jaxgd.TrainState (a FitResult's state, or jaxgd.training.state.branch's "
                          f"copies of one), got {type(start).__name__}.")
    start = start._replace(opt_state=_with_hyperparams(start.opt_state, fresh.opt_state), examples=fresh.examples)
    expected = [(tuple(np.shape(a)), a.dtype) for a in jax.tree.leaves(fresh)]
    given = [(tuple(np.shape(a)), a.dtype) for a in jax.tree.leaves(start)]
    if jax.tree.structure(start) != jax.tree.structure(fresh) or given != expected:
        wrong = next(((g, e) for g, e in zip(given, expected) if g != e), None)
        detail = "" if wrong is None else f": a leaf {wrong[0][0]} {wrong[0][1]} where the run has {wrong[1][0]} {wrong[1][1]}"
        raise InvalidArgument("start is not a state of this run (its model, optimizer, population size and data order "
                              f"must match, with one entry per member and a member axis for a population){detail}.")
    return jax.tree.map(lambda a: jnp.array(a, copy=True), start)  # fit donates its state: never the caller's arrays


def _with_hyperparams(opt_state, fresh):
    hyperparams = getattr(fresh, "hyperparams", None)
    if hyperparams is None or not hasattr(opt_state, "_replace") or not hasattr(opt_state, "hyperparams"):
        return opt_state
    return opt_state._replace(hyperparams=hyperparams)


def branch(state: TrainState, keys: jax.Array) -> TrainState:
    """Copies of one network's state, one per key: children that start as that network and differ only in their data
    order (and dropout, augmentation) from then on.

    Each copy keeps the parameters, optimizer buffers, step and model state, and takes the data-order key (and
    noise key) a new network of its key would have (:func:`init_state`). ``state`` is one network's (no member
    axis); the copies carry a leading member axis, ready for ``fit(keys, ..., start=branch(state, keys))``.
    """
    keys = as_key(keys)
    if keys.ndim != 1:
        raise InvalidArgument(f"branch takes a vector of keys, one per copy, got shape {keys.shape}.")
    if np.ndim(state.step) != 0:
        raise InvalidArgument("branch copies one network's state (no member axis); take a member out first.")
    tile = lambda a: jnp.broadcast_to(jnp.asarray(a), (keys.shape[0],) + np.shape(a))  # noqa: E731
    copies = jax.tree.map(tile, state._replace(data_key=None, noise_key=None))
    data_keys = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
    noise = None if state.noise_key is None else jax.vmap(lambda k: jax.random.fold_in(k, NOISE))(keys)
    return copies._replace(data_key=data_keys, noise_key=noise)
