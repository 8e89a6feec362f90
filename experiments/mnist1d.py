"""The MNIST-1D table: logistic regression, an MLP and a CNN, with and without the spatial order shuffled.

Reproduces the benchmark table of Greydanus and Kobak, "Scaling Down Deep Learning with
MNIST-1D", ICML 2024, https://arxiv.org/abs/2011.14439: on MNIST-1D (4,000 training and
1,000 test signals of 40 points) logistic regression reaches 32% test accuracy, an MLP
68%, a CNN 94% (a GRU 91%, humans 96%); with the 40 positions shuffled (one fixed
permutation for every example, train and test, as Zhang et al. 2017 shuffle pixels) the
MLP still reaches 68% and the CNN falls to 56%: the CNN's advantage is its spatial prior.

Each model x condition trains as one population of seeds (one ``jaxgd.fit`` with a batch
of keys), with the authors' setup: cross-entropy, Adam with learning rate 1e-2, batch 100,
6,000 steps (150 epochs), no weight decay.

    python experiments/mnist1d.py                   # the table, 10 seeds per row, 8 minutes on 2 busy CPU cores
    python experiments/mnist1d.py --preset quick    # 3 seeds, 8 epochs: the claims that hold small (CI)
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.errors import InvalidArgument

if __package__ in (None, ""):  # run as `python experiments/mnist1d.py`: make `experiments` importable, and
    here = Path(__file__).resolve().parent  # drop this folder from the path, so that `import mnist1d` is the package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

MODELS = ("logistic", "mlp", "cnn")
CONDITIONS = ("original", "shuffled")
#: Test accuracy in Greydanus and Kobak (2024), by (model, condition).
PAPER = {("logistic", "original"): 0.32, ("mlp", "original"): 0.68, ("cnn", "original"): 0.94,
         ("mlp", "shuffled"): 0.68, ("cnn", "shuffled"): 0.56}
#: Rows of the paper's table not trained here.
PAPER_OTHERS = {"GRU": 0.91, "human": 0.96}


@dataclasses.dataclass(frozen=True)
class MNIST1DConfig:
    """One run of the table. ``hidden`` sizes the MLP; ``channels``, ``kernel_size`` and ``pool`` the CNN."""

    dataset: str | None = "mnist1d"
    data_dir: str | None = None
    n_train: int | None = None
    models: tuple[str, ...] = MODELS
    conditions: tuple[str, ...] = CONDITIONS
    hidden: tuple[int, ...] = (100, 100)
    channels: tuple[int, ...] = (25, 25, 25)
    kernel_size: int = 5
    pool: int = 2
    activation: str = "relu"
    cost: str = "cross_entropy"
    optimizer: str = "adam"
    learning_rate: float = 1e-2
    batch_size: int = 100
    epochs: int = 150
    init: str = "he"
    seeds: int = 10
    eval_every: int = 10
    seed: int = 0
    max_members: int | None = None


PRESETS = {
    # The paper's setup: 6,000 steps of 100 examples.
    "paper": MNIST1DConfig(),
    # Small enough for CI: the CNN's lead and the shuffle's effect already show.
    "quick": MNIST1DConfig(seeds=3, epochs=8, eval_every=4),
}


def build_model(name: str, data, config: MNIST1DConfig):
    import jaxgd

    sizes = {"logistic": (), "mlp": config.hidden}
    if name in sizes:
        return jaxgd.MLP((data.input_dim, *sizes[name], data.num_classes), activation=config.activation,
                         output="softmax")
    if name == "cnn":
        return jaxgd.models.CNN(data.input_shape, data.num_classes, channels=config.channels,
                                kernel_size=config.kernel_size, pool=config.pool, activation=config.activation)
    raise InvalidArgument(f"Unknown model {name!r}; choose from {', '.join(MODELS)}.")


def check(config: MNIST1DConfig):
    """Loads the data and builds the models, refusing, from the configuration alone, a population that cannot
    fit in memory (before any key or network is made); returns ``(data, models, training config)``."""
    import jaxgd
    from jaxgd.training.memory import check_population

    data = jaxgd.data.load(config.dataset if config.dataset is not None else "idx", data_dir=config.data_dir,
                           n_train=config.n_train)
    models = {name: build_model(name, data, config) for name in config.models}
    train_config = jaxgd.TrainConfig(cost=config.cost, optimizer=config.optimizer, learning_rate=config.learning_rate,
                                     batch_size=config.batch_size, epochs=config.epochs, init=config.init,
                                     eval_every=config.eval_every).validate(data.n_train)
    for model in models.values():
        check_population(model, train_config, data, config.seeds, max_members=config.max_members)
    return data, models, train_config


def run(config: MNIST1DConfig, *, progress: bool = False, checkpoint=None, checkpoint_every: int = 10) -> dict:
    """Trains every model x condition as a population of ``config.seeds`` and returns the results
    (also what ``results.json`` holds). With ``checkpoint`` (a directory), each model x condition
    checkpoints in its own folder there; a resumed run does not train finished ones again."""
    import jax

    import jaxgd
    from jaxgd.io.environment import environment
    from jaxgd.models import describe, num_params

    start = time.perf_counter()
    for c in config.conditions:
        if c not in CONDITIONS:
            raise InvalidArgument(f"Unknown condition {c!r}; choose from {', '.join(CONDITIONS)}.")
    data, models, train_config = check(config)
    k_shuffle, k_init = jax.random.split(jax.random.key(config.seed))
    shuffled = jaxgd.data.shuffled_pixels(k_shuffle, data.x_train, data.x_test)
    datasets = {"original": data, "shuffled": data.replace(x_train=shuffled[0], x_test=shuffled[1])}
    keys = jax.random.split(k_init, config.seeds)  # the same initialisations in both conditions
    paper = PAPER if data.name == "mnist1d" else {}
    rows, curves = [], []
    for name, model in models.items():
        for condition in config.conditions:
            where = None if checkpoint is None else Path(checkpoint) / f"{name}-{condition}"
            result = jaxgd.fit(keys, model, datasets[condition], train_config, max_members=config.max_members,
                               checkpoint=where, checkpoint_every=checkpoint_every, progress=progress)
            test = result.final("test_accuracy")
            stats = jaxgd.grouped_stats(test, np.zeros(len(test), int), result.diverged)[0]
            rows.append({"model": name, "condition": condition, "seeds": stats["members"],
                         "diverged": stats["excluded"], "paper": paper.get((name, condition)),
                         **{k: stats[k] for k in ("mean", "std", "min", "max", "ci_low", "ci_high")},
                         "train_accuracy_mean": jaxgd.member_stats(result.final("train_accuracy"),
                                                                   result.diverged)["mean"],
                         "test_accuracy_per_seed": test, "train_accuracy_per_seed": result.final("train_accuracy"),
                         "diverged_per_seed": result.diverged, "fit_seconds": result.wall_seconds})
            h = result.history
            curves.append({"model": name, "condition": condition,  # step 0: before training
                           "step": np.concatenate([[0], h["epoch"] * (data.n_train // config.batch_size)]),
                           **{m: np.concatenate([result.initial[m][:, None], h[m]], axis=1)
                              for m in ("test_accuracy", "train_accuracy")}})
    return {
        "study": "mnist1d",
        "references": ["arXiv:2011.14439", "arXiv:1611.03530"],
        "config": dataclasses.asdict(config),
        "train_config": train_config.to_dict(),
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": int(data.x_test.shape[0]),
                    "input_shape": list(data.input_shape), "num_classes": data.num_classes},
        "models": {name: {"describe": describe(m), "num_params": num_params(m)} for name, m in models.items()},
        "paper_others": PAPER_OTHERS,
        "summary": rows,
        "curves": curves,
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
    }


def figures(results: dict, out: Path) -> None:
    """(a) mean test accuracy against training steps; (b) every seed's final test accuracy beside the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxgd.analysis.plots import finish

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
    colors = {m: f"C{i}" for i, m in enumerate(MODELS)}
    for c in results["curves"]:
        acc = np.asarray(c["test_accuracy"], float)
        style = "-" if c["condition"] == "original" else "--"
        axes[0].plot(c["step"], np.nanmean(acc, axis=0), style, color=colors[c["model"]],
                     label=f"{c['model']}, {c['condition']}")
    axes[0].set(xlabel="step", ylabel="test accuracy (mean over seeds)", ylim=(0, 1), title="(a) test accuracy")
    axes[0].legend(fontsize=8, loc="lower right", ncol=2)
    ax = axes[1]
    for i, r in enumerate(results["summary"]):
        acc = np.asarray(r["test_accuracy_per_seed"], float)
        ax.plot(np.full(acc.shape, i) + np.linspace(-0.15, 0.15, acc.size), acc, "o", ms=4,
                color=colors[r["model"]], alpha=0.7)
        ax.plot([i - 0.25, i + 0.25], [r["mean"]] * 2, "k-")
        if r["paper"] is not None:
            ax.plot(i, r["paper"], "r*", ms=12, label="paper" if i == 0 else None)
    ax.set_xticks(range(len(results["summary"])),
                  [f"{r['model']}\n{r['condition']}" for r in results["summary"]], fontsize=8)
    ax.set(ylabel="final test accuracy", ylim=(0, 1), title="(b) seeds (dots), mean (bar), paper (star)")
    ax.legend()
    d = results["dataset"]
    finish(fig, axes, f"The MNIST-1D table on {d['name']} ({d['n_train']} train, {d['n_test']} test), "
                      f"{results['config']['seeds']} seeds per row", out / "mnist1d.png")


def format_table(results: dict) -> str:
    c = results["config"]
    lines = [f"{c['epochs']} epochs ({c['epochs'] * (results['dataset']['n_train'] // c['batch_size'])} steps) on "
             f"{results['dataset']['name']}, {c['optimizer']} lr={c['learning_rate']} batch={c['batch_size']}",
             "| model | condition | seeds | test acc mean | std | min | max | 95% interval of the mean | paper | train acc |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pct = lambda v: "-" if v is None or v != v else f"{100 * v:.1f}%"  # noqa: E731
    for r in results["summary"]:
        lines.append(f"| {r['model']} | {r['condition']} | {r['seeds']} | {pct(r['mean'])} | {100 * r['std']:.1f} | "
                     f"{pct(r['min'])} | {pct(r['max'])} | {pct(r['ci_low'])} - {pct(r['ci_high'])} | "
                     f"{pct(r['paper'])} | {pct(r['train_accuracy_mean'])} |")
    lines.append("Paper, not trained here: " + ", ".join(f"{k} {pct(v)}" for k, v in results["paper_others"].items()))
    return "\n".join(lines)


def parse_args(argv=None):
    from experiments import common
    from jaxgd.cli.options import int_list, positive

    p = common.parser("mnist1d.py", __doc__.splitlines()[0], PRESETS, "runs/mnist1d-{preset}", model_options=False)
    p.add_argument("--models", type=lambda t: tuple(v.strip() for v in t.split(",")), help="of logistic,mlp,cnn")
    p.add_argument("--conditions", type=lambda t: tuple(v.strip() for v in t.split(",")), help="of original,shuffled")
    p.add_argument("--hidden", type=int_list, help="the MLP's hidden widths")
    p.add_argument("--channels", type=int_list, help="the CNN's convolution channels")
    p.add_argument("--kernel-size", type=positive(int), dest="kernel_size")
    p.add_argument("--pool", type=positive(int))
    p.add_argument("--init", choices=("normal", "lecun", "glorot", "he"))
    p.add_argument("--eval-every", type=positive(int), dest="eval_every")
    return p.parse_args(argv)


def make_config(args) -> MNIST1DConfig:
    from experiments.common import config_from_args

    for name in ("models", "conditions"):
        allowed = MODELS if name == "models" else CONDITIONS
        bad = [v for v in getattr(args, name) or () if v not in allowed]
        if bad:
            raise InvalidArgument(f"--{name}: unknown {bad[0]!r}; choose from {', '.join(allowed)}.")
    config = config_from_args(args, PRESETS, ("models", "conditions", "hidden", "channels", "kernel_size", "pool",
                                              "init", "eval_every"))
    if args.dataset is None:  # --data-dir alone is MNIST-1D's cache directory here, not a folder of IDX files
        config = dataclasses.replace(config, dataset=PRESETS[args.preset].dataset)
    return config


def main(argv=None) -> int:
    from experiments import common

    return common.main("mnist1d.py", argv, parse_args, make_config, run, figures, format_table,
                       "runs/mnist1d-{preset}", check=lambda config: bool(check(config)))


if __name__ == "__main__":
    sys.exit(main())
