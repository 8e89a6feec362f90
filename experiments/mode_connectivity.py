"""Linear mode connectivity: from which epoch do children of one trunk end in the same linearly connected basin?

Reproduces Frankle, Dziugaite, Roy and Carbin, "Linear Mode Connectivity and the Lottery Ticket
Hypothesis", ICML 2020, https://arxiv.org/abs/1912.05671 (Figures 2-3): a trunk is trained; at epoch
k, children copy its whole state and train to the end with their own data orders
(:func:`jaxgd.landscape.spawn`, all children of all k as one population). The barrier on the straight
line between two children (their *instability*) is large when they are spawned at initialisation and
falls to zero once k is past an early point: from then on, SGD's noise no longer changes which basin
the network ends in. Independent seeds, for comparison, are separated by a barrier, which permuting
hidden units to match (weight matching, Ainsworth et al., arXiv 2209.04836) mostly removes.

Barriers are measured between every pair of children of each k and every pair of independent seeds,
before and after alignment, with bootstrap 95% intervals over pairs; the seeds' first-layer weights,
aligned to the first seed's, are drawn side by side (which features recur across seeds).

    python experiments/mode_connectivity.py --preset quick     # a CNN on the digits at a high learning rate, ~4 min
    python experiments/mode_connectivity.py --preset lesson    # the lesson's 64-16-16-10 sigmoid network
    python experiments/mode_connectivity.py --preset mnist --data-dir DIR   # MNIST IDX files (or TFDS)
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.errors import InvalidArgument

if __package__ in (None, ""):  # run as a script: make `experiments` importable, and drop this folder from the
    here = Path(__file__).resolve().parent  # path, so that `import mnist1d` is the package, not experiments/mnist1d.py
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))


@dataclasses.dataclass(frozen=True)
class ModeConnectivityConfig:
    """One run of the study.

    ``model`` is ``"cnn"`` (``channels``, ``hidden`` dense layers), ``"mlp"`` (``hidden`` widths; the lesson's
    sigmoid network with the quadratic cost) or any model object (``align`` needs its ``permutation_spec``).
    ``spawn_epochs`` are the epochs k at which ``children`` children are spawned; ``seeds`` independent networks
    are trained with the same configuration for comparison.
    """

    dataset: object = "digits"
    data_dir: str | None = None
    n_train: int | None = None
    num_classes: int | None = None
    input_scale: str | None = None
    model: object = "cnn"
    hidden: tuple[int, ...] = ()
    channels: tuple[int, ...] = (16, 16)
    activation: str = "relu"
    init: str | None = "he"
    cost: str = "cross_entropy"
    optimizer: str = "momentum"
    learning_rate: float = 0.2
    batch_size: int = 128
    epochs: int = 30
    spawn_epochs: tuple[int, ...] = (0, 1, 2, 4, 8)
    children: int = 5
    seeds: int = 8
    interpolation_points: int = 25
    resamples: int = 10_000
    seed: int = 0
    max_members: int | None = None


PRESETS = {
    # A CNN at a high learning rate (SGD with momentum 0.9, lr 0.2, batch 128: 11 steps an epoch): children spawned at
    # epochs 0 and 1 are separated by a barrier, children spawned from epoch 2 on are not (measured; see the README).
    "quick": ModeConnectivityConfig(),
    # The lesson's network and training (64-16-16-10 sigmoid, quadratic cost, SGD lr 3, batch 10).
    "lesson": ModeConnectivityConfig(model="mlp", hidden=(16, 16), activation="sigmoid", init=None, cost="quadratic",
                                     optimizer="sgd", learning_rate=3.0, batch_size=10, epochs=20, seeds=12),
    # Frankle et al.'s LeNet-scale setting on MNIST (not run here: no MNIST offline).
    "mnist": ModeConnectivityConfig(dataset="mnist", channels=(16, 32), hidden=(128,), learning_rate=0.05,
                                    epochs=10, spawn_epochs=(0, 1, 2, 4), children=4, seeds=8),
}


def _member(tree, i):
    import jax

    return jax.tree.map(lambda a: np.asarray(a)[i], tree)


def line_barriers(net, cost, networks: list, pairs, x, y, num: int, *, aligned: bool) -> dict:
    """The cost and error barriers of the straight line between each pair of ``networks`` (the second of a pair
    aligned to the first with ``aligned``), and the mean cost along the lines."""
    from jaxgd.landscape import align, interpolate
    from jaxgd.landscape.lines import rise

    costs, errors, lines = [], [], []
    for i, j in pairs:
        a, b = networks[i], networks[j]
        line = interpolate(net, cost, a, align(net, a, b) if aligned else b, x, y, num)
        c = np.asarray(line["cost"], np.float64)
        costs.append(float(rise(c)))
        errors.append(float(rise(1.0 - np.asarray(line["accuracy"], np.float64))))
        lines.append(c)
    return {"cost": costs, "error": errors, "line": np.mean(lines, axis=0) if lines else None}


def summarize(barriers: dict, aligned: dict, config: ModeConnectivityConfig) -> dict:
    """Means of the pairs' barriers with bootstrap 95% intervals over pairs, before and after alignment."""
    from jaxgd.analysis.statistics import bootstrap_ci

    out = {"pairs": len(barriers["cost"])}
    for name, values in (("barrier", barriers["cost"]), ("barrier_aligned", aligned["cost"]),
                         ("error_barrier", barriers["error"]), ("error_barrier_aligned", aligned["error"])):
        out[f"{name}_mean"] = float(np.mean(values)) if values else None
        out[f"{name}_ci"] = list(bootstrap_ci(values, resamples=config.resamples, seed=config.seed))
    out.update(barriers=barriers["cost"], barriers_aligned=aligned["cost"], line_cost=barriers["line"],
               line_cost_aligned=aligned["line"])
    return out


def first_layer(net, params) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """A network's first-layer weights as ``(n_in, units)`` and the shape to draw ``n_in`` in; None if unknown."""
    from jaxgd.mlp import MLP
    from jaxgd.models import CNN

    if isinstance(net, MLP):
        return np.asarray(params[0]["w"]), None
    if isinstance(net, CNN):
        w = np.asarray(params["conv"][0]["w"])
        return w.reshape(-1, w.shape[-1]), tuple(w.shape[:-1])
    return None


def recurrence(weights: np.ndarray) -> dict:
    """How alike the aligned seeds' first-layer units are: the mean cosine similarity of each seed's unit ``j`` to the
    first seed's unit ``j`` (``matched_cosine``) and to its other units (``unmatched_cosine``)."""
    unit = weights / np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-12)
    cos = np.einsum("iu,siv->suv", unit[0], unit[1:])  # (seeds - 1, units of seed 0, units of seed s)
    same = np.eye(cos.shape[-1], dtype=bool)
    return {"matched_cosine": float(cos[:, same].mean()) if cos.size else None,
            "unmatched_cosine": float(cos[:, ~same].mean()) if cos.size and (~same).any() else None}


def run(config: ModeConnectivityConfig, *, progress: bool = False, checkpoint=None, checkpoint_every: int = 10) -> dict:
    """Spawns the children, trains the independent seeds, and measures every pair; returns the results (what
    ``results.json`` holds). With ``checkpoint`` (a directory) the trunk, the children and the seeds checkpoint there."""
    import jax
    import jax.numpy as jnp

    import jaxgd
    from jaxgd.io.environment import environment
    from jaxgd.landscape import align
    from jaxgd.landscape import spawn
    from jaxgd.models import describe, is_stateful, num_params

    from experiments.common import record, study_data, study_model

    start = time.perf_counter()
    validate(config)
    data = study_data(config)
    net = study_model(config, data, hidden=config.hidden, channels=config.channels)
    train = jaxgd.TrainConfig(cost=config.cost, optimizer=config.optimizer, learning_rate=config.learning_rate,
                              batch_size=config.batch_size, epochs=config.epochs,
                              init=config.init if isinstance(config.model, str) else None, eval_every=config.epochs)
    k_spawn, k_seeds = jax.random.split(jax.random.key(config.seed))
    where = lambda name: None if checkpoint is None else Path(checkpoint) / name  # noqa: E731
    spawned = spawn(k_spawn, net, data, train, epochs=config.spawn_epochs, children=config.children,
                    checkpoint=where("spawn"), checkpoint_every=checkpoint_every, progress=progress)
    seeds = jaxgd.fit(jax.random.split(k_seeds, config.seeds), net, data, train, max_members=config.max_members,
                      checkpoint=where("seeds"), checkpoint_every=checkpoint_every, progress=progress)

    def networks(result, members):
        params = jax.tree.map(np.asarray, result.params)
        state = None if not is_stateful(net) else jax.tree.map(np.asarray, result.model_state)
        return [_member(params, i) if state is None else (_member(params, i), _member(state, i)) for i in members]

    steps = 1 if config.batch_size is None else data.n_train // config.batch_size
    with jax.default_matmul_precision(train.matmul_precision):  # measured with the products the training used
        x, y = jnp.asarray(data.images("train")), jnp.asarray(data.y_train)
        rows = []
        for k in spawned.epochs:
            members = spawned.group(k)
            children = networks(spawned.children, members)
            pairs = list(itertools.combinations(range(len(children)), 2))
            before = line_barriers(net, config.cost, children, pairs, x, y, config.interpolation_points, aligned=False)
            after = line_barriers(net, config.cost, children, pairs, x, y, config.interpolation_points, aligned=True)
            rows.append({"epoch": int(k), "step": int(k * steps), **summarize(before, after, config),
                         "train_cost_mean": float(np.mean(spawned.children.final("train_cost")[members])),
                         "test_accuracy_mean": float(np.mean(spawned.children.final("test_accuracy")[members]))})

        good = np.flatnonzero(~seeds.diverged)
        independent = networks(seeds, good)
        pairs = list(itertools.combinations(range(len(independent)), 2))
        before = line_barriers(net, config.cost, independent, pairs, x, y, config.interpolation_points, aligned=False)
        after = line_barriers(net, config.cost, independent, pairs, x, y, config.interpolation_points, aligned=True)
        matrix = np.zeros((2, len(independent), len(independent)))
        for (i, j), b, a in zip(pairs, before["cost"], after["cost"]):
            matrix[0, i, j] = matrix[0, j, i] = b
            matrix[1, i, j] = matrix[1, j, i] = a
        weights, image_shape = None, None
        if first_layer(net, seeds.params) is not None and independent:
            reference = independent[0]
            aligned = [reference] + [align(net, reference, other) for other in independent[1:]]
            layers = [first_layer(net, p if not is_stateful(net) else p[0]) for p in aligned]
            weights, image_shape = np.stack([w for w, _ in layers]), layers[0][1]
    last = rows[-1]["barrier_mean"]
    return {
        "study": "mode_connectivity",
        "references": ["arXiv:1912.05671", "arXiv:2209.04836"],
        "config": record(config),
        "dataset": {"name": data.name, "n_train": data.n_train, "input_shape": list(data.input_shape),
                    "num_classes": data.num_classes},
        "model": describe(net), "num_params": num_params(net), "steps_per_epoch": steps,
        "spawn": rows,
        "instability_ratio": rows[0]["barrier_mean"] / last if last else None,
        "seeds": {"count": len(independent), "diverged": int(seeds.diverged.sum()), **summarize(before, after, config),
                  "barrier_matrix": matrix[0], "barrier_aligned_matrix": matrix[1],
                  "train_cost_mean": float(np.mean(seeds.final("train_cost")[good])),
                  "test_accuracy_mean": float(np.mean(seeds.final("test_accuracy")[good]))},
        "first_layer": None if weights is None else {"weights": weights, "image_shape": image_shape,
                                                     **recurrence(weights)},
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
    }


def figures(results: dict, out: Path) -> None:
    """(a) the barrier between children against the spawn epoch, before and after alignment, with the independent
    seeds' for comparison; (b) the mean cost along the lines; (c) the independent seeds' barrier matrix; and the
    seeds' first-layer weights aligned to the first seed's (``weights_across_seeds.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxgd.analysis.plots import finish, weights_across_seeds

    rows, seeds = results["spawn"], results["seeds"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), layout="constrained")
    ks = np.arange(len(rows))
    floor = 1e-6  # a barrier is never negative; drawn on a log scale from here
    for name, style, label in (("barrier", "o-", "children"), ("barrier_aligned", "s--", "children, aligned")):
        mean = np.maximum([r[f"{name}_mean"] for r in rows], floor)
        ci = np.maximum(np.array([r[f"{name}_ci"] for r in rows]).T, floor)
        axes[0].errorbar(ks, mean, yerr=np.abs(ci - mean), fmt=style, capsize=3, label=label)
    for name, color, label in (("barrier", "C2", "independent seeds"), ("barrier_aligned", "C3", "seeds, aligned")):
        low, high = seeds[f"{name}_ci"]
        axes[0].axhline(seeds[f"{name}_mean"], color=color, lw=1, label=label)
        axes[0].axhspan(low, high, color=color, alpha=0.15)
    axes[0].set_xticks(ks, [f"{r['epoch']}\n({r['step']} steps)" for r in rows])
    axes[0].set(xlabel="spawn epoch k", ylabel="barrier (training cost)", yscale="log",
                title="(a) instability: barrier between children, 95% bootstrap intervals")
    axes[0].legend(fontsize=7)
    alpha = np.linspace(0, 1, len(rows[0]["line_cost"]))
    for r in rows:
        axes[1].plot(alpha, r["line_cost"], label=f"children, k = {r['epoch']}")
    axes[1].plot(alpha, seeds["line_cost"], "k--", label="independent seeds")
    axes[1].plot(alpha, seeds["line_cost_aligned"], "k:", label="seeds, aligned")
    axes[1].set(xlabel="alpha (0: one network, 1: the other)", ylabel="training cost (mean over pairs)",
                yscale="log", title="(b) cost along the line")
    axes[1].legend(fontsize=7)
    matrix = np.asarray(seeds["barrier_matrix"])
    shown = np.triu(matrix) + np.tril(np.asarray(seeds["barrier_aligned_matrix"]))
    image = axes[2].imshow(shown, cmap="viridis")
    fig.colorbar(image, ax=axes[2], label="barrier")
    axes[2].set(xlabel="seed", ylabel="seed", title="(c) seeds: barrier (upper) and aligned (lower)")
    d = results["dataset"]
    finish(fig, axes[:2], f"Linear mode connectivity on {d['name']}: {results['model'].get('model', 'model')}, "
                          f"{results['config']['children']} children per k, {seeds['count']} seeds",
           out / "mode_connectivity.png")
    layer = results.get("first_layer")
    if layer is not None:
        shape = layer["image_shape"]
        weights_across_seeds(np.asarray(layer["weights"]), tuple(shape) if shape else tuple(d["input_shape"]),
                             out / "weights_across_seeds.png",
                             title=f"first-layer weights of {seeds['count']} seeds ({d['name']}), each aligned to seed 0")


def format_table(results: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    ci = lambda v: f"{fmt(v[0])} .. {fmt(v[1])}"  # noqa: E731
    lines = ["| spawned at epoch k | step | pairs | barrier mean | 95% interval | aligned mean | 95% interval | "
             "error barrier | final train cost | test acc |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["spawn"]:
        lines.append(f"| {r['epoch']} | {r['step']} | {r['pairs']} | {fmt(r['barrier_mean'])} | {ci(r['barrier_ci'])} | "
                     f"{fmt(r['barrier_aligned_mean'])} | {ci(r['barrier_aligned_ci'])} | "
                     f"{fmt(r['error_barrier_mean'])} | {fmt(r['train_cost_mean'])} | {r['test_accuracy_mean']:.4f} |")
    s = results["seeds"]
    lines.append(f"| independent seeds | - | {s['pairs']} | {fmt(s['barrier_mean'])} | {ci(s['barrier_ci'])} | "
                 f"{fmt(s['barrier_aligned_mean'])} | {ci(s['barrier_aligned_ci'])} | {fmt(s['error_barrier_mean'])} | "
                 f"{fmt(s['train_cost_mean'])} | {s['test_accuracy_mean']:.4f} |")
    ratio = results["instability_ratio"]
    lines.append(f"barrier at k = {results['spawn'][0]['epoch']} / barrier at k = {results['spawn'][-1]['epoch']}: "
                 + ("-" if ratio is None else f"{ratio:.1f}"))
    layer = results.get("first_layer")
    if layer and layer["matched_cosine"] is not None:
        lines.append(f"first-layer units aligned to seed 0: cosine similarity {fmt(layer['matched_cosine'])} with the "
                     f"matched unit, {fmt(layer['unmatched_cosine'])} with the others")
    return "\n".join(lines)


def parse_args(argv=None):
    from experiments import common
    from jaxgd.cli.options import int_list, positive

    p = common.parser("mode_connectivity.py", __doc__.splitlines()[0], PRESETS, "runs/mode_connectivity-{preset}")
    p.add_argument("--hidden", type=int_list, help="MLP: hidden widths; CNN: dense layers after the convolutions")
    p.add_argument("--init", choices=("normal", "lecun", "glorot", "he"))
    p.add_argument("--spawn-epochs", type=lambda t: tuple(int(v) for v in t.split(",")), dest="spawn_epochs",
                   help="the epochs k at which children are spawned, e.g. 0,1,2,4,8")
    p.add_argument("--children", type=positive(int), help="children per spawn epoch")
    p.add_argument("--resamples", type=positive(int), help="bootstrap resamples")
    return p.parse_args(argv)


def make_config(args) -> ModeConnectivityConfig:
    from experiments.common import config_from_args

    return validate(config_from_args(args, PRESETS, ("hidden", "init", "spawn_epochs", "children", "resamples")))


def validate(config: ModeConnectivityConfig) -> ModeConnectivityConfig:
    """Raises ``InvalidArgument`` naming the first bad field; returns ``config``."""
    if not config.spawn_epochs or min(config.spawn_epochs) < 0 or max(config.spawn_epochs) >= config.epochs:
        raise InvalidArgument(f"Spawn epochs must lie in [0, {config.epochs}), got {config.spawn_epochs}.")
    if config.children < 2 or config.seeds < 2:
        raise InvalidArgument(f"Barriers need pairs: at least 2 children and 2 seeds, got {config.children} and "
                              f"{config.seeds}.")
    return config


def main(argv=None) -> int:
    from experiments import common

    return common.main("mode_connectivity.py", argv, parse_args, make_config, run, figures, format_table,
                       "runs/mode_connectivity-{preset}")


if __name__ == "__main__":
    sys.exit(main())
