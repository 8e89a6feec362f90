import jax
import numpy as np
import pytest

import jaxgd


@pytest.fixture
def x64():
    """Float64 for exact gradient comparisons, restored afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="session")
def digits():
    return jaxgd.data.load("digits")


@pytest.fixture(scope="session")
def small_digits(digits):
    """400 training examples: enough to learn, small enough to train in a fraction of a second."""
    return jaxgd.data.subset(digits, n_train=400)


def write_fake_idx_dir(path, n_train=60, n_test=20, side=28, num_classes=10, seed=0, gz=False):
    """A directory of IDX files whose images carry a learnable class signal (a bright row per class)."""
    from jaxgd.data import write_idx

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, num_classes, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, side, side)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, (2 * int(c)) % side, :] = 255
        write_idx(path / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(path / f"{split}-labels-idx1-ubyte{suffix}", labels)
    return path


class Killed(Exception):
    """Raised by :func:`kill_after`'s callback: a run interrupted at an evaluation."""


def kill_after(epoch):
    """A ``fit`` callback that interrupts training once ``epoch`` epochs are evaluated."""
    def callback(e, metrics):
        if e >= epoch:
            raise Killed
    return callback
