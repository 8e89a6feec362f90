"""Lines between minima: the cost along the straight segment between two parameter sets, and its barrier.

How far the cost rises between two networks says whether they lie in one basin (Goodfellow,
Vinyals & Saxe 2015, arXiv 1412.6544; Frankle et al. 2020, arXiv 1912.05671).

For a stateful model (batch norm, dropout), pass ``(params, state)`` pairs: the parameters are mixed,
the network is measured in evaluation mode (no dropout), and, where it has batch statistics, at
every point of the line they are recomputed from training inputs (``stats_x``, default ``x``) with
the model's ``batch_statistics(params, x)`` before the cost is measured, as Git Re-Basin (Ainsworth
et al. 2023, arXiv 2209.04836) and REPAIR (Jordan et al. 2022, arXiv 2211.08403) do: a mixture of
two networks' running statistics describes neither.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument
from jaxgd.models import check_params, is_stateful
from jaxgd.training.evaluation import evaluate


def _mix(params_a, params_b, alpha):
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, params_a, params_b)


def variables(model, value, name: str = "params"):
    """``(params, state)`` from what a landscape function was given: a stateful model's ``(params, state)`` pair
    (checked), or a pure model's parameters (state ``None``)."""
    if not is_stateful(model):
        return value, None
    if not isinstance(value, tuple) or len(value) != 2:
        raise InvalidArgument(f"{type(model).__name__} is stateful (batch norm or dropout): pass {name} as a "
                              "(params, state) pair, e.g. (result.params, result.model_state) for one member.")
    return value


def interpolate(model, cost, params_a, params_b, x, y, num: int = 25, *, stats_x=None) -> dict:
    """Cost and accuracy at ``num`` evenly spaced points of the segment from ``params_a`` to ``params_b``.

    For a stateful model ``params_a`` and ``params_b`` are ``(params, state)`` pairs, measured in evaluation
    mode, and batch statistics, where the model has them, are recomputed at every point from ``stats_x``
    (default ``x``; see the module docstring).

    Returns:
      ``{"alpha": (num,), "cost": (num,), "accuracy": (num,)}``; ``alpha = 0`` is ``params_a``.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise InvalidArgument(f"interpolate needs at least 2 points, got num={num!r}.")
    (pa, sa), (pb, _) = variables(model, params_a, "params_a"), variables(model, params_b, "params_b")
    check_params(model, pa)
    check_params(model, pb)
    recompute = is_stateful(model) and bool(jax.tree.leaves(sa))  # dropout alone has no statistics
    if recompute and not callable(getattr(model, "batch_statistics", None)):
        raise InvalidArgument(f"Along a line between two stateful networks the batch statistics are recomputed at "
                              f"every point; {type(model).__name__} has no batch_statistics(params, x) to do it "
                              "(jaxgd.CNN and from_flax models have one).")
    stats_x = x if stats_x is None else stats_x
    return _line(model, cost, pa, pb, jnp.asarray(x), jnp.asarray(y), jnp.asarray(stats_x), num, recompute,
                 sa if is_stateful(model) and not recompute else None)


@functools.partial(jax.jit, static_argnames=("model", "cost", "num", "recompute"))  # one program per model
def _line(model, cost, params_a, params_b, x, y, stats_x, num, recompute, state):
    alphas = jnp.linspace(0.0, 1.0, num, dtype=jnp.asarray(jax.tree.leaves(params_a)[0]).dtype)

    def at(alpha):
        params = _mix(params_a, params_b, alpha)
        return evaluate(model, cost, params, x, y, state=model.batch_statistics(params, stats_x) if recompute else state)

    costs, accs = jax.lax.map(at, alphas) if recompute else jax.vmap(at)(alphas)
    return {"alpha": alphas, "cost": costs, "accuracy": accs}


def barrier(model, cost, params_a, params_b, x, y, num: int = 25, *, stats_x=None) -> jax.Array:
    """The loss barrier: the highest cost on the segment minus the mean of the two endpoints' costs (for a
    model with batch statistics, recomputed at every point, the endpoints included)."""
    return rise(interpolate(model, cost, params_a, params_b, x, y, num, stats_x=stats_x)["cost"])


def rise(values):
    """How far ``values`` along a line (a cost, an error) rise above the mean of its two ends: the barrier."""
    return jnp.max(values) - 0.5 * (values[0] + values[-1])
