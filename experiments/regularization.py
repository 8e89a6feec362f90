"""Regularization: explicit regularizers do not stop networks from memorizing; they slow the memorizing of noise.

Reproduces, on any dataset jaxgd can load:
- Zhang, Bengio, Hardt, Recht, Vinyals, "Understanding deep learning requires rethinking
  generalization", ICLR 2017, https://arxiv.org/abs/1611.03530 (Table 1 and Figure 2): with or
  without weight decay, data augmentation, dropout or batch norm, a network fits random labels,
  and without any of them it still generalizes on true labels;
- Arpit et al., "A Closer Look at Memorization in Deep Networks", ICML 2017,
  https://arxiv.org/abs/1706.05394 (Figures 8-10): under label noise the test accuracy peaks before
  the noise is fit; regularizers, dropout above all, slow the fitting of noisy labels more than the
  learning of the real ones; the critical sample ratio (Section 4) is higher on random labels.

Label conditions (``true``, ``corrupt_<p>``, ``random``) x regularizers (``none``, ``weight_decay``,
``augment``, ``dropout``, ``batch_norm``, ``all``) x seeds train as one population per architecture
(per-member labels, weight decay, augmentation and dropout rate); batch norm changes the network, so
its rows are a second population.

    python experiments/regularization.py --preset quick               # embedded digits, a CNN, a few minutes
    python experiments/regularization.py --preset quick --model mlp   # the same with an MLP (no batch_norm rows)
    python experiments/regularization.py --preset mnist --data-dir ~/data/mnist
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.errors import InvalidArgument

if __package__ in (None, ""):  # run as `python experiments/regularization.py`: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LABELS = ("true", "corrupt_0.4", "random")
REGULARIZERS = ("none", "weight_decay", "augment", "dropout", "batch_norm", "all")
#: What each regularizer switches on (``all``: every one the model has; the MLP has no batch norm).
PARTS = {"none": (), "weight_decay": ("weight_decay",), "augment": ("augment",), "dropout": ("dropout",),
         "batch_norm": ("batch_norm",), "all": ("weight_decay", "augment", "dropout", "batch_norm")}
MODELS = ("cnn", "mlp")


@dataclasses.dataclass(frozen=True)
class RegularizationConfig:
    """One run of the study.

    ``dataset`` is a name (``None`` with ``data_dir``: IDX files) or a :class:`jaxgd.data.Dataset`; ``model`` is
    ``"cnn"`` (``channels``, then ``hidden`` dense layers) or ``"mlp"`` (``hidden`` widths). ``labels`` are label
    conditions: ``true``, ``random`` and ``corrupt_<p>`` (each training label replaced with probability ``p`` by a
    uniformly drawn class, as Zhang et al. do; the test labels stay true). ``regularizers`` default to every one
    the model has (the MLP: no ``batch_norm``). Each regularizer's strength: ``weight_decay`` (decoupled: each
    step shrinks the weights by ``learning_rate * weight_decay``), ``dropout`` (the rate before every dense
    layer of the CNN, after every hidden layer of the MLP), ``augment`` (:mod:`jaxgd.data.augment`'s
    transformations, on every example of a regularized member's minibatches). The critical sample ratio
    (:func:`jaxgd.landscape.critical_sample_metric`) is measured at every evaluation on the first
    ``csr_examples`` examples of each of ``csr_splits``, within an L-infinity box of radius ``csr_radius``
    searched by ``csr_steps`` steps of projected gradient ascent. "Epochs to fit": the first evaluated epoch
    whose training accuracy reaches ``fit_threshold``.
    """

    dataset: object = "digits"
    data_dir: str | None = None
    n_train: int | None = None
    num_classes: int | None = None
    input_scale: str | None = None
    model: str = "cnn"
    hidden: tuple[int, ...] = (512,)
    channels: tuple[int, ...] = (16, 32)
    activation: str = "relu"
    init: str = "he"
    cost: str = "cross_entropy"
    optimizer: str = "adam"
    learning_rate: float = 0.003
    momentum: float | None = None
    schedule: str | None = "cosine"
    batch_size: int = 32
    epochs: int = 60
    eval_every: int = 2
    seeds: int = 2
    labels: tuple[str, ...] = LABELS
    regularizers: tuple[str, ...] | None = None
    weight_decay: float = 0.02
    dropout: float = 0.5
    augment: str = "crop:1"
    csr_radius: float = 0.02
    csr_steps: int = 10
    csr_examples: int = 200
    csr_splits: tuple[str, ...] = ("train", "test")
    fit_threshold: float = 0.99
    data_order: str = "per_seed"
    seed: int = 0
    max_members: int | None = None


PRESETS = {
    # The embedded digits (1,438 training images), a CNN (conv 16, conv 32, dense 512; 75,978 parameters) trained by
    # Adam at 0.003 with a cosine schedule for 60 epochs, 2 seeds: 36 networks in two programs. Measured: with dense
    # 256 and a constant rate (--hidden 256 --schedule constant) random labels under weight decay and batch norm
    # reached 99% training accuracy (epochs 39 and 52) and fell back to 93.5% and 92.9% by epoch 60; with dense 512
    # and a constant rate (--labels random --regularizers none,weight_decay,batch_norm) weight decay ended at 92.5%;
    # with the cosine schedule all three end at 100%, fit by epochs 33-36. The momentum SGD of
    # experiments/memorization.py takes 80 epochs to reach 99% on random labels (experiments/README.md).
    "quick": RegularizationConfig(),
    # MNIST (TFDS or --data-dir), the same CNN, 20 epochs, 2 seeds (not run here: no MNIST offline).
    "mnist": RegularizationConfig(dataset="mnist", batch_size=128, learning_rate=0.001, epochs=20, augment="crop:2",
                                  csr_radius=0.01, max_members=12),
}

#: What ``--model mlp`` changes in a preset: a 1x512 ReLU network (Zhang et al.'s MLP 1x512; 38,410 parameters on
#: the digits) trained by Adam at 0.006 for 100 epochs. The MLP memorizes more slowly than the CNN: measured on 500
#: digits, random labels reached 82% training accuracy in 40 epochs at 0.003 and 96% at 0.006; on all the digits
#: (this preset) 99% by epochs 62 and 67 without a regularizer and with weight decay.
MODEL_OVERRIDES = {"mlp": {"hidden": (512,), "learning_rate": 0.006, "epochs": 100}}


def label_fraction(name: str) -> float:
    """The probability that a training label is replaced under the label condition ``name``: ``true`` 0, ``random``
    1, ``corrupt_<p>`` p (strictly between 0 and 1)."""
    if name == "true":
        return 0.0
    if name == "random":
        return 1.0
    if isinstance(name, str) and name.startswith("corrupt_"):
        try:
            p = float(name[len("corrupt_"):])
        except ValueError:
            p = None
        if p is not None and 0 < p < 1:
            return p
    raise InvalidArgument(f"Unknown label condition {name!r}; choose true, random or corrupt_P with 0 < P < 1 "
                          "(e.g. corrupt_0.4).")


def regularizers_of(config: RegularizationConfig) -> tuple[str, ...]:
    """The regularizers the study trains: ``config.regularizers``, or every one the model has."""
    if config.regularizers is None:
        return tuple(r for r in REGULARIZERS if config.model != "mlp" or r != "batch_norm")
    return config.regularizers


def parts(regularizer: str, model: str) -> tuple[str, ...]:
    """What ``regularizer`` switches on for ``model`` (``all`` has no batch norm in the MLP)."""
    return tuple(p for p in PARTS[regularizer] if model != "mlp" or p != "batch_norm")


def validate(config: RegularizationConfig) -> RegularizationConfig:
    """Raises ``InvalidArgument`` naming the first bad field, before anything is built; returns ``config``."""
    from jaxgd.data.augment import parse
    from jaxgd.training.metrics import SPLITS

    if config.model not in MODELS:
        raise InvalidArgument(f"The regularization study builds its own networks (with and without batch norm and "
                              f"dropout): model must be one of {', '.join(MODELS)}, got {config.model!r}.")
    if not config.labels or len(set(config.labels)) != len(config.labels):
        raise InvalidArgument(f"Label conditions must be given once each, got {config.labels}.")
    for name in config.labels:
        label_fraction(name)
    regs = regularizers_of(config)
    if not regs or len(set(regs)) != len(regs):
        raise InvalidArgument(f"Regularizers must be given once each, got {regs}.")
    unknown = [r for r in regs if r not in REGULARIZERS]
    if unknown:
        raise InvalidArgument(f"Unknown regularizer {unknown[0]!r}; choose from {', '.join(REGULARIZERS)}.")
    if config.model == "mlp" and "batch_norm" in regs:
        raise InvalidArgument("The MLP has no batch norm: leave batch_norm out of the regularizers with --model mlp "
                              "(its rows are the CNN's).")
    if not (np.isfinite(config.weight_decay) and config.weight_decay > 0):
        raise InvalidArgument(f"weight_decay must be a positive number, got {config.weight_decay!r}.")
    if not 0 < config.dropout < 1:
        raise InvalidArgument(f"dropout must be a rate in (0, 1), got {config.dropout!r}.")
    if not parse(config.augment):
        raise InvalidArgument(f"augment must name at least one transformation, got {config.augment!r}.")
    if not (np.isfinite(config.csr_radius) and config.csr_radius > 0):
        raise InvalidArgument(f"csr_radius must be a positive number, got {config.csr_radius!r}.")
    if not config.csr_splits or any(s not in SPLITS for s in config.csr_splits):
        raise InvalidArgument(f"csr_splits must be some of {', '.join(SPLITS)}, got {config.csr_splits!r}.")
    if not 0 < config.fit_threshold <= 1:
        raise InvalidArgument(f"fit_threshold must lie in (0, 1], got {config.fit_threshold!r}.")
    for name in ("seeds", "epochs", "eval_every", "csr_steps", "csr_examples"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{name} must be a positive integer, got {value!r}.")
    return config


@dataclasses.dataclass(frozen=True)
class Program:
    """One population of the study: the regularizers sharing an architecture, with the parts they use."""

    name: str
    batch_norm: bool
    regularizers: tuple[str, ...]
    uses: frozenset  # the parts any member switches on: sets which per-member hyperparameters exist

    def members(self, config: RegularizationConfig) -> int:
        return len(config.labels) * len(self.regularizers) * config.seeds


def programs(config: RegularizationConfig) -> list[Program]:
    """The populations: every regularizer without batch norm in one, those with it (``batch_norm``, and ``all`` for
    the CNN) in another."""
    out = []
    for name, bn in (("plain", False), ("batch_norm", True)):
        regs = tuple(r for r in regularizers_of(config) if ("batch_norm" in parts(r, config.model)) == bn)
        if regs:
            uses = frozenset(p for r in regs for p in parts(r, config.model)) - {"batch_norm"}
            out.append(Program(name, bn, regs, uses))
    return out


def build_model(config: RegularizationConfig, data, program: Program):
    """The program's network, built as the command line builds it, with batch norm if the program has it and
    dropout layers at rate 0 (each member sets its own rate) if any of its members drops out."""
    from jaxgd.cli.presets import build_model as build

    return build(config.model, data, activation=config.activation, cost=config.cost, hidden=config.hidden,
                 channels=config.channels, init=config.init, batch_norm=program.batch_norm,
                 dropout=0.0 if "dropout" in program.uses else None)


def training_config(config: RegularizationConfig, program: Program):
    import jaxgd

    return jaxgd.TrainConfig(cost=config.cost, optimizer=config.optimizer, learning_rate=config.learning_rate,
                             momentum=config.momentum if config.optimizer in ("momentum", "nesterov") else None,
                             schedule=config.schedule, batch_size=config.batch_size, epochs=config.epochs,
                             eval_every=config.eval_every, init=config.init, data_order=config.data_order,
                             augment=config.augment if "augment" in program.uses else None)


def member_hyperparams(config: RegularizationConfig, program: Program) -> dict:
    """``fit``'s per-member ``hyperparams`` of a program, members laid out labels x regularizers x seeds."""
    on = {p: np.repeat([p in parts(r, config.model) for r in program.regularizers], config.seeds)
          for p in program.uses}
    on = {p: np.tile(v, len(config.labels)) for p, v in on.items()}
    values = {"weight_decay": config.weight_decay, "dropout": config.dropout, "augment": 1.0}
    return {p: np.where(v, values[p], 0.0).astype(np.float32) for p, v in sorted(on.items())}


def label_arrays(key, data, config: RegularizationConfig) -> np.ndarray:
    """The training labels of every label condition, ``(conditions, n_train)``. One key for every corruption level
    (common random numbers, as in experiments/memorization.py): the labels replaced at p are among those replaced
    at any larger p."""
    from jaxgd.data import randomize

    return np.stack([randomize.corrupt_labels(key, data.y_train, label_fraction(name), data.num_classes)
                     if name != "true" else np.asarray(data.y_train, np.int32) for name in config.labels])


def check(config: RegularizationConfig, data=None) -> None:
    """Refuses, from the configuration alone, a study whose populations cannot fit in memory (before any key,
    label or network is made)."""
    from jaxgd.training.memory import check_population

    from experiments.common import study_data

    validate(config)
    data = study_data(config) if data is None else data
    for program in programs(config):
        train_config = training_config(config, program).validate(data.n_train)
        check_population(build_model(config, data, program), train_config, data, program.members(config),
                         max_members=config.max_members, per_member=tuple(sorted({"weight_decay"} & program.uses)),
                         extra_bytes=len(config.labels) * 4 * data.n_train)


def final_predictions(model, params, model_state, x, chunk: int = 4096) -> np.ndarray:
    """Each member's predicted class for each example of ``x``, ``(members, n)``: the members one after another
    (``lax.map``), in evaluation mode (running statistics, no dropout), ``chunk`` examples at a time."""
    import jax
    import jax.numpy as jnp

    from jaxgd.models import call

    @jax.jit
    def predict(params, state, xb):
        one = lambda p, s: jnp.argmax(call(model, p, s, xb)[0], axis=-1)  # noqa: E731
        if state is None:
            return jax.lax.map(lambda p: one(p, None), params)
        return jax.lax.map(lambda ps: one(*ps), (params, state))

    return np.concatenate([np.asarray(predict(params, model_state, jnp.asarray(x[i:i + chunk])))
                           for i in range(0, x.shape[0], chunk)], axis=1)


def first_epoch_at(curve: np.ndarray, epochs: np.ndarray, threshold: float) -> int | None:
    """The first evaluated epoch at which ``curve`` reaches ``threshold``, or None."""
    hit = np.flatnonzero(curve >= threshold - 1e-9)
    return int(epochs[hit[0]]) if hit.size else None


def _mean(values, ok) -> float | None:
    values = np.asarray(values, np.float64)[ok]
    return float(values.mean()) if values.size and np.all(np.isfinite(values)) else None


def _mean_epoch(epochs: list) -> float | None:
    """The mean of the seeds' epochs, None when there is none or a seed never got there."""
    return float(np.mean(epochs)) if epochs and all(e is not None for e in epochs) else None


def run(config: RegularizationConfig, *, progress: bool = False, checkpoint=None, checkpoint_every: int = 10) -> dict:
    """Trains every label condition x regularizer x seed and returns the results (what ``results.json`` holds).

    With ``checkpoint`` (a directory), each program checkpoints in its own folder there and resumes from it.
    """
    import jax

    import jaxgd
    from experiments.common import record, study_data
    from jaxgd.io.environment import environment
    from jaxgd.landscape import critical_sample_metric
    from jaxgd.models import describe, num_params
    from jaxgd.training.population import Conditions

    start = time.perf_counter()
    validate(config)
    data = study_data(config)
    check(config, data)
    k_labels, k_train = jax.random.split(jax.random.key(config.seed))
    ys = label_arrays(k_labels, data, config)
    wrong = ys != np.asarray(data.y_train)[None]  # the labels that differ from the true ones
    seed_keys = jax.random.split(k_train, config.seeds)  # every condition and regularizer starts from the same seeds
    csr = critical_sample_metric(config.csr_radius, steps=config.csr_steps, examples=config.csr_examples,
                                 splits=config.csr_splits)
    x_train = np.asarray(data.x_train).reshape((data.n_train, *data.input_shape))
    rows, curves, runs = [], [], []
    for program in programs(config):
        net = build_model(config, data, program)
        train_config = training_config(config, program)
        regs = len(program.regularizers)
        label_index = np.repeat(np.arange(len(config.labels)), regs * config.seeds)
        keys = seed_keys[np.tile(np.arange(config.seeds), len(config.labels) * regs)]
        result = jaxgd.fit(keys, net, data, train_config, hyperparams=member_hyperparams(config, program) or None,
                           conditions=Conditions({"y_train": ys}, label_index), metrics={"csr": csr},
                           max_members=config.max_members, progress=progress, checkpoint_every=checkpoint_every,
                           checkpoint=None if checkpoint is None else Path(checkpoint) / program.name)
        predicted = final_predictions(net, result.params, result.model_state, x_train)
        correct = predicted == ys[label_index]  # against the labels each member was trained on
        h, epochs = result.history, np.asarray(result.history["epoch"])
        runs.append({"program": program.name, "regularizers": list(program.regularizers),
                     "model": describe(net), "num_params": num_params(net), "members": int(keys.shape[0]),
                     "train_config": train_config.to_dict(), "epochs_run": result.epochs_run,
                     "fit_seconds": result.wall_seconds, "first_epoch_seconds": result.first_epoch_seconds})
        for c, labels in enumerate(config.labels):
            for r, regularizer in enumerate(program.regularizers):
                members = c * regs * config.seeds + r * config.seeds + np.arange(config.seeds)
                ok = ~np.asarray(result.diverged)[members]
                test = h["test_accuracy"][members]
                best = np.argmax(test, axis=1)
                fit = [first_epoch_at(h["train_accuracy"][i], epochs, config.fit_threshold) for i in members]
                row = {
                    "labels": labels, "regularizer": regularizer, "parts": list(parts(regularizer, config.model)),
                    "program": program.name, "seeds": int(ok.sum()), "diverged": int((~ok).sum()),
                    "train_accuracy": _mean(result.final("train_accuracy")[members], ok),
                    "test_accuracy": _mean(result.final("test_accuracy")[members], ok),
                    "best_test_accuracy": _mean(test[np.arange(len(members)), best], ok),
                    "best_test_epoch": _mean(epochs[best], ok),
                    "epochs_to_fit": _mean_epoch([e for e, k in zip(fit, ok) if k]),
                    "train_accuracy_per_seed": result.final("train_accuracy")[members],
                    "test_accuracy_per_seed": result.final("test_accuracy")[members],
                    "best_test_accuracy_per_seed": test[np.arange(len(members)), best],
                    "best_test_epoch_per_seed": epochs[best],
                    "epochs_to_fit_per_seed": fit,
                    "train_accuracy_corrupted": None, "train_accuracy_clean": None,
                }
                if 0 < label_fraction(labels) < 1:  # the examples whose label was changed, and the others
                    mask = wrong[c]
                    row["train_accuracy_corrupted"] = _mean(correct[members][:, mask].mean(axis=1), ok)
                    row["train_accuracy_clean"] = _mean(correct[members][:, ~mask].mean(axis=1), ok)
                for split in config.csr_splits:
                    row[f"{split}_csr"] = _mean(result.final(f"{split}_csr")[members], ok)
                rows.append(row)
                curve = {"labels": labels, "regularizer": regularizer, "epoch": np.concatenate([[0], epochs])}
                for name in ("train_accuracy", "test_accuracy", *(f"{s}_csr" for s in config.csr_splits)):
                    values = np.concatenate([result.initial[name][members][:, None], h[name][members]], axis=1)
                    curve[name] = np.nanmean(np.where(ok[:, None], values, np.nan), axis=0) if ok.any() else None
                curves.append(curve)
    order = {(lab, reg): i for i, (lab, reg) in
             enumerate((lab, reg) for lab in config.labels for reg in regularizers_of(config))}
    rows.sort(key=lambda row: order[row["labels"], row["regularizer"]])
    curves.sort(key=lambda curve: order[curve["labels"], curve["regularizer"]])
    return {
        "study": "regularization",
        "references": ["arXiv:1611.03530", "arXiv:1706.05394"],
        "config": record(config),
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": int(data.x_test.shape[0]),
                    "input_dim": data.input_dim, "input_shape": list(data.input_shape),
                    "num_classes": data.num_classes},
        "labels": [{"labels": name, "replaced_with_probability": label_fraction(name),
                    "fraction_wrong": float(wrong[c].mean())} for c, name in enumerate(config.labels)],
        "programs": runs,
        "table": rows,
        "curves": curves,
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
    }


def _row(results: dict, labels: str, regularizer: str) -> dict | None:
    return next((r for r in results["table"] if r["labels"] == labels and r["regularizer"] == regularizer), None)


def figures(results: dict, out: Path) -> None:
    """(a) Zhang et al.'s Table 1 as a chart: final train and test accuracy per regularizer, true against random
    labels; (b) Arpit et al.'s Figure 8 per regularizer: train and test accuracy over training under label noise;
    (c) Arpit et al.'s Figure 10: the random-label training accuracy each regularizer leaves against the best test
    accuracy it reaches on true labels; (d) Arpit et al.'s Figure 9: the critical sample ratio over training, true
    against random labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxgd.analysis.plots import finish

    config, table, curves = results["config"], results["table"], results["curves"]
    regs = list(dict.fromkeys(r["regularizer"] for r in table))
    color = {reg: f"C{i}" for i, reg in enumerate(regs)}
    fig, axes = plt.subplots(2, 2, figsize=(15, 10), layout="constrained")
    ax = axes[0, 0]
    x = np.arange(len(regs))
    bars = [("true", "train_accuracy", "true labels, train", "C0", None),
            ("true", "test_accuracy", "true labels, test", "C0", "//"),
            ("random", "train_accuracy", "random labels, train", "C3", None),
            ("random", "test_accuracy", "random labels, test", "C3", "//")]
    for j, (labels, metric, label, c, hatch) in enumerate(bars):
        values = [(_row(results, labels, reg) or {}).get(metric) for reg in regs]
        values = [np.nan if v is None else v for v in values]
        ax.bar(x + (j - 1.5) * 0.2, values, 0.2, color=c, alpha=0.45 if hatch else 0.85, hatch=hatch, label=label,
               edgecolor="white")
    ax.set_xticks(x, regs)
    ax.set(ylabel="accuracy at the end (mean over seeds)", ylim=(0, 1.05),
           title="(a) Zhang et al. Table 1: train and test accuracy, true and random labels")
    ax.legend(fontsize=8, loc="upper center", ncol=4, bbox_to_anchor=(0.5, -0.06))

    noisy = next((name for name in config["labels"] if name.startswith("corrupt_")), None)
    ax = axes[0, 1]
    for curve in curves:
        if curve["labels"] == noisy and curve["test_accuracy"] is not None:
            ax.plot(curve["epoch"], curve["test_accuracy"], "-", color=color[curve["regularizer"]],
                    label=f"{curve['regularizer']}")
            ax.plot(curve["epoch"], curve["train_accuracy"], ":", color=color[curve["regularizer"]])
    ax.set(xlabel="epoch", ylabel="accuracy (mean over seeds)", ylim=(0, 1.02),
           title=f"(b) Arpit et al. Fig. 8 under {noisy or 'no'} label noise: test (solid), train (dotted)")
    if ax.lines:
        ax.legend(fontsize=8)

    ax = axes[1, 0]
    points = []
    for reg in regs:
        rand, true = _row(results, "random", reg), _row(results, "true", reg)
        if rand and true and rand["train_accuracy"] is not None and true["best_test_accuracy"] is not None:
            points.append((reg, rand["train_accuracy"], true["best_test_accuracy"]))
            ax.plot(points[-1][1], points[-1][2], "o", ms=9, color=color[reg])
    span = (max(p[2] for p in points) - min(p[2] for p in points) if points else 0.0) or 1.0
    for i, (reg, x_, y_) in enumerate(points):  # labels of nearby points stacked, not overprinted
        below = sum(abs(x_ - x2) < 0.08 and abs(y_ - y2) < 0.06 * span for _, x2, y2 in points[:i])
        right = x_ > 0.8
        ax.annotate(reg, (x_, y_), xytext=(-8 if right else 6, 4 - 11 * below), textcoords="offset points",
                    fontsize=8, ha="right" if right else "left")
    ax.set(xlabel="training accuracy on random labels at the end", ylabel="best test accuracy on true labels",
           xlim=(0, 1.05), title="(c) Arpit et al. Fig. 10: what each regularizer leaves of memorization")

    ax = axes[1, 1]
    split = "test" if "test" in config["csr_splits"] else config["csr_splits"][0]
    named = set()
    for curve in curves:
        if curve["labels"] in ("true", "random") and curve.get(f"{split}_csr") is not None:
            ax.plot(curve["epoch"], curve[f"{split}_csr"], "-" if curve["labels"] == "true" else "--",
                    color=color[curve["regularizer"]],
                    label=None if curve["regularizer"] in named else curve["regularizer"])
            named.add(curve["regularizer"])
    ax.plot([], [], "k-", label="true labels")
    ax.plot([], [], "k--", label="random labels")
    ax.set(xlabel="epoch", ylabel=f"critical sample ratio ({split} examples)", ylim=(-0.02, 1.02),
           title=f"(d) Arpit et al. Fig. 9: critical samples within radius {config['csr_radius']:g}")
    ax.legend(fontsize=8, ncol=2)
    d = results["dataset"]
    model = results["programs"][0]["model"]
    name = ("CNN channels " + ",".join(map(str, model["channels"]))) if "channels" in model else \
        "MLP " + "-".join(map(str, model.get("sizes", [])))
    finish(fig, axes, f"Regularization on {d['name']} ({d['n_train']} examples), {name}, {config['optimizer']} "
                      f"lr {config['learning_rate']:g}, {config['epochs']} epochs, {config['seeds']} seeds",
           out / "regularization.png")


def format_table(results: dict) -> str:
    fmt = lambda v, f=".4f": "-" if v is None else format(v, f)  # noqa: E731
    c = results["config"]
    splits = c["csr_splits"]
    lines = [f"{c['epochs']} epochs on {results['dataset']['name']} ({results['dataset']['n_train']} examples), "
             f"{c['model']}, {c['optimizer']} lr {c['learning_rate']:g}, batch {c['batch_size']}; weight decay "
             f"{c['weight_decay']:g}, augment {c['augment']}, dropout {c['dropout']:g}; critical samples within "
             f"{c['csr_radius']:g}",
             "| labels | regularizer | seeds | train acc | test acc | best test acc | at epoch | epochs to fit "
             f"({c['fit_threshold']:g}) | train acc corrupted | train acc clean | "
             + " | ".join(f"CSR {s}" for s in splits) + " |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(splits)]
    for r in results["table"]:
        lines.append(f"| {r['labels']} | {r['regularizer']} | {r['seeds']} | {fmt(r['train_accuracy'])} | "
                     f"{fmt(r['test_accuracy'])} | {fmt(r['best_test_accuracy'])} | {fmt(r['best_test_epoch'], '.0f')} | "
                     f"{'not reached' if r['epochs_to_fit'] is None else format(r['epochs_to_fit'], '.0f')} | "
                     f"{fmt(r['train_accuracy_corrupted'])} | {fmt(r['train_accuracy_clean'])} | "
                     + " | ".join(fmt(r[f"{s}_csr"], ".3f") for s in splits) + " |")
    for lab in results["labels"]:
        if 0 < lab["replaced_with_probability"] < 1:
            lines.append(f"{lab['labels']}: {lab['fraction_wrong']:.1%} of the training labels differ from the true "
                         "ones (a replaced label may draw its own class)")
    return "\n".join(lines)


def parse_args(argv=None):
    from experiments import common
    from jaxgd.cli.options import augmentation, int_list, positive

    p = common.parser("regularization.py", __doc__.splitlines()[0], PRESETS, "runs/regularization-{preset}")
    names = lambda t: tuple(v.strip() for v in t.split(",") if v.strip())  # noqa: E731
    p.add_argument("--hidden", type=int_list, help="MLP: hidden widths; CNN: dense layers after the convolutions")
    p.add_argument("--labels", type=names, help="label conditions: true, random, corrupt_P (e.g. true,corrupt_0.4,random)")
    p.add_argument("--regularizers", type=names,
                   help=f"some of {', '.join(REGULARIZERS)} (default: every one the model has)")
    p.add_argument("--weight-decay", type=positive(float), dest="weight_decay", help="(default: the preset's)")
    p.add_argument("--dropout", type=float, help="dropout rate in (0, 1) (default: the preset's)")
    p.add_argument("--augment", type=augmentation, help="e.g. crop:1 (default: the preset's)")
    p.add_argument("--schedule", choices=("constant", "cosine", "linear", "exponential"),
                   help="the learning rate's factor over training (default: the preset's)")
    p.add_argument("--eval-every", type=positive(int), dest="eval_every", help="epochs between evaluations")
    p.add_argument("--csr-radius", type=positive(float), dest="csr_radius",
                   help="the critical samples' L-infinity radius (default: the preset's)")
    p.add_argument("--csr-steps", type=positive(int), dest="csr_steps")
    p.add_argument("--csr-examples", type=positive(int), dest="csr_examples")
    return p.parse_args(argv)


def make_config(args) -> RegularizationConfig:
    from experiments.common import config_from_args

    return validate(config_from_args(args, PRESETS, ("hidden", "labels", "regularizers", "weight_decay", "dropout",
                                                     "augment", "schedule", "eval_every", "csr_radius", "csr_steps",
                                                     "csr_examples"), MODEL_OVERRIDES))


def main(argv=None) -> int:
    from experiments import common

    return common.main("regularization.py", argv, parse_args, make_config, run, figures, format_table,
                       "runs/regularization-{preset}", check=check)


if __name__ == "__main__":
    sys.exit(main())
