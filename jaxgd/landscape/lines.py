"""Lines between minima: the cost along the straight segment between two parameter sets, and its barrier.

How far the cost rises between two networks says whether they lie in one basin (Goodfellow,
Vinyals & Saxe 2015, arXiv 1412.6544; Frankle et al. 2020, arXiv 1912.05671).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument
from jaxgd.models import check_params
from jaxgd.training.evaluation import evaluate


def _mix(params_a, params_b, alpha):
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, params_a, params_b)


def interpolate(model, cost, params_a, params_b, x, y, num: int = 25) -> dict:
    """Cost and accuracy at ``num`` evenly spaced points of the segment from ``params_a`` to ``params_b``.

    Returns:
      ``{"alpha": (num,), "cost": (num,), "accuracy": (num,)}``; ``alpha = 0`` is ``params_a``.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise InvalidArgument(f"interpolate needs at least 2 points, got num={num!r}.")
    check_params(model, params_a)
    check_params(model, params_b)
    return _line(model, cost, params_a, params_b, jnp.asarray(x), jnp.asarray(y), num)


@functools.partial(jax.jit, static_argnames=("model", "cost", "num"))  # one program per model, not per pair
def _line(model, cost, params_a, params_b, x, y, num):
    alphas = jnp.linspace(0.0, 1.0, num, dtype=jnp.asarray(jax.tree.leaves(params_a)[0]).dtype)
    costs, accs = jax.vmap(lambda a: evaluate(model, cost, _mix(params_a, params_b, a), x, y))(alphas)
    return {"alpha": alphas, "cost": costs, "accuracy": accs}


def barrier(model, cost, params_a, params_b, x, y, num: int = 25) -> jax.Array:
    """The loss barrier: the highest cost on the segment minus the mean of the two endpoints' costs."""
    line = interpolate(model, cost, params_a, params_b, x, y, num)
    c = line["cost"]
    return jnp.max(c) - 0.5 * (c[0] + c[-1])
