"""The hand-written backprop equals autodiff (float64, 1e-10) and finite differences."""
import functools
import importlib
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxgd.backprop
from jaxgd import MLP, backprop, cost_fn
from jaxgd.gradcheck import random_problem

ACTIVATIONS = ["sigmoid", "tanh", "relu"]
OUTPUTS = ["sigmoid", "softmax", "identity"]
COSTS = ["quadratic", "cross_entropy"]


def _relative_error(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))


def _numpy_problem(net, rng, batch, init):
    # NumPy draws: compiling jax.random for every random shape would dominate the test's time.
    scale = {"normal": lambda i, o: 1.0, "glorot": lambda i, o: np.sqrt(2 / (i + o)), "he": lambda i, o: np.sqrt(2 / i)}
    params = [{"w": jnp.asarray(scale[init](i, o) * rng.standard_normal((i, o))), "b": jnp.asarray(rng.standard_normal(o))}
              for i, o in zip(net.sizes[:-1], net.sizes[1:])]
    x = jnp.asarray(rng.random((batch, net.sizes[0])))
    y = jnp.asarray(rng.integers(0, net.sizes[-1], batch))
    return params, x, y


@functools.partial(jax.jit, static_argnums=(0, 1))
def _both_gradients(net, cost, params, x, y):
    # One compiled program per example keeps the property test fast.
    return backprop(net, cost, params, x, y), jax.grad(cost_fn(net, cost))(params, x, y)


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 40), min_size=2, max_size=5),  # input + 0..3 hidden + output = depth 1-4
    activation=st.sampled_from(ACTIVATIONS),
    output=st.sampled_from(OUTPUTS),
    cost=st.sampled_from(COSTS),
    init=st.sampled_from(["normal", "glorot", "he"]),
    batch=st.integers(1, 17),
    seed=st.integers(0, 2**31 - 1),
)
def test_backprop_matches_jax_grad_in_float64(widths, activation, output, cost, init, batch, seed):
    with jax.enable_x64(True):
        net = MLP(tuple(widths), activation=activation, output=output)
        params, x, y = _numpy_problem(net, np.random.default_rng(seed), batch, init)
        by_hand, by_autodiff = _both_gradients(net, cost, params, x, y)
        assert by_hand[0]["w"].dtype == jnp.float64
        chex.assert_trees_all_equal_structs(by_hand, by_autodiff)
        chex.assert_trees_all_close(by_hand, by_autodiff, rtol=1e-10, atol=1e-14)
        for h, a in zip(jax.tree.leaves(by_hand), jax.tree.leaves(by_autodiff)):
            if float(jnp.max(jnp.abs(a))) > 1e-12:
                assert _relative_error(h, a) <= 1e-10


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("cost", COSTS)
def test_backprop_and_autodiff_match_central_finite_differences(x64, activation, cost):
    net = MLP((6, 5, 4, 3), activation=activation)
    params, x, y = random_problem(net, jax.random.key(1), 9, "glorot", jnp.float64)
    c = jax.jit(cost_fn(net, cost))
    by_hand = backprop(net, cost, params, x, y)
    by_autodiff = jax.grad(c)(params, x, y)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for layer in range(net.num_layers):
        for name in ("w", "b"):
            shape = params[layer][name].shape
            for _ in range(4):
                idx = tuple(int(rng.integers(0, s)) for s in shape)

                def shifted(delta):
                    p = jax.tree.map(lambda a: a, params)
                    p[layer] = dict(p[layer])
                    p[layer][name] = p[layer][name].at[idx].add(delta)
                    return float(c(p, x, y))

                numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
                assert abs(float(by_hand[layer][name][idx]) - numeric) <= 1e-7 * max(1.0, abs(numeric))
                assert abs(float(by_autodiff[layer][name][idx]) - numeric) <= 1e-7 * max(1.0, abs(numeric))


def test_backprop_source_uses_no_autodiff():
    source = inspect.getsource(jaxgd.backprop)
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    body = code.split('"""', 2)[2]  # skip the module docstring, which names what is not used
    for forbidden in ("grad(", "vjp", "jvp", "jacrev", "jacfwd", "linearize", "hessian", "value_and_grad",
                      "custom_vjp", "checkify"):
        assert forbidden not in body, forbidden


def test_backprop_is_jittable_and_vmappable_over_parameters():
    net = MLP((5, 4, 3))
    params, x, y = random_problem(net, jax.random.key(0), 6)
    bp = jax.jit(backprop, static_argnums=(0, 1))
    chex.assert_trees_all_close(bp(net, "quadratic", params, x, y), backprop(net, "quadratic", params, x, y),
                                rtol=1e-6)
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
    batched = jax.vmap(lambda p: backprop(net, "quadratic", p, x, y))(stacked)
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], batched), backprop(net, "quadratic", params, x, y),
                                rtol=1e-6)


def test_gradcheck_reports_each_layer(x64):
    from jaxgd import gradcheck

    net = MLP((7, 5, 3), activation="tanh")
    params, x, y = random_problem(net, jax.random.key(0), 4, dtype=jnp.float64)
    rows = gradcheck(net, "cross_entropy", params, x, y)
    assert [(r["layer"], r["param"]) for r in rows] == [(0, "w"), (0, "b"), (1, "w"), (1, "b")]
    assert max(r["max_rel_diff"] for r in rows) <= 1e-10


def test_gradcheck_detects_a_wrong_gradient(x64, monkeypatch):
    gc = importlib.import_module("jaxgd.gradcheck")  # the package re-exports a function of that name

    net = MLP((4, 3, 2))
    params, x, y = random_problem(net, jax.random.key(0), 4, dtype=jnp.float64)
    monkeypatch.setattr(gc, "backprop", lambda *a: jax.tree.map(lambda g: 1.01 * g, backprop(*a)))
    rows = gc.gradcheck(net, "quadratic", params, x, y)
    assert max(r["max_rel_diff"] for r in rows) > 1e-3


def test_learning_rate_is_half_of_nielsens_eta(x64):
    """jaxgd's cost has no 1/2: one SGD step with --lr eta/2 is one step of Nielsen's network.py with eta."""
    net = MLP((20, 7, 3))
    params, x, y = random_problem(net, jax.random.key(0), 10, "normal", jnp.float64)
    eta = 3.0
    # Nielsen, network.py: C = 1/2 ||a - y||^2 per example, w -= eta / m * sum of the examples' gradients
    sig = lambda z: 1 / (1 + np.exp(-z))
    w = [np.asarray(l["w"]) for l in params]
    b = [np.asarray(l["b"]) for l in params]
    nabla_w, nabla_b = [np.zeros_like(v) for v in w], [np.zeros_like(v) for v in b]
    for xi, yi in zip(np.asarray(x), np.asarray(y)):
        a, acts, zs = xi, [xi], []
        for wl, bl in zip(w, b):
            zs.append(a @ wl + bl)
            a = sig(zs[-1])
            acts.append(a)
        delta = (a - np.eye(3)[yi]) * sig(zs[-1]) * (1 - sig(zs[-1]))
        for l in reversed(range(len(w))):
            nabla_w[l] += np.outer(acts[l], delta)
            nabla_b[l] += delta
            if l:
                delta = (delta @ w[l].T) * sig(zs[l - 1]) * (1 - sig(zs[l - 1]))
    nielsen = [wl - eta / 10 * g for wl, g in zip(w, nabla_w)]
    grads = jax.grad(cost_fn(net, "quadratic"))(params, x, y)
    ours = [l["w"] - (eta / 2) * g["w"] for l, g in zip(params, grads)]
    for a, b_ in zip(nielsen, ours):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-14)
