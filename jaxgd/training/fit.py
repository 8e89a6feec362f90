"""``fit``: the driver that trains a model by gradient descent, one network or a population.

The compiled work is in :mod:`jaxgd.training.loop` (epochs) and :mod:`jaxgd.training.step` (one
optimizer step); :mod:`jaxgd.training.spec` chooses how it runs. ``fit`` validates its input before
anything is traced (:mod:`~jaxgd.training.validation`, :mod:`~jaxgd.training.memory`), builds the
initial state, puts it on the devices, then calls the compiled chunk of epochs in a Python loop and
does what cannot be compiled: the progress bar, early stopping, divergence checks
(:mod:`~jaxgd.training.progress`), checkpoints (:mod:`~jaxgd.training.resume`) and the callback.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import numpy as np

from jaxgd.data.dataset import Dataset
from jaxgd.errors import InvalidArgument
from jaxgd.mlp import MLP
from jaxgd.models import is_stateful
from jaxgd.parallel import distributed, sharding
from jaxgd.training import evaluation, loop, resume
from jaxgd.training.chunks import fit_in_chunks
from jaxgd.training.config import TrainConfig
from jaxgd.training.memory import check_memory
from jaxgd.training.metrics import PER_SPLIT
from jaxgd.training.progress import AXES, Progress, ProgressBar
from jaxgd.training.result import FitResult
from jaxgd.training.spec import Spec, from_compute_layout
from jaxgd.training.state import TrainState, init_state, start_from
from jaxgd.training.validation import Plan, plan


def fit(key, model, data: Dataset, config: TrainConfig = TrainConfig(), *, hyperparams: dict | None = None,
        learning_rates=None, conditions=None, metrics=None, devices=None, max_members: int | None = None,
        checkpoint=None, checkpoint_every: int = 1, progress: bool = False,
        callback: Callable[[int, dict], None] | None = None, record_examples: bool = False,
        loggers: list | None = None, start: TrainState | None = None) -> FitResult:
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
      conditions: populations only: a :class:`jaxgd.training.population.Conditions` giving
        each member its own variant of the data (label corruptions, input randomizations).
      metrics: ``{name: function}`` measured at every evaluation for every member
        (:mod:`jaxgd.training.metrics`), or a list of names such as ``["grad_norm"]``.
      devices: populations only: devices to spread the member axis over (default
        every device; pass one device to run unsharded).
      max_members: populations only: train at most this many members per program,
        in chunks one after another, when the whole population does not fit in memory.
      checkpoint: a directory for checkpoints (:mod:`jaxgd.runs.checkpoint`). A checkpoint is
        written atomically every ``checkpoint_every`` epochs and when training ends; if
        one is already there, training resumes from it (and a finished run, or a finished
        chunk of ``max_members``, is not trained again). The result is bit-identical to an
        uninterrupted run. A checkpoint of another configuration raises
        :class:`jaxgd.runs.checkpoint.CheckpointError` naming the field that differs.
      checkpoint_every: epochs between checkpoints.
      progress: show a tqdm progress bar (cost, accuracy, ETA) on stderr.
      callback: called as ``callback(epoch, metrics)`` after every evaluation, with the
        evaluation's metrics as NumPy arrays (``([S],)`` each).
      loggers: objects that record the curves as training goes (:mod:`jaxgd.runs.loggers`: a CSV file,
        TensorBoard, W&B), on process 0 of a distributed job.
      record_examples: keep, inside the compiled program, each training example's learned-at
        epoch and forgetting events at every evaluation (``FitResult.examples``; Arpit et al.
        2017, Toneva et al. 2019). Evaluate every epoch (``eval_every=1``) for epoch resolution.
      start: a :class:`TrainState` to continue from instead of initialising the networks (a
        ``FitResult.state`` of the same model and optimizer trained on one device, or
        :func:`jaxgd.training.state.branch`'s copies of one network): parameters, optimizer buffers,
        step, data-order and noise keys and model state as given, this run's hyperparameters
        (:func:`jaxgd.training.state.start_from`). ``key`` then only names the run (its fingerprint).

    Returns:
      A :class:`FitResult`.
    """
    started = time.perf_counter()
    run = plan(key, model, data, config, hyperparams, learning_rates, conditions, metrics, max_members,
               record_examples)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise InvalidArgument(f"checkpoint_every must be a positive number of epochs, got {checkpoint_every!r}.")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.exists() and not checkpoint.is_dir():
            raise NotADirectoryError(f"checkpoint must be a directory, but {checkpoint} is a file.")
    loggers = list(loggers or []) if distributed.is_writer() else []
    if run.members is None and (is_stateful(run.model) or config.augment):
        return _alone_as_one_member(run, data, config, metrics=metrics, devices=devices, checkpoint=checkpoint,
                                    checkpoint_every=checkpoint_every, progress=progress, callback=callback,
                                    record_examples=record_examples, loggers=loggers,
                                    start=None if start is None else jax.tree.map(lambda a: a[None], start))
    train = functools.partial(_train, run=run, data=data, config=config, devices=devices, progress=progress,
                              callback=callback, checkpoint_every=checkpoint_every, started=started, start=start,
                              data_fields=None if checkpoint is None else resume.data_fingerprint(data, conditions))
    if max_members is not None and max_members < run.members:
        if start is not None:
            raise InvalidArgument("start= continues the whole population in one program; leave out max_members.")
        result = fit_in_chunks(functools.partial(train, loggers=[]), run.key, run.member, conditions, max_members,
                               checkpoint)
        for logger in loggers:  # the chunks' curves, once they are all there
            logger.start(result.history, result.initial)
            logger.close()
        return result
    return train(run.key, member=run.member, conditions=conditions, loggers=loggers,
                 checkpoint_file=None if checkpoint is None else checkpoint / "checkpoint.npz")


def _alone_as_one_member(run: Plan, data, config, *, callback, loggers, devices, **kw) -> FitResult:
    """A stochastic network (batch norm, dropout, augmentation) trained as a population of one, placed as any
    population is (over every device, padded): the same compiled computation as a member of a population
    (see :mod:`jaxgd.training.spec`), so that a member trained in a population equals its key trained alone.
    Returns that member, as one network."""
    one = fit(run.key[None], run.model, data, config, devices=devices,
              callback=None if callback is None else lambda epoch, m: callback(epoch, _squeeze(m)),
              loggers=[_OneMember(logger) for logger in loggers], **kw)
    return one.member(0)


def _squeeze(tree):
    return jax.tree.map(lambda a: np.asarray(a)[0], tree)


class _OneMember:
    """A logger of one network fed a population of one."""

    def __init__(self, logger):
        self.logger = logger

    def start(self, history, initial):
        self.logger.start({k: v if k in AXES else np.asarray(v)[0] for k, v in history.items()},
                          None if initial is None else _squeeze(initial))

    def log(self, epoch, metrics):
        self.logger.log(epoch, _squeeze(metrics))

    def close(self):
        self.logger.close()


def _train(key, *, member, conditions, checkpoint_file, run: Plan, data, config, devices, progress, callback,
           checkpoint_every, data_fields, loggers, started, start=None) -> FitResult:
    """Trains the members ``key`` (all of ``run``'s, or a chunk of them) from their checkpoint, if any."""
    members = int(key.shape[0]) if key.ndim == 1 else None
    state, arrays, spec = setup(key, member, conditions, run.make_spec, data, config, devices, start)
    done = Progress.start(members, spec.steps_per_epoch)
    if checkpoint_file is not None:
        fp = resume.fingerprint(key, run.model, config, member, data_fields, run.metrics, spec.record_examples,
                                None if start is None else state)
        restored = resume.restore(checkpoint_file, state, fp, run.model, config, run.metrics, spec.steps_per_epoch)
        if restored is not None:
            state, done = restored["state"], Progress.restored(restored, spec.steps_per_epoch)
    hp_host = {k: np.asarray(v) for k, v in {**member["hyperparams"], **member.get("regularizers", {})}.items()}
    state, member, arrays, spec = sharding.place(state, member, arrays, spec=spec, devices=devices)
    host = functools.partial(_host, members=members)
    if done.initial is None:
        done.initial = host(evaluation.compiled_eval(state, member, arrays, spec=spec))
        if spec.record_examples:
            state = evaluation.compiled_record(state, member, arrays, spec=spec)
    name = "-".join(map(str, run.model.sizes)) if isinstance(run.model, MLP) else type(run.model).__name__
    bar = ProgressBar(name + (f" x{members} members" if members else ""), config.epochs, done.epochs_done,
                      [n for n, m in run.metrics if m.kind not in PER_SPLIT], progress and distributed.is_writer())
    for logger in loggers:
        logger.start(done.history, done.initial)
    first_epoch_seconds = None
    try:
        while not done.finished and done.epochs_done < config.epochs:
            n, evaluate = done.next_chunk(config, checkpoint_every if checkpoint_file else None)
            state, metrics = loop.compiled_chunk(state, member, arrays, spec=spec, num_epochs=n, evaluate=evaluate)
            if first_epoch_seconds is None:
                jax.block_until_ready(state.step)
                first_epoch_seconds = time.perf_counter() - started
            done.trained(n, config)
            bar.update(n)
            if evaluate:
                metrics = host(metrics)
                done.evaluated(metrics, config)
                bar.show(metrics, ~done.diverged)
                for logger in loggers:
                    logger.log(done.epochs_done, metrics)
                if callback is not None:
                    callback(done.epochs_done, metrics)
            if checkpoint_file is not None and (done.epochs_done % checkpoint_every == 0 or done.finished):
                resume.save(checkpoint_file, host(state), fp, done)  # every process gathers; process 0 writes
    finally:
        bar.close()
        for logger in loggers:
            logger.close()
    return FitResult(params=_final_params(spec, state.params, members), history=done.history, initial=done.initial,
                     diverged=done.diverged, diverged_epoch=done.diverged_epoch, epochs_run=done.epochs_done,
                     state=state, wall_seconds=time.perf_counter() - started, config=config, num_members=members,
                     num_devices=spec.member_shards, model=run.model, hyperparams=hp_host,
                     examples=None if state.examples is None else host(state.examples),
                     first_epoch_seconds=first_epoch_seconds,
                     model_state=None if state.model_state is None else _final_params(None, state.model_state, members))


def _host(tree, *, members: int | None):
    """``tree`` gathered to the host as NumPy, without a population's padding members."""
    return sharding.host(jax.tree.map(lambda a: a[:members] if members is not None and a.ndim else a, tree))


def _final_params(spec: Spec | None, params, members: int | None):
    """The trained parameters in the model's own layout (``spec`` None: as they are, for a model's state),
    without padding members (NumPy on every process of a job)."""
    params = params if spec is None else from_compute_layout(spec, params)
    if members is not None:
        params = jax.tree.map(lambda a: a[:members], params)
    if distributed.multiprocess():
        params = sharding.host(params)
    jax.block_until_ready(params)
    return params


def setup(key, member: dict, conditions, make_spec, data: Dataset, config: TrainConfig, devices, start=None):
    """The initial state (``start``'s, if given) and the data arrays of a run, and its spec (before placement on
    devices)."""
    members = int(key.shape[0]) if key.ndim == 1 else None
    spec = make_spec(members=members, devices=_devices(devices) if members is not None else 1)
    arrays = data.arrays()
    if data.x_val is not None:
        arrays.update(x_val=data.x_val, y_val=data.y_val)
    if conditions is not None:
        arrays.update({k: np.asarray(v, arrays[k].dtype) for k, v in conditions.arrays.items()})
    check_memory(key, spec, member, arrays, config, devices)
    state = init_state(key, spec, member["hyperparams"], config.data_seed)
    return (state if start is None else start_from(state, start)), arrays, spec


def _devices(devices) -> int:
    return len(devices) if devices is not None else jax.device_count()


class Prepared(NamedTuple):
    """A run ready for the compiled loop (:func:`jaxgd.training.loop.train_chunk`): what :func:`fit` builds first."""

    state: TrainState
    member: dict
    data: dict
    spec: Spec


def prepare(key, model, data: Dataset, config: TrainConfig = TrainConfig(), *, hyperparams: dict | None = None,
            learning_rates=None, conditions=None, metrics=None, devices=None) -> Prepared:
    """The initial state, per-member values, data and spec of a run, placed on its devices: everything
    :func:`jaxgd.training.loop.train_chunk` takes. The arguments are :func:`fit`'s; ``fit`` is this plus the
    Python loop around the compiled chunk."""
    run = plan(key, model, data, config, hyperparams, learning_rates, conditions, metrics)
    state, arrays, spec = setup(run.key, run.member, conditions, run.make_spec, data, config, devices)
    return Prepared(*sharding.place(state, run.member, arrays, spec=spec, devices=devices))


def check(key, model, data: Dataset, config: TrainConfig = TrainConfig(), *, hyperparams: dict | None = None,
          learning_rates=None, conditions=None, metrics=None, devices=None, max_members: int | None = None) -> None:
    """Every check :func:`fit` makes before training (its arguments, the data, the memory the run needs),
    without allocating anything: drivers call it before they touch their output directory."""
    run = plan(key, model, data, config, hyperparams, learning_rates, conditions, metrics, max_members)
    key, member = run.key, run.member
    if max_members is not None and key.ndim == 1 and max_members < key.shape[0]:
        key, member = key[:max_members], jax.tree.map(lambda a: a[:max_members], member)
    spec = run.make_spec(members=int(key.shape[0]) if key.ndim == 1 else None,
                         devices=_devices(devices) if key.ndim == 1 else 1)
    check_memory(key, spec, member, data.arrays(), config, devices)
