"""Peer: naive JAX — a jitted SGD step called from a Python loop, minibatches sliced on the host."""
from __future__ import annotations

import numpy as np

from benchmarks.common import LEARNING_RATE, SIZES, best_time


def seconds_per_epoch(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int = 500) -> float:
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), len(SIZES) - 1)
    params = [{"w": jax.random.normal(k, (a, b)), "b": jnp.zeros(b)} for k, a, b in zip(keys, SIZES[:-1], SIZES[1:])]

    def loss(params, xb, yb):
        a = xb
        for layer in params:
            a = jax.nn.sigmoid(a @ layer["w"] + layer["b"])
        return jnp.mean(jnp.sum((a - jax.nn.one_hot(yb, SIZES[-1])) ** 2, axis=1))

    @jax.jit
    def step(params, xb, yb):
        g = jax.grad(loss)(params, xb, yb)
        return jax.tree.map(lambda p, d: p - LEARNING_RATE * d, params, g)

    rng = np.random.default_rng(0)

    def run(k):
        nonlocal params
        perm = rng.permutation(len(x))
        for s in range(k):
            i = perm[s * batch_size:(s + 1) * batch_size]
            params = step(params, x[i], y[i])
        jax.block_until_ready(params)

    run(20)
    t = best_time(lambda: run(steps), 2)
    return t / steps * (len(x) // batch_size)
