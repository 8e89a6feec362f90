"""Memorization: networks fit random labels perfectly, just more slowly; real data is learned first.

Reproduces, on any dataset jaxgd can load:
- Zhang, Bengio, Hardt, Recht, Vinyals, "Understanding deep learning requires rethinking
  generalization", ICLR 2017, https://arxiv.org/abs/1611.03530 (Figure 1: training cost under
  each randomization, time to fit and test error against label corruption);
- Arpit et al., "A Closer Look at Memorization in Deep Networks", ICML 2017,
  https://arxiv.org/abs/1706.05394 (real data is learned fast first, noise slowly and steadily).

Every condition (true labels, corrupted labels, random labels, shuffled pixels, random pixels,
Gaussian inputs) x every seed trains as one population through ``jaxgd.fit``.

    python experiments/memorization.py --preset quick            # embedded digits, under 2 minutes
    python experiments/memorization.py --preset mnist --data-dir ~/data/mnist
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python experiments/memorization.py`: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONDITIONS = ("true_labels", "corrupt_labels", "random_labels", "shuffled_pixels", "random_pixels", "gaussian")


@dataclasses.dataclass(frozen=True)
class MemorizationConfig:
    """One run of the study. ``corruptions`` are the label-corruption fractions strictly between 0 and 1."""

    dataset: str | None = "digits"
    data_dir: str | None = None
    n_train: int | None = None
    hidden: tuple[int, ...] = (512,)
    activation: str = "relu"
    cost: str = "cross_entropy"
    optimizer: str = "momentum"
    learning_rate: float = 0.05
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int = 300
    init: str = "he"
    seeds: int = 4
    corruptions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    input_randomizations: tuple[str, ...] = ("shuffled_pixels", "random_pixels", "gaussian")
    fit_threshold: float = 1.0
    # "shared": every condition and seed sees the same minibatch sequence, so conditions are
    # compared on equal terms and seeds differ in their initialisation only.
    data_order: str = "shared"
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
            raise ValueError(f"Unknown input randomization {name!r}; choose from shuffled_pixels, random_pixels, gaussian.")
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


def run(config: MemorizationConfig, *, progress: bool = False, checkpoint=None, checkpoint_every: int = 10) -> dict:
    """Trains every condition x seed and returns the results (also what ``results.json`` holds).

    With ``checkpoint`` (a directory), training checkpoints there and resumes from what it finds.
    """
    import jax

    import jaxgd
    from jaxgd.population import Conditions, grid, member_stats
    from jaxgd.results import environment

    start = time.perf_counter()
    data = jaxgd.data.load(config.dataset if config.dataset is not None else "idx", data_dir=config.data_dir,
                           n_train=config.n_train)
    key = jax.random.key(config.seed)
    k_data, k_train = jax.random.split(key)
    names, fractions, arrays = build_conditions(k_data, data, config)
    keys, index = grid(k_train, len(names), config.seeds)
    output = "softmax" if config.cost == "cross_entropy" else "sigmoid"
    net = jaxgd.MLP((data.input_dim, *config.hidden, data.num_classes), activation=config.activation, output=output)
    train_config = jaxgd.TrainConfig(cost=config.cost, optimizer=config.optimizer, learning_rate=config.learning_rate,
                                     momentum=config.momentum if config.optimizer in ("momentum", "nesterov") else None,
                                     batch_size=config.batch_size, epochs=config.epochs,
                                     init=config.init, target_accuracy=config.fit_threshold,
                                     data_order=config.data_order)
    result = jaxgd.fit(keys, net, data, train_config, conditions=Conditions(arrays, index),
                       max_members=config.max_members, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                       progress=progress)

    h, epochs = result.history, result.history["epoch"]
    curves, summary = [], []
    for c, (name, p) in enumerate(zip(names, fractions)):
        members = np.flatnonzero(index == c)
        ok = ~result.diverged[members]
        cost = h["train_cost"][members]
        fit100 = first_epoch_at(h["train_accuracy"][members], epochs, config.fit_threshold)
        fit99 = first_epoch_at(h["train_accuracy"][members], epochs, 0.99)
        steps_per_epoch = data.n_train // config.batch_size
        mean_or_none = lambda v: float(np.mean(v)) if v and all(e is not None for e in v) else None
        closed = gap_closed(result.initial["train_cost"][members], cost, epochs)
        curves.append({
            "condition": name, "corruption": p, "epoch": epochs,
            "initial_train_cost": result.initial["train_cost"][members],
            **{f"{m}_{stat}": getattr(np, "nan" + stat)(h[m][members], axis=0)
               for m in ("train_cost", "train_accuracy", "test_accuracy") for stat in ("mean", "std")},
        })
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
        })
    return {
        "study": "memorization",
        "references": ["arXiv:1611.03530", "arXiv:1706.05394"],
        "config": dataclasses.asdict(config),
        "train_config": train_config.to_dict(),
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": int(data.x_test.shape[0]),
                    "input_dim": data.input_dim, "num_classes": data.num_classes},
        "network": {"sizes": list(net.sizes), "activation": net.activation, "num_params": net.num_params()},
        "epochs_run": result.epochs_run,
        "summary": summary,
        "curves": curves,
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
    }


def figures(results: dict, out: Path) -> None:
    """Zhang et al. Figure 1 (a)-(c), and (d) normalised learning curves after Arpit et al."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxgd.plots import finish

    curves, summary = results["curves"], results["summary"]
    label = lambda c: c["condition"] if c["condition"] != "corrupt_labels" else f"corrupt p={c['corruption']:.1f}"
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5), layout="constrained")
    ax = axes[0]
    for c in curves:
        e = np.concatenate([[0], c["epoch"]])
        y = np.concatenate([[np.mean(c["initial_train_cost"])], c["train_cost_mean"]])
        ax.plot(e, y, label=label(c))
    ax.set(xlabel="epoch", ylabel="training cost", yscale="log", title="(a) training cost")
    ax.legend(fontsize=7)
    labels = [s for s in summary if s["condition"] in ("true_labels", "corrupt_labels", "random_labels")]
    p = [0.0 if s["condition"] == "true_labels" else s["corruption"] for s in labels]
    fit = [np.nan if s["epochs_to_fit"] is None else s["epochs_to_fit"] for s in labels]
    axes[1].plot(p, fit, "o-")
    axes[1].set(xlabel="label corruption", ylabel="epochs to fit", title="(b) time to fit")
    axes[2].plot(p, [1 - s["final_test_accuracy"] for s in labels], "o-", color="C3")
    axes[2].set(xlabel="label corruption", ylabel="test error", ylim=(0, 1), title="(c) test error")
    ax = axes[3]
    for c in curves:
        if c["condition"] in ("true_labels", "random_labels"):
            c0, cost = np.mean(c["initial_train_cost"]), np.asarray(c["train_cost_mean"])
            norm = (np.concatenate([[c0], cost]) - cost[-1]) / (c0 - cost[-1])
            t = np.concatenate([[0], c["epoch"]]) / c["epoch"][-1]
            ax.plot(t, norm, label=c["condition"])
    ax.set(xlabel="fraction of training", ylabel="remaining cost gap", title="(d) fast first vs slow and steady")
    ax.legend()
    d = results["dataset"]
    finish(fig, axes, f"Memorization on {d['name']} ({d['n_train']} examples), network {results['network']['sizes']}",
           out / "memorization.png")


def format_table(results: dict) -> str:
    lines = [f"{results['epochs_run']} epochs on {results['dataset']['name']}, network {results['network']['sizes']}",
             "| condition | corruption | epochs to fit (100%) | epochs to 99% | final train acc | final test acc | gap closed at 10% |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, f: "not reached" if v is None else format(v, f)
    for s in results["summary"]:
        lines.append(f"| {s['condition']} | {'-' if s['corruption'] is None else s['corruption']} | "
                     f"{fmt(s['epochs_to_fit'], '.1f')} | {fmt(s['epochs_to_99'], '.1f')} | "
                     f"{s['final_train_accuracy']:.4f} | {s['final_test_accuracy']:.4f} | {fmt(s['gap_closed_at_10pct'], '.3f')} |")
    return "\n".join(lines)


def parse_args(argv=None):
    from experiments import common
    from jaxgd.cli import int_list

    p = common.parser("memorization.py", __doc__.splitlines()[0], PRESETS, "runs/memorization-{preset}")
    p.add_argument("--hidden", type=int_list)
    p.add_argument("--corruptions", type=lambda t: tuple(float(v) for v in t.split(",")))
    return p.parse_args(argv)


def make_config(args) -> MemorizationConfig:
    from experiments.common import config_from_args

    if args.corruptions is not None and any(not 0 < p < 1 for p in args.corruptions):
        raise ValueError(f"--corruptions must lie strictly between 0 and 1, got {args.corruptions}.")
    return config_from_args(args, PRESETS, ("hidden", "corruptions"))


def main(argv=None) -> int:
    from experiments import common

    return common.main("memorization.py", argv, parse_args, make_config, run, figures, format_table,
                       "runs/memorization-{preset}")


if __name__ == "__main__":
    sys.exit(main())
