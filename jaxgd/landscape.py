"""The cost landscape around trained networks: lines between minima, permutation alignment, sharpness.

- :func:`interpolate` / :func:`barrier`: the cost along the straight line between two parameter
  sets, and how far it rises above the endpoints (Goodfellow, Vinyals & Saxe 2015,
  arXiv 1412.6544; Frankle et al. 2020, arXiv 1912.05671).
- :func:`align`: hidden units (and a CNN's channels) can be permuted without changing the
  function, so two "different" minima may be one minimum relabelled; weight matching finds the
  permutation (Ainsworth, Hayase & Srinivasa, "Git Re-Basin", ICLR 2023, arXiv 2209.04836;
  Entezari et al. 2022, arXiv 2110.06296).
- :func:`sharpness`: the largest Hessian eigenvalue, by power iteration on Hessian-vector
  products, never forming the Hessian (Keskar et al. 2017, arXiv 1609.04836).

They work for any model (:mod:`jaxgd.models`); inputs ``x`` are given as the model takes
them, ``(n, *input_shape)`` (an MLP or a CNN also takes flat rows). ``align`` needs the
model's ``permutation_spec()`` (``MLP`` and ``CNN`` have one).
"""
from __future__ import annotations

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxgd.costs import cost_fn, evaluate
from jaxgd.models import check_params


def _mix(params_a, params_b, alpha):
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, params_a, params_b)


def interpolate(model, cost, params_a, params_b, x, y, num: int = 25) -> dict:
    """Cost and accuracy at ``num`` evenly spaced points of the segment from ``params_a`` to ``params_b``.

    Returns:
      ``{"alpha": (num,), "cost": (num,), "accuracy": (num,)}``; ``alpha = 0`` is ``params_a``.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"interpolate needs at least 2 points, got num={num!r}.")
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


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    for p in path[:-1]:
        tree = tree[p]
    tree[path[-1]] = value


def _containers(params):
    """A copy of ``params``'s lists and dicts (the arrays shared), so leaves can be replaced by path."""
    return copy.copy(params) if not isinstance(params, (list, dict)) else (
        [_containers(v) for v in params] if isinstance(params, list) else {k: _containers(v) for k, v in params.items()})


def permute(params, perms: list, spec: list):
    """Applies ``perms[g]`` to every ``(leaf path, axis)`` of group ``g`` of ``spec``: the function is unchanged."""
    out = _containers(params)
    for perm, group in zip(perms, spec):
        for path, axis in group:
            leaf = _get(out, path)
            _set(out, path, jnp.take(jnp.asarray(leaf), jnp.asarray(perm), axis=axis))
    return out


def permute_hidden(params, perms: list):
    """Reorders the hidden units of each hidden layer ``l`` of an MLP's parameters by ``perms[l]``."""
    spec = [[((l, "w"), 1), ((l, "b"), 0), ((l + 1, "w"), 0)] for l in range(len(perms))]
    return permute(params, perms, spec)


def align(model, params_a, params_b, max_iter: int = 100):
    """Permutes the hidden units (a CNN's channels too) of ``params_b`` to match ``params_a`` by weight matching.

    For each group of ``model.permutation_spec()`` in turn (each hidden layer of an MLP),
    the permutation maximising the inner product between ``a``'s weights into and out of it
    and ``b``'s (with the other groups' current permutations applied) is a linear assignment
    (``scipy.optimize.linear_sum_assignment``); the sweep repeats until no permutation changes.

    Returns:
      Parameters that compute exactly the function of ``params_b`` (up to float rounding).
    """
    from scipy.optimize import linear_sum_assignment

    if not callable(getattr(model, "permutation_spec", None)):
        raise ValueError(f"align permutes hidden units, which it knows for models with a permutation_spec() "
                         f"(jaxgd.MLP and jaxgd.models.CNN); {type(model).__name__} has none.")
    check_params(model, params_a)
    check_params(model, params_b)
    spec = model.permutation_spec()
    a = jax.tree.map(lambda v: np.asarray(v, np.float64), params_a)
    b = jax.tree.map(lambda v: np.asarray(v, np.float64), params_b)
    leaf_groups = {}
    for g, group in enumerate(spec):
        for path, axis in group:
            leaf_groups.setdefault(path, []).append((g, axis))
    sizes = [_get(a, group[0][0]).shape[group[0][1]] for group in spec]
    perms = [np.arange(n) for n in sizes]

    def moved(arr, path, axis, skip):
        for g, ax in leaf_groups[path]:
            if g != skip:
                arr = np.take(arr, perms[g], axis=ax)
        return np.moveaxis(arr, axis, 0).reshape(arr.shape[axis], -1)

    for _ in range(max_iter):
        changed = False
        for g, group in enumerate(spec):
            score = np.zeros((sizes[g], sizes[g]))
            for path, axis in group:
                score += np.moveaxis(_get(a, path), axis, 0).reshape(sizes[g], -1) @ \
                    moved(_get(b, path), path, axis, g).T
            _, perm = linear_sum_assignment(score, maximize=True)
            if not np.array_equal(perm, perms[g]):
                perms[g], changed = perm, True
        if not changed:
            break
    return permute(params_b, perms, spec)


def sharpness(model, cost, params, x, y, *, iters: int = 100, key: jax.Array | None = None):
    """The largest-magnitude eigenvalue of the Hessian of the cost at ``params``.

    Power iteration on Hessian-vector products (``jax.jvp`` of ``jax.grad``): the Hessian is
    never formed. Pure and jittable (``iters`` static); ``vmap`` it over a population.

    Returns:
      The Rayleigh quotient ``v^T H v`` of the last iterate (a scalar).
    """
    flat, unravel = ravel_pytree(params)
    c = cost_fn(model, cost)
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
