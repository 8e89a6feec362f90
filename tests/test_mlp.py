import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgd import MLP


def test_lesson_network_has_13002_parameters():
    net = MLP((784, 16, 16, 10))
    assert net.num_params() == 13002
    params = net.init(jax.random.key(0))
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 13002


def test_params_are_a_plain_list_of_dicts_with_documented_shapes():
    params = MLP((784, 16, 16, 10)).init(jax.random.key(0))
    assert isinstance(params, list) and len(params) == 3
    shapes = [(layer["w"].shape, layer["b"].shape) for layer in params]
    assert shapes == [((784, 16), (16,)), ((16, 16), (16,)), ((16, 10), (10,))]


def test_mlp_is_hashable_and_usable_as_static_jit_argument():
    net_a, net_b = MLP((4, 3, 2)), MLP([4, 3, 2])
    assert net_a == net_b and hash(net_a) == hash(net_b)
    apply = jax.jit(lambda net, p, x: net.apply(p, x), static_argnums=0)
    p = net_a.init(jax.random.key(1))
    x = jnp.ones((5, 4))
    chex.assert_trees_all_close(apply(net_a, p, x), apply(net_b, p, x))
    assert apply._cache_size() == 1


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
def test_apply_shapes_and_output_ranges(activation, output):
    net = MLP((6, 5, 3), activation=activation, output=output)
    params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (7, 6))
    a = net.predict(params, x)
    chex.assert_shape(a, (7, 3))
    chex.assert_trees_all_close(net.apply(params, x), net.logits(params, x))  # apply gives logits
    if output == "sigmoid":
        assert np.all((a > 0) & (a < 1))
    if output == "softmax":
        np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-6)


def test_apply_matches_a_numpy_forward_pass():
    net = MLP((3, 4, 2))
    params = net.init(jax.random.key(2))
    x = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    sig = lambda z: 1 / (1 + np.exp(-z))
    h = sig(x @ np.asarray(params[0]["w"]) + np.asarray(params[0]["b"]))
    out = sig(h @ np.asarray(params[1]["w"]) + np.asarray(params[1]["b"]))
    np.testing.assert_allclose(net.predict(params, x), out, rtol=1e-5)
    logit = h @ np.asarray(params[1]["w"]) + np.asarray(params[1]["b"])
    np.testing.assert_allclose(net.apply(params, x), logit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.apply(params, x.reshape(5, 3, 1)), logit, rtol=1e-5, atol=1e-6)  # flattens


@pytest.mark.parametrize("init,std", [("normal", 1.0), ("lecun", 1 / np.sqrt(400)), ("glorot", np.sqrt(2 / 600)),
                                      ("he", np.sqrt(2 / 400))])
def test_initialisers_have_their_documented_scale(init, std):
    params = MLP((400, 200)).init(jax.random.key(3), init=init)
    assert abs(float(jnp.std(params[0]["w"])) / std - 1) < 0.02
    if init == "normal":
        assert abs(float(jnp.std(params[0]["b"])) - 1) < 0.2
    else:
        assert float(jnp.abs(params[0]["b"]).max()) == 0.0


def test_init_is_a_pure_function_of_the_key():
    net = MLP((5, 4, 3))
    chex.assert_trees_all_equal(net.init(jax.random.key(7)), net.init(jax.random.key(7)))
    assert not np.allclose(net.init(jax.random.key(7))[0]["w"], net.init(jax.random.key(8))[0]["w"])


@pytest.mark.parametrize("sizes,error", [((784,), ValueError), ((784, 0, 10), ValueError), ((), ValueError),
                                         ((784, -3, 10), ValueError), ((784, 1.5, 10), TypeError),
                                         ("784,16", TypeError)])
def test_bad_sizes_are_refused_with_the_value_named(sizes, error):
    with pytest.raises(error, match="MLP"):
        MLP(sizes)


def test_bad_activation_and_init_are_named():
    with pytest.raises(ValueError, match="'swish'"):
        MLP((2, 2), activation="swish")
    with pytest.raises(ValueError, match="'uniform'"):
        MLP((2, 2)).init(jax.random.key(0), init="uniform")


def test_check_params_names_the_mismatching_leaf():
    net = MLP((4, 3, 2))
    params = MLP((4, 5, 2)).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"params\[0\]\['w'\] has shape \(4, 5\)"):
        net.check_params(params)
