"""``TrainConfig``: every hyper-parameter of a training run, frozen and validated."""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable, Union

import numpy as np

from jaxgd.data.augment import parse as parse_augment
from jaxgd.errors import InvalidArgument, InvalidType
from jaxgd.costs import check_cost
from jaxgd.io.fingerprint import describe_or_none
from jaxgd.mlp import INITIALISERS
from jaxgd.training.optim import NAMED, SCHEDULES, build, check_learning_rate, recorded_hyperparameters

OPTIMIZERS = tuple(NAMED)
DATA_ORDERS = ("per_seed", "shared")
GRADIENTS = ("autodiff", "backprop")
#: ``TrainConfig.eval_unit`` choices: what ``eval_every`` counts.
EVAL_UNITS = ("epochs", "steps")
#: ``TrainConfig.matmul_precision`` choices, JAX's names (``jax.default_matmul_precision``).
MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "default")
#: Default ``TrainConfig.matmul_precision``: float32 products on every platform.
MATMUL_PRECISION = "float32"
#: Optimizer steps a run can count: its step counters are 32-bit integers (jaxgd's and optax's).
MAX_STEPS = 2 ** 31
#: Default ``TrainConfig.divergence_factor``.
DIVERGENCE_FACTOR = 20.0


def is_real(value) -> bool:
    """A real number that is not a bool (``np.float32(0.5)`` is one, ``True`` is not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_integer(value) -> bool:
    """An integer that is not a bool (``np.int64(3)`` is one, ``True`` and ``3.0`` are not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(field: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_integer(value):
        raise InvalidType(f"{field} must be a positive integer, got {value!r}.")
    if value < 1:
        raise InvalidArgument(f"{field} must be a positive integer, got {value}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`jaxgd.fit`.

    Attributes:
      cost: ``"quadratic"`` (the lesson's), ``"cross_entropy"``, or a function
        ``cost(logits, y) -> (batch,)`` per-example costs (see :mod:`jaxgd.costs`).
      optimizer: a name — ``"sgd"`` (plain gradient descent, as in the lesson),
        ``"momentum"``, ``"nesterov"``, ``"adam"``, ``"adamw"``, ``"lion"``, ``"rmsprop"``,
        ``"adagrad"``, ``"lamb"`` or ``"optax.<name>"`` — or an optax optimizer *factory*
        such as ``optax.adamw`` (an instance such as ``optax.adamw(1e-3)`` is refused: its
        hyperparameters could not be recorded). See :mod:`jaxgd.training.optim`.
      learning_rate: the base step size (the lesson's network uses 3.0 with the quadratic
        cost; jaxgd's cost has no 1/2, so this is Nielsen's eta / 2).
      optimizer_args: the factory's other keyword hyperparameters, e.g. ``{"b1": 0.95}``.
      momentum: the momentum coefficient of ``"momentum"``/``"nesterov"`` (default 0.9) or
        of any factory that takes ``momentum``; refused for optimizers without one.
      weight_decay: decoupled weight decay for any optimizer (``None``: the optimizer's
        own default, none for SGD).
      batch_size: minibatch size; ``None`` is full-batch gradient descent on the
        average cost over all training examples, the lesson's exact procedure.
        Each epoch draws a fresh permutation and takes ``n_train // batch_size``
        minibatches (the remainder of the permutation is left for that epoch).
      epochs: passes over the training data.
      init: weight initialiser of jaxgd's MLP and CNN (``normal``, ``lecun``, ``glorot``,
        ``he``); ``None`` keeps the model's own (the MLP's is the lesson's ``normal``).
      schedule: ``None``/``"constant"``, ``"cosine"``, ``"linear"`` (decay to 0 over the
        run), ``"exponential"`` (x0.95 per epoch), or a function ``step -> factor``
        (e.g. an optax schedule built with init value 1). The learning rate at a step is
        each member's base rate times the factor.
      target_accuracy: stop once the training accuracy reaches this (checked at evaluations).
      eval_every: evaluate every this many epochs (or optimizer steps, see ``eval_unit``); a chunk
        of that many epochs runs as one compiled program.
      eval_unit: what ``eval_every`` counts: ``"epochs"`` (default) or ``"steps"`` (optimizer
        steps), so that full-batch gradient descent, one step per epoch, can be sampled at evenly
        spaced steps. With minibatches an evaluation falls at the end of an epoch, so ``"steps"``
        needs ``eval_every`` to be a multiple of the steps of an epoch (refused otherwise).
      data_order: for populations, ``"per_seed"`` (each member shuffles on its own)
        or ``"shared"`` (all members see the same minibatches; seeds differ only in
        initialisation).
      data_seed: seed of the shared data order.
      gradient: ``"autodiff"`` (``jax.grad``) or ``"backprop"`` (the MLP's hand-written one).
      eval_batch_size: examples per evaluation chunk (bounds memory for populations).
      divergence_factor: a network has diverged when, at an evaluation, its training cost
        or parameters are not finite, or the norm of its parameters has grown past this
        many times its initial norm (``None``: only non-finite values count). A single
        network stops there; in a population the member is flagged in
        ``FitResult.diverged`` and left out of the statistics.
      augment: data augmentation inside the compiled loop, e.g. ``"crop:2,flip,noise:0.1"``
        (:mod:`jaxgd.data.augment`): random crops with zero padding, horizontal flips, Gaussian
        input noise, on each minibatch, from each member's own key. ``None``: none. A population's
        members may set the probability that an example is augmented
        (``fit(..., hyperparams={"augment": ...})``, 1 by default, 0 switching it off).
      matmul_precision: how float32 matrix products are computed, in JAX's terms
        (``jax.default_matmul_precision``): ``"float32"`` (default) on every platform, so
        that a GPU or TPU run follows its CPU run up to rounding; ``"default"`` is the
        platform's own choice (TF32 on NVIDIA GPUs since Ampere, bfloat16 passes on TPUs);
        ``"tensorfloat32"`` and ``"bfloat16"`` ask for those. CPUs compute float32 whatever
        this says.
    """

    cost: Union[str, Callable] = "quadratic"
    optimizer: Union[str, Callable] = "sgd"
    learning_rate: float = 3.0
    batch_size: int | None = 10
    epochs: int = 50
    init: str | None = None
    momentum: float | None = None
    schedule: Union[str, Callable, None] = None
    target_accuracy: float | None = None
    eval_every: int = 1
    eval_unit: str = "epochs"
    data_order: str = "per_seed"
    data_seed: int = 0
    gradient: str = "autodiff"
    eval_batch_size: int = 4096
    divergence_factor: float | None = DIVERGENCE_FACTOR
    matmul_precision: str = MATMUL_PRECISION
    weight_decay: float | None = None
    optimizer_args: dict | None = None
    augment: str | None = None

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The config as JSON: callables recorded by value (:mod:`jaxgd.io.fingerprint`), the optimizer's
        hyperparameters resolved (defaults included) under ``hyperparameters``."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for field in ("cost", "schedule"):
            if callable(d[field]):
                d[field], _ = describe_or_none(d[field])
        if not isinstance(d["optimizer"], str):
            from jaxgd.training.optim import resolve

            name, _ = resolve(d["optimizer"])
            d["optimizer"] = name if name in NAMED else describe_or_none(d["optimizer"])[0]
        d["optimizer_args"] = dict(d["optimizer_args"] or {})
        try:
            d["hyperparameters"] = recorded_hyperparameters(self)
        except (TypeError, ValueError):
            d["hyperparameters"] = None
        return d

    def unrecordable(self) -> list[tuple[str, str]]:
        """``(field, reason)`` for each callable of this config that cannot be recorded by value."""
        out = []
        for field in ("cost", "schedule", "optimizer"):
            value = getattr(self, field)
            if callable(value) and not isinstance(value, str):
                _, reason = describe_or_none(value)
                if reason is not None:
                    out.append((field, reason))
        return out

    def validate(self, n_train: int | None = None) -> "TrainConfig":
        """Raises ``ValueError``/``TypeError`` naming the first bad field; returns ``self``."""
        def choice(field, options):
            value = getattr(self, field)
            if not isinstance(value, str) or value not in options:
                raise InvalidArgument(f"Unknown {field} {value!r}; choose one of {', '.join(options)}.")

        check_cost(self.cost)
        if self.init is not None:
            choice("init", tuple(INITIALISERS))
        choice("data_order", DATA_ORDERS)
        choice("eval_unit", EVAL_UNITS)
        choice("gradient", GRADIENTS)
        choice("matmul_precision", MATMUL_PRECISIONS)
        if self.schedule is not None and not callable(self.schedule):
            choice("schedule", SCHEDULES)
        lr = self.learning_rate
        if not is_real(lr):
            raise InvalidType(f"learning_rate must be a positive finite number, got {lr!r}.")
        if not (math.isfinite(lr) and lr > 0):
            raise InvalidArgument(f"learning_rate must be a positive finite number, got {lr!r}.")
        check_learning_rate("learning_rate", lr)
        if self.momentum is not None and not (is_real(self.momentum) and 0 <= self.momentum < 1):
            raise InvalidArgument(f"momentum must lie in [0, 1), got {self.momentum!r}.")
        if self.weight_decay is not None and not (is_real(self.weight_decay) and math.isfinite(self.weight_decay)
                                                  and self.weight_decay >= 0):
            raise InvalidArgument(f"weight_decay must be a non-negative finite number, got {self.weight_decay!r}.")
        if self.optimizer_args is not None:
            if not isinstance(self.optimizer_args, dict) or not all(isinstance(k, str) for k in self.optimizer_args):
                raise InvalidType(f"optimizer_args must be a dict of keyword hyperparameters, got {self.optimizer_args!r}.")
            for k, v in self.optimizer_args.items():
                if not (v is None or isinstance(v, (str, bool)) or (is_real(v) and math.isfinite(v))):
                    raise InvalidArgument(f"optimizer_args[{k!r}] must be a finite number, a bool, a string or None, "
                                     f"got {v!r} (per-member values go in fit(..., hyperparams=)).")
        build(self)  # the optimizer, its arguments and its momentum
        parse_augment(self.augment)
        positive_int("epochs", self.epochs)
        if self.epochs >= MAX_STEPS:
            raise InvalidArgument(f"epochs={self.epochs} is more optimizer steps than a run can count "
                                  f"(at most {MAX_STEPS - 1:,}, in 32-bit integers).")
        positive_int("eval_every", self.eval_every)
        positive_int("eval_batch_size", self.eval_batch_size)
        positive_int("batch_size", self.batch_size, allow_none=True)
        if not is_integer(self.data_seed):
            raise InvalidType(f"data_seed must be an integer, got {self.data_seed!r}.")
        if not -2 ** 63 <= int(self.data_seed) < 2 ** 63:
            raise InvalidArgument(f"data_seed must fit in 64 bits, got {self.data_seed}.")
        if self.target_accuracy is not None and not (is_real(self.target_accuracy)
                                                     and 0 < self.target_accuracy <= 1):
            raise InvalidArgument(f"target_accuracy must be a number in (0, 1], got {self.target_accuracy!r}.")
        factor = self.divergence_factor
        if factor is not None and (not is_real(factor) or not math.isfinite(factor) or factor <= 1):
            raise InvalidArgument(f"divergence_factor must be a finite number above 1 (or None), got {factor!r}.")
        if n_train is not None:
            if n_train < 1:
                raise InvalidArgument("The training set is empty.")
            if self.batch_size is not None and self.batch_size > n_train:
                raise InvalidArgument(f"batch_size={self.batch_size} is larger than the {n_train} training examples.")
            per_epoch = 1 if self.batch_size is None else n_train // self.batch_size
            steps = self.epochs * per_epoch
            if steps >= MAX_STEPS:
                raise InvalidArgument(f"epochs={self.epochs} makes {steps:,} optimizer steps; a run counts its steps in "
                                      f"32-bit integers (as optax does), so at most {MAX_STEPS - 1:,} fit: use fewer "
                                      "epochs, or train in several runs.")
            if self.eval_unit == "steps" and self.eval_every % per_epoch:
                raise InvalidArgument(f"eval_every={self.eval_every} steps falls inside an epoch of {per_epoch} steps: "
                                      "an evaluation ends an epoch, so use full-batch gradient descent (batch_size=None, "
                                      f"--batch-size full) or a multiple of {per_epoch} steps.")
        return self

    def eval_epochs(self, steps_per_epoch: int) -> int:
        """Epochs between evaluations (``eval_every`` in epochs, or its steps in whole epochs)."""
        return self.eval_every if self.eval_unit == "epochs" else max(1, self.eval_every // steps_per_epoch)
