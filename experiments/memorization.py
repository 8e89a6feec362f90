"""Memorization: networks fit random labels perfectly, just more slowly; real data is learned first.

Reproduces, on any dataset jaxgd can load:
- Zhang, Bengio, Hardt, Recht, Vinyals, "Understanding deep learning requires rethinking
  generalization", ICLR 2017, https://arxiv.org/abs/1611.03530 (Figure 1: training cost under
  each randomization, time to fit and test error against label corruption);
- Arpit et al., "A Closer Look at Memorization in Deep Networks", ICML 2017,
  https://arxiv.org/abs/1706.05394 (real data is learned fast first, noise slowly and steadily).

Every condition (true labels, corrupted labels, random labels, shuffled pixels, random pixels,
Gaussian inputs) x every seed trains as one population through ``jaxgd.fit``.

    python experiments/memorization.py --preset quick              # embedded digits, a few minutes
    python experiments/memorization.py --preset quick --model cnn  # the same with a CNN
    python experiments/memorization.py --preset mnist --data-dir ~/data/mnist
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.errors import InvalidArgument

if __package__ in (None, ""):  # run as `python experiments/memorization.py`: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONDITIONS = ("true_labels", "corrupt_labels", "random_labels", "shuffled_pixels", "random_pixels", "gaussian")


@dataclasses.dataclass(frozen=True)
class MemorizationConfig:
    """One run of the study. ``corruptions`` are the label-corruption fractions strictly between 0 and 1.

    ``dataset`` is a name (``None`` with ``data_dir``: IDX files) or a :class:`jaxgd.data.Dataset`;
    ``model`` is ``"mlp"`` (``hidden`` widths), ``"cnn"`` (``channels``, and ``hidden`` dense layers
    after the convolutions), or any model object of the engine (or a function ``data -> model``).
    """

    dataset: object = "digits"
    data_dir: str | None = None
    n_train: int | None = None
    num_classes: int | None = None
    input_scale: str | None = None
    model: object = "mlp"
    hidden: tuple[int, ...] = (512,)
    channels: tuple[int, ...] = (16, 32)
    activation: str = "relu"
    cost: str = "cross_entropy"
    optimizer: str = "momentum"
    learning_rate: float = 0.05
    momentum: float | None = None
    batch_size: int = 32
    epochs: int = 300
    init: str = "he"
    seeds: int = 4
    corruptions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    input_randomizations: tuple[str, ...] = ("shuffled_pixels", "random_pixels", "gaussian")
    fit_threshold: float = 1.0
    # "per_seed": each seed shuffles on its own, so that agreement between seeds about which examples
    # are hard is not an artefact of seeing the same minibatches at the same time (Arpit et al. 2017).
    data_order: str = "per_seed"
    seed: int = 0
    max_members: int | None = None


PRESETS = {
    # Embedded digits: 1,438 training images, 1x96 ReLU, SGD with momentum. 96 units are still
    # over-parameterised here (7,306 parameters for 1,438 examples). With the papers' 512 units, so
    # small a set is memorised about equally fast at every corruption above 0.4 (`--hidden 512`);
    # with 64 units random labels are not fit within 400 epochs (`--hidden 64`).
    "quick": MemorizationConfig(hidden=(96,), seeds=6, epochs=500),
    # The papers' scale: MNIST (TFDS or --data-dir), 1x512 ReLU, 5 seeds.
    "mnist": MemorizationConfig(dataset="mnist", epochs=100, batch_size=128, learning_rate=0.01, seeds=5,
                                max_members=15),
    # The lesson's 16-16 sigmoid network: too small to memorize random labels.
    "lesson": MemorizationConfig(hidden=(16, 16), activation="sigmoid", init="normal", epochs=100),
}


#: What ``--model cnn`` changes in a preset: a CNN (conv 16, conv 32, each with 2x2 max pooling) with a dense
#: layer of 256 to hold a label per example, SGD with momentum at lr 0.01 (the MLP: 0.05). Measured on the
#: digits (3 seeds, 400 epochs): epochs to fit 11.7, 70.3, 71.3, 76.7, 82.3, 88.7 at corruption 0, 0.2, ..., 1,
#: every condition at 100% training accuracy. With Adam (lr 0.003, dense 128) time to fit stopped growing above
#: 0.2 corruption (10.2, 54.8, 59.3, 56.8, 54.5, 53.5); with momentum at lr 0.05 random labels reached only
#: 94-96% training accuracy in 400 epochs.
MODEL_OVERRIDES = {"cnn": {"optimizer": "momentum", "learning_rate": 0.01, "hidden": (256,), "channels": (16, 32),
                           "epochs": 300}}


def build_conditions(key, data, config: MemorizationConfig):
    """Names, corruption fractions and per-condition arrays (leading condition axis)."""
    import jax

    from jaxgd.data import randomize

    names, fractions, xs_train, xs_test, ys_train = [], [], [], [], []
    k_labels, k_inputs = jax.random.split(key)

    def add(name, p, x_train=data.x_train, x_test=data.x_test, y_train=data.y_train):
        names.append(name)
        fractions.append(p)
        xs_train.append(x_train)
        xs_test.append(x_test)
        ys_train.append(y_train)

    add("true_labels", 0.0)
    # One key for every corruption level (common random numbers): the labels corrupted at p
    # are a subset of those corrupted at any larger p, and each level's marginal distribution
    # is still Zhang et al.'s. Differences between levels then reflect p, not the draw.
    for p in sorted(config.corruptions):
        add("corrupt_labels", float(p), y_train=randomize.corrupt_labels(k_labels, data.y_train, p, data.num_classes))
    add("random_labels", 1.0, y_train=randomize.random_labels(k_labels, data.y_train, data.num_classes))
    k_shuffle, k_random_train, k_random_test, k_gauss = jax.random.split(k_inputs, 4)
    for name in config.input_randomizations:
        if name == "shuffled_pixels":
            add(name, None, *randomize.shuffled_pixels(k_shuffle, data.x_train, data.x_test))
        elif name == "random_pixels":
            add(name, None, randomize.random_pixels(k_random_train, data.x_train),
                randomize.random_pixels(k_random_test, data.x_test))
        elif name == "gaussian":
            add(name, None, *randomize.gaussian_inputs(k_gauss, data.x_train, data.x_train.shape, data.x_test.shape))
        else:
            raise InvalidArgument(f"Unknown input randomization {name!r}; choose from shuffled_pixels, random_pixels, gaussian.")
    arrays = {"x_train": np.stack(xs_train), "x_test": np.stack(xs_test), "y_train": np.stack(ys_train)}
    return names, fractions, arrays


def first_epoch_at(history_acc: np.ndarray, epochs: np.ndarray, threshold: float):
    """Per member: the first evaluated epoch whose training accuracy reaches ``threshold``, or None."""
    out = []
    for row in np.atleast_2d(history_acc):
        hit = np.flatnonzero(row >= threshold - 1e-9)
        out.append(int(epochs[hit[0]]) if hit.size else None)
    return out


def gap_closed(initial: np.ndarray, curve: np.ndarray, epochs: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Per member: the share of the initial-to-final training-cost gap closed by ``fraction`` of the epochs."""
    at = max(1, int(round(fraction * epochs[-1])))
    i = int(np.searchsorted(epochs, at))
    gap = initial - curve[:, -1]
    return (initial - curve[:, i]) / np.where(gap == 0, np.nan, gap)


def agreement(correct: np.ndarray) -> float | None:
    """How much seeds agree about which examples are correct, beyond what their accuracy explains: the
    intraclass correlation ICC(1) of per-example correctness ``(seeds, n)`` (1: every seed gets the same
    examples right; 0: which ones is a coin flip per seed; None for fewer than two seeds or no variation)."""
    k, n = correct.shape
    p = correct.mean(0)
    within = np.mean(k * p * (1 - p) / (k - 1)) if k > 1 else np.nan
    between = k * p.var(ddof=1) if n > 1 else np.nan
    denominator = between + (k - 1) * within
    return None if k < 2 or not denominator > 0 else float((between - within) / denominator)


def example_statistics(learned_at: np.ndarray, forgets: np.ndarray, first_correct: np.ndarray,
                       epochs_run: int) -> dict:
    """Per-example learning dynamics of one condition's seeds (``(seeds, n)`` arrays, ``learned_at`` -1 for
    examples misclassified at the end).

    ``example_consistency``: how much the seeds agree about which examples are already learned after the first
    epoch (the :func:`agreement` of their per-example correctness then) — Arpit et al. 2017's Figure 1, where
    on real data many examples are learned by every run at once and on noise which ones are right is chance.
    ``learned_at_spearman``: the mean Spearman correlation, over pairs of seeds, of the epochs at which the
    examples were learned for good (not learned counts as after the last epoch), over the whole run.
    ``learned_early``: the fraction of examples learned within the first 10% of the epochs. Forgetting
    events are Toneva et al.'s (2019, arXiv 1812.05159).
    """
    from scipy.stats import spearmanr

    t = np.where(learned_at < 0, epochs_run + 1, learned_at).astype(np.float64)
    pairs = []
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            if np.ptp(t[i]) > 0 and np.ptp(t[j]) > 0:
                pairs.append(spearmanr(t[i], t[j])[0])
    learned = learned_at[learned_at >= 0]
    return {
        "example_consistency": agreement(first_correct.astype(np.float64)),
        "first_epoch_accuracy": float(first_correct.mean()),
        "learned_at_spearman": float(np.mean(pairs)) if pairs else None,
        "learned_early": float(np.mean((learned_at >= 0) & (learned_at <= 0.1 * epochs_run))),
        "never_learned": float(np.mean(learned_at < 0)),
        "learned_at_quartiles": [float(q) for q in np.percentile(learned, [25, 50, 75])] if learned.size else None,
        "forgetting_events_mean": float(forgets.mean()),
        "unforgettable": float(np.mean(forgets == 0)),
    }


def training_config(config: MemorizationConfig, model):
    import jaxgd

    return jaxgd.TrainConfig(cost=config.cost, optimizer=config.optimizer, learning_rate=config.learning_rate,
                             momentum=config.momentum if config.optimizer in ("momentum", "nesterov") else None,
                             batch_size=config.batch_size, epochs=config.epochs, target_accuracy=config.fit_threshold,
                             data_order=config.data_order, init=None if not isinstance(config.model, str) else config.init)


def check(config: MemorizationConfig, data=None, model=None, train_config=None) -> None:
    """Refuses, from the configuration alone, a study whose population cannot fit in memory (before any key,
    condition or network is made)."""
    from jaxgd.training.memory import check_population

    from experiments.common import study_data, study_model

    data = study_data(config) if data is None else data
    model = study_model(config, data, config.hidden) if model is None else model
    train_config = (training_config(config, model) if train_config is None else train_config).validate(data.n_train)
    conditions = 2 + len(config.corruptions) + len(config.input_randomizations)
    check_population(model, train_config, data, conditions * config.seeds, max_members=config.max_members,
                     extra_bytes=len(config.input_randomizations) * 4 * (data.x_train.size + data.x_test.size))


def run(config: MemorizationConfig, *, progress: bool = False, checkpoint=None, checkpoint_every: int = 10) -> dict:
    """Trains every condition x seed and returns the results (also what ``results.json`` holds).

    With ``checkpoint`` (a directory), training checkpoints there and resumes from what it finds.
    """
    import jax

    import jaxgd
    from experiments.common import record, study_data, study_model
    from jaxgd.models import describe, num_params
    from jaxgd.analysis.statistics import member_stats
    from jaxgd.io.environment import environment
    from jaxgd.training.population import Conditions, grid

    start = time.perf_counter()
    data = study_data(config)
    key = jax.random.key(config.seed)
    k_data, k_train = jax.random.split(key)
    net = study_model(config, data, config.hidden)
    train_config = training_config(config, net)
    check(config, data, net, train_config)
    names, fractions, arrays = build_conditions(k_data, data, config)
    keys, index = grid(k_train, len(names), config.seeds)
    result = jaxgd.fit(keys, net, data, train_config, conditions=Conditions(arrays, index),
                       max_members=config.max_members, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                       progress=progress, record_examples=True)

    h, epochs = result.history, result.history["epoch"]
    curves, summary, examples = [], [], []
    for c, (name, p) in enumerate(zip(names, fractions)):
        members = np.flatnonzero(index == c)
        ok = ~result.diverged[members]
        cost = h["train_cost"][members]
        fit100 = first_epoch_at(h["train_accuracy"][members], epochs, config.fit_threshold)
        fit99 = first_epoch_at(h["train_accuracy"][members], epochs, 0.99)
        steps_per_epoch = data.n_train // config.batch_size
        mean_or_none = lambda v: float(np.mean(v)) if v and all(e is not None for e in v) else None
        closed = gap_closed(result.initial["train_cost"][members], cost, epochs)
        learned_at = result.examples["learned_at"][members]
        curves.append({
            "condition": name, "corruption": p, "epoch": epochs,
            "initial_train_cost": result.initial["train_cost"][members],
            **{f"{m}_{stat}": getattr(np, "nan" + stat)(h[m][members], axis=0)
               for m in ("train_cost", "train_accuracy", "test_accuracy") for stat in ("mean", "std")},
        })
        t = np.where(learned_at < 0, np.inf, learned_at)
        examples.append({"condition": name, "corruption": p,
                         # the fraction of examples learned (and kept) by each epoch, averaged over seeds
                         "learned_by_epoch": [float(np.mean(t <= e)) for e in range(result.epochs_run + 1)]})
        summary.append({
            "condition": name,
            "corruption": None if name in config.input_randomizations else p,
            "seeds": int(ok.sum()),
            "diverged": int((~ok).sum()),
            "epochs_to_fit": mean_or_none(fit100),
            "epochs_to_fit_per_seed": fit100,
            "steps_to_fit": None if mean_or_none(fit100) is None else mean_or_none(fit100) * steps_per_epoch,
            "epochs_to_99": mean_or_none(fit99),
            "final_train_accuracy": member_stats(result.final("train_accuracy")[members], ~ok)["mean"],
            "final_test_accuracy": member_stats(result.final("test_accuracy")[members], ~ok)["mean"],
            "final_train_cost": member_stats(result.final("train_cost")[members], ~ok)["mean"],
            "gap_closed_at_10pct": float(np.nanmean(closed[ok])) if ok.any() else None,
            **example_statistics(learned_at[ok], result.examples["forgets"][members][ok],
                                 result.examples["first_correct"][members][ok], result.epochs_run),
        })
    return {
        "study": "memorization",
        "references": ["arXiv:1611.03530", "arXiv:1706.05394", "arXiv:1812.05159"],
        "config": record(config),
        "train_config": train_config.to_dict(),
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": int(data.x_test.shape[0]),
                    "input_dim": data.input_dim, "input_shape": list(data.input_shape),
                    "num_classes": data.num_classes},
        "network": {**describe(result.model), "num_params": num_params(result.model)},
        "epochs_run": result.epochs_run,
        "summary": summary,
        "curves": curves,
        "examples": examples,
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
    }


def network_name(network: dict) -> str:
    """A short name of the study's network from its record (``results["network"]``)."""
    if "sizes" in network:
        return "MLP " + "-".join(map(str, network["sizes"]))
    if "channels" in network:
        return f"CNN channels {network['channels']}" + (f", dense {network['hidden']}" if network.get("hidden") else "")
    return str(network.get("model"))


def figures(results: dict, out: Path) -> None:
    """Zhang et al. Figure 1 (a)-(c); (d) normalised learning curves and (e)-(f) per-example dynamics after
    Arpit et al. A condition that never fits is drawn as "not reached" at the right edge, never dropped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxgd.analysis.plots import finish

    curves, summary, examples = results["curves"], results["summary"], results.get("examples", [])
    epochs_run = max(1, results["epochs_run"])
    label = lambda c: c["condition"] if c["condition"] != "corrupt_labels" else f"corrupt p={c['corruption']:.1f}"
    fig, axes = plt.subplots(2, 3, figsize=(18, 9), layout="constrained")
    ax = axes[0, 0]
    for c in curves:
        e = np.concatenate([[0], c["epoch"]])
        y = np.concatenate([[np.mean(c["initial_train_cost"])], c["train_cost_mean"]])
        ax.plot(e, np.maximum(y, 1e-8), label=label(c))
    ax.set(xlabel="epoch", ylabel="training cost", yscale="log", title="(a) training cost")
    ax.legend(fontsize=7)

    ax = axes[0, 1]  # time to fit of every condition; the unfitted ones at the right edge
    names = [label(s) for s in summary]
    for i, s in enumerate(summary):
        per_seed = [e for e in s["epochs_to_fit_per_seed"] if e is not None]
        missing = len(s["epochs_to_fit_per_seed"]) - len(per_seed)
        if per_seed:
            ax.barh(i, np.mean(per_seed), color="C0", alpha=0.6)
            ax.plot(per_seed, [i] * len(per_seed), "k.", ms=4)
        if missing:
            ax.plot([epochs_run], [i], ">", color="C3", ms=9, clip_on=False)
            ax.annotate(f"not reached ({missing} seed{'s' if missing > 1 else ''})", (epochs_run, i),
                        xytext=(-6, 0), textcoords="offset points", ha="right", va="center", fontsize=7, color="C3")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlim=(0, epochs_run * 1.02), xlabel="epochs to 100% training accuracy", title="(b) time to fit")

    labels = [s for s in summary if s["condition"] in ("true_labels", "corrupt_labels", "random_labels")]
    p = [0.0 if s["condition"] == "true_labels" else s["corruption"] for s in labels]
    axes[0, 2].plot(p, [1 - s["final_test_accuracy"] for s in labels], "o-", color="C3", label="test error")
    axes[0, 2].plot(p, [1 - s["final_train_accuracy"] for s in labels], "s--", color="C0", label="training error")
    axes[0, 2].set(xlabel="label corruption", ylabel="error", ylim=(0, 1), title="(c) test error")
    axes[0, 2].legend(fontsize=8)

    ax = axes[1, 0]
    for c in curves:
        if c["condition"] in ("true_labels", "random_labels", "gaussian"):
            c0, cost = np.mean(c["initial_train_cost"]), np.asarray(c["train_cost_mean"])
            gap = c0 - cost[-1]
            norm = (np.concatenate([[c0], cost]) - cost[-1]) / (gap if abs(gap) > 1e-12 else 1.0)
            t = np.concatenate([[0], c["epoch"]]) / epochs_run
            ax.plot(t, norm, label=c["condition"])
    ax.set(xlabel="fraction of training", ylabel="remaining cost gap", title="(d) fast first vs slow and steady")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    for e in examples:
        if e["condition"] in ("true_labels", "random_labels", "gaussian", "random_pixels"):
            ax.plot(np.arange(len(e["learned_by_epoch"])) / epochs_run, e["learned_by_epoch"], label=label(e))
    ax.axvline(0.1, color="0.5", ls=":", lw=1)
    ax.set(xlabel="fraction of training", ylabel="examples learned (and kept)", ylim=(0, 1.02),
           title="(e) when examples are learned")
    ax.legend(fontsize=8)

    ax = axes[1, 2]
    x = np.arange(len(summary))
    consistency = [np.nan if s.get("example_consistency") is None else s["example_consistency"] for s in summary]
    early = [s.get("learned_early", np.nan) for s in summary]
    ax.bar(x - 0.2, consistency, 0.4, label="agreement of seeds after the first epoch (ICC)")
    ax.bar(x + 0.2, early, 0.4, label="learned in the first 10%")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    ax.set(ylim=(min(0.0, np.nanmin(consistency + [0.0]) - 0.05), 1.02), title="(f) which examples are easy")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.legend(fontsize=8)
    d = results["dataset"]
    finish(fig, axes, f"Memorization on {d['name']} ({d['n_train']} examples), {network_name(results['network'])}, "
                      f"{results['epochs_run']} epochs", out / "memorization.png")


def format_table(results: dict) -> str:
    lines = [f"{results['epochs_run']} epochs on {results['dataset']['name']}, {network_name(results['network'])}",
             "| condition | corruption | epochs to fit (100%) | epochs to 99% | final train acc | final test acc | "
             "gap closed at 10% | learned in first 10% | example consistency | learned-at Spearman | "
             "forgetting events |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, f: "not reached" if v is None else format(v, f)  # noqa: E731
    for s in results["summary"]:
        lines.append(f"| {s['condition']} | {'-' if s['corruption'] is None else s['corruption']} | "
                     f"{fmt(s['epochs_to_fit'], '.1f')} | {fmt(s['epochs_to_99'], '.1f')} | "
                     f"{s['final_train_accuracy']:.4f} | {s['final_test_accuracy']:.4f} | "
                     f"{fmt(s['gap_closed_at_10pct'], '.3f')} | {s['learned_early']:.3f} | "
                     f"{fmt(s['example_consistency'], '.3f')} | {fmt(s['learned_at_spearman'], '.3f')} | "
                     f"{s['forgetting_events_mean']:.2f} |")
    return "\n".join(lines)


def parse_args(argv=None):
    from experiments import common
    from jaxgd.cli.options import int_list

    p = common.parser("memorization.py", __doc__.splitlines()[0], PRESETS, "runs/memorization-{preset}")
    p.add_argument("--hidden", type=int_list)
    p.add_argument("--corruptions", type=lambda t: tuple(float(v) for v in t.split(",")))
    return p.parse_args(argv)


def make_config(args) -> MemorizationConfig:
    from experiments.common import config_from_args

    if args.corruptions is not None and any(not 0 < p < 1 for p in args.corruptions):
        raise InvalidArgument(f"--corruptions must lie strictly between 0 and 1, got {args.corruptions}.")
    return config_from_args(args, PRESETS, ("hidden", "corruptions"), MODEL_OVERRIDES)


def main(argv=None) -> int:
    from experiments import common

    return common.main("memorization.py", argv, parse_args, make_config, run, figures, format_table,
                       "runs/memorization-{preset}", check=check)


if __name__ == "__main__":
    sys.exit(main())
