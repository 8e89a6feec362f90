"""Curvature of the cost at trained networks: the Hessian's largest eigenvalue, never forming the Hessian.

:func:`sharpness` is power iteration on Hessian-vector products (``jax.jvp`` of ``jax.grad``; Keskar
et al. 2017, arXiv 1609.04836). Pure and jittable; ``vmap`` it over a population.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxgd.costs import cost_fn
from jaxgd.landscape.lines import variables


def sharpness(model, cost, params, x, y, *, iters: int = 100, key: jax.Array | None = None):
    """The largest-magnitude eigenvalue of the Hessian of the cost at ``params``.

    Power iteration on Hessian-vector products (``jax.jvp`` of ``jax.grad``): the Hessian is
    never formed. Pure and jittable (``iters`` static); ``vmap`` it over a population. For a stateful
    model pass ``(params, state)``: the cost is measured in evaluation mode, a function of the
    parameters alone.

    Returns:
      The Rayleigh quotient ``v^T H v`` of the last iterate (a scalar).
    """
    params, state = variables(model, params)
    flat, unravel = ravel_pytree(params)
    c = cost_fn(model, cost, state=state)
    grad = jax.grad(lambda p: c(unravel(p), x, y))
    hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]  # noqa: E731
    key = jax.random.key(0) if key is None else key
    v = jax.random.normal(key, flat.shape, flat.dtype)
    v = v / jnp.linalg.norm(v)

    def body(_, v):
        hv = hvp(v)
        return hv / jnp.maximum(jnp.linalg.norm(hv), jnp.finfo(flat.dtype).tiny)

    v = jax.lax.fori_loop(0, iters, body, v)
    return jnp.vdot(v, hvp(v))
