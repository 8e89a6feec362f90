"""Loggers: a run's curves as it trains — a CSV file for pandas, TensorBoard event files, Weights & Biases.

A logger is any object with ``start(history, initial)`` (called once by :func:`jaxgd.fit` with the
history so far: empty, or what a resumed run restored), ``log(epoch, metrics)`` (after every
evaluation, every metric as NumPy, ``([S],)`` for a population) and ``close()``. Pass them as
``fit(..., loggers=[...])``; in a ``jax.distributed`` job only process 0 logs. Each member of a
population may carry a label (``jaxgd.sweep(...).labels``): a row of the CSV file has it, and
TensorBoard draws a curve per member or per label group.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from jaxgd.errors import InvalidArgument, MissingDependency


def _members(metrics: dict) -> int | None:
    value = np.asarray(next(iter(metrics.values())))
    return None if value.ndim == 0 else int(value.shape[0])


def _rows(history: dict, initial: dict | None):
    """``(epoch, metrics)`` for the initial evaluation (epoch 0) and each one in ``history``."""
    if initial:
        yield 0, initial
    for i, epoch in enumerate(np.asarray(history.get("epoch", []))):
        yield int(epoch), {k: np.asarray(v)[..., i] for k, v in history.items() if k not in ("epoch", "step")}


class CSVLogger:
    """``path`` with one row per evaluation and member: ``epoch, member, <label keys>, <every metric>``.

    Written as training goes (a line per member and evaluation, flushed); a resumed run rewrites it
    from its restored history first, so the file never holds evaluations the run does not have.
    """

    def __init__(self, path, labels: list[dict] | None = None):
        self.path = Path(path)
        self.labels = labels
        self._file = None
        self._writer = None
        self._columns = None

    def start(self, history: dict, initial: dict | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._writer = csv.writer(self._file)
        for epoch, metrics in _rows(history, initial):
            self.log(epoch, metrics)

    def log(self, epoch: int, metrics: dict) -> None:
        names = sorted(metrics)
        label_keys = sorted(self.labels[0]) if self.labels else []
        if self._columns is None:
            self._columns = names
            self._writer.writerow(["epoch", "member", *label_keys, *names])
        members = _members(metrics)
        for m in range(members or 1):
            row = [epoch, m if members is not None else ""]
            row += [self.labels[m][k] for k in label_keys] if self.labels else []
            row += [repr(float(np.asarray(metrics[k]).reshape(-1)[m if members else 0])) for k in self._columns]
            self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoardLogger:
    """TensorBoard event files under ``logdir``: a curve per member (a run directory ``member-007`` each),
    or per label group, its mean with the minimum and maximum (``group`` mode; the default above 16
    members). Needs ``pip install 'jaxgd[tensorboard]'`` (tensorboardX writes the files)."""

    def __init__(self, logdir, labels: list[dict] | None = None, mode: str | None = None):
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise MissingDependency("--log tensorboard needs tensorboardX: pip install 'jaxgd[tensorboard]'") from None
        if mode not in (None, "members", "groups"):
            raise InvalidArgument(f"TensorBoardLogger mode must be 'members' or 'groups', got {mode!r}.")
        self.logdir = Path(logdir)
        self.labels = labels
        self.mode = mode
        self._writers = {}
        self._purge = None

    def _writer(self, name: str):
        from tensorboardX import SummaryWriter

        if name not in self._writers:  # purge_step: a resumed run drops the events written after its checkpoint
            self._writers[name] = SummaryWriter(str(self.logdir / name), purge_step=self._purge)
        return self._writers[name]

    def start(self, history: dict, initial: dict | None) -> None:
        epochs = np.asarray(history.get("epoch", []))
        self._purge = int(epochs[-1]) + 1 if len(epochs) else None
        if not len(epochs) and initial:
            self.log(0, initial)

    def _groups(self, members: int) -> dict[str, np.ndarray]:
        if not self.labels:
            return {"all": np.arange(members)}
        keys = sorted(self.labels[0])
        names = [",".join(f"{k}={self.labels[m][k]:g}" for k in keys) for m in range(members)]
        return {n: np.flatnonzero(np.asarray(names) == n) for n in dict.fromkeys(names)}

    def log(self, epoch: int, metrics: dict) -> None:
        members = _members(metrics)
        if members is None:
            for name, value in metrics.items():
                self._writer("run").add_scalar(name, float(value), epoch)
            return
        mode = self.mode or ("members" if members <= 16 else "groups")
        for name, value in metrics.items():
            value = np.asarray(value, np.float64)
            if mode == "members":
                for m in range(members):
                    self._writer(f"member-{m:03d}").add_scalar(name, value[m], epoch)
            else:
                for group, idx in self._groups(members).items():
                    finite = value[idx][np.isfinite(value[idx])]
                    if finite.size:
                        w = self._writer(group)
                        w.add_scalar(f"{name}/mean", finite.mean(), epoch)
                        w.add_scalar(f"{name}/min", finite.min(), epoch)
                        w.add_scalar(f"{name}/max", finite.max(), epoch)
        for w in self._writers.values():
            w.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers = {}


class WandbLogger:
    """Weights & Biases, when it is installed and asked for (``--log wandb``): each group's mean of every
    metric per evaluation. ``wandb`` must be installed and logged in (or ``WANDB_MODE=offline``)."""

    def __init__(self, config: dict, labels: list[dict] | None = None, **init):
        try:
            import wandb
        except ImportError:
            raise MissingDependency("--log wandb needs the wandb package: pip install wandb") from None
        self._run = wandb.init(config=config, **init)
        self.labels = labels

    def start(self, history: dict, initial: dict | None) -> None:
        for epoch, metrics in _rows(history, initial):
            self.log(epoch, metrics)

    def log(self, epoch: int, metrics: dict) -> None:
        row = {}
        for name, value in metrics.items():
            value = np.asarray(value, np.float64)
            row[name] = float(np.nanmean(value))
        self._run.log(row, step=epoch)

    def close(self) -> None:
        self._run.finish()


def read_csv(path) -> list[dict]:
    """The rows of a ``metrics.csv`` as dicts (numbers as floats): what ``pandas.read_csv`` would give."""
    def value(v):
        try:
            return float(v)
        except ValueError:
            return None if v == "" else v

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in r.items()} for r in csv.DictReader(f)]

