"""Where a run stands between its compiled chunks: epochs trained, the evaluations so far, which members diverged.

:class:`Progress` is the driver's bookkeeping, plain NumPy on the host: what a checkpoint stores
and a resumed run restores. :class:`ProgressBar` shows it (tqdm, on stderr).
"""
from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
from tqdm.auto import tqdm

from jaxgd.training.config import TrainConfig

#: History entries shared by every member: when each evaluation happened, ``(E,)``; every other entry is ``([S,] E)``.
AXES = ("epoch", "step")


def stack(rows: list[dict]) -> dict[str, np.ndarray]:
    """Evaluation rows to history arrays, the evaluations on the last axis."""
    return {name: np.stack([r[name] for r in rows], axis=-1) for name in rows[0]} if rows else {}


def diverging(metrics: dict, initial: dict, config: TrainConfig) -> np.ndarray:
    """Members whose training cost or parameters are not finite, or whose parameter norm grew past
    ``config.divergence_factor`` x its initial value (a blown-up step that saturated the units)."""
    norm = np.asarray(metrics["param_norm"])
    bad = ~np.isfinite(np.asarray(metrics["train_cost"])) | ~np.isfinite(norm)
    if config.divergence_factor is not None:
        with np.errstate(invalid="ignore"):
            bad |= norm > config.divergence_factor * np.asarray(initial["param_norm"])
    return bad


@dataclasses.dataclass
class Progress:
    """A run's state on the host (``([S],)`` arrays for a population).

    Attributes:
      epochs_done: epochs trained.
      finished: no more epochs to train (all done, every member diverged, or the target accuracy reached).
      rows: one dict of metrics per evaluation, ``{"epoch", "step", "train_cost", ...}``.
      initial: the metrics before training (None until measured).
      diverged: which members diverged; ``diverged_epoch`` the evaluation at which they did (-1: not).
      steps_per_epoch: optimizer steps per epoch (the ``step`` of each evaluation, ``eval_unit="steps"``).
    """

    epochs_done: int
    finished: bool
    rows: list
    initial: dict | None
    diverged: np.ndarray
    diverged_epoch: np.ndarray
    steps_per_epoch: int = 1

    @classmethod
    def start(cls, members: int | None, steps_per_epoch: int = 1) -> "Progress":
        shape = (members,) if members is not None else ()
        return cls(0, False, [], None, np.zeros(shape, bool), np.full(shape, -1), steps_per_epoch)

    @classmethod
    def restored(cls, checkpoint: dict, steps_per_epoch: int = 1) -> "Progress":
        """The progress a checkpoint (:func:`jaxgd.runs.checkpoint.load`) recorded."""
        history = dict(checkpoint["history"])
        if "epoch" in history and "step" not in history:  # written before histories had steps
            history["step"] = np.asarray(history["epoch"]) * steps_per_epoch
        rows = [{k: v[..., i] for k, v in history.items()} for i in range(len(history.get("epoch", ())))]
        return cls(checkpoint["epochs_done"], checkpoint["finished"], rows, checkpoint["initial"],
                   np.asarray(checkpoint["diverged"]), np.asarray(checkpoint["diverged_epoch"]), steps_per_epoch)

    @property
    def history(self) -> dict[str, np.ndarray]:
        return stack(self.rows)

    def next_chunk(self, config: TrainConfig, checkpoint_every: int | None) -> tuple[int, bool]:
        """``(epochs, evaluate)``: how many epochs the next compiled chunk trains (up to the next evaluation or
        checkpoint), and whether it ends with an evaluation."""
        done, every = self.epochs_done, config.eval_epochs(self.steps_per_epoch)
        next_eval = min(config.epochs, (done // every + 1) * every)
        next_save = (done // checkpoint_every + 1) * checkpoint_every if checkpoint_every else next_eval
        n = min(next_eval, next_save) - done
        return n, done + n == next_eval

    def trained(self, epochs: int, config: TrainConfig) -> None:
        self.epochs_done += epochs
        self.finished = self.finished or self.epochs_done >= config.epochs

    def evaluated(self, metrics: dict, config: TrainConfig) -> None:
        """Records an evaluation after :meth:`trained`: its row, the members that diverged, whether training ends."""
        self.rows.append({"epoch": np.asarray(self.epochs_done),
                          "step": np.asarray(self.epochs_done * self.steps_per_epoch), **metrics})
        bad = diverging(metrics, self.initial, config) & ~self.diverged
        self.diverged_epoch = np.where(bad, self.epochs_done, self.diverged_epoch)
        self.diverged = self.diverged | bad
        reached = config.target_accuracy is not None and bool(np.all(
            (metrics["train_accuracy"] >= config.target_accuracy) | self.diverged))
        self.finished = self.finished or bool(np.all(self.diverged)) or reached


def _mean(values, mask) -> float:
    values = np.asarray(values)
    if values.ndim == 0:
        return float(values)
    return float(np.mean(values[mask])) if np.any(mask) else math.nan


class ProgressBar:
    """A tqdm bar over epochs, with the latest cost and accuracies (means over the members that have not
    diverged) and the first two of the run's metrics."""

    def __init__(self, name: str, total: int, initial: int, metric_names, enabled: bool):
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, unit="epoch", file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5, desc=name)
        self.shown = list(metric_names)[:2]

    def update(self, epochs: int) -> None:
        self.bar.update(epochs)

    def show(self, metrics: dict, ok: np.ndarray) -> None:
        postfix = {"cost": f"{_mean(metrics['train_cost'], ok):.4f}",
                   "train": f"{_mean(metrics['train_accuracy'], ok):.3f}",
                   "test": f"{_mean(metrics['test_accuracy'], ok):.3f}"}
        postfix.update({k: f"{_mean(metrics[k], ok):.4g}" for k in self.shown})
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()
