"""The training loop's dense layer: the same gradient as the plain product, on both sides of its batch threshold."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from jaxgd.costs import cost_fn
from jaxgd.training.dense import OUTER_PRODUCT_MAX_BATCH, dense
from jaxgd.gradcheck import random_problem
from jaxgd.training.spec import dense_layout as to_compute_layout


@pytest.mark.parametrize("batch", [1, 10, OUTER_PRODUCT_MAX_BATCH, OUTER_PRODUCT_MAX_BATCH + 1, 100])
@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy"])
def test_gradient_through_dense_equals_jax_grad_of_the_plain_network(x64, batch, cost):
    net = jaxgd.MLP((20, 7, 5, 3), activation="tanh", output="softmax" if cost == "cross_entropy" else "sigmoid")
    params, x, y = random_problem(net, jax.random.key(batch), batch, "normal", jnp.float64)
    plain = jax.grad(cost_fn(net, cost))(params, x, y)
    fast = jax.grad(cost_fn(net, cost, matmul=dense))(to_compute_layout(params), x, y)
    for a, b in zip(to_compute_layout(plain), fast):
        np.testing.assert_allclose(a["w"], b["w"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a["b"], b["b"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch", [10, OUTER_PRODUCT_MAX_BATCH + 8])  # both ways of writing the product
@pytest.mark.parametrize("shared_input", [False, True])
def test_dense_and_its_gradient_vmap_over_members_with_shared_or_own_inputs(x64, shared_input, batch):
    key_w, key_x, key_d = jax.random.split(jax.random.key(0), 3)
    w = jax.random.normal(key_w, (4, 6, 9), jnp.float64)  # 4 members, (n_out, n_in)
    x = jax.random.normal(key_x, (batch, 9) if shared_input else (4, batch, 9), jnp.float64)
    d = jax.random.normal(key_d, (4, batch, 6), jnp.float64)

    def vjp_one(w_m, x_m, d_m):
        out, pull = jax.vjp(dense, x_m, w_m)
        return (out,) + pull(d_m)

    out, dx, dw = jax.vmap(vjp_one, in_axes=(0, None if shared_input else 0, 0))(w, x, d)
    xs = jnp.broadcast_to(x, (4, batch, 9)) if shared_input else x
    np.testing.assert_allclose(out, jnp.einsum("sbi,soi->sbo", xs, w), rtol=1e-12)
    np.testing.assert_allclose(dw, jnp.einsum("sbo,sbi->soi", d, xs), rtol=1e-12)
    np.testing.assert_allclose(dx, jnp.einsum("sbo,soi->sbi", d, w), rtol=1e-12)
