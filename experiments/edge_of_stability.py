"""Edge of stability: under full-batch gradient descent the sharpness rises to 2 / learning rate and hovers there.

Reproduces Cohen, Kaur, Li, Kolter and Talwalkar, "Gradient Descent on Neural Networks Typically
Occurs at the Edge of Stability", ICLR 2021, https://arxiv.org/abs/2103.00065 (Figure 1): with the
square loss and full-batch gradient descent at step size eta, the top eigenvalue of the training
loss's Hessian (the sharpness) rises ("progressive sharpening") until it reaches 2 / eta — where
gradient descent on a quadratic would diverge — and then hovers there while the loss keeps falling,
non-monotonically.

Every learning rate is a member of one population (``fit(..., learning_rates=...)``); the sharpness
is measured inside the compiled program at every evaluation (``metrics=["sharpness"]``), every
``eval_every`` steps (``TrainConfig(eval_unit="steps")``).

    python experiments/edge_of_stability.py --preset quick                   # MNIST-1D, 3 rates, about 1 minute
    python experiments/edge_of_stability.py --preset mnist --data-dir DIR    # MNIST (IDX files; or TFDS)
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.errors import InvalidArgument

if __package__ in (None, ""):  # run as a script: make `experiments` importable, and drop this folder from the
    here = Path(__file__).resolve().parent  # path, so that `import mnist1d` is the package, not experiments/mnist1d.py
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

#: The claim's band: the median sharpness over the last half of training, in units of 2 / learning rate.
BAND = (0.8, 1.25)
#: The sharpness must start below this fraction of 2 / learning rate.
START_BELOW = 0.8


@dataclasses.dataclass(frozen=True)
class EdgeOfStabilityConfig:
    """One run of the study: full-batch gradient descent (``batch_size=None``) at each of ``learning_rates``.

    ``epochs`` counts passes over the training set: with full batches, optimizer steps. ``model`` is ``"mlp"``
    (``hidden`` widths, ``activation``, a linear ``output`` as in Cohen et al.'s networks), ``"cnn"``
    (``channels``) or any model object.
    """

    dataset: object = "mnist1d"
    data_dir: str | None = None
    n_train: int | None = 1000
    num_classes: int | None = None
    input_scale: str | None = None
    model: object = "mlp"
    hidden: tuple[int, ...] = (32, 32)
    channels: tuple[int, ...] = (16, 32)
    activation: str = "tanh"
    output: str = "identity"
    init: str = "lecun"
    cost: str = "quadratic"
    optimizer: str = "sgd"
    learning_rates: tuple[float, ...] = (0.08, 0.09, 0.1)
    batch_size: int | None = None
    epochs: int = 8000
    eval_every: int = 50
    sharpness_iters: int = 20
    sharpness_examples: int = 1000
    seeds: int = 1
    seed: int = 0
    max_members: int | None = None


PRESETS = {
    # MNIST-1D (1,000 training signals), a 40-32-32-10 tanh network with linear outputs, measured: the
    # sharpness starts at 14.2 and reaches 2 / eta for each rate within 2,000-6,000 steps.
    "quick": EdgeOfStabilityConfig(),
    # Cohen et al.'s scale: 5,000 MNIST images, a 784-200-200-10 tanh network (not run here: no MNIST offline).
    "mnist": EdgeOfStabilityConfig(dataset="mnist", n_train=5000, hidden=(200, 200),
                                   learning_rates=(0.02, 0.04, 0.08), epochs=5000),
}


def build_model(config: EdgeOfStabilityConfig, data):
    import jaxgd

    from experiments.common import study_model

    if config.model == "mlp":
        return jaxgd.MLP((data.input_dim, *config.hidden, data.num_classes), activation=config.activation,
                         output=config.output, initializer=config.init)
    return study_model(config, data, hidden=(), channels=config.channels)


def run(config: EdgeOfStabilityConfig, *, progress: bool = False, checkpoint=None, checkpoint_every: int = 1000) -> dict:
    """Trains ``config.seeds`` networks per learning rate as one population, measuring the sharpness and the training
    cost every ``config.eval_every`` steps; returns the results (what ``results.json`` holds)."""
    import jax

    import jaxgd
    from jaxgd.io.environment import environment
    from jaxgd.landscape import sharpness_metric
    from jaxgd.models import describe, num_params

    from experiments.common import record, study_data

    start = time.perf_counter()
    validate(config)
    data = study_data(config)
    net = build_model(config, data)
    rates = np.repeat(np.asarray(config.learning_rates, np.float64), config.seeds)
    keys = jax.random.split(jax.random.key(config.seed), config.seeds)[np.tile(np.arange(config.seeds),
                                                                               len(config.learning_rates))]
    train = jaxgd.TrainConfig(cost=config.cost, optimizer=config.optimizer, learning_rate=float(rates[0]),
                              batch_size=config.batch_size, epochs=config.epochs, eval_every=config.eval_every,
                              eval_unit="steps", divergence_factor=None)
    metric = sharpness_metric(config.sharpness_iters, config.sharpness_examples)
    result = jaxgd.fit(keys, net, data, train, learning_rates=rates, metrics={"sharpness": metric},
                       max_members=config.max_members, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                       progress=progress)
    h = result.history
    steps = np.concatenate([[0], h["step"]])  # step 0: the initial networks
    curve = lambda name: np.concatenate([result.initial[name][:, None], h[name]], axis=1)  # noqa: E731
    sharp, cost, acc = curve("sharpness"), curve("train_cost"), curve("train_accuracy")
    runs = []
    for i, lr in enumerate(rates):
        edge = 2.0 / lr
        late = sharp[i, steps >= steps[-1] / 2]
        runs.append({"learning_rate": float(lr), "seed": int(i % config.seeds), "edge": edge, "steps": steps,
                     "sharpness": sharp[i], "cost": cost[i], "train_accuracy": acc[i],
                     "test_accuracy": float(result.final("test_accuracy")[i]),
                     "initial_ratio": float(sharp[i, 0] / edge), "max_ratio": float(np.nanmax(sharp[i]) / edge),
                     "late_median_ratio": float(np.nanmedian(late) / edge),
                     "first_step_at_edge": _first(steps, sharp[i] >= 0.9 * edge),
                     "diverged": bool(result.diverged[i])})
    return {
        "study": "edge_of_stability",
        "references": ["arXiv:2103.00065"],
        "config": record(config),
        "dataset": {"name": data.name, "n_train": data.n_train, "input_dim": data.input_dim,
                    "num_classes": data.num_classes},
        "model": describe(net), "num_params": num_params(net),
        "band": BAND, "start_below": START_BELOW,
        "runs": runs,
        "fit_seconds": result.wall_seconds,
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
    }


def _first(steps, mask) -> int | None:
    hit = np.flatnonzero(mask)
    return int(steps[hit[0]]) if hit.size else None


def at_the_edge(run: dict) -> bool:
    """The study's claim for one run: it starts below ``START_BELOW`` x 2/eta, rises, and its median over the last
    half of training lies in ``BAND`` x 2/eta."""
    return (run["initial_ratio"] < START_BELOW and run["max_ratio"] > run["initial_ratio"]
            and BAND[0] <= run["late_median_ratio"] <= BAND[1])


def figures(results: dict, out: Path) -> None:
    """Cohen et al.'s Figure 1: the training cost (top) and the sharpness with 2/eta dashed (bottom) against steps,
    one colour per learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxgd.analysis.plots import finish

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, layout="constrained")
    rates = sorted({r["learning_rate"] for r in results["runs"]})
    color = {lr: f"C{i}" for i, lr in enumerate(rates)}
    for r in results["runs"]:
        label = f"eta = {r['learning_rate']:g}" if r["seed"] == 0 else None
        top.plot(r["steps"], r["cost"], color=color[r["learning_rate"]], lw=1, label=label)
        bottom.plot(r["steps"], r["sharpness"], color=color[r["learning_rate"]], lw=1, label=label)
    for lr in rates:
        bottom.axhline(2 / lr, color=color[lr], ls="--", lw=1)
    top.set(ylabel="training cost", yscale="log", title="training cost")
    bottom.set(xlabel="step (full-batch gradient descent)", ylabel="sharpness (top Hessian eigenvalue)",
               title="sharpness; dashed: 2 / eta", ylim=(0, 1.3 * 2 / min(rates)))
    top.legend(fontsize=8)
    d, c = results["dataset"], results["config"]
    finish(fig, [top, bottom], f"Edge of stability: {d['name']} ({d['n_train']} examples), {c['cost']} cost, "
                               f"full-batch gradient descent", out / "edge_of_stability.png")


def format_table(results: dict) -> str:
    lines = ["| eta | 2/eta | seed | sharpness at step 0 / (2/eta) | max / (2/eta) | median over last half / (2/eta) | "
             "first step at 0.9 x 2/eta | final cost | at the edge |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results["runs"]:
        first = "-" if r["first_step_at_edge"] is None else str(r["first_step_at_edge"])
        lines.append(f"| {r['learning_rate']:g} | {r['edge']:.2f} | {r['seed']} | {r['initial_ratio']:.2f} | "
                     f"{r['max_ratio']:.2f} | {r['late_median_ratio']:.2f} | {first} | {r['cost'][-1]:.4f} | "
                     f"{'yes' if at_the_edge(r) else 'no'} |")
    return "\n".join(lines)


def parse_args(argv=None):
    from experiments import common
    from jaxgd.cli.options import int_list, positive

    p = common.parser("edge_of_stability.py", __doc__.splitlines()[0], PRESETS, "runs/edge_of_stability-{preset}")
    p.add_argument("--lrs", type=lambda t: tuple(positive(float)(v) for v in t.split(",")), dest="learning_rates",
                   help="learning rates, each a member of the population (--lr: one)")
    p.add_argument("--hidden", type=int_list, help="the MLP's hidden widths")
    p.add_argument("--output", choices=("identity", "sigmoid"), help="the MLP's output activation")
    p.add_argument("--init", choices=("normal", "lecun", "glorot", "he"))
    p.add_argument("--eval-every", type=positive(int), dest="eval_every", help="steps between evaluations")
    p.add_argument("--sharpness-iters", type=positive(int), dest="sharpness_iters")
    p.add_argument("--sharpness-examples", type=positive(int), dest="sharpness_examples")
    p.set_defaults(checkpoint_every=1000)  # full batch: an epoch is one step
    return p.parse_args(argv)


def make_config(args) -> EdgeOfStabilityConfig:
    from experiments.common import config_from_args

    if args.learning_rate is not None:  # --lr: one rate
        args.learning_rates, args.learning_rate = (args.learning_rate,), None
    return validate(config_from_args(args, PRESETS, ("learning_rates", "hidden", "output", "init", "eval_every",
                                                     "sharpness_iters", "sharpness_examples")))


def validate(config: EdgeOfStabilityConfig) -> EdgeOfStabilityConfig:
    if not config.learning_rates or any(not lr > 0 for lr in config.learning_rates):
        raise InvalidArgument(f"Learning rates must be positive, got {config.learning_rates}.")
    return config


def main(argv=None) -> int:
    from experiments import common

    return common.main("edge_of_stability.py", argv, parse_args, make_config, run, figures, format_table,
                       "runs/edge_of_stability-{preset}")


if __name__ == "__main__":
    sys.exit(main())
