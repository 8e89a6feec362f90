"""Aligning two networks: hidden units (and a CNN's channels) permuted without changing the function.

Two "different" minima may be one minimum relabelled; weight matching finds the permutation
(Ainsworth, Hayase & Srinivasa, "Git Re-Basin", ICLR 2023, arXiv 2209.04836; Entezari et al. 2022,
arXiv 2110.06296). :func:`align` needs the model's ``permutation_spec()`` (``MLP`` and ``CNN`` have one).
"""
from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.errors import InvalidArgument
from jaxgd.landscape.lines import variables
from jaxgd.models import check_params, is_stateful


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
    For a stateful model pass ``(params, state)`` pairs: batch norm's scale and offset are matched with
    their channels, and the state's running statistics (``model.state_permutation_spec()``) move with them.

    Returns:
      Parameters that compute exactly the function of ``params_b`` (up to float rounding); for a
      stateful model the ``(params, state)`` pair.
    """
    if not callable(getattr(model, "permutation_spec", None)):
        raise InvalidArgument(f"align permutes hidden units, which it knows for models with a permutation_spec() "
                         f"(jaxgd.MLP and jaxgd.models.CNN); {type(model).__name__} has none.")
    (params_a, _), (params_b, state_b) = variables(model, params_a, "params_a"), variables(model, params_b, "params_b")
    check_params(model, params_a)
    check_params(model, params_b)
    perms = _match(model.permutation_spec(), params_a, params_b, max_iter)
    aligned = permute(params_b, perms, model.permutation_spec())
    if not is_stateful(model):
        return aligned
    state_spec = model.state_permutation_spec() if callable(getattr(model, "state_permutation_spec", None)) else []
    if any(state_spec) and len(state_spec) != len(perms):
        raise InvalidArgument(f"{type(model).__name__}.state_permutation_spec() must give one group per "
                              "permutation_spec() group.")
    return aligned, (permute(state_b, perms, state_spec) if any(state_spec) else state_b)


def _match(spec: list, params_a, params_b, max_iter: int) -> list:
    """Weight matching: one permutation per group of ``spec`` (see :func:`align`)."""
    from scipy.optimize import linear_sum_assignment

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
    return perms
