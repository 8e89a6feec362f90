import atexit
import contextlib
import os
import shutil
import tempfile

# The suite compiles hundreds of small programs and runs each for a moment: XLA's compilation is most of its
# time. Without most optimizations they compile about 40% faster; every process of the session, and every
# command line it starts, uses the same setting, so results compared between them are computed alike. The
# experiments, which train for minutes, run optimized (:func:`optimized`, OPTIMIZED for command lines).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
OPTIMIZED = {"JAX_DISABLE_MOST_OPTIMIZATIONS": "0"}

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxgd  # noqa: E402

# One persistent compilation cache for the whole session — every test process and the command lines the tests
# start (JAXGD_CACHE_DIR) — so that a program compiled once (the same small network in many tests, the same run
# killed and restarted) is not compiled again. Kept apart from the user's own cache (~/.cache/jaxgd).
if "JAXGD_CACHE_DIR" not in os.environ:  # the first process of the session makes it and removes it at exit
    os.environ["JAXGD_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxgd-tests-")
    atexit.register(shutil.rmtree, os.environ["JAXGD_CACHE_DIR"], ignore_errors=True)
jax.config.update("jax_disable_most_optimizations", os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1")
jax.config.update("jax_compilation_cache_dir", os.path.join(os.environ["JAXGD_CACHE_DIR"], "xla"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


@contextlib.contextmanager
def optimized():
    """XLA's usual optimizations for what runs inside: the suite's long trainings (see the top of this file).

    JAX's in-memory caches of compiled functions are not keyed by ``jax_disable_most_optimizations``: a
    function compiled before, without optimizations, would be reused inside, and one compiled inside reused
    after. They are cleared on the way in and out, so that everything inside is compiled alike. (Without
    this, an Equinox population member and the same key trained alone, both inside, parted by 8.5e-3 after
    two epochs of Adam when another test had trained an Equinox model before them in the same process:
    one side ran a program compiled the other way, and Adam amplifies the last bit of rounding.)
    """
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    jax.clear_caches()
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
        jax.clear_caches()


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
