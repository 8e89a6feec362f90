"""The cost landscape around trained networks: lines between minima, permutation alignment, sharpness.

- :func:`interpolate` / :func:`barrier`: the cost along the straight line between two parameter
  sets, and how far it rises above the endpoints (Goodfellow, Vinyals & Saxe 2015,
  arXiv 1412.6544; Frankle et al. 2020, arXiv 1912.05671).
- :func:`align`: hidden units can be permuted without changing the function, so two "different"
  minima may be one minimum relabelled; weight matching finds the permutation (Ainsworth,
  Hayase & Srinivasa, "Git Re-Basin", ICLR 2023, arXiv 2209.04836; Entezari et al. 2022,
  arXiv 2110.06296).
- :func:`sharpness`: the largest Hessian eigenvalue, by power iteration on Hessian-vector
  products, never forming the Hessian (Keskar et al. 2017, arXiv 1609.04836).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxgd.costs import cost_fn, evaluate
from jaxgd.mlp import MLP, Params


def _mix(params_a: Params, params_b: Params, alpha):
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, params_a, params_b)


def interpolate(net: MLP, cost: str, params_a: Params, params_b: Params, x, y, num: int = 25) -> dict:
    """Cost and accuracy at ``num`` evenly spaced points of the segment from ``params_a`` to ``params_b``.

    Returns:
      ``{"alpha": (num,), "cost": (num,), "accuracy": (num,)}``; ``alpha = 0`` is ``params_a``.
    """
    if num < 2:
        raise ValueError(f"interpolate needs at least 2 points, got num={num}.")
    net.check_params(params_a)
    net.check_params(params_b)
    return _line(net, cost, params_a, params_b, jnp.asarray(x), jnp.asarray(y), num)


@functools.partial(jax.jit, static_argnames=("net", "cost", "num"))  # one program per network, not per pair
def _line(net, cost, params_a, params_b, x, y, num):
    alphas = jnp.linspace(0.0, 1.0, num, dtype=jnp.asarray(params_a[0]["w"]).dtype)
    costs, accs = jax.vmap(lambda a: evaluate(net, cost, _mix(params_a, params_b, a), x, y))(alphas)
    return {"alpha": alphas, "cost": costs, "accuracy": accs}


def barrier(net: MLP, cost: str, params_a: Params, params_b: Params, x, y, num: int = 25) -> jax.Array:
    """The loss barrier: the highest cost on the segment minus the mean of the two endpoints' costs."""
    line = interpolate(net, cost, params_a, params_b, x, y, num)
    c = line["cost"]
    return jnp.max(c) - 0.5 * (c[0] + c[-1])


def permute_hidden(params: Params, perms: list[np.ndarray]) -> Params:
    """Reorders the hidden units of each hidden layer ``l`` by ``perms[l]``: the function is unchanged."""
    out = [dict(layer) for layer in params]
    for l, perm in enumerate(perms):
        out[l]["w"] = out[l]["w"][:, perm]
        out[l]["b"] = out[l]["b"][perm]
        out[l + 1]["w"] = out[l + 1]["w"][perm, :]
    return out


def align(net: MLP, params_a: Params, params_b: Params, max_iter: int = 100) -> Params:
    """Permutes the hidden units of ``params_b`` to match ``params_a`` by weight matching.

    For each hidden layer in turn, the permutation maximising the inner product between
    ``a``'s weights into and out of that layer and ``b``'s (with the other layers' current
    permutations applied) is a linear assignment (``scipy.optimize.linear_sum_assignment``);
    the sweep repeats until no permutation changes.

    Returns:
      Parameters that compute exactly the function of ``params_b`` (up to float rounding).
    """
    from scipy.optimize import linear_sum_assignment

    net.check_params(params_a)
    net.check_params(params_b)
    a = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params_a]
    b = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params_b]
    hidden = net.sizes[1:-1]
    perms = [np.arange(n) for n in hidden]
    for _ in range(max_iter):
        changed = False
        for l in range(len(hidden)):
            # b's weights into layer l, with the previous layer's permutation applied to their rows
            w_in = b[l]["w"] if l == 0 else b[l]["w"][perms[l - 1], :]
            # b's weights out of layer l, with the next layer's permutation applied to their columns
            w_out = b[l + 1]["w"] if l + 1 == len(hidden) else b[l + 1]["w"][:, perms[l + 1]]
            score = a[l]["w"].T @ w_in + np.outer(a[l]["b"], b[l]["b"]) + a[l + 1]["w"] @ w_out.T
            _, perm = linear_sum_assignment(score, maximize=True)
            if not np.array_equal(perm, perms[l]):
                perms[l], changed = perm, True
        if not changed:
            break
    return permute_hidden(params_b, perms)


def sharpness(net: MLP, cost: str, params: Params, x, y, *, iters: int = 100, key: jax.Array | None = None):
    """The largest-magnitude eigenvalue of the Hessian of the cost at ``params``.

    Power iteration on Hessian-vector products (``jax.jvp`` of ``jax.grad``): the Hessian is
    never formed. Pure and jittable (``iters`` static); ``vmap`` it over a population.

    Returns:
      The Rayleigh quotient ``v^T H v`` of the last iterate (a scalar).
    """
    flat, unravel = ravel_pytree(params)
    c = cost_fn(net, cost)
    grad = jax.grad(lambda p: c(unravel(p), x, y))
    hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]
    key = jax.random.key(0) if key is None else key
    v = jax.random.normal(key, flat.shape, flat.dtype)
    v = v / jnp.linalg.norm(v)

    def body(_, v):
        hv = hvp(v)
        return hv / jnp.maximum(jnp.linalg.norm(hv), jnp.finfo(flat.dtype).tiny)

    v = jax.lax.fori_loop(0, iters, body, v)
    return jnp.vdot(v, hvp(v))
