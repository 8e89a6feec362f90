"""Figures of a training run: learning curves and what each first-layer neuron looks for."""
from __future__ import annotations

import io
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxgd.io.files import atomic_write_bytes  # noqa: E402


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def finish(fig, axes, title: str, path: str | os.PathLike) -> None:
    """Light grids on every panel, a title over the figure, then an atomic PNG write."""
    for ax in np.atleast_1d(axes).flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, path)


def learning_curve(history: dict, initial: dict, path: str | os.PathLike, title: str = "") -> None:
    """Cost and accuracy against epoch for the train and test splits (epoch 0 = before training)."""
    epochs = np.concatenate([[0], np.asarray(history["epoch"])])
    fig, (ax_c, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "-"), ("test", "--"), ("val", ":")):
        if f"{split}_cost" not in history:
            continue
        for metric, ax in (("cost", ax_c), ("accuracy", ax_a)):
            name = f"{split}_{metric}"
            y = np.concatenate([np.atleast_1d(initial[name])[..., None], np.atleast_2d(history[name])], axis=-1)
            y = y.reshape(-1, len(epochs))
            mean = np.nanmean(y, axis=0)
            line, = ax.plot(epochs, mean, style, label=split)
            if y.shape[0] > 1:
                ax.fill_between(epochs, np.nanmin(y, 0), np.nanmax(y, 0), color=line.get_color(), alpha=0.2)
    ax_c.set(xlabel="epoch", ylabel="cost", yscale="log", title="cost")
    ax_a.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.01), title="accuracy")
    for ax in (ax_c, ax_a):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def weights_image(w: np.ndarray, image_shape: tuple[int, ...] | None, path: str | os.PathLike,
                  title: str = "first-layer weights") -> None:
    """Each first-hidden-layer neuron's incoming weights drawn in the input's image shape.

    ``w`` is ``(n_in, n_hidden)``; 1-D inputs are drawn as one row. Blue is negative, red positive, on one
    symmetric colour scale shared by every neuron and shown by the colour bar — the lesson's picture of what a
    neuron "looks for", with sign and size readable.
    """
    w = np.asarray(w)
    n_in, n_hidden = w.shape
    hw = _image_shape(n_in, image_shape)
    channels = n_in // (hw[0] * hw[1])
    shown = min(n_hidden, 64)
    cols = min(8, shown)
    rows = math.ceil(shown / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.8, 1.3 * rows + 0.4), squeeze=False)
    images = [w[:, j].reshape(*hw, channels).mean(axis=-1) for j in range(shown)]  # colour inputs: channel mean
    lim = float(max(np.max(np.abs(img)) for img in images)) or 1.0
    drawn = None
    for j, ax in enumerate(axes.flat):
        ax.axis("off")
        if j >= shown:
            continue
        drawn = ax.imshow(images[j], cmap="bwr", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(str(j), fontsize=7)
    fig.colorbar(drawn, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
    fig.suptitle(title + (f" (first {shown} of {n_hidden})" if shown < n_hidden else ""), fontsize=9)
    save_figure(fig, path)


def weights_across_seeds(ws: np.ndarray, image_shape: tuple[int, ...] | None, path: str | os.PathLike,
                         title: str = "first-layer weights across seeds", max_units: int = 32) -> None:
    """The lesson's picture for many seeds: row ``s`` shows the first-layer weights of seed ``s``, one small image
    per hidden unit (column), on one symmetric colour scale.

    ``ws`` is ``(seeds, n_in, n_hidden)``, each seed's units already aligned to the first seed's
    (:func:`jaxgd.landscape.align`), so that a column holds the units that play the same part in every seed and a
    feature that recurs across seeds shows as a column of alike images.
    """
    ws = np.asarray(ws)
    seeds, n_in, n_hidden = ws.shape
    hw = _image_shape(n_in, image_shape)
    shown = min(n_hidden, max_units)
    fig, axes = plt.subplots(seeds, shown, figsize=(0.55 * shown + 1.4, 0.55 * seeds + 0.9), squeeze=False)
    images = ws[:, :, :shown].reshape(seeds, *hw, -1, shown).mean(axis=-2)  # colour inputs: channel mean
    lim = float(np.max(np.abs(images))) or 1.0
    drawn = None
    for s in range(seeds):
        for j in range(shown):
            ax = axes[s, j]
            ax.set_xticks([])
            ax.set_yticks([])
            drawn = ax.imshow(images[s, ..., j], cmap="bwr", vmin=-lim, vmax=lim, interpolation="nearest",
                              aspect="auto" if hw[0] == 1 else "equal")
            if s == 0:
                ax.set_title(str(j), fontsize=6)
        axes[s, 0].set_ylabel(f"seed {s}", fontsize=6, rotation=0, ha="right", va="center")
    fig.colorbar(drawn, ax=axes.ravel().tolist(), shrink=0.6, label="weight")
    fig.suptitle(title + (f" (first {shown} of {n_hidden} units)" if shown < n_hidden else ""), fontsize=9)
    save_figure(fig, path)


def _image_shape(n_in: int, image_shape) -> tuple[int, int]:
    """How ``n_in`` input weights are drawn: the input's height and width, a square, or one row (a signal such as
    MNIST-1D's)."""
    if image_shape is not None and int(np.prod(image_shape)) == n_in:
        return (1, n_in) if len(image_shape) == 1 else tuple(image_shape[:2])
    side = math.isqrt(n_in)
    return (side, side) if side * side == n_in else (1, n_in)


def sweep_figure(groups: dict, path: str | os.PathLike, title: str = "") -> None:
    """Final metrics against the swept values: each setting's mean over its seeds with its 95% interval.

    ``groups`` maps a metric to :func:`jaxgd.grouped_stats` rows (each with the swept values as keys). The
    first swept hyperparameter is the x axis (logarithmic when its values span a decade or more); the
    other ones, if any, give one line each.
    """
    metrics = [m for m in ("test_accuracy", "train_accuracy", "test_cost", "train_cost") if m in groups]
    rows0 = groups[metrics[0]]
    stats = {"group", "mean", "std", "min", "max", "members", "excluded", "ci_low", "ci_high"}
    names = [k for k in rows0[0] if k not in stats]
    x_name, others = names[0], names[1:]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False, layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        rows = groups[metric]
        lines = {}
        for r in rows:
            lines.setdefault(tuple(r[o] for o in others), []).append(r)
        for other, members in lines.items():
            x = np.array([r[x_name] for r in members])
            mean = np.array([r["mean"] for r in members], float)
            low = mean - np.array([r["ci_low"] for r in members], float)
            high = np.array([r["ci_high"] for r in members], float) - mean
            label = ", ".join(f"{o}={v:g}" for o, v in zip(others, other)) or None
            ax.errorbar(x, mean, yerr=np.nan_to_num([low, high]), fmt="o-", capsize=3, label=label)
            for xi, r in zip(x, members):
                if r["excluded"]:
                    ax.annotate(f"{r['excluded']} diverged", (xi, ax.get_ylim()[1]), fontsize=7, ha="center",
                                va="top", color="C3")
        xs = [r[x_name] for r in rows if r[x_name] > 0]
        if xs and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        ax.set(xlabel=x_name, ylabel=metric, title=metric.replace("_", " "))
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
