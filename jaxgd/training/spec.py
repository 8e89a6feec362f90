"""The static part of a run, and the one place where the training kernel is chosen.

:class:`Spec` holds everything the compiled programs depend on (changing it
recompiles; nothing else does). :func:`choose_kernel` decides how the steps of a run
are computed. Every choice computes the same SGD, Adam, ... steps on the same
minibatches — the fast paths change how, never what (each is checked against the
plain path in the tests):

- ``dense`` layout (:class:`jaxgd.MLP` without dropout): weights stored ``(n_out, n_in)`` and
  multiplied by :func:`jaxgd.training.dense.dense`, whose gradient at small minibatches fuses
  with the update (:mod:`jaxgd.training.dense`). Exact: the same products.
- kernel ``single``: one network, a ``lax.scan`` of :func:`jaxgd.training.step.train_steps`.
- kernel ``vmap``: a population as one network's steps under ``jax.vmap``; with a
  shared data order an MLP's first layer becomes one product for all members. Chosen
  for MLPs, and for other models whose activations of all of a device's members fit
  in :data:`MEMBER_BATCH_BYTES`.
- kernel ``map``: a population whose activations do not fit: each device steps
  ``member_batch`` of its members at a time (``lax.map``), so that one member's
  activations stay in the cache instead of all of them streaming through memory (on a
  2-core CPU a 100-member CNN population ran 2.1x faster per seed-epoch than vmapped).
  A stochastic run (a stateful model: batch norm, dropout; or data augmentation) always
  steps its members one at a time (``member_batch`` 1): each member's step is then the
  same compiled computation as a network trained alone, so that a member trained in a
  population equals the same key trained alone. Batch norm with zero-padded crops amplifies
  rounding chaotically: vmapped, a member drifted 3e-3 from itself trained alone within
  three epochs; stepped one at a time it is bit-identical.
- kernel ``deferred`` (:mod:`jaxgd.training.deferred`): an MLP population (no dropout, no
  augmentation) with a shared order of shared inputs, trained by plain SGD (no momentum, no weight decay, no other
  per-member hyperparameter than the learning rate) with autodiff gradients and
  minibatches: the first layer's updates are deferred over blocks of steps and applied
  as large matrix products. The same SGD up to rounding (float64 tests to 1e-10).
- The data order's permutation (:mod:`jaxgd.data.permutation`) is drawn by radix passes on
  CPUs; bit-identical to ``jax.random.permutation`` on every platform.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxgd.training.config import MATMUL_PRECISION, TrainConfig
from jaxgd.training.deferred import block_steps
from jaxgd.mlp import MLP
from jaxgd.data.augment import parse
from jaxgd.models import activation_floats, is_stateful, output_of
from jaxgd.training.optim import Optimizer

KERNELS = ("single", "vmap", "map", "deferred")
#: Activations (bytes) of one step that the ``vmap`` kernel may hold for all of a device's members.
MEMBER_BATCH_BYTES = 4 * 2 ** 20
#: Activations (members x examples x floats) one evaluation chunk may hold at once: 16 Mi floats, 64 MiB.
EVAL_ACTIVATIONS = 2 ** 24


@dataclasses.dataclass(frozen=True)
class Spec:
    """The static (hashable) part of a run."""

    model: Any
    cost: Any  # a name of jaxgd.costs.COSTS or a function (logits, y) -> (batch,)
    output: str  # the model's output activation, for the quadratic cost
    optimizer: Optimizer
    schedule: Any
    total_steps: int
    batch_size: int  # examples per step (n_train for full batch)
    steps_per_epoch: int
    full_batch: bool
    gradient: str
    input_shape: tuple[int, ...]  # one example's shape, as the model sees it
    eval_batch_size: int = 4096
    population: bool = False
    shared_order: bool = False
    condition_arrays: tuple[str, ...] = ()  # data arrays with a leading condition axis
    members: int | None = None  # population size
    member_shards: int = 1  # contiguous blocks the member axis is split into, one per device (see sharding.place)
    kernel: str = "single"
    member_batch: int = 1  # members stepped together by the map kernel
    dense_layout: bool = False
    deferred_steps: int = 1  # steps per block of deferred first-layer updates (1: none)
    matmul_precision: str = MATMUL_PRECISION  # TrainConfig.matmul_precision, applied as the programs are traced
    metrics: tuple = ()  # ((name, jaxgd.training.metrics.Metric), ...)
    n_train: int = 0  # training examples
    record_examples: bool = False  # keep each training example's learned-at epoch and forgetting events
    stateful: bool = False  # the model follows the protocol's stateful form (batch statistics, dropout)
    augment: tuple = ()  # jaxgd.data.augment.parse(TrainConfig.augment)
    regularizers: tuple[str, ...] = ()  # per-member regularizers ("dropout", "augment") in member["regularizers"]

    @property
    def noisy(self) -> bool:
        """Whether each member draws random numbers at each step (dropout, augmentation): it then has a noise key."""
        return self.stateful or bool(self.augment)

    @classmethod
    def make(cls, model, config: TrainConfig, optimizer: Optimizer, n_train: int, input_shape: tuple[int, ...], *,
             population: bool = False, members: int | None = None, condition_arrays: tuple[str, ...] = (),
             per_member: tuple[str, ...] = (), metrics: tuple = (), devices: int = 1, record_examples: bool = False,
             regularizers: tuple[str, ...] = (), **kw) -> "Spec":
        batch = n_train if config.batch_size is None else config.batch_size
        steps = 1 if config.batch_size is None else n_train // batch
        # a population shares its order when the config says so (tests may force it either way)
        kw.setdefault("shared_order", bool(population) and config.data_order == "shared")
        choice = choose_kernel(model, config, optimizer, batch_size=batch, population=population, members=members,
                               shared_order=kw["shared_order"], condition_arrays=condition_arrays,
                               per_member=per_member, input_dim=_prod(input_shape), devices=devices,
                               noisy=is_stateful(model) or bool(config.augment))
        for k, v in choice.items():
            kw.setdefault(k, v)
        return cls(model=model, cost=config.cost, output=output_of(model), optimizer=optimizer,
                   schedule=config.schedule,
                   # only decaying schedules need the run's length: keep it out of the compiled program otherwise
                   total_steps=steps * config.epochs if config.schedule in ("cosine", "linear") else 0,
                   batch_size=batch, steps_per_epoch=steps, full_batch=config.batch_size is None,
                   gradient=config.gradient, input_shape=tuple(input_shape),
                   eval_batch_size=_eval_chunk(model, config, members, _prod(input_shape)),
                   population=population, condition_arrays=condition_arrays, members=members,
                   matmul_precision=config.matmul_precision, metrics=tuple(metrics), n_train=n_train,
                   record_examples=record_examples, stateful=is_stateful(model), augment=parse(config.augment),
                   regularizers=tuple(regularizers), **kw)


def choose_kernel(model, config: TrainConfig, optimizer: Optimizer, *, batch_size: int, population: bool,
                  members: int | None, shared_order: bool, condition_arrays: tuple[str, ...],
                  per_member: tuple[str, ...], input_dim: int, devices: int = 1, noisy: bool = False) -> dict:
    """How a run's steps are computed (see the module docstring for what each choice is and why it is exact).

    Returns:
      ``{"kernel", "member_batch", "dense_layout", "deferred_steps"}``.
    """
    mlp = isinstance(model, MLP) and not is_stateful(model)  # an MLP with dropout runs as any model
    out = {"kernel": "single", "member_batch": 1, "dense_layout": mlp, "deferred_steps": 1}
    if not population:
        return out
    if noisy:  # each member as alone (see the module docstring)
        return {**out, "kernel": "map", "member_batch": 1}
    plain_sgd = (optimizer.name == "sgd" and not optimizer.decoupled_decay
                 and set(optimizer.numeric) == {"learning_rate"} and set(per_member) <= {"learning_rate"})
    if (mlp and shared_order and plain_sgd and config.gradient == "autodiff" and config.batch_size is not None
            and "x_train" not in condition_arrays and not config.augment):
        k = block_steps(batch_size, members, model.sizes[1])
        if k > 1:
            return {**out, "kernel": "deferred", "deferred_steps": k}
    per_device = -(-(members or 1) // max(devices, 1))
    step_bytes = 4 * batch_size * activation_floats(model, input_dim)
    if mlp or per_device * step_bytes <= MEMBER_BATCH_BYTES:
        return {**out, "kernel": "vmap"}
    return {**out, "kernel": "map", "member_batch": max(1, min(per_device, MEMBER_BATCH_BYTES // step_bytes))}


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _eval_chunk(model, config: TrainConfig, members: int | None, input_dim: int) -> int:
    """Examples per evaluation chunk: the configured size, smaller for large populations and models."""
    per_example = (members or 1) * activation_floats(model, input_dim)
    return max(64 if isinstance(model, MLP) else 8, min(config.eval_batch_size, EVAL_ACTIVATIONS // per_example))


def to_compute_layout(spec: Spec, params):
    """The parameters as the compiled loop stores them: an MLP's weights ``(n_out, n_in)`` in the
    ``dense`` layout (as ``torch.nn.Linear`` stores them), anything else as it is.

    With the input dimension minor, the per-member first-layer products and their weight
    gradients of a population become contractions XLA runs two to three times faster on
    CPU than with ``(n_in, n_out)`` weights. Its own inverse (:func:`from_compute_layout`).
    """
    return dense_layout(params) if spec.dense_layout else params


from_compute_layout = to_compute_layout


def dense_layout(params):
    """An MLP's parameters with every weight matrix transposed (leading member axes kept): its own inverse."""
    return [{"w": jnp.swapaxes(layer["w"], -1, -2), "b": layer["b"]} for layer in params]


