import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgd import MLP, cost_fn


@pytest.fixture
def problem():
    net = MLP((5, 4, 3))
    params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (8, 5))
    y = jnp.array([0, 1, 2, 0, 1, 2, 2, 1])
    return net, params, x, y


def test_quadratic_cost_is_the_lessons_sum_of_squares_averaged(problem):
    net, params, x, y = problem
    a = np.asarray(net.predict(params, x))
    target = np.eye(3)[np.asarray(y)]
    expected = np.mean(np.sum((a - target) ** 2, axis=1))  # no factor 1/2
    np.testing.assert_allclose(cost_fn(net, "quadratic")(params, x, y), expected, rtol=1e-6)


def test_cross_entropy_is_softmax_negative_log_likelihood(problem):
    net, params, x, y = problem
    z = np.asarray(net.logits(params, x), np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(8), np.asarray(y)]))
    np.testing.assert_allclose(cost_fn(net, "cross_entropy")(params, x, y), expected, rtol=1e-5)


@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy"])
def test_cost_is_jittable_differentiable_and_vmappable(problem, cost):
    net, params, x, y = problem
    c = cost_fn(net, cost)
    np.testing.assert_allclose(jax.jit(c)(params, x, y), c(params, x, y), rtol=1e-6)
    grads = jax.grad(c)(params, x, y)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, net.init(jax.random.key(5)))
    costs = jax.vmap(c, in_axes=(0, None, None))(stacked, x, y)
    np.testing.assert_allclose(costs[0], c(params, x, y), rtol=1e-6)


def test_unknown_cost_is_named():
    with pytest.raises(ValueError, match="'hinge'"):
        cost_fn(MLP((2, 2)), "hinge")
