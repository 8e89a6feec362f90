"""What :func:`jaxgd.fit` returns: :class:`FitResult`, one network or a population."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxgd.errors import InvalidArgument
from jaxgd.training.config import TrainConfig
from jaxgd.training.progress import AXES
from jaxgd.training.state import TrainState


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      params: trained parameters in the model's own layout, with a leading member axis
        ``(S, ...)`` on every leaf for a population.
      history: ``{"epoch": (E,), "step": (E,), "train_cost": ([S,] E), "train_accuracy", "test_cost",
        "test_accuracy"[, "val_cost", "val_accuracy"], "param_norm", <your metrics>}`` —
        one entry per evaluation; ``step`` counts the optimizer steps of this run at each.
      initial: the same metrics before training (``([S],)`` each).
      diverged: ``([S],)`` bool (see ``TrainConfig.divergence_factor``).
      diverged_epoch: ``([S],)`` int, the first evaluation epoch at which it diverged, or -1.
      epochs_run: epochs trained (fewer than configured after early stopping).
      state: the final :class:`jaxgd.training.state.TrainState` in compute layout (for a sharded
        population it keeps the padding members and the device layout).
      wall_seconds: time spent in :func:`fit`, compilation included.
      first_epoch_seconds: from the start of :func:`fit` to the end of its first compiled chunk of epochs
        (validation, initialisation, compilation or the compilation cache, one chunk).
      config: the :class:`TrainConfig`.
      num_members: ``S`` for a population, ``None`` for one network.
      num_devices: devices the member axis was spread over.
      model: the model trained (with ``config.init`` applied).
      hyperparams: each member's base hyperparameters, ``{name: ([S],)}``.
      model_state: a stateful model's state (batch statistics) in the model's layout, ``(S, ...)`` for a
        population; ``None`` for a pure model. Evaluate a trained network with
        ``model.apply(params, model_state, x)``.
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
    model_state: Any = None

    def final(self, metric: str) -> np.ndarray:
        """The last evaluated value of ``metric`` (``([S],)``)."""
        return self.history[metric][..., -1]

    def member(self, i: int) -> "FitResult":
        """Member ``i`` of a population as a one-network result (params, history, flags, hyperparameters)."""
        if self.num_members is None:
            raise InvalidArgument("member() takes one network out of a population; this result is one network.")
        if not -self.num_members <= i < self.num_members:
            raise IndexError(f"member {i} of a population of {self.num_members}.")
        take = lambda tree: jax.tree.map(lambda a: np.asarray(a)[i] if np.ndim(a) else a, tree)  # noqa: E731
        history = {k: (v if k in AXES else np.asarray(v)[i]) for k, v in self.history.items()}
        return dataclasses.replace(self, params=jax.tree.map(lambda a: a[i], self.params), history=history,
                                   initial=take(self.initial), diverged=np.asarray(self.diverged)[i],
                                   diverged_epoch=np.asarray(self.diverged_epoch)[i], num_members=None,
                                   hyperparams=take(self.hyperparams or {}),
                                   examples=None if self.examples is None else take(self.examples),
                                   model_state=None if self.model_state is None else
                                   jax.tree.map(lambda a: a[i], self.model_state))
