"""Shared pieces of the benchmarks: the MNIST-shaped data, timing, FLOP counts and the matmul ceiling."""
from __future__ import annotations

import time

import numpy as np

SIZES = (784, 16, 16, 10)
N_TRAIN = 50_000
LEARNING_RATE = 3.0
#: The CNN benchmarked: jaxgd.models.CNN's default for 28x28 images (and the torch peers' copy of it).
CNN_CHANNELS = (16, 32)
CNN_LEARNING_RATE = 0.05
#: The regularized CNN (model "cnn_bn"): the same CNN with batch norm after each convolution and dropout
#: at this rate before its dense layer, trained in training mode (batch statistics, dropout masks).
CNN_DROPOUT = 0.25


def mnist_shaped(n: int = N_TRAIN, seed: int = 0):
    """50,000 x 784 uniform inputs in [0, 1) and labels in 0..9: timing needs the shape, not the digits."""
    rng = np.random.default_rng(seed)
    return rng.random((n, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], n).astype(np.int32)


def num_weights(sizes=SIZES) -> int:
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def cnn_macs(channels=CNN_CHANNELS, side: int = 28, kernel: int = 3, classes: int = 10) -> int:
    """Multiply-adds of one example's forward pass through the benchmarked CNN (convolutions at full
    resolution, each followed by 2x2 pooling, then the dense layer)."""
    macs, c_in = 0, 1
    for c in channels:
        macs += side * side * kernel * kernel * c_in * c
        side, c_in = side // 2, c
    return macs + side * side * c_in * classes


def epoch_flops(seeds: int, n: int = N_TRAIN, sizes=SIZES, model: str = "mlp") -> float:
    """6 x multiply-adds x examples per seed-epoch (2 forward, 4 backward), times the seeds; an MLP's
    multiply-adds are its weights."""
    return 6.0 * (num_weights(sizes) if model == "mlp" else cnn_macs()) * n * seeds  # cnn_bn: the CNN's products


#: Each timing keeps calling its function until it has spent this long (and made its minimum number
#: of calls): a short program timed only three times can be caught by one noisy moment of a shared machine.
MIN_SECONDS = 2.0


def best_time(fn, repeats: int = 3, min_seconds: float | None = None, max_calls: int = 50) -> float:
    """The fastest call of ``fn()`` (which must block until its work is done): at least ``repeats``
    calls, more until ``min_seconds`` (default :data:`MIN_SECONDS`) have been spent, at most ``max_calls``."""
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    best, spent, calls = float("inf"), 0.0, 0
    while calls < repeats or (spent < min_seconds and calls < max_calls):
        t = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t
        best, spent, calls = min(best, elapsed), spent + elapsed, calls + 1
    return best


#: Rounds over which :func:`interleaved_best_times` spreads each program's calls.
ROUNDS = 3


def interleaved_best_times(calls, rounds: int | None = None, min_seconds: float | None = None,
                           progress=None) -> list[float]:
    """The fastest call of each of ``calls`` (functions that block until their work is done), timed in turns.

    Each of ``rounds`` rounds (default :data:`ROUNDS`) times every function once in turn with
    :func:`best_time` (at least one call, more until ``min_seconds / rounds`` have been spent; default
    :data:`MIN_SECONDS`), so that every function gets at least ``rounds`` calls and ``min_seconds`` of
    timing, as :func:`best_time` would give it, but spread over the whole measurement: a noisy minute of
    a shared machine then slows one call of every function instead of all the calls of the one that
    happened to be timed then, and a ratio of two functions' times does not depend on which came first.
    ``progress(round)`` is called before each round.
    """
    rounds = ROUNDS if rounds is None else rounds
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}.")
    best = [float("inf")] * len(calls)
    for r in range(rounds):
        if progress is not None:
            progress(r)
        for i, fn in enumerate(calls):
            best[i] = min(best[i], best_time(fn, 1, min_seconds / rounds))
    return best


def matmul_rate(n: int = 2048, precision: str | None = None) -> dict:
    """Float32 matrix-multiply rate (FLOP/s) of jax.numpy and NumPy on this machine, and the better of the two.

    jax's product is computed at ``precision`` (``jax.default_matmul_precision``'s names; default:
    jaxgd's, ``TrainConfig.matmul_precision``): on GPUs JAX's ``"default"`` is TF32, several times
    faster than the float32 products jaxgd trains with. CPUs compute float32 either way.
    """
    import jax

    from jaxgd.training.config import MATMUL_PRECISION

    precision = MATMUL_PRECISION if precision is None else precision
    a = np.random.default_rng(1).random((n, n), dtype=np.float32)
    mm = jax.jit(lambda x: jax.numpy.matmul(x, x, precision=precision))
    ja = jax.device_put(a)
    mm(ja).block_until_ready()
    t_jax = best_time(lambda: mm(ja).block_until_ready(), 5)
    a @ a
    t_np = best_time(lambda: a @ a, 5)
    flops = 2.0 * n ** 3
    out = {"jax": flops / t_jax, "numpy": flops / t_np}
    out["ceiling"] = max(out.values())
    return out


def torch_device():
    """Where the PyTorch peers run: the GPU when JAX runs on one too (so both sides use the same chip), else the CPU."""
    import jax
    import torch

    return torch.device("cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu")


def torch_sync(device) -> None:
    """Waits for the device's queued work (timing a GPU needs it; a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
