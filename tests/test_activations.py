"""The MLP's sigmoid is ``jax.nn.sigmoid`` bit for bit: values, gradients and a trained network's gradient.

XLA compiles with its usual optimizations here (the suite's default is without most of them), as users do."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgd import MLP, cost_fn
from jaxgd.activations import ACTIVATIONS, Activation, exp_float32, sigmoid
from tests.conftest import optimized

SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 88.7, 88.8, 88.9, -87.8, -87.9, -103.9, 1e10, -1e10]


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint32 if a.dtype == np.float32 else
                                                                               np.uint64), b.view(b.dtype.str.replace("f", "u")))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the written-out exp is used on CPUs only")
def test_sigmoid_equals_jax_nn_sigmoid_bit_for_bit_in_float32():
    with optimized():
        _check_float32_bits()


def _check_float32_bits():
    z = np.concatenate([np.linspace(-120, 120, 1_000_001, dtype=np.float32), np.float32(SPECIAL)])
    z = jnp.asarray(np.concatenate([z, np.nextafter(z[:1000], np.float32(np.inf))]))
    assert _same_bits(jax.jit(exp_float32)(z), jax.jit(jnp.exp)(z))  # the written-out exp itself
    assert "exponential" not in jax.jit(sigmoid).lower(z).compile().as_text()  # and the sigmoid uses it
    assert _same_bits(jax.jit(sigmoid)(z), jax.jit(jax.nn.sigmoid)(z))
    grad = lambda f: jax.jit(jax.vmap(jax.grad(f)))(z)  # noqa: E731
    assert _same_bits(grad(sigmoid), grad(jax.nn.sigmoid))
    # inside a fusion with its neighbours, where XLA's own exp is computed one element at a time
    b = jax.random.normal(jax.random.key(0), (16,))
    x = jax.random.normal(jax.random.key(1), (50, 10, 16)) * 8
    fused = lambda f: jax.jit(jax.grad(lambda x, b: jnp.sum(f(x + b) ** 2), argnums=(0, 1)))(x, b)  # noqa: E731
    for ours, theirs in zip(fused(sigmoid), fused(jax.nn.sigmoid)):
        assert _same_bits(ours, theirs)


def test_sigmoid_of_other_dtypes_and_its_higher_derivatives_are_jax_nn_sigmoids(x64):
    z = jnp.linspace(-50, 50, 10_001, dtype=jnp.float64)
    assert _same_bits(sigmoid(z), jax.nn.sigmoid(z))
    for f in (jax.grad, lambda g: jax.grad(jax.grad(g)), lambda g: jax.grad(jax.grad(jax.grad(g)))):
        np.testing.assert_allclose(jax.vmap(f(sigmoid))(z), jax.vmap(f(jax.nn.sigmoid))(z), rtol=1e-12, atol=1e-15)
    h = z.astype(jnp.bfloat16)
    assert jnp.array_equal(sigmoid(h), jax.nn.sigmoid(h)) and sigmoid(h).dtype == jnp.bfloat16
    assert jnp.array_equal(jax.vmap(jax.grad(sigmoid))(h), jax.vmap(jax.grad(jax.nn.sigmoid))(h))
    assert jax.typeof(sigmoid(1.0)).weak_type and (jnp.ones(2, jnp.float16) + sigmoid(1.0)).dtype == jnp.float16


def test_the_lesson_network_trains_on_the_same_bits_as_with_jax_nn_sigmoid(monkeypatch):
    with optimized():
        _check_network_bits(monkeypatch)


def _check_network_bits(monkeypatch):
    net = MLP((64, 16, 16, 10))
    params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (32, 64))
    y = jax.random.randint(jax.random.key(2), (32,), 0, 10)
    ours = jax.jit(jax.grad(cost_fn(net, "quadratic")))(params, x, y)
    monkeypatch.setitem(ACTIVATIONS, "sigmoid", Activation(jax.nn.sigmoid, ACTIVATIONS["sigmoid"].derivative))
    theirs = jax.jit(jax.grad(cost_fn(net, "quadratic")))(params, x, y)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert _same_bits(a, b)


def test_custom_derivative_functions_are_recorded_by_what_they_compute():
    # a run whose metric reads the activations (the sharpness does) can be checkpointed and resumed
    from jaxgd.io.fingerprint import describe_callable
    record = describe_callable(sigmoid)
    assert record["custom_jvp"]["fun"]["function"] == "sigmoid" and "'function': '_sigmoid_jvp'" in str(record)

    def make(scale):
        @jax.custom_jvp
        def f(z):
            return jnp.sin(z)

        f.defjvp(lambda p, t: (f(p[0]), scale * t[0] * jnp.cos(p[0])))
        return f

    assert describe_callable(make(1.0)) == describe_callable(make(1.0))
    assert describe_callable(make(1.0)) != describe_callable(make(2.0))  # the jvp rule differs
