"""``TrainConfig``: every hyper-parameter of a training run, frozen and validated."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Union

from jaxgd.costs import COSTS
from jaxgd.mlp import INITIALISERS

OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "cosine", "linear", "exponential")
DATA_ORDERS = ("per_seed", "shared")
GRADIENTS = ("autodiff", "backprop")
#: ``TrainConfig.matmul_precision`` choices, JAX's names (``jax.default_matmul_precision``).
MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "default")
#: Default ``TrainConfig.matmul_precision``: float32 products on every platform.
MATMUL_PRECISION = "float32"
#: Default ``TrainConfig.divergence_factor``.
DIVERGENCE_FACTOR = 20.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`jaxgd.fit`.

    Attributes:
      cost: ``"quadratic"`` (the lesson's) or ``"cross_entropy"``.
      optimizer: ``"sgd"`` (plain gradient descent, as in the lesson), ``"momentum"``
        (heavy ball with coefficient ``momentum``) or ``"adam"`` — all through optax.
      learning_rate: step size (the lesson's network uses 3.0 with the quadratic cost).
      batch_size: minibatch size; ``None`` is full-batch gradient descent on the
        average cost over all training examples, the lesson's exact procedure.
        Each epoch draws a fresh permutation and takes ``n_train // batch_size``
        minibatches (the remainder of the permutation is left for that epoch).
      epochs: passes over the training data.
      init: weight initialiser (``normal``, ``lecun``, ``glorot``, ``he``).
      momentum: coefficient for ``optimizer="momentum"``.
      schedule: ``None``/``"constant"``, ``"cosine"``, ``"linear"`` (decay to 0 over
        the run), ``"exponential"`` (x0.95 per epoch), or an optax schedule
        ``step -> learning rate`` (a callable; it then replaces ``learning_rate``).
      target_accuracy: stop once the training accuracy reaches this (checked at evaluations).
      eval_every: evaluate train/test cost and accuracy every this many epochs;
        a chunk of this many epochs runs as one compiled program.
      data_order: for populations, ``"per_seed"`` (each member shuffles on its own)
        or ``"shared"`` (all members see the same minibatches; seeds differ only in
        initialisation).
      data_seed: seed of the shared data order.
      gradient: ``"autodiff"`` (``jax.grad``) or ``"backprop"`` (the hand-written one).
      eval_batch_size: examples per evaluation chunk (bounds memory for populations).
      divergence_factor: a network has diverged when, at an evaluation, its training cost
        or parameters are not finite, or the norm of its parameters has grown past this
        many times its initial norm (``None``: only non-finite values count). Too large a
        learning rate does not always give a non-finite cost: with sigmoid units the weights
        blow up, the units saturate and the cost freezes. A single network stops there; in
        a population the member is flagged in ``FitResult.diverged`` and left out of the statistics.
      matmul_precision: how float32 matrix products are computed, in JAX's terms
        (``jax.default_matmul_precision``): ``"float32"`` (default) computes them in
        float32 on every platform, so that a run on a GPU or TPU follows its CPU run up to
        rounding; ``"default"`` is the platform's own choice (TF32 on NVIDIA GPUs since
        Ampere, bfloat16 passes on TPUs: faster, with about 3 significant digits);
        ``"tensorfloat32"`` and ``"bfloat16"`` ask for those. CPUs compute float32 whatever
        this says.
    """

    cost: str = "quadratic"
    optimizer: str = "sgd"
    learning_rate: float = 3.0
    batch_size: int | None = 10
    epochs: int = 50
    init: str = "normal"
    momentum: float = 0.9
    schedule: Union[str, Callable, None] = None
    target_accuracy: float | None = None
    eval_every: int = 1
    data_order: str = "per_seed"
    data_seed: int = 0
    gradient: str = "autodiff"
    eval_batch_size: int = 4096
    divergence_factor: float | None = DIVERGENCE_FACTOR
    matmul_precision: str = MATMUL_PRECISION

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if callable(d["schedule"]):
            d["schedule"] = getattr(d["schedule"], "__name__", repr(d["schedule"]))
        return d

    def validate(self, n_train: int | None = None) -> "TrainConfig":
        """Raises ``ValueError``/``TypeError`` naming the first bad field; returns ``self``."""
        def choice(field, options):
            value = getattr(self, field)
            if value not in options:
                raise ValueError(f"Unknown {field} {value!r}; choose one of {', '.join(options)}.")

        def positive_int(field, value, allow_none=False):
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{field} must be a positive integer, got {value!r}.")
            if value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value}.")

        choice("cost", COSTS)
        choice("optimizer", OPTIMIZERS)
        choice("init", tuple(INITIALISERS))
        choice("data_order", DATA_ORDERS)
        choice("gradient", GRADIENTS)
        choice("matmul_precision", MATMUL_PRECISIONS)
        if self.schedule is not None and not callable(self.schedule):
            choice("schedule", SCHEDULES)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning_rate must be a positive finite number, got {lr!r}.")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}.")
        positive_int("epochs", self.epochs)
        positive_int("eval_every", self.eval_every)
        positive_int("eval_batch_size", self.eval_batch_size)
        positive_int("batch_size", self.batch_size, allow_none=True)
        if isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int):
            raise TypeError(f"data_seed must be an integer, got {self.data_seed!r}.")
        if self.target_accuracy is not None and not (isinstance(self.target_accuracy, (int, float))
                                                     and 0 < self.target_accuracy <= 1):
            raise ValueError(f"target_accuracy must lie in (0, 1], got {self.target_accuracy!r}.")
        factor = self.divergence_factor
        if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))
                                   or not math.isfinite(factor) or factor <= 1):
            raise ValueError(f"divergence_factor must be a finite number above 1 (or None), got {factor!r}.")
        if n_train is not None:
            if n_train < 1:
                raise ValueError("The training set is empty.")
            if self.batch_size is not None and self.batch_size > n_train:
                raise ValueError(f"batch_size={self.batch_size} is larger than the {n_train} training examples.")
        return self
