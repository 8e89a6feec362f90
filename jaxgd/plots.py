"""Figures of a training run: learning curves and what each first-layer neuron looks for."""
from __future__ import annotations

import io
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxgd.results import atomic_write_bytes  # noqa: E402


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

    ``w`` is ``(n_in, n_hidden)``; 1-D inputs are drawn as one row. Blue is negative, red positive, each neuron on its
    own symmetric colour scale — the lesson's picture of what a neuron "looks for".
    """
    w = np.asarray(w)
    n_in, n_hidden = w.shape
    if image_shape is None or int(np.prod(image_shape)) != n_in:
        side = math.isqrt(n_in)
        image_shape = (side, side) if side * side == n_in else (1, n_in)
    if len(image_shape) == 1:  # a signal such as MNIST-1D's: one row
        image_shape = (1, n_in)
    hw = tuple(image_shape[:2])
    channels = int(np.prod(image_shape[2:])) if len(image_shape) > 2 else 1
    shown = min(n_hidden, 64)
    cols = min(8, shown)
    rows = math.ceil(shown / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.4), squeeze=False)
    for j, ax in enumerate(axes.flat):
        ax.axis("off")
        if j >= shown:
            continue
        img = w[:, j].reshape(*hw, channels).mean(axis=-1)  # colour inputs: average the channels
        lim = float(np.max(np.abs(img))) or 1.0
        ax.imshow(img, cmap="bwr", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(str(j), fontsize=7)
    fig.suptitle(title + (f" (first {shown} of {n_hidden})" if shown < n_hidden else ""), fontsize=9)
    save_figure(fig, path)
