"""Linear models: SGD finds the minimum-norm solution, kernel interpolation generalizes, 2n + d weights fit n points.

Reproduces, on any dataset jaxgd can load, the appeal to linear models and the finite-sample
expressivity theorem of Zhang, Bengio, Hardt, Recht and Vinyals, "Understanding deep learning
requires rethinking generalization", ICLR 2017, https://arxiv.org/abs/1611.03530:

(a) SGD from zero on a linear least-squares model with more parameters than examples: every
    update is a combination of the examples, so SGD stays in their span and converges to the
    interpolating solution of minimum norm, the pseudo-inverse's (checked against NumPy's
    ``lstsq`` in float64 on the same design, bias column included);
(b) kernel interpolation: a Gaussian kernel, ``K alpha = Y`` solved exactly (Cholesky, float64, no
    regularisation), fits every training label and still generalizes (the paper: 1.2% test
    error on MNIST);
(c) Theorem 1: a two-layer ReLU network with 2n + d parameters represents any n real targets
    (:func:`jaxgd.theory.interpolating_network`), here random Gaussian ones on training images.

    python experiments/linear_models.py --preset quick                                # the digits, about 20 s
    python experiments/linear_models.py --preset mnist --data-dir DIR --n-train 4000 --n-test 1000
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.errors import InvalidArgument

if __package__ in (None, ""):  # run as `python experiments/linear_models.py`: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Zhang et al. (2017): kernel interpolation (Gaussian kernel, no preprocessing) on the full MNIST.
PAPER_KERNEL_TEST_ERROR_MNIST = 0.012
#: Bytes of one float64.
F64 = 8
#: At most this many bytes for a block of kernel rows when predicting (the kernel matrix itself aside).
BLOCK_BYTES = 1 << 28


@dataclasses.dataclass(frozen=True)
class LinearModelsConfig:
    """One run of the study.

    ``dataset`` is a name (``None`` with ``data_dir``: IDX files) or a :class:`jaxgd.data.Dataset`;
    ``n_train`` / ``n_test`` keep the first images of each split (``None``: all of them).

    (a) ``sgd_examples`` (``None``: ``d // 2``, half the input dimension) first training images, one-hot
    targets, a linear model ``x W + b`` started at zero, plain SGD on the quadratic cost with
    ``batch_size`` (``None``: full batch) and ``learning_rate`` (``None``: ``1 / max_i ||(x_i, 1)||^2``:
    a minibatch's Hessian has no eigenvalue above ``2 max_i ||(x_i, 1)||^2``, so with this step no update
    moves away from the solutions), for ``epochs`` epochs, evaluated ``evaluations`` times.

    (b) the Gaussian kernel ``exp(-||x - x'||^2 / s)`` with ``s = bandwidth_factor`` x the median squared
    distance between two training images; ``bandwidth_factors`` are also solved, for the figure.

    (c) the first ``network_points`` distinct training images (fewer if there are fewer), standard
    normal targets drawn with ``seed``.
    """

    dataset: object = "digits"
    data_dir: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    num_classes: int | None = None
    input_scale: str | None = None
    sgd_examples: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = 8
    epochs: int = 20_000
    evaluations: int = 40
    bandwidth_factor: float = 0.5
    bandwidth_factors: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0)
    network_points: int = 1000
    seed: int = 0


PRESETS = {
    # The embedded digits: 1,438 training and 359 test images of 8x8. SGD on the first 32 images (65
    # parameters per class), the kernel on every training image, the network on 1,000 of them.
    "quick": LinearModelsConfig(),
    # MNIST (TFDS, or --data-dir for IDX files): every image by default, so the kernel matrix alone needs
    # 28.8 GB (60,000^2 float64; refused where it does not fit); --n-train 4000 --n-test 1000 needs 0.3 GB.
    # SGD on the first 392 images (d // 2), Theorem 1's network on 2,000. Not run here: no MNIST on this machine.
    "mnist": LinearModelsConfig(dataset="mnist", network_points=2000, bandwidth_factors=(0.25, 0.5, 1.0)),
}


@dataclasses.dataclass(frozen=True)
class LinearModel:
    """``x W + b`` for ``input_dim`` inputs and ``num_classes`` outputs, started at zero (whatever the key)."""

    input_dim: int
    num_classes: int

    def init(self, key):
        import jax.numpy as jnp

        return {"w": jnp.zeros((self.input_dim, self.num_classes)), "b": jnp.zeros((self.num_classes,))}

    def apply(self, params, x):
        return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]

    def describe(self) -> dict:
        return {"model": "linear", "input_dim": self.input_dim, "num_classes": self.num_classes, "init": "zeros"}


def distance_to(w_min: np.ndarray, b_min: np.ndarray):
    """The metric ``||(W, b) - (W_min, b_min)|| / ||(W_min, b_min)||`` of a linear model's parameters."""
    norm = float(np.sqrt(np.sum(w_min ** 2) + np.sum(b_min ** 2)))
    w_min, b_min = np.asarray(w_min, np.float32), np.asarray(b_min, np.float32)

    def distance_to_min_norm(params):
        import jax.numpy as jnp

        return jnp.sqrt(jnp.sum((params["w"] - w_min) ** 2) + jnp.sum((params["b"] - b_min) ** 2)) / norm

    return distance_to_min_norm


# --- memory ------------------------------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes this process can still allocate (:func:`jaxgd.io.memory.host_available_bytes`)."""
    from jaxgd.io.memory import host_available_bytes

    return host_available_bytes()


def kernel_memory(n: int, n_test: int, d: int) -> int:
    """Bytes kernel interpolation needs for ``n`` training and ``n_test`` test images of ``d`` values: the n x n
    float64 kernel matrix (factorised in place), a block of kernel rows for predicting, the images in float64."""
    block_rows = min(max(n, n_test), max(1, BLOCK_BYTES // (F64 * max(n, 1))))
    return F64 * (n * n + block_rows * n + (n + n_test) * d)


def check_memory(n: int, n_test: int, d: int) -> None:
    """Refuses, in one line that names what it needs and what would fit, a kernel that would not fit in memory."""
    need, available = kernel_memory(n, n_test, d), available_memory()
    if available is None or need <= available:
        return
    fits = n  # what would fit in 80% of the available memory, leaving the rest to the process
    while fits > 1 and kernel_memory(fits, n_test, d) > 0.8 * available:
        fits = int(fits * 0.95)
    fits = fits // 1000 * 1000 if fits >= 2000 else fits
    raise InvalidArgument(f"kernel interpolation on {n:,} training images needs {size(need)} (the {n:,} x {n:,} float64 "
                     f"kernel matrix is {size(F64 * n * n)}) but {size(available)} are available; use fewer training "
                     f"images, e.g. --n-train {fits}.")


def size(nbytes: int) -> str:
    """``nbytes`` in GB (MB below one GB), for messages."""
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


# --- (b) kernel interpolation -----------------------------------------------------------------------------------


def squared_distances(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``||a_i - b_j||^2`` ``(len(a), len(b))`` in float64, written into ``out`` when given."""
    out = np.matmul(a, b.T, out=out)
    out *= -2.0
    out += np.einsum("ij,ij->i", a, a)[:, None]
    out += np.einsum("ij,ij->i", b, b)[None, :]
    return np.maximum(out, 0.0, out=out)


def median_squared_distance(x: np.ndarray, buffer: np.ndarray) -> float:
    """The median of ``||x_i - x_j||^2`` over the pairs ``i != j``, using ``buffer (n, n)`` as scratch space.

    Every pair appears twice in the full matrix and its ``n`` diagonal zeros are its smallest entries, so
    the pairs' median is the mean of the full matrix's entries of rank ``n + n(n-1)/2 - 1`` and
    ``n + n(n-1)/2``, found by partitioning the matrix in place (no copy of its n^2 entries).
    """
    n = len(x)
    if n < 2:
        raise InvalidArgument("The kernel's bandwidth needs at least two training images.")
    squared_distances(x, x, out=buffer)
    np.fill_diagonal(buffer, 0.0)
    flat = buffer.reshape(-1)
    k = n + n * (n - 1) // 2
    flat.partition([k - 1, k])
    return 0.5 * (float(flat[k - 1]) + float(flat[k]))


def kernel_predict(x: np.ndarray, x_train: np.ndarray, alpha: np.ndarray, scale: float) -> np.ndarray:
    """``K(x, x_train) alpha`` in blocks of rows, so that only a block of the kernel is held at a time."""
    rows = max(1, BLOCK_BYTES // (F64 * len(x_train)))
    out = np.empty((len(x), alpha.shape[1]))
    for start in range(0, len(x), rows):
        k = squared_distances(x[start:start + rows], x_train)
        k *= -1.0 / scale
        np.exp(k, out=k)
        out[start:start + rows] = k @ alpha
    return out


def kernel_interpolation(x, y, x_test, y_test, num_classes: int, factors, median: float, buffer) -> list[dict]:
    """For each bandwidth factor: solve ``K alpha = Y`` (one-hot Y) by Cholesky in ``buffer``, predict the argmax."""
    import scipy.linalg

    targets = np.eye(num_classes)[y]
    rows = []
    for factor in factors:
        scale = float(factor) * median
        start = time.perf_counter()
        k = squared_distances(x, x, out=buffer)
        k *= -1.0 / scale
        np.exp(k, out=k)
        try:  # k is symmetric: its transpose is the Fortran-ordered view LAPACK factorises in place, without a copy
            factor_l = scipy.linalg.cho_factor(k.T, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            rows.append({"bandwidth_factor": float(factor), "bandwidth": scale, "train_accuracy": None,
                         "test_accuracy": None, "max_train_residual": None,
                         "note": "the kernel matrix is not positive definite in float64 at this bandwidth"})
            continue
        alpha = scipy.linalg.cho_solve(factor_l, targets, check_finite=False)
        train = kernel_predict(x, x, alpha, scale)
        test = kernel_predict(x_test, x, alpha, scale)
        rows.append({"bandwidth_factor": float(factor), "bandwidth": scale,
                     "train_accuracy": float(np.mean(np.argmax(train, 1) == y)),
                     "test_accuracy": float(np.mean(np.argmax(test, 1) == y_test)),
                     "max_train_residual": float(np.max(np.abs(train - targets))),
                     "alpha_norm": float(np.linalg.norm(alpha)), "seconds": time.perf_counter() - start})
    return rows


def first_distinct(x: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Indices of the first ``limit`` (all: ``None``) rows of ``x`` that repeat no earlier row, in order."""
    _, first = np.unique(x, axis=0, return_index=True)
    first = np.sort(first)
    return first if limit is None else first[:limit]


# --- the study ---------------------------------------------------------------------------------------------------


def load_data(config: LinearModelsConfig):
    """The study's dataset: loaded (or given), ``n_train`` and ``n_test`` applied, images as flat rows."""
    from experiments.common import study_data

    for name in ("n_test", "sgd_examples", "network_points", "evaluations", "epochs"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise InvalidArgument(f"{name} must be a positive integer, got {value!r}.")
    data = study_data(config)
    if config.n_test is not None:
        if config.n_test > len(data.y_test):
            raise InvalidArgument(f"n_test={config.n_test} is larger than the {len(data.y_test)} test examples of "
                             f"{data.name}.")
        data = data.replace(x_test=data.x_test[:config.n_test], y_test=data.y_test[:config.n_test])
    return data.replace(input_shape=(data.input_dim,))


def sgd_vs_min_norm(data, config: LinearModelsConfig, *, progress: bool, checkpoint, checkpoint_every: int) -> dict:
    """(a): plain SGD from zero against the minimum-norm least-squares solution."""
    import jax

    import jaxgd

    d, k = data.input_dim, data.num_classes
    n = d // 2 if config.sgd_examples is None else config.sgd_examples
    if n >= d:
        raise InvalidArgument(f"sgd_examples={n} must be below the input dimension {d}: the model needs more parameters "
                         "than examples.")
    if n > data.n_train:
        raise InvalidArgument(f"sgd_examples={n} is larger than the {data.n_train} training examples.")
    sub = data.replace(x_train=data.x_train[:n], y_train=data.y_train[:n])
    design = np.hstack([sub.x_train.astype(np.float64), np.ones((n, 1))])  # the bias as a column of ones
    targets = np.eye(k)[sub.y_train]
    solution, _, rank, _ = np.linalg.lstsq(design, targets, rcond=None)  # the minimum-norm solution
    w_min, b_min = solution[:d], solution[d]
    lr = config.learning_rate
    if lr is None:
        lr = 1.0 / float(np.max(np.sum(design ** 2, axis=1)))
    batch = config.batch_size
    steps_per_epoch = 1 if batch is None or batch >= n else n // batch
    eval_every = max(1, config.epochs // config.evaluations)
    train_config = jaxgd.TrainConfig(cost="quadratic", optimizer="sgd", learning_rate=lr, batch_size=batch,
                                     epochs=config.epochs, eval_every=eval_every, divergence_factor=None)
    model = LinearModel(d, k)
    result = jaxgd.fit(jax.random.key(config.seed), model, sub, train_config,
                       metrics={"distance_to_min_norm": distance_to(w_min, b_min)}, progress=progress,
                       checkpoint=None if checkpoint is None else Path(checkpoint) / "sgd",
                       checkpoint_every=max(checkpoint_every, eval_every))
    found = np.vstack([np.asarray(result.params["w"], np.float64), np.asarray(result.params["b"], np.float64)[None]])
    relative = float(np.linalg.norm(found - solution) / np.linalg.norm(solution))
    # SGD's updates are combinations of the rows of the design: the part of its solution outside their span.
    _, s, vt = np.linalg.svd(design, full_matrices=False)
    span = vt[s > s[0] * max(design.shape) * np.finfo(np.float64).eps]
    outside = found - span.T @ (span @ found)
    # Gradient descent with the same step and number of steps (its iterate is exact from the spectrum):
    # the error along the k-th right singular vector shrinks by (1 - lr * 2 s_k^2 / n) per step.
    coefficient = (span @ solution)  # (rank, classes): the min-norm solution in the span's basis
    contraction = 1.0 - lr * 2.0 * s[: len(span)] ** 2 / n
    h = result.history
    epochs = np.asarray(h["epoch"])
    predicted = [float(np.sqrt(np.sum((contraction[:, None] ** (e * steps_per_epoch) * coefficient) ** 2))
                       / np.linalg.norm(solution)) for e in epochs]
    test_min_norm = np.argmax(np.hstack([data.x_test.astype(np.float64), np.ones((len(data.y_test), 1))]) @ solution, 1)
    return {
        "n": n, "d": d, "classes": k, "parameters": (d + 1) * k, "rank": int(rank),
        "examples": f"the first {n} training images" + (" (d // 2)" if config.sgd_examples is None else ""),
        "learning_rate": lr,
        "learning_rate_rule": None if config.learning_rate is not None else "1 / max_i ||(x_i, 1)||^2",
        "batch_size": batch, "epochs": config.epochs, "steps": config.epochs * steps_per_epoch,
        "relative_difference": relative,
        "outside_span": float(np.linalg.norm(outside) / np.linalg.norm(found)),
        "min_norm": float(np.linalg.norm(solution)), "sgd_norm": float(np.linalg.norm(found)),
        "train_cost": float(h["train_cost"][-1]), "train_accuracy": float(h["train_accuracy"][-1]),
        "test_accuracy": float(h["test_accuracy"][-1]),
        "test_accuracy_min_norm": float(np.mean(test_min_norm == data.y_test)),
        "hessian_eigenvalues": {"largest": float(2 * s[0] ** 2 / n),
                                "smallest_nonzero": float(2 * s[len(span) - 1] ** 2 / n)},
        "fit_seconds": result.wall_seconds,
        "curve": {"epoch": epochs, "relative_difference": np.asarray(h["distance_to_min_norm"], np.float64),
                  "train_cost": np.asarray(h["train_cost"], np.float64), "gd_prediction": predicted},
    }


def finite_sample_network(data, config: LinearModelsConfig) -> dict:
    """(c): Theorem 1's network on the first ``network_points`` distinct training images, random targets."""
    import jaxgd

    index = first_distinct(data.x_train, config.network_points)
    x = data.x_train[index].astype(np.float64)
    y = np.random.default_rng(config.seed).standard_normal(len(x))
    start = time.perf_counter()
    net = jaxgd.theory.interpolating_network(x, y, seed=config.seed)
    seconds = time.perf_counter() - start
    out = jaxgd.theory.network_output(net.params, x)
    error = np.abs(out - y)
    n, d = x.shape
    # A window of the construction for the figure: the network along <a, x> through consecutive points.
    z = x @ net.params["a"]
    order = np.argsort(z)
    lo = max(0, n // 2 - 6)
    window = order[lo:lo + 12]
    grid = np.linspace(z[window].min(), z[window].max(), 400)
    curve = np.maximum(grid[:, None] - net.params["b"][None, :], 0.0) @ net.params["w"]
    return {"n": n, "d": d, "num_params": net.num_params, "expected_num_params": 2 * n + d,
            "max_abs_error": float(error.max()), "median_abs_error": float(np.median(error)),
            "max_abs_weight": float(np.max(np.abs(net.params["w"]))), "targets": "standard normal",
            "points": f"the first {n} distinct training images", "seconds": seconds,
            "curve": {"z": grid, "output": curve, "points_z": z[window], "points_y": y[window]}}


def run(config: LinearModelsConfig, *, progress: bool = False, checkpoint=None, checkpoint_every: int = 10) -> dict:
    """Runs (a), (b) and (c) and returns the results (also what ``results.json`` holds). Refuses, before computing
    anything, a training set whose kernel matrix would not fit in memory. With ``checkpoint`` (a directory),
    (a)'s SGD checkpoints in ``checkpoint/sgd`` and a resumed run continues it."""
    from experiments.common import record
    from jaxgd.io.environment import environment

    start = time.perf_counter()
    try:
        factor = float(config.bandwidth_factor)
        factors = sorted({factor, *(float(f) for f in config.bandwidth_factors)})
    except (TypeError, ValueError):
        factors = [float("nan")]
    if any(not 0 < f < float("inf") for f in factors):
        raise InvalidArgument(f"bandwidth_factor and bandwidth_factors must be positive numbers, got "
                         f"{config.bandwidth_factor!r} and {config.bandwidth_factors!r}.")
    data = load_data(config)
    kernel_index = first_distinct(data.x_train)
    n, n_test, d = len(kernel_index), len(data.y_test), data.input_dim
    check_memory(n, n_test, d)

    sgd = sgd_vs_min_norm(data, config, progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every)

    x = data.x_train[kernel_index].astype(np.float64)
    y = data.y_train[kernel_index]
    buffer = np.empty((n, n))
    median = median_squared_distance(x, buffer)
    rows = kernel_interpolation(x, y, data.x_test.astype(np.float64), data.y_test, data.num_classes, factors, median,
                                buffer)
    del buffer
    chosen = next(r for r in rows if r["bandwidth_factor"] == factor)
    if chosen["test_accuracy"] is None:
        raise InvalidArgument(f"The kernel matrix at bandwidth factor {factor} is not positive definite in float64; "
                         "choose a smaller --bandwidth-factor.")
    kernel = {"n": n, "n_test": n_test, "d": d, "duplicates_dropped": data.n_train - n, "kernel": "gaussian",
              "bandwidth_rule": "bandwidth_factor x the median squared distance between two training images",
              "median_squared_distance": median, **chosen, "sweep": rows,
              "memory_bytes": kernel_memory(n, n_test, d)}

    network = finite_sample_network(data, config)
    return {
        "study": "linear_models",
        "references": ["arXiv:1611.03530"],
        "config": record(config),
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": n_test, "input_dim": d,
                    "num_classes": data.num_classes},
        "paper": {"kernel_test_error_mnist": PAPER_KERNEL_TEST_ERROR_MNIST, "theorem_1_params": "2n + d"},
        "sgd_vs_min_norm": sgd,
        "kernel_interpolation": kernel,
        "finite_sample_network": network,
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
    }


def figures(results: dict, out: Path) -> None:
    """(a) SGD's distance to the minimum-norm solution and its training cost against epochs; (b) kernel
    interpolation's accuracy against the bandwidth factor; (c) Theorem 1's network through a few points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from jaxgd.analysis.plots import finish

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    sgd = results["sgd_vs_min_norm"]
    c = sgd["curve"]
    ax = axes[0]
    positive = lambda v: np.where(np.asarray(v, float) > 1e-14, np.asarray(v, float), np.nan)  # noqa: E731
    ax.plot(c["epoch"], positive(c["relative_difference"]), "C0-", label="SGD: ||W - W_min|| / ||W_min||")
    ax.plot(c["epoch"], positive(c["gd_prediction"]), "C0:", label="gradient descent, same steps (theory)")
    ax.plot(c["epoch"], positive(c["train_cost"]), "C1-", label="SGD: training cost")
    ax.axhline(1e-3, color="k", lw=0.8, ls="--", label="1e-3")
    ax.set(xlabel="epoch", yscale="log",
           title=f"(a) SGD from zero, {sgd['n']} examples, {sgd['parameters']:,} parameters")
    ax.legend(fontsize=8)
    k = results["kernel_interpolation"]
    ax = axes[1]
    sweep = [r for r in k["sweep"] if r["test_accuracy"] is not None]
    f = [r["bandwidth_factor"] for r in sweep]
    ax.plot(f, [r["test_accuracy"] for r in sweep], "C2o-", label="test accuracy")
    ax.plot(f, [r["train_accuracy"] for r in sweep], "C3s--", label="training accuracy")
    ax.plot([k["bandwidth_factor"]], [k["test_accuracy"]], "k*", ms=12, label="the study's factor")
    if str(results["dataset"]["name"]).startswith("mnist"):
        ax.axhline(1 - results["paper"]["kernel_test_error_mnist"], color="r", ls=":", label="paper, full MNIST")
    ax.set(xscale="log", xlabel="bandwidth factor (x median squared distance)", ylabel="accuracy",
           title=f"(b) Gaussian kernel interpolation, n = {k['n']:,}")
    ax.set_xticks(f, [f"{v:g}" for v in f])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    net = results["finite_sample_network"]
    ax = axes[2]
    ax.plot(net["curve"]["z"], net["curve"]["output"], "C4-", label="network output c(x)")
    ax.plot(net["curve"]["points_z"], net["curve"]["points_y"], "ko", ms=5, label="targets")
    ax.set(xlabel="<a, x>",
           title=f"(c) {net['num_params']:,} = 2n + d parameters, max error {net['max_abs_error']:.1e}")
    ax.legend(fontsize=8)
    dset = results["dataset"]
    finish(fig, axes, f"Linear models and Theorem 1 on {dset['name']} ({dset['n_train']:,} train, "
                      f"{dset['n_test']:,} test)", out / "linear_models.png")


def format_table(results: dict) -> str:
    sgd, k, net = (results[name] for name in ("sgd_vs_min_norm", "kernel_interpolation", "finite_sample_network"))
    mnist = str(results["dataset"]["name"]).startswith("mnist")
    paper_acc = f"{1 - results['paper']['kernel_test_error_mnist']:.3f} (full MNIST)"
    batch = "full" if sgd["batch_size"] is None else sgd["batch_size"]
    lines = [
        f"{results['dataset']['name']}: {results['dataset']['n_train']:,} training and {k['n_test']:,} test images, "
        f"d = {k['d']}",
        "| part | quantity | this run | paper |",
        "|---|---|---:|---:|",
        f"| (a) SGD from zero vs min-norm ({sgd['n']} examples, {sgd['parameters']:,} parameters; batch {batch}, "
        f"lr {sgd['learning_rate']:.4g}, {sgd['epochs']:,} epochs) | relative difference | "
        f"{sgd['relative_difference']:.2e} | - |",
        f"| | gradient descent with the same steps (theory) | {sgd['curve']['gd_prediction'][-1]:.2e} | - |",
        f"| | training cost | {sgd['train_cost']:.2e} | - |",
        f"| | part outside the examples' span | {sgd['outside_span']:.2e} | 0 |",
        f"| (b) Gaussian kernel interpolation (n = {k['n']:,}, factor {k['bandwidth_factor']:g}) | train accuracy | "
        f"{k['train_accuracy']:.4f} | 1.000 |",
        f"| | test accuracy | {k['test_accuracy']:.4f} | {paper_acc if mnist else '-'} |",
        f"| (c) Theorem 1 network (n = {net['n']:,}, d = {net['d']}) | parameters | {net['num_params']:,} | "
        f"2n + d = {net['expected_num_params']:,} |",
        f"| | max abs error (float64) | {net['max_abs_error']:.2e} | 0 |",
        "bandwidth factor: " + ", ".join(
            f"{r['bandwidth_factor']:g} -> test {r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else
            f"{r['bandwidth_factor']:g} -> not positive definite" for r in k["sweep"]),
    ]
    if not mnist:
        lines.append(f"Paper (full MNIST, not run here): kernel interpolation test accuracy {paper_acc.split()[0]}.")
    return "\n".join(lines)


def parse_args(argv=None):
    from experiments import common
    from jaxgd.cli.options import positive

    def float_list(text):
        return tuple(positive(float)(v.strip()) for v in text.split(","))

    p = common.parser("linear_models.py", __doc__.splitlines()[0], PRESETS, "runs/linear_models-{preset}",
                      model_options=False)
    p.add_argument("--n-test", type=positive(int), dest="n_test", help="use only the first N test examples")
    p.add_argument("--sgd-examples", type=positive(int), dest="sgd_examples",
                   help="(a): SGD on the first N training images (default: half the input dimension)")
    p.add_argument("--evaluations", type=positive(int), help="(a): evaluations over the SGD run")
    p.add_argument("--bandwidth-factor", type=positive(float), dest="bandwidth_factor",
                   help="(b): the kernel's bandwidth, in multiples of the median squared distance between images")
    p.add_argument("--bandwidth-factors", type=float_list, dest="bandwidth_factors",
                   help="(b): more factors to solve for the figure, comma-separated")
    p.add_argument("--network-points", type=positive(int), dest="network_points",
                   help="(c): Theorem 1's network on the first N distinct training images")
    return p.parse_args(argv)


#: Options of experiments/common's parser that this study has no use for.
UNUSED = {"activation": "--activation", "cost": "--cost", "optimizer": "--optimizer", "seeds": "--seeds",
          "max_members": "--max-members"}


def make_config(args) -> LinearModelsConfig:
    from experiments.common import config_from_args

    for name, flag in UNUSED.items():
        if getattr(args, name, None) is not None:
            raise InvalidArgument(f"{flag} has no meaning for linear_models.py: part (a) is plain SGD on the quadratic "
                             "cost of one linear model; (b) and (c) are solved, not trained.")
    config = config_from_args(args, PRESETS, ("n_test", "sgd_examples", "evaluations", "bandwidth_factor",
                                              "bandwidth_factors", "network_points"))
    data = load_data(config)  # refused here, before the run directory is made, when the kernel cannot fit
    check_memory(data.n_train, len(data.y_test), data.input_dim)
    return config


def main(argv=None) -> int:
    from experiments import common

    return common.main("linear_models.py", argv, parse_args, make_config, run, figures, format_table,
                       "runs/linear_models-{preset}")


if __name__ == "__main__":
    sys.exit(main())
