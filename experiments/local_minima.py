"""Local minima of equal quality: do different random starts end in equally good minima?

Reproduces Choromanska, Henaff, Mathieu, Ben Arous and LeCun, "The Loss Surfaces of Multilayer
Networks", AISTATS 2015, https://arxiv.org/abs/1412.0233 (Figure: test losses of the minima
reached from many random initialisations concentrate, and concentrate more as the network
grows), and goes further with :mod:`jaxgd.landscape`: the loss barrier on the straight line
between two minima before and after permuting hidden units to match (Ainsworth et al.,
arXiv 2209.04836), and the sharpness of each minimum.

    python experiments/local_minima.py --preset quick              # embedded digits, under 3 minutes
    python experiments/local_minima.py --preset mnist --data-dir ~/data/mnist
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.errors import InvalidArgument

if __package__ in (None, ""):  # run as `python experiments/local_minima.py`: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = {"init_and_order": "per_seed", "init_only": "shared"}


@dataclasses.dataclass(frozen=True)
class LocalMinimaConfig:
    """One run of the study.

    ``dataset`` is a name (``None`` with ``data_dir``: IDX files) or a :class:`jaxgd.data.Dataset`;
    ``model`` is ``"mlp"`` (``depth`` hidden layers of each width), ``"cnn"`` (``depth`` convolutions of
    ``width`` channels each: the width axis is the channel count), or a function ``(data, width) -> model``
    for any model of the engine (``align`` needs its ``permutation_spec``).
    """

    dataset: object = "digits"
    data_dir: str | None = None
    n_train: int | None = None
    num_classes: int | None = None
    input_scale: str | None = None
    model: object = "mlp"
    channels: tuple[int, ...] = ()  # unused: the width axis sets a CNN's channels
    widths: tuple[int, ...] = (25, 50, 100, 250, 500)
    depth: int = 1
    activation: str = "relu"
    cost: str = "cross_entropy"
    optimizer: str = "sgd"
    learning_rate: float = 0.3
    batch_size: int = 32
    epochs: int = 30
    init: str = "he"
    seeds: int = 100
    modes: tuple[str, ...] = ("init_and_order", "init_only")
    pairs: int = 10
    interpolation_points: int = 25
    sharpness_iters: int = 20
    sharpness_examples: int = 512
    seed: int = 0
    max_members: int | None = None


PRESETS = {
    "quick": LocalMinimaConfig(),
    "mnist": LocalMinimaConfig(dataset="mnist", epochs=20, learning_rate=0.1, batch_size=64, max_members=100),
}

#: What ``--model cnn`` changes in a preset: two convolutions of 4 to 32 channels (the width axis), SGD at the
#: CNN's learning rate.
MODEL_OVERRIDES = {"cnn": {"widths": (4, 8, 16, 32), "depth": 2, "learning_rate": 0.05, "epochs": 20}}


def _member(tree, i):
    import jax

    return jax.tree.map(lambda a: a[i], tree)


def width_model(config: LocalMinimaConfig, data, width: int, mode: str):
    """The network of one width and its training config."""
    import jaxgd

    from experiments.common import study_model

    if isinstance(config.model, str):
        net = study_model(config, data, hidden=(width,) * config.depth if config.model == "mlp" else (),
                          channels=(width,) * config.depth)
    else:
        net = config.model(data, width)
    train = jaxgd.TrainConfig(cost=config.cost, optimizer=config.optimizer, learning_rate=config.learning_rate,
                              batch_size=config.batch_size, epochs=config.epochs,
                              init=config.init if isinstance(config.model, str) else None,
                              eval_every=config.epochs, data_order=MODES[mode], data_seed=config.seed)
    return net, train


def check(config: LocalMinimaConfig) -> None:
    """Refuses, from the configuration alone, a width whose population cannot fit in memory."""
    from jaxgd.training.memory import check_population

    from experiments.common import study_data

    validate(config)
    data = study_data(config)
    for width in config.widths:
        net, train = width_model(config, data, width, config.modes[0])
        check_population(net, train.validate(data.n_train), data, config.seeds, max_members=config.max_members)


def run_width(width: int, data, config: LocalMinimaConfig, mode: str, key, progress: bool, checkpoint=None,
              checkpoint_every: int = 10) -> dict:
    """Trains ``config.seeds`` networks of one width and measures their minima (checkpointing in ``checkpoint``)."""
    import jax
    import jax.numpy as jnp

    import jaxgd
    from jaxgd.landscape import align, barrier, sharpness
    from jaxgd.models import describe, num_params
    from jaxgd.analysis.statistics import member_stats
    from experiments.common import study_model

    net, train = width_model(config, data, width, mode)
    k_train, k_pairs, k_sharp = jax.random.split(key, 3)
    result = jaxgd.fit(jax.random.split(k_train, config.seeds), net, data, train,
                       max_members=config.max_members, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                       progress=progress)
    ok = ~result.diverged
    final = {m: result.final(m) for m in ("train_cost", "train_accuracy", "test_cost", "test_accuracy")}
    # measured on one device, as NumPy: the same numbers however the population was spread over devices or hosts
    params = jax.tree.map(np.asarray, result.params)

    # the minima are measured with the products they were trained with (TrainConfig.matmul_precision)
    with jax.default_matmul_precision(train.matmul_precision):
        x, y = jnp.asarray(data.images("train")), jnp.asarray(data.y_train)  # as the model takes them
        good = np.flatnonzero(ok)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(k_pairs))[-1])
        barriers_before, barriers_after, max_output_diff = [], [], 0.0
        for _ in range(min(config.pairs, len(good) // 2)):
            i, j = rng.choice(good, 2, replace=False)
            pa, pb = _member(params, i), _member(params, j)
            aligned = align(net, pa, pb)
            barriers_before.append(float(barrier(net, config.cost, pa, pb, x, y, config.interpolation_points)))
            barriers_after.append(float(barrier(net, config.cost, pa, aligned, x, y, config.interpolation_points)))
            probabilities = lambda p: jax.nn.softmax(net.apply(p, x), axis=-1)  # noqa: E731
            max_output_diff = max(max_output_diff, float(jnp.max(jnp.abs(probabilities(aligned) - probabilities(pb)))))

        xs, ys = x[: config.sharpness_examples], y[: config.sharpness_examples]
        sharp = jax.jit(jax.vmap(lambda p: sharpness(net, config.cost, p, xs, ys, iters=config.sharpness_iters,
                                                     key=k_sharp)))(params)
    sharp = np.asarray(sharp)
    stats = {m: member_stats(v, result.diverged) for m, v in final.items()}
    return {
        "width": width, "mode": mode, "num_params": num_params(net), "model": describe(net), "seeds": int(ok.sum()),
        "diverged": int((~ok).sum()), "wall_seconds": result.wall_seconds,
        "per_seed": {**final, "sharpness": sharp, "diverged": result.diverged},
        "stats": stats,
        "barriers_before": barriers_before, "barriers_after": barriers_after,
        "aligned_max_output_diff": max_output_diff,
        "sharpness": member_stats(sharp, result.diverged),
    }


def summarize(rows: list[dict]) -> list[dict]:
    mean = lambda v: float(np.mean(v)) if len(v) else None
    return [{
        "width": r["width"], "mode": r["mode"], "seeds": r["seeds"], "diverged": r["diverged"],
        "test_cost_mean": r["stats"]["test_cost"]["mean"], "test_cost_std": r["stats"]["test_cost"]["std"],
        "test_cost_min": r["stats"]["test_cost"]["min"], "test_cost_max": r["stats"]["test_cost"]["max"],
        "test_accuracy_mean": r["stats"]["test_accuracy"]["mean"],
        "test_accuracy_std": r["stats"]["test_accuracy"]["std"],
        "train_cost_mean": r["stats"]["train_cost"]["mean"], "train_cost_std": r["stats"]["train_cost"]["std"],
        "barrier_before": mean(r["barriers_before"]), "barrier_after": mean(r["barriers_after"]),
        "aligned_max_output_diff": r["aligned_max_output_diff"],
        "sharpness_mean": r["sharpness"]["mean"], "sharpness_std": r["sharpness"]["std"],
    } for r in rows]


def run(config: LocalMinimaConfig, *, progress: bool = False, checkpoint=None, checkpoint_every: int = 10) -> dict:
    """Trains and measures every width x mode; with ``checkpoint`` (a directory), each condition checkpoints
    in its own folder there, and a resumed study does not train finished conditions again."""
    import jax
    from scipy.stats import spearmanr

    import jaxgd
    from jaxgd.io.environment import environment

    start = time.perf_counter()
    check(config)
    from experiments.common import record, study_data

    data = study_data(config)
    keys = jax.random.split(jax.random.key(config.seed), len(config.widths))
    by_mode = {}
    for mode in config.modes:
        rows = [run_width(w, data, config, mode, k, progress,
                          None if checkpoint is None else Path(checkpoint) / f"{mode}-width{w}", checkpoint_every)
                for w, k in zip(config.widths, keys)]
        by_mode[mode] = rows
    summaries = {mode: summarize(rows) for mode, rows in by_mode.items()}
    main_mode = config.modes[0]
    correlation = {}
    for mode, s in summaries.items():
        if len(s) >= 2:
            correlation[mode] = float(spearmanr([r["width"] for r in s], [r["test_cost_std"] for r in s])[0])
    return {
        "study": "local_minima",
        "references": ["arXiv:1412.0233", "arXiv:2209.04836"],
        "config": record(config),
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": int(data.x_test.shape[0]),
                    "input_dim": data.input_dim, "num_classes": data.num_classes},
        "main_mode": main_mode,
        "summary": summaries[main_mode],
        "summary_by_mode": summaries,
        "width_std_rank_correlation": correlation,
        "seeds": {mode: [{k: r[k] for k in ("width", "per_seed", "barriers_before", "barriers_after")} for r in rows]
                  for mode, rows in by_mode.items()},
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
    }


def width_label(results: dict) -> str:
    model = results["config"].get("model")
    return "channels per convolution" if model == "cnn" else "hidden units" if model == "mlp" else "width"


def figures(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxgd.analysis.plots import finish

    mode = results["main_mode"]
    seeds = results["seeds"][mode]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5), layout="constrained")
    for r in seeds:
        cost = np.asarray(r["per_seed"]["test_cost"], float)
        keep = ~np.asarray(r["per_seed"]["diverged"], bool) & np.isfinite(cost)
        axes[0].hist(cost[keep], bins=25, alpha=0.5, label=f"width {r['width']}")
    axes[0].set(xlabel="final test cost", ylabel="seeds", title="(a) test cost of the minima")
    axes[0].legend(fontsize=8)
    for m, s in results["summary_by_mode"].items():
        w = [r["width"] for r in s]
        axes[1].plot(w, [r["test_cost_std"] for r in s], "o-", label=m)
        axes[2].plot(w, [r["barrier_before"] for r in s], "o-", label=f"{m}: before")
        axes[2].plot(w, [r["barrier_after"] for r in s], "s--", label=f"{m}: aligned")
    axes[1].set(xscale="log", yscale="log", xlabel=width_label(results), ylabel="std of test cost across seeds",
                title="(b) spread shrinks with width")
    axes[2].set(xscale="log", xlabel=width_label(results), ylabel="loss barrier (train)",
                title="(c) barrier before / after alignment")
    for r in seeds:
        sharp = np.asarray(r["per_seed"]["sharpness"], float)
        axes[3].scatter(r["per_seed"]["test_cost"], sharp, s=6, label=f"width {r['width']}")
    axes[3].set(xlabel="final test cost", ylabel="top Hessian eigenvalue", yscale="log", title="(d) sharpness")
    widths = [r["width"] for r in results["summary"]]
    for a in axes[1:3]:
        a.minorticks_off()
        a.set_xticks(widths, [str(w) for w in widths])
    for a in axes[1:]:
        a.legend(fontsize=7)
    d = results["dataset"]
    finish(fig, axes, f"Minima from {results['config']['seeds']} seeds per width on {d['name']} "
                      f"({d['n_train']} examples)", out / "local_minima.png")


def format_table(results: dict) -> str:
    lines = []
    for mode, summary in results["summary_by_mode"].items():
        rho = results["width_std_rank_correlation"].get(mode)
        lines.append(f"{mode} (rank correlation of width and test-cost std: {rho:.2f})" if rho is not None else mode)
        lines.append("| width | seeds | test cost mean | test cost std | test acc mean | test acc std | "
                     "barrier before | barrier after | sharpness mean |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        fmt = lambda v: "-" if v is None else f"{v:.4f}"
        for s in summary:
            lines.append(f"| {s['width']} | {s['seeds']} | {s['test_cost_mean']:.4f} | {s['test_cost_std']:.4f} | "
                         f"{s['test_accuracy_mean']:.4f} | {s['test_accuracy_std']:.4f} | {fmt(s['barrier_before'])} | "
                         f"{fmt(s['barrier_after'])} | {s['sharpness_mean']:.2f} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def parse_args(argv=None):
    from experiments import common
    from jaxgd.cli.options import int_list, positive

    p = common.parser("local_minima.py", __doc__.splitlines()[0], PRESETS, "runs/local_minima-{preset}")
    p.add_argument("--widths", type=int_list)
    p.add_argument("--depth", type=positive(int))
    p.add_argument("--modes", type=lambda t: tuple(t.split(",")), help="init_and_order,init_only")
    p.add_argument("--pairs", type=positive(int))
    return p.parse_args(argv)


def make_config(args) -> LocalMinimaConfig:
    from experiments.common import config_from_args

    return validate(config_from_args(args, PRESETS, ("widths", "depth", "modes", "pairs"), MODEL_OVERRIDES))


def validate(config: LocalMinimaConfig) -> LocalMinimaConfig:
    """Raises ``ValueError`` naming the first bad field; returns ``config``."""
    unknown = set(config.modes) - set(MODES)
    if unknown:
        raise InvalidArgument(f"Unknown mode {sorted(unknown)[0]!r}; choose from {', '.join(MODES)}.")
    if not config.widths or any(w < 1 for w in config.widths):
        raise InvalidArgument(f"Widths must be positive, got {config.widths}.")
    return config


def main(argv=None) -> int:
    from experiments import common

    return common.main("local_minima.py", argv, parse_args, make_config, run, figures, format_table,
                       "runs/local_minima-{preset}", check=check)


if __name__ == "__main__":
    sys.exit(main())
