"""Gradient-descent training compiled whole: ``lax.scan`` over steps and epochs.

The pure core is :func:`train_chunk`: ``(state, lr, data) -> (state, metrics)`` for
``num_epochs`` epochs, written for one network and turned into a population
(a leading member axis on the state) by ``jax.vmap``. Minibatches are gathered by
index inside the step, so nothing copies the dataset per epoch or per member.
:func:`fit` is the thin driver: it validates, initialises, calls the compiled
chunk in a Python loop and does progress bars, early stopping and divergence checks.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxgd import sharding
from jaxgd.backprop import backprop
from jaxgd.config import MATMUL_PRECISION, TrainConfig
from jaxgd.costs import cost_fn, evaluate_rows
from jaxgd.deferred import block_steps, sgd_block
from jaxgd.dense import dense
from jaxgd.data.dataset import Dataset
from jaxgd.mlp import MLP, Params
from jaxgd.optim import direction, step_size
from jaxgd.permutation import permutation


def to_compute_layout(params: Params) -> Params:
    """Weights as ``(n_out, n_in)`` (as ``torch.nn.Linear`` stores them) for the compiled loop.

    With the input dimension minor, the per-member first-layer products and their
    weight gradients of a population become contractions XLA runs two to three
    times faster on CPU than with ``(n_in, n_out)`` weights; with a shared data
    order the first layer of all members is one ``(batch, n_in) x (n_in, S * n_out)``
    product either way. Involution: it is its own inverse.
    """
    return [{"w": jnp.swapaxes(layer["w"], -1, -2), "b": layer["b"]} for layer in params]


from_compute_layout = to_compute_layout


class TrainState(NamedTuple):
    """Everything a run carries between chunks; leaves gain a leading axis in populations."""

    params: Params  # compute layout: [{"w": ([S,] n_out, n_in), "b": ([S,] n_out)}, ...]
    opt_state: Any  # optax state of the direction transform, ([S,] ...)
    step: jax.Array  # ([S],) int32: optimizer steps taken
    data_key: jax.Array  # typed key, ([S],) per member or () for a shared order


@dataclasses.dataclass(frozen=True)
class Spec:
    """The static (hashable) part of a run: changing it recompiles, nothing else does."""

    net: MLP
    cost: str
    optimizer: str
    momentum: float
    batch_size: int  # examples per step (n_train for full batch)
    steps_per_epoch: int
    full_batch: bool
    schedule: Any
    total_steps: int
    gradient: str
    eval_batch_size: int
    population: bool = False
    shared_order: bool = False
    condition_arrays: tuple[str, ...] = ()  # data arrays with a leading condition axis
    members: int | None = None  # population size (sizes the evaluation chunks)
    member_shards: int = 1  # contiguous blocks the member axis is split into, one per device (see place)
    deferred_steps: int = 1  # steps per block of deferred first-layer updates (1: none; see jaxgd.deferred)
    matmul_precision: str = MATMUL_PRECISION  # TrainConfig.matmul_precision, applied as the programs are traced

    @classmethod
    def make(cls, net: MLP, config: TrainConfig, n_train: int, **kw) -> "Spec":
        batch = n_train if config.batch_size is None else config.batch_size
        steps = 1 if config.batch_size is None else n_train // batch
        # a population shares its order when the config says so (tests may force it either way)
        kw.setdefault("shared_order", bool(kw.get("population")) and config.data_order == "shared")
        exact = (kw["shared_order"] and config.optimizer == "sgd" and config.gradient == "autodiff"
                 and config.batch_size is not None and "x_train" not in kw.get("condition_arrays", ()))
        kw.setdefault("deferred_steps", block_steps(batch, kw.get("members"), net.sizes[1]) if exact else 1)
        return cls(net=net, cost=config.cost, optimizer=config.optimizer, momentum=float(config.momentum),
                   batch_size=batch, steps_per_epoch=steps, full_batch=config.batch_size is None,
                   schedule=config.schedule,
                   # only decaying schedules need the run's length: keep it out of the compiled program otherwise
                   total_steps=steps * config.epochs if config.schedule in ("cosine", "linear") else 0,
                   gradient=config.gradient, eval_batch_size=_eval_chunk(net, config, kw.get("members")),
                   matmul_precision=config.matmul_precision, **kw)


#: Activations (members x examples x width) one evaluation chunk may hold at once: 16 Mi floats, 64 MiB.
EVAL_ACTIVATIONS = 2 ** 24


def _eval_chunk(net: MLP, config: TrainConfig, members: int | None) -> int:
    """Examples per evaluation chunk: the configured size, smaller for large populations."""
    per_example = (members or 1) * max(net.sizes[1:])
    return max(64, min(config.eval_batch_size, EVAL_ACTIVATIONS // per_example))


def batch_order(key: jax.Array, spec: Spec, n: int) -> jax.Array:
    """Example indices of one epoch, ``(steps_per_epoch, batch_size)`` int32."""
    if spec.full_batch:
        return jnp.arange(n, dtype=jnp.int32)[None]
    perm = permutation(key, n)  # jax.random.permutation's draw, faster on CPUs
    return perm[: spec.steps_per_epoch * spec.batch_size].reshape(spec.steps_per_epoch, spec.batch_size)


def member_orders(keys: jax.Array, spec: Spec, n: int) -> jax.Array:
    """:func:`batch_order` of every member, ``(S, steps_per_epoch, batch_size)``.

    One member's permutation at a time on each device: O(n) sort temporaries per
    device instead of O(S * n). The loop runs within each of the ``spec.member_shards``
    contiguous blocks of members (one per device, see :func:`place`); a loop over the
    whole sharded member axis would make every device draw every member's permutation.
    """
    blocks = keys.reshape((spec.member_shards, -1) + keys.shape[1:])
    idx = jax.vmap(lambda ks: jax.lax.map(lambda k: batch_order(k, spec, n), ks))(blocks)
    return idx.reshape((-1,) + idx.shape[2:])


def gradient_fn(spec: Spec) -> Callable:
    """Gradient of the cost with respect to compute-layout parameters."""
    if spec.gradient == "backprop":
        return lambda p, x, y: to_compute_layout(backprop(spec.net, spec.cost, from_compute_layout(p), x, y))
    return jax.grad(cost_fn(spec.net, spec.cost, matmul=dense))


def rows(data: dict, spec: Spec, condition, split: str, idx):
    """Examples ``idx`` of a split, read from this member's condition where the data has one.

    ``data[name][condition, idx]`` is one gather: nothing is copied per member.
    """
    out = []
    for name in (f"x_{split}", f"y_{split}"):
        array = data[name]
        out.append(array[condition, idx] if name in spec.condition_arrays else array[idx])
    return tuple(out)


def train_steps(params, opt_state, step, member, idx, data, *, spec: Spec):
    """One epoch of one network: a ``lax.scan`` of optimizer steps over ``idx (steps, batch)``.

    ``member`` holds this network's ``lr`` (base learning rate) and ``condition``
    (its row of the per-condition data arrays).
    """
    grad = gradient_fn(spec)
    tx = direction(spec.optimizer, spec.momentum)
    full = slice(None)

    def body(carry, batch_idx):
        params, opt_state, step = carry
        xb, yb = rows(data, spec, member["condition"], "train", full if spec.full_batch else batch_idx)
        g = grad(params, xb, yb)
        d, opt_state = tx.update(g, opt_state, params)
        eta = _eta(member["lr"], step, spec=spec)
        params = jax.tree.map(lambda p, u: p - eta.astype(p.dtype) * u, params, d)
        return (params, opt_state, step + 1), None

    (params, opt_state, step), _ = jax.lax.scan(body, (params, opt_state, step), idx)
    return params, opt_state, step


def _deferred_steps(params, opt_state, step, member, idx, data, *, spec: Spec):
    """:func:`train_steps` of a whole shared-order population (leading member axis on
    ``params``, ``step`` and ``member``), plain SGD in blocks of ``spec.deferred_steps``
    steps (:mod:`jaxgd.deferred`)."""
    block = functools.partial(sgd_block, net=spec.net, cost=spec.cost,
                              eta=functools.partial(_eta, spec=spec))
    labels = jax.vmap(lambda c, i: rows(data, spec, c, "train", i)[1], in_axes=(0, None))

    def body(carry, block_idx):
        x = data["x_train"][block_idx]  # the same inputs for every member (see Spec.make)
        return block(*carry, x, labels(member["condition"], block_idx), member["lr"]), None

    k = spec.deferred_steps
    whole = idx.shape[0] // k * k
    carry = (params, step)
    if whole:
        carry, _ = jax.lax.scan(body, carry, idx[:whole].reshape(-1, k, idx.shape[1]))
    if whole < idx.shape[0]:
        carry, _ = body(carry, idx[whole:])
    params, step = carry
    return params, opt_state, step


def _eta(lr, step, *, spec: Spec):
    """One network's learning rate at optimizer step ``step`` (base rate ``lr``, the run's schedule)."""
    return step_size(spec.schedule, lr, step, spec.total_steps, spec.steps_per_epoch)


def evaluate_params(params, member, data, *, spec: Spec) -> dict[str, jax.Array]:
    """Cost and accuracy of one network on every split present in ``data``."""
    out = {}
    net = spec.net
    for split in ("train", "test", "val"):
        if f"x_{split}" in data:
            n = data[f"y_{split}"].shape[-1]
            c, a = evaluate_rows(net, spec.cost, from_compute_layout(params),
                                 lambda i, s=split: rows(data, spec, member["condition"], s, i),
                                 n, data[f"x_{split}"].dtype, spec.eval_batch_size)
            out[f"{split}_cost"], out[f"{split}_accuracy"] = c, a
    out["param_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params)))
    return out


def evaluate_state(state: TrainState, member, data, *, spec: Spec):
    fn = functools.partial(evaluate_params, spec=spec)
    if spec.population:
        fn = jax.vmap(fn, in_axes=(0, 0, None))
    with jax.default_matmul_precision(spec.matmul_precision):
        return fn(state.params, member, data)


def train_epochs(state: TrainState, member: dict, data: dict, *, spec: Spec, num_epochs: int) -> TrainState:
    """``num_epochs`` epochs of training alone (see :func:`train_chunk` for the arguments)."""
    n = data["y_train"].shape[-1]
    per_member_order = spec.population and not spec.shared_order
    train = functools.partial(train_steps, spec=spec)
    if spec.deferred_steps > 1:  # a shared-order population, written for all its members at once
        train = functools.partial(_deferred_steps, spec=spec)
    elif spec.population:
        # A shared order leaves the minibatch indices unbatched, so the first layer of every
        # member becomes one (batch, n_in) x (n_in, S * n_out) matrix product.
        train = jax.vmap(train, in_axes=(0, 0, 0, 0, 0 if per_member_order else None, None))

    def epoch(state: TrainState, _):
        if per_member_order:
            keys = jax.vmap(jax.random.split)(state.data_key)
            new_key, idx = keys[:, 0], member_orders(keys[:, 1], spec, n)
        else:
            new_key, sub = jax.random.split(state.data_key)
            idx = batch_order(sub, spec, n)
        params, opt_state, step = train(state.params, state.opt_state, state.step, member, idx, data)
        return TrainState(params, opt_state, step, new_key), None

    with jax.default_matmul_precision(spec.matmul_precision):  # read as the products are traced
        state, _ = jax.lax.scan(epoch, state, None, length=num_epochs)
    return state


def train_chunk(state: TrainState, member: dict, data: dict, *, spec: Spec, num_epochs: int,
                evaluate: bool = True):
    """``num_epochs`` epochs, then one evaluation. Pure; jit with ``spec``, ``num_epochs`` and ``evaluate`` static.

    Args:
      state: a :class:`TrainState` (leaves with a leading member axis when ``spec.population``).
      member: ``{"lr": ([S],) float32, "condition": ([S],) int32}``: each network's base
        learning rate and its row of the per-condition data arrays.
      data: ``{"x_train", "y_train", "x_test", "y_test"[, "x_val", "y_val"]}``; arrays
        named in ``spec.condition_arrays`` carry a leading condition axis. Shared by
        all members: never copied per member.
      evaluate: whether to evaluate after the last epoch (``metrics`` is ``None`` otherwise).

    Returns:
      ``(state, metrics)`` with metrics ``{"train_cost", "train_accuracy", ...}`` as
      scalars (or ``(S,)``) after the last epoch of the chunk.
    """
    state = train_epochs(state, member, data, spec=spec, num_epochs=num_epochs)
    return state, evaluate_state(state, member, data, spec=spec) if evaluate else None


_compiled_chunk = jax.jit(train_chunk, static_argnames=("spec", "num_epochs", "evaluate"), donate_argnums=(0,))
_compiled_eval = jax.jit(evaluate_state, static_argnames=("spec",))


def as_key(key) -> jax.Array:
    """A typed PRNG key (or batch of keys) from a typed key, raw ``uint32`` key data or an int seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    arr = jnp.asarray(key)
    if arr.dtype == jnp.uint32 and arr.ndim >= 1 and arr.shape[-1] == 2:
        return jax.random.wrap_key_data(arr)
    raise TypeError(f"key must be a jax.random.key, raw uint32 key data or an int seed, got {key!r}.")


def init_state(key: jax.Array, net: MLP, config: TrainConfig, *, population: bool = False) -> TrainState:
    """Initial parameters, optimizer state and data-order key(s) from ``key`` (``(S,)`` for a population)."""
    tx = direction(config.optimizer, config.momentum)

    def one(k):
        k_init, k_data = jax.random.split(k)
        params = to_compute_layout(net.init(k_init, init=config.init))
        return params, tx.init(params), jnp.zeros((), jnp.int32), k_data

    if not population:
        return TrainState(*one(key))
    params, opt_state, step, data_keys = jax.vmap(one)(key)
    if config.data_order == "shared":
        data_keys = jax.random.key(config.data_seed)
    return TrainState(params, opt_state, step, data_keys)


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      params: trained parameters, ``[{"w": ([S,] n_in, n_out), "b": ([S,] n_out)}, ...]``.
      history: ``{"epoch": (E,), "train_cost": ([S,] E), "train_accuracy", "test_cost",
        "test_accuracy"[, "val_cost", "val_accuracy"]}`` — one entry per evaluation.
      initial: the same metrics before training (``([S],)`` each).
      diverged: ``([S],)`` bool — a non-finite training cost was seen.
      diverged_epoch: ``([S],)`` int, the first evaluation epoch with a non-finite cost, or -1.
      epochs_run: epochs trained (fewer than configured after early stopping).
      state: the final :class:`TrainState` in compute layout (for resuming; for a
        sharded population it keeps the padding members and the device layout).
      wall_seconds: time spent in :func:`fit`, compilation included.
      num_members: ``S`` for a population, ``None`` for one network.
      num_devices: devices the member axis was spread over.
    """

    params: Params
    history: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    diverged: np.ndarray
    diverged_epoch: np.ndarray
    epochs_run: int
    state: TrainState
    wall_seconds: float
    config: TrainConfig
    num_members: int | None = None
    num_devices: int = 1

    def final(self, metric: str) -> np.ndarray:
        """The last evaluated value of ``metric`` (``([S],)``)."""
        return self.history[metric][..., -1]


def _check_data(net: MLP, data: Dataset) -> None:
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a jaxgd.data.Dataset, got {type(data).__name__}.")
    if data.input_dim != net.sizes[0]:
        raise ValueError(f"The network takes {net.sizes[0]} inputs but {data.name} has {data.input_dim} features.")
    if data.num_classes > net.sizes[-1]:
        raise ValueError(f"The network has {net.sizes[-1]} outputs but {data.name} has {data.num_classes} classes.")


def _member_values(learning_rates, conditions, config: TrainConfig, members: int | None) -> dict:
    shape = (members,) if members is not None else ()
    if learning_rates is None:
        lr = np.full(shape, config.learning_rate, np.float32)
    else:
        lr = np.asarray(learning_rates, np.float32)
        if lr.shape != shape:
            raise ValueError(f"learning_rates must have shape {shape} (one per member), got {lr.shape}.")
        if not np.all(np.isfinite(lr) & (lr > 0)):
            raise ValueError(f"learning_rates must be positive and finite, got {lr.min()} among them.")
    cond = np.zeros(shape, np.int32) if conditions is None else np.asarray(conditions.index, np.int32)
    return {"lr": lr, "condition": cond}


def fit(key, net: MLP, data: Dataset, config: TrainConfig = TrainConfig(), *, learning_rates=None,
        conditions=None, devices=None, max_members: int | None = None, checkpoint=None,
        checkpoint_every: int = 1, progress: bool = False,
        callback: Callable[[int, dict], None] | None = None) -> FitResult:
    """Trains ``net`` on ``data`` by gradient descent.

    Args:
      key: a ``jax.random.key`` (or int seed). A batch of keys, shape ``(S,)``,
        trains a population of ``S`` networks as one program; params and history
        then carry a leading member axis.
      net: the network description.
      data: a :class:`jaxgd.data.Dataset`.
      config: a :class:`TrainConfig`.
      learning_rates: populations only: ``(S,)`` base learning rates, one per member.
      conditions: populations only: a :class:`jaxgd.population.Conditions` giving
        each member its own variant of the data (label corruptions, input randomizations).
      devices: populations only: devices to spread the member axis over (default
        every device; pass one device to run unsharded).
      max_members: populations only: train at most this many members per program,
        in chunks one after another, when the whole population does not fit in memory.
      checkpoint: a directory for checkpoints (:mod:`jaxgd.checkpoint`). A checkpoint is
        written atomically every ``checkpoint_every`` epochs and when training ends; if
        one is already there, training resumes from it (and a finished run, or a finished
        chunk of ``max_members``, is not trained again). The result is bit-identical to an
        uninterrupted run. A checkpoint of another configuration raises
        :class:`jaxgd.checkpoint.CheckpointError` naming the field that differs.
      checkpoint_every: epochs between checkpoints.
      progress: show a tqdm progress bar (loss, accuracy, ETA) on stderr.
      callback: called as ``callback(epoch, metrics)`` after every evaluation.

    Returns:
      A :class:`FitResult`.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a jaxgd.MLP, got {type(net).__name__}.")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a jaxgd.TrainConfig, got {type(config).__name__}.")
    _check_data(net, data)
    config.validate(data.n_train)
    key = as_key(key)
    if key.ndim > 1:
        raise ValueError(f"key must be one key or a vector of keys, got shape {key.shape}.")
    population = key.ndim == 1
    members = int(key.shape[0]) if population else None
    if population and members < 1:
        raise ValueError("A population needs at least one key.")
    if not population and any(v is not None for v in (learning_rates, conditions, max_members)):
        raise ValueError("learning_rates, conditions and max_members need a batch of keys (a population).")
    if conditions is not None:
        conditions.check(data, members)
    member = _member_values(learning_rates, conditions, config, members)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive number of epochs, got {checkpoint_every!r}.")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.exists() and not checkpoint.is_dir():
            raise NotADirectoryError(f"checkpoint must be a directory, but {checkpoint} is a file.")
    run = functools.partial(_fit, net=net, data=data, config=config, devices=devices, progress=progress,
                            callback=callback, checkpoint_every=checkpoint_every,
                            data_fields=None if checkpoint is None else data_fingerprint(data, conditions))
    if max_members is not None:
        if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 1:
            raise ValueError(f"max_members must be a positive integer, got {max_members!r}.")
        if max_members < members:
            return _fit_in_chunks(run, key, member, conditions, max_members, checkpoint)
    return run(key, member=member, conditions=conditions,
               checkpoint_file=None if checkpoint is None else checkpoint / "checkpoint.npz")


def data_fingerprint(data: Dataset, conditions) -> dict:
    """The data part of a run's fingerprint: hashed once per :func:`fit`, shared by its chunks of members."""
    from jaxgd.checkpoint import digest

    fields = {"data.name": data.name, "data.n_train": data.n_train,
              "data.digest": digest(*(a for a in (data.x_train, data.y_train, data.x_test, data.y_test,
                                                  data.x_val, data.y_val) if a is not None))}
    if conditions is not None:
        fields["conditions.arrays"] = digest(*(conditions.arrays[k] for k in sorted(conditions.arrays)))
    return fields


def fingerprint(key, net: MLP, config: TrainConfig, member: dict, data_fields: dict) -> dict:
    """Everything that determines a run's numbers, field by field (hashes for arrays)."""
    from jaxgd.checkpoint import digest

    fields = {"network.sizes": list(net.sizes), "network.activation": net.activation, "network.output": net.output}
    fields.update({f"train.{k}": v for k, v in config.to_dict().items()})
    fields.update(data_fields)
    fields.update({"members": None if key.ndim == 0 else int(key.shape[0]), "keys": digest(jax.random.key_data(key)),
                   "learning_rates": digest(member["lr"]), "conditions.index": digest(member["condition"])})
    return fields


def place(state: TrainState, member: dict, arrays: dict, *, spec: Spec, devices=None):
    """Puts a run on its devices: a population's member axis spread over ``devices``
    (default every device; padded to a multiple of their count) in contiguous blocks,
    the data replicated.

    Returns ``(state, member, arrays, spec)``, the spec's ``member_shards`` set to the
    number of devices: the compiled program depends on it.
    """
    if not spec.population:
        return (*jax.device_put((state, member, arrays)), spec)
    mesh = sharding.member_mesh(devices)
    members = int(member["lr"].shape[0])
    size = sharding.padded_size(members, mesh)
    per_member = TrainState(state.params, state.opt_state, state.step,
                            state.data_key if not spec.shared_order else None)
    per_member, member = sharding.pad_members((per_member, member), members, size)
    per_member, member = sharding.shard_members((per_member, member), mesh)
    data_key = per_member.data_key if not spec.shared_order else sharding.replicate(state.data_key, mesh)
    return (per_member._replace(data_key=data_key), member, sharding.replicate(arrays, mesh),
            dataclasses.replace(spec, member_shards=int(mesh.devices.size)))


def _fit(key, *, member, conditions, checkpoint_file, net, data, config, devices, progress, callback,
         checkpoint_every, data_fields) -> FitResult:
    from jaxgd import checkpoint as ckpt

    start = time.perf_counter()
    population = key.ndim == 1
    members = int(key.shape[0]) if population else None
    spec = Spec.make(net, config, data.n_train, population=population, members=members,
                     condition_arrays=tuple(sorted(conditions.arrays)) if conditions is not None else ())
    arrays = data.arrays()
    if data.x_val is not None:
        arrays.update(x_val=data.x_val, y_val=data.y_val)
    if conditions is not None:
        arrays.update({k: np.asarray(v, arrays[k].dtype) for k, v in conditions.arrays.items()})
    state = init_state(key, net, config, population=population)
    shape = (members,) if population else ()
    restored = {"epochs_done": 0, "finished": False, "history": {}, "initial": None,
                "diverged": np.zeros(shape, bool), "diverged_epoch": np.full(shape, -1)}
    if checkpoint_file is not None:
        fp = fingerprint(key, net, config, member, data_fields)
        if checkpoint_file.exists():
            restored = ckpt.load(checkpoint_file, state, fingerprint=fp)
            state = restored["state"]
    state, member, arrays, spec = place(state, member, arrays, spec=spec, devices=devices)

    def unpad(tree):  # without the padding members
        return jax.tree.map(lambda a: a[:members] if population and a.ndim else a, tree)

    def host(tree):
        return jax.tree.map(np.asarray, unpad(tree))

    initial = restored["initial"]
    if initial is None:
        initial = host(_compiled_eval(state, member, arrays, spec=spec))
    history = restored["history"]
    rows_ = [{k: v[..., i] for k, v in history.items()} for i in range(len(history.get("epoch", ())))]
    diverged, diverged_epoch = np.asarray(restored["diverged"]), np.asarray(restored["diverged_epoch"])
    epochs_done, finished = restored["epochs_done"], restored["finished"]

    def save_checkpoint():
        ckpt.save(checkpoint_file, unpad(state), fingerprint=fp, epochs_done=epochs_done, finished=finished,
                  history=_stack(rows_), initial=initial, diverged=diverged, diverged_epoch=diverged_epoch)

    bar = tqdm(total=config.epochs, initial=epochs_done, disable=not progress, unit="epoch", file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5,
               desc="-".join(map(str, net.sizes)) + (f" x{members} members" if population else ""))
    try:
        while not finished and epochs_done < config.epochs:
            next_eval = min(config.epochs, (epochs_done // config.eval_every + 1) * config.eval_every)
            next_save = (epochs_done // checkpoint_every + 1) * checkpoint_every if checkpoint_file else next_eval
            n = min(next_eval, next_save) - epochs_done
            evaluate = epochs_done + n == next_eval
            state, metrics = _compiled_chunk(state, member, arrays, spec=spec, num_epochs=n, evaluate=evaluate)
            epochs_done += n
            bar.update(n)
            if evaluate:
                metrics = host(metrics)
                rows_.append({"epoch": np.asarray(epochs_done), **metrics})
                bad = _diverging(metrics, initial, config) & ~diverged
                diverged_epoch = np.where(bad, epochs_done, diverged_epoch)
                diverged = diverged | bad
                ok = ~diverged
                bar.set_postfix({"cost": f"{_mean(metrics['train_cost'], ok):.4f}",
                                 "train": f"{_mean(metrics['train_accuracy'], ok):.3f}",
                                 "test": f"{_mean(metrics['test_accuracy'], ok):.3f}"}, refresh=False)
                if callback is not None:
                    callback(epochs_done, metrics)
                finished = bool(np.all(diverged)) or (config.target_accuracy is not None and bool(np.all(
                    (metrics["train_accuracy"] >= config.target_accuracy) | diverged)))
            finished = finished or epochs_done >= config.epochs
            if checkpoint_file is not None and (epochs_done % checkpoint_every == 0 or finished):
                save_checkpoint()
    finally:
        bar.close()

    history = _stack(rows_)
    params = from_compute_layout(state.params)
    if population:
        params = jax.tree.map(lambda a: a[:members], params)
    jax.block_until_ready(params)
    return FitResult(params=params, history=history, initial=initial, diverged=diverged,
                     diverged_epoch=diverged_epoch, epochs_run=epochs_done, state=state,
                     wall_seconds=time.perf_counter() - start, config=config, num_members=members,
                     num_devices=spec.member_shards)


def _stack(rows: list[dict]) -> dict[str, np.ndarray]:
    """Evaluation rows to history arrays, the evaluations on the last axis."""
    return {name: np.stack([r[name] for r in rows], axis=-1) for name in rows[0]} if rows else {}


def _diverging(metrics: dict, initial: dict, config: TrainConfig) -> np.ndarray:
    """Members whose training cost or parameters are not finite, or whose parameter norm grew past
    ``config.divergence_factor`` x its initial value (a blown-up step that saturated the units)."""
    norm = np.asarray(metrics["param_norm"])
    bad = ~np.isfinite(np.asarray(metrics["train_cost"])) | ~np.isfinite(norm)
    if config.divergence_factor is not None:
        with np.errstate(invalid="ignore"):
            bad |= norm > config.divergence_factor * np.asarray(initial["param_norm"])
    return bad


def _fit_in_chunks(run, keys, member, conditions, max_members, checkpoint) -> FitResult:
    """Trains a population ``max_members`` at a time; the last chunk is padded so all share one program."""
    start = time.perf_counter()
    members = int(keys.shape[0])
    results = []
    for lo in range(0, members, max_members):
        take = np.arange(lo, lo + max_members) % members  # pad the last chunk by wrapping around
        sub_conditions = None if conditions is None else dataclasses.replace(conditions,
                                                                             index=member["condition"][take])
        file = None if checkpoint is None else checkpoint / f"members-{lo:06d}-{lo + max_members:06d}.npz"
        results.append(run(keys[take], member={k: v[take] for k, v in member.items()}, conditions=sub_conditions,
                           checkpoint_file=file))
    keep = [min(max_members, members - lo) for lo in range(0, members, max_members)]
    cat = lambda *xs: np.concatenate([np.asarray(x)[:k] for x, k in zip(xs, keep)])
    epochs = max(r.epochs_run for r in results)
    history = {"epoch": max((r.history["epoch"] for r in results), key=len)}
    for name in results[0].history:
        if name != "epoch":
            history[name] = cat(*[_pad_history(r.history[name], len(history["epoch"])) for r in results])
    params = jax.tree.map(lambda *xs: jnp.concatenate([x[:k] for x, k in zip(xs, keep)]),
                          *[r.params for r in results])
    return FitResult(params=params, history=history,
                     initial={k: cat(*[r.initial[k] for r in results]) for k in results[0].initial},
                     diverged=cat(*[r.diverged for r in results]),
                     diverged_epoch=cat(*[r.diverged_epoch for r in results]), epochs_run=epochs,
                     state=results[-1].state, wall_seconds=time.perf_counter() - start, config=results[0].config,
                     num_members=members, num_devices=results[0].num_devices)


def _pad_history(values: np.ndarray, length: int) -> np.ndarray:
    """Pads a chunk that stopped early (all members diverged or reached the target) with NaN."""
    missing = length - values.shape[-1]
    return values if missing == 0 else np.concatenate([values, np.full(values.shape[:-1] + (missing,), np.nan)], -1)


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    values = np.asarray(values)
    if values.ndim == 0:
        return float(values)
    return float(np.mean(values[mask])) if np.any(mask) else math.nan
