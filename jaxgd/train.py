"""``fit``: the driver that trains a model by gradient descent, one network or a population.

The compiled work is in :mod:`jaxgd.loop` (epochs and evaluation) and :mod:`jaxgd.step`
(one optimizer step); :mod:`jaxgd.spec` chooses how it runs. ``fit`` validates its input
before anything is traced, builds the initial state, puts it on the devices, then calls
the compiled chunk of epochs in a Python loop and does what cannot be compiled: the
progress bar, early stopping, divergence checks, checkpoints and the callback.
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

from jaxgd import distributed
from jaxgd import metrics as metrics_module
from jaxgd import optim, sharding
from jaxgd.backprop import check_backprop
from jaxgd.config import TrainConfig
from jaxgd.data.dataset import Dataset
from jaxgd.fingerprint import describe_or_none, digest
from jaxgd import loop
from jaxgd.mlp import MLP
from jaxgd.models import check_model, describe, param_shapes, with_initializer
from jaxgd.spec import Spec, from_compute_layout
from jaxgd.state import TrainState, as_key, init_state


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      params: trained parameters in the model's own layout, with a leading member axis
        ``(S, ...)`` on every leaf for a population.
      history: ``{"epoch": (E,), "train_cost": ([S,] E), "train_accuracy", "test_cost",
        "test_accuracy"[, "val_cost", "val_accuracy"], "param_norm", <your metrics>}`` —
        one entry per evaluation.
      initial: the same metrics before training (``([S],)`` each).
      diverged: ``([S],)`` bool (see ``TrainConfig.divergence_factor``).
      diverged_epoch: ``([S],)`` int, the first evaluation epoch at which it diverged, or -1.
      epochs_run: epochs trained (fewer than configured after early stopping).
      state: the final :class:`jaxgd.state.TrainState` in compute layout (for a sharded
        population it keeps the padding members and the device layout).
      wall_seconds: time spent in :func:`fit`, compilation included.
      first_epoch_seconds: from the start of :func:`fit` to the end of its first compiled chunk of epochs
        (validation, initialisation, compilation or the compilation cache, one chunk).
      config: the :class:`TrainConfig`.
      num_members: ``S`` for a population, ``None`` for one network.
      num_devices: devices the member axis was spread over.
      model: the model trained (with ``config.init`` applied).
      hyperparams: each member's base hyperparameters, ``{name: ([S],)}``.
      examples: with ``record_examples``, each training example's record, ``([S,] n_train)`` each:
        ``learned_at`` (the epoch from which it has stayed correctly classified, -1 if it is not
        at the end), ``forgets`` (its forgetting events), ``correct`` (at the end) and
        ``first_correct`` (at the first evaluation, epoch ``first_epoch``, ``([S],)``).
    """

    params: Any
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
    model: Any = None
    hyperparams: dict | None = None
    examples: dict | None = None
    first_epoch_seconds: float | None = None

    def final(self, metric: str) -> np.ndarray:
        """The last evaluated value of ``metric`` (``([S],)``)."""
        return self.history[metric][..., -1]

    def member(self, i: int) -> "FitResult":
        """Member ``i`` of a population as a one-network result (params, history, flags, hyperparameters)."""
        if self.num_members is None:
            raise ValueError("member() takes one network out of a population; this result is one network.")
        if not -self.num_members <= i < self.num_members:
            raise IndexError(f"member {i} of a population of {self.num_members}.")
        take = lambda tree: jax.tree.map(lambda a: np.asarray(a)[i] if np.ndim(a) else a, tree)  # noqa: E731
        history = {k: (v if k == "epoch" else np.asarray(v)[i]) for k, v in self.history.items()}
        return dataclasses.replace(self, params=jax.tree.map(lambda a: a[i], self.params), history=history,
                                   initial=take(self.initial), diverged=np.asarray(self.diverged)[i],
                                   diverged_epoch=np.asarray(self.diverged_epoch)[i], num_members=None,
                                   hyperparams=take(self.hyperparams or {}),
                                   examples=None if self.examples is None else take(self.examples))


def _check_data(model, data: Dataset) -> None:
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a jaxgd.data.Dataset, got {type(data).__name__}.")
    if isinstance(model, MLP):
        if data.input_dim != model.sizes[0]:
            raise ValueError(f"The network takes {model.sizes[0]} inputs but {data.name} has {data.input_dim} features.")
        if data.num_classes > model.sizes[-1]:
            raise ValueError(f"The network has {model.sizes[-1]} outputs but {data.name} has {data.num_classes} classes.")
        return
    shape = getattr(model, "input_shape", None)
    if shape is not None and int(np.prod(shape)) != data.input_dim:
        raise ValueError(f"The model takes inputs of shape {tuple(shape)} but {data.name}'s are {data.input_shape}.")
    try:
        x = jax.ShapeDtypeStruct((2, *data.input_shape), jnp.float32)
        out = jax.eval_shape(model.apply, param_shapes(model), x)
    except Exception as e:  # anything the model raises on these shapes
        raise ValueError(f"The model cannot be applied to a batch of {data.name}'s inputs, shape (batch, "
                         f"{', '.join(map(str, data.input_shape))}): {type(e).__name__}: {e}") from None
    if getattr(out, "shape", None) is None or len(out.shape) != 2 or out.shape[0] != 2:
        raise ValueError(f"The model's apply must return logits (batch, classes); for a batch of 2 it "
                         f"returned {getattr(out, 'shape', type(out).__name__)}.")
    if out.shape[1] < data.num_classes:
        raise ValueError(f"The model has {out.shape[1]} outputs but {data.name} has {data.num_classes} classes.")


def member_hyperparams(config: TrainConfig, base: dict[str, float], hyperparams, learning_rates,
                       members: int | None) -> dict[str, np.ndarray]:
    """Each member's base hyperparameters, ``{name: ([S],) float32}``: the config's values, per-member ones
    from ``hyperparams`` (or ``learning_rates``, its shorthand) where given."""
    if learning_rates is not None:
        if hyperparams is not None and "learning_rate" in hyperparams:
            raise ValueError("Give per-member learning rates once: learning_rates= or hyperparams['learning_rate'].")
        hyperparams = {**(hyperparams or {}), "learning_rate": learning_rates}
    hyperparams = dict(hyperparams or {})
    shape = (members,) if members is not None else ()
    out = {name: np.full(shape, value, np.float32) for name, value in base.items()}
    for name, values in hyperparams.items():
        label = "learning_rates" if name == "learning_rate" and learning_rates is not None else f"hyperparams[{name!r}]"
        try:
            arr = np.asarray(values, np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{label} must be numbers, one per member, got {values!r:.80}.") from None
        if arr.shape != shape:
            raise ValueError(f"{label} must have shape {shape} (one per member), got {arr.shape}.")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{label} must be finite, got {arr[~np.isfinite(arr)].flat[0]} among them.")
        if name == "learning_rate":
            optim.check_learning_rate(label, arr)
        elif name == "weight_decay" and np.any(arr < 0):
            raise ValueError(f"{label} must be non-negative, got {arr.min()} among them.")
        out[name] = arr.astype(np.float32)
    return out


class Prepared(NamedTuple):
    """A run ready for the compiled loop (:func:`jaxgd.loop.train_chunk`): what :func:`fit` builds first."""

    state: TrainState
    member: dict
    data: dict
    spec: Spec


def _validated(key, model, data, config, hyperparams, learning_rates, conditions, metrics, max_members,
               record_examples=False):
    """Checks ``fit``'s arguments before anything is traced; returns what the run is made of."""
    check_model(model)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a jaxgd.TrainConfig, got {type(config).__name__}.")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a jaxgd.data.Dataset, got {type(data).__name__}.")
    config.validate(data.n_train)
    model = with_initializer(model, config.init)
    _check_data(model, data)
    if config.gradient == "backprop":
        check_backprop(model, config.cost)
    key = as_key(key)
    if key.ndim > 1:
        raise ValueError(f"key must be one key or a vector of keys, got shape {key.shape}.")
    population = key.ndim == 1
    members = int(key.shape[0]) if population else None
    if population and members < 1:
        raise ValueError("A population needs at least one key.")
    if not population and any(v is not None for v in (hyperparams, learning_rates, conditions, max_members)):
        raise ValueError("hyperparams, learning_rates, conditions and max_members need a batch of keys (a population).")
    if hyperparams is not None and not isinstance(hyperparams, dict):
        raise TypeError(f"hyperparams must be a dict of name -> per-member values, got {hyperparams!r:.80}.")
    if conditions is not None:
        conditions.check(data, members)
    if max_members is not None:
        if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 1:
            raise ValueError(f"max_members must be a positive integer, got {max_members!r}.")
    per_member = tuple(sorted(set(hyperparams or {}) | ({"learning_rate"} if learning_rates is not None else set())))
    optimizer, base = optim.build(config, per_member)
    hp = member_hyperparams(config, base, hyperparams, learning_rates, members)
    cond = np.zeros((members,) if population else (), np.int32) if conditions is None else \
        np.asarray(conditions.index, np.int32)
    member = {"hyperparams": hp, "condition": cond}
    metric_list = metrics_module.resolve(metrics)
    make_spec = functools.partial(Spec.make, model, config, optimizer, data.n_train, data.input_shape,
                                  population=population, per_member=per_member, metrics=metric_list,
                                  condition_arrays=tuple(sorted(conditions.arrays)) if conditions is not None else (),
                                  record_examples=bool(record_examples))
    return model, key, member, metric_list, make_spec


def _setup(key, member, conditions, make_spec, data, config, devices):
    """The initial state and the data arrays of a run, and its spec (before placement on devices)."""
    population = key.ndim == 1
    members = int(key.shape[0]) if population else None
    n_devices = len(devices) if devices is not None else jax.device_count()
    spec = make_spec(members=members, devices=n_devices if population else 1)
    arrays = data.arrays()
    if data.x_val is not None:
        arrays.update(x_val=data.x_val, y_val=data.y_val)
    if conditions is not None:
        arrays.update({k: np.asarray(v, arrays[k].dtype) for k, v in conditions.arrays.items()})
    check_memory(key, spec, member, arrays, config, devices)
    return init_state(key, spec, member["hyperparams"], config.data_seed), arrays, spec


class OutOfMemory(ValueError):
    """A run that cannot fit in the memory of its devices, refused before anything is allocated."""


def available_bytes(devices=None) -> int | None:
    """Memory the run's devices offer: an accelerator's limit, or the host's available memory on a CPU."""
    device = (devices or jax.devices())[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # not every backend reports it
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) * len(devices or jax.devices())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(key, spec: Spec, member: dict, arrays: dict, config: TrainConfig, devices=None) -> None:
    """Refuses, with how much it needs, a run whose parameters, optimizer state, gradients and data alone
    exceed the memory available (activations come on top of that)."""
    state = jax.eval_shape(lambda k: init_state(k, spec, member["hyperparams"], config.data_seed), key)
    leaf_bytes = lambda tree: sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree)  # noqa: E731
                                  if hasattr(a, "dtype") and not jnp.issubdtype(a.dtype, jax.dtypes.prng_key))
    params, opt = leaf_bytes(state.params), leaf_bytes(state.opt_state)
    data_bytes = sum(np.asarray(a).nbytes for a in arrays.values())
    need = 3 * params + opt + data_bytes  # parameters, their gradients and updates, optimizer state, data
    have = available_bytes(devices)
    if have is not None and need > have:
        who = f"{spec.members} members" if spec.population else "the network"
        raise OutOfMemory(f"The run needs at least {need / 1e9:.1f} GB ({who}: parameters {params / 1e9:.2f} GB, "
                          f"optimizer state {opt / 1e9:.2f} GB, data {data_bytes / 1e9:.2f} GB) but only "
                          f"{have / 1e9:.1f} GB are available; use fewer or smaller networks (or max_members).")


def check(key, model, data: Dataset, config: TrainConfig = TrainConfig(), *, hyperparams: dict | None = None,
          learning_rates=None, conditions=None, metrics=None, devices=None, max_members: int | None = None) -> None:
    """Every check :func:`fit` makes before training (its arguments, the data, the memory the run needs),
    without allocating anything: drivers call it before they touch their output directory."""
    model, key, member, _, make_spec = _validated(key, model, data, config, hyperparams, learning_rates,
                                                  conditions, metrics, max_members)
    if max_members is not None and key.ndim == 1 and max_members < key.shape[0]:
        key = key[:max_members]
        member = jax.tree.map(lambda a: a[:max_members], member)
    population = key.ndim == 1
    n_devices = len(devices) if devices is not None else jax.device_count()
    spec = make_spec(members=int(key.shape[0]) if population else None, devices=n_devices if population else 1)
    check_memory(key, spec, member, data.arrays(), config, devices)


def prepare(key, model, data: Dataset, config: TrainConfig = TrainConfig(), *, hyperparams: dict | None = None,
            learning_rates=None, conditions=None, metrics=None, devices=None) -> Prepared:
    """The initial state, per-member values, data and spec of a run, placed on its devices: everything
    :func:`jaxgd.loop.train_chunk` takes. The arguments are :func:`fit`'s; ``fit`` is this plus the
    Python loop around the compiled chunk."""
    model, key, member, _, make_spec = _validated(key, model, data, config, hyperparams, learning_rates,
                                                  conditions, metrics, None)
    state, arrays, spec = _setup(key, member, conditions, make_spec, data, config, devices)
    return Prepared(*sharding.place(state, member, arrays, spec=spec, devices=devices))


def fit(key, model, data: Dataset, config: TrainConfig = TrainConfig(), *, hyperparams: dict | None = None,
        learning_rates=None, conditions=None, metrics=None, devices=None, max_members: int | None = None,
        checkpoint=None, checkpoint_every: int = 1, progress: bool = False,
        callback: Callable[[int, dict], None] | None = None, record_examples: bool = False,
        loggers: list | None = None) -> FitResult:
    """Trains ``model`` on ``data`` by gradient descent.

    Args:
      key: a ``jax.random.key`` (or int seed). A batch of keys, shape ``(S,)``, trains a
        population of ``S`` networks as one program; params and history then carry a
        leading member axis.
      model: any model (:mod:`jaxgd.models`): ``jaxgd.MLP``, ``jaxgd.models.CNN``, a wrapped
        Flax or Equinox module, or your own object with ``init`` and ``apply``.
      data: a :class:`jaxgd.data.Dataset`.
      config: a :class:`TrainConfig`.
      hyperparams: populations only: ``{name: (S,)}`` per-member values of any numeric
        hyperparameter of the optimizer (``learning_rate``, ``weight_decay``, ``b1``, ...),
        held in the optimizer state. A schedule multiplies each member's own learning rate.
      learning_rates: populations only: ``(S,)`` base learning rates (shorthand for
        ``hyperparams={"learning_rate": ...}``).
      conditions: populations only: a :class:`jaxgd.population.Conditions` giving
        each member its own variant of the data (label corruptions, input randomizations).
      metrics: ``{name: function}`` measured at every evaluation for every member
        (:mod:`jaxgd.metrics`), or a list of names such as ``["grad_norm"]``.
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
      progress: show a tqdm progress bar (cost, accuracy, ETA) on stderr.
      callback: called as ``callback(epoch, metrics)`` after every evaluation, with the
        evaluation's metrics as NumPy arrays (``([S],)`` each).
      loggers: objects that record the curves as training goes (:mod:`jaxgd.loggers`: a CSV file,
        TensorBoard, W&B), on process 0 of a distributed job.
      record_examples: keep, inside the compiled program, each training example's learned-at
        epoch and forgetting events at every evaluation (``FitResult.examples``; Arpit et al.
        2017, Toneva et al. 2019). Evaluate every epoch (``eval_every=1``) for epoch resolution.

    Returns:
      A :class:`FitResult`.
    """
    started = time.perf_counter()
    model, key, member, metric_list, make_spec = _validated(key, model, data, config, hyperparams, learning_rates,
                                                            conditions, metrics, max_members, record_examples)
    members = int(key.shape[0]) if key.ndim == 1 else None
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive number of epochs, got {checkpoint_every!r}.")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.exists() and not checkpoint.is_dir():
            raise NotADirectoryError(f"checkpoint must be a directory, but {checkpoint} is a file.")
    loggers = list(loggers or []) if distributed.is_writer() else []
    run = functools.partial(_fit, make_spec=make_spec, model=model, data=data, config=config, devices=devices,
                            progress=progress, callback=callback, checkpoint_every=checkpoint_every, started=started,
                            metric_list=metric_list,
                            data_fields=None if checkpoint is None else data_fingerprint(data, conditions))
    if max_members is not None and max_members < members:
        result = _fit_in_chunks(functools.partial(run, loggers=[]), key, member, conditions, max_members, checkpoint)
        for logger in loggers:  # the chunks' curves, once they are all there
            logger.start(result.history, result.initial)
            logger.close()
        return result
    return run(key, member=member, conditions=conditions, loggers=loggers,
               checkpoint_file=None if checkpoint is None else checkpoint / "checkpoint.npz")


def data_fingerprint(data: Dataset, conditions) -> dict:
    """The data part of a run's fingerprint: hashed once per :func:`fit`, shared by its chunks of members."""
    fields = {"data.name": data.name, "data.n_train": data.n_train, "data.input_shape": list(data.input_shape),
              "data.digest": digest(*(a for a in (data.x_train, data.y_train, data.x_test, data.y_test,
                                                  data.x_val, data.y_val) if a is not None))}
    if conditions is not None:
        fields["conditions.arrays"] = digest(*(conditions.arrays[k] for k in sorted(conditions.arrays)))
    return fields


def _flat(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value
    return out


def fingerprint(key, model, config: TrainConfig, member: dict, data_fields: dict, metric_list=(),
                record_examples: bool = False) -> dict:
    """Everything that determines a run's numbers, field by field (hashes for arrays, records for functions)."""
    fields = _flat("model", describe(model), {})
    _flat("train", config.to_dict(), fields)
    fields.update(data_fields)
    fields.update({"members": None if key.ndim == 0 else int(key.shape[0]), "keys": digest(jax.random.key_data(key)),
                   "conditions.index": digest(member["condition"])})
    fields.update({f"hyperparams.{k}": digest(v) for k, v in sorted(member["hyperparams"].items())})
    fields.update({f"metrics.{name}": [m.kind, describe_or_none(m.fn)[0]] for name, m in metric_list})
    fields["record_examples"] = bool(record_examples)
    return fields


def unrecordable(model, config: TrainConfig, metric_list=()) -> list[tuple[str, str]]:
    """``(what, why)`` for every part of a run that cannot be recorded by value (so cannot be resumed)."""
    out = config.unrecordable()
    for name, m in metric_list:
        _, reason = describe_or_none(m.fn)
        if reason is not None:
            out.append((f"metric {name}", reason))
    record = describe(model)
    if isinstance(record, dict) and isinstance(record.get("make"), dict) and "unrecordable" in record["make"]:
        out.append(("model", f"its make function {record['make']['unrecordable']} cannot be recorded by value"))
    return out


def _fit(key, *, member, conditions, checkpoint_file, make_spec, model, data, config, devices, progress, callback,
         checkpoint_every, metric_list, data_fields, loggers=(), started=None) -> FitResult:
    from jaxgd import checkpoint as ckpt

    start = time.perf_counter() if started is None else started
    population = key.ndim == 1
    members = int(key.shape[0]) if population else None
    state, arrays, spec = _setup(key, member, conditions, make_spec, data, config, devices)
    shape = (members,) if population else ()
    restored = {"epochs_done": 0, "finished": False, "history": {}, "initial": None,
                "diverged": np.zeros(shape, bool), "diverged_epoch": np.full(shape, -1)}
    writer = distributed.is_writer()
    if checkpoint_file is not None:
        fp = fingerprint(key, model, config, member, data_fields, metric_list, spec.record_examples)
        distributed.agree("run (its configuration, keys and data)", fp)
        if distributed.from_process_zero(checkpoint_file.exists):
            problems = unrecordable(model, config, metric_list)
            if problems:
                what, why = problems[0]
                raise ckpt.CheckpointError(
                    f"Cannot resume from {checkpoint_file}: the {what} cannot be recorded by value ({why}), so "
                    "this run could not be checked against the checkpoint. Name it: a function defined at module "
                    "level that reads only numbers, arrays and other such functions (activations: "
                    "jaxgd.register_activation), or start a new run in another directory.")
            restored = _load_checkpoint(checkpoint_file, state, fp)
            state = restored["state"]
    hp_host = {k: np.asarray(v) for k, v in member["hyperparams"].items()}
    state, member, arrays, spec = sharding.place(state, member, arrays, spec=spec, devices=devices)

    def unpad(tree):  # without the padding members
        return jax.tree.map(lambda a: a[:members] if population and a.ndim else a, tree)

    def host(tree):
        return sharding.host(unpad(tree))

    initial = restored["initial"]
    if initial is None:
        initial = host(loop.compiled_eval(state, member, arrays, spec=spec))
        if spec.record_examples:
            state = loop.compiled_record(state, member, arrays, spec=spec)
    history = restored["history"]
    rows_ = [{k: v[..., i] for k, v in history.items()} for i in range(len(history.get("epoch", ())))]
    diverged, diverged_epoch = np.asarray(restored["diverged"]), np.asarray(restored["diverged_epoch"])
    epochs_done, finished = restored["epochs_done"], restored["finished"]

    def save_checkpoint():
        host_state = host(state)  # every process takes part in gathering a sharded state; process 0 writes
        if writer:
            ckpt.save(checkpoint_file, host_state, fingerprint=fp, epochs_done=epochs_done, finished=finished,
                      history=_stack(rows_), initial=initial, diverged=diverged, diverged_epoch=diverged_epoch)
        distributed.barrier("jaxgd checkpoint written")

    name = "-".join(map(str, model.sizes)) if isinstance(model, MLP) else type(model).__name__
    bar = tqdm(total=config.epochs, initial=epochs_done, disable=not progress or not writer, unit="epoch", file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5, desc=name + (f" x{members} members" if population else ""))
    shown = [n for n, m in metric_list if m.kind != "example"][:2]
    for logger in loggers:
        logger.start(_stack(rows_), initial)
    first_epoch_seconds = None
    try:
        while not finished and epochs_done < config.epochs:
            next_eval = min(config.epochs, (epochs_done // config.eval_every + 1) * config.eval_every)
            next_save = (epochs_done // checkpoint_every + 1) * checkpoint_every if checkpoint_file else next_eval
            n = min(next_eval, next_save) - epochs_done
            evaluate = epochs_done + n == next_eval
            state, metrics = loop.compiled_chunk(state, member, arrays, spec=spec, num_epochs=n, evaluate=evaluate)
            if first_epoch_seconds is None:
                jax.block_until_ready(state.step)
                first_epoch_seconds = time.perf_counter() - start
            epochs_done += n
            bar.update(n)
            if evaluate:
                metrics = host(metrics)
                rows_.append({"epoch": np.asarray(epochs_done), **metrics})
                bad = _diverging(metrics, initial, config) & ~diverged
                diverged_epoch = np.where(bad, epochs_done, diverged_epoch)
                diverged = diverged | bad
                ok = ~diverged
                postfix = {"cost": f"{_mean(metrics['train_cost'], ok):.4f}",
                           "train": f"{_mean(metrics['train_accuracy'], ok):.3f}",
                           "test": f"{_mean(metrics['test_accuracy'], ok):.3f}"}
                postfix.update({k: f"{_mean(metrics[k], ok):.4g}" for k in shown})
                bar.set_postfix(postfix, refresh=False)
                for logger in loggers:
                    logger.log(epochs_done, metrics)
                if callback is not None:
                    callback(epochs_done, metrics)
                finished = bool(np.all(diverged)) or (config.target_accuracy is not None and bool(np.all(
                    (metrics["train_accuracy"] >= config.target_accuracy) | diverged)))
            finished = finished or epochs_done >= config.epochs
            if checkpoint_file is not None and (epochs_done % checkpoint_every == 0 or finished):
                save_checkpoint()
    finally:
        bar.close()
        for logger in loggers:
            logger.close()

    params = from_compute_layout(spec, state.params)
    if population:
        params = jax.tree.map(lambda a: a[:members], params)
    if distributed.multiprocess():  # readable as NumPy on every process
        params = sharding.host(params)
    jax.block_until_ready(params)
    return FitResult(params=params, history=_stack(rows_), initial=initial, diverged=diverged,
                     diverged_epoch=diverged_epoch, epochs_run=epochs_done, state=state,
                     wall_seconds=time.perf_counter() - start, config=config, num_members=members,
                     num_devices=spec.member_shards, model=model, hyperparams=hp_host,
                     examples=None if state.examples is None else host(state.examples),
                     first_epoch_seconds=first_epoch_seconds)


def _load_checkpoint(path: Path, like: TrainState, fp: dict) -> dict:
    """The checkpoint at ``path``, read and checked by process 0 and received by the others (whose output
    directory may be their own, or shared); in one process, simply :func:`jaxgd.checkpoint.load`."""
    import tempfile

    from jaxgd import checkpoint as ckpt

    if not distributed.multiprocess():
        return ckpt.load(path, like, fingerprint=fp)
    distributed.from_process_zero(lambda: bool(ckpt.load(path, like, fingerprint=fp)))  # its refusal, everywhere
    payload = distributed.from_process_zero(path.read_bytes, raw=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "checkpoint.npz"
        local.write_bytes(payload)
        return ckpt.load(local, like, fingerprint=fp)


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
        results.append(run(keys[take], member=jax.tree.map(lambda a: a[take], member), conditions=sub_conditions,
                           checkpoint_file=file))
    keep = [min(max_members, members - lo) for lo in range(0, members, max_members)]
    cat = lambda *xs: np.concatenate([np.asarray(x)[:k] for x, k in zip(xs, keep)])  # noqa: E731
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
                     num_members=members, num_devices=results[0].num_devices, model=results[0].model,
                     hyperparams={k: cat(*[r.hyperparams[k] for r in results]) for k in results[0].hyperparams},
                     examples=None if results[0].examples is None else
                     {k: cat(*[r.examples[k] for r in results]) for k in results[0].examples})


def _pad_history(values: np.ndarray, length: int) -> np.ndarray:
    """Pads a chunk that stopped early (all members diverged or reached the target) with NaN."""
    missing = length - values.shape[-1]
    return values if missing == 0 else np.concatenate([values, np.full(values.shape[:-1] + (missing,), np.nan)], -1)


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    values = np.asarray(values)
    if values.ndim == 0:
        return float(values)
    return float(np.mean(values[mask])) if np.any(mask) else math.nan
