import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxgd
from jaxgd import MLP, TrainConfig, cost_fn, fit
from jaxgd.landscape import align, barrier, interpolate, permute_hidden, sharpness


def test_interpolate_endpoints_equal_the_endpoints_costs(small_digits):
    net = MLP((64, 12, 10))
    pa, pb = net.init(jax.random.key(0)), net.init(jax.random.key(1))
    x, y = jnp.asarray(small_digits.x_test), jnp.asarray(small_digits.y_test)
    line = interpolate(net, "quadratic", pa, pb, x, y, num=7)
    c = cost_fn(net, "quadratic")
    assert line["cost"].shape == (7,) and float(line["alpha"][0]) == 0.0 and float(line["alpha"][-1]) == 1.0
    np.testing.assert_allclose(line["cost"][0], c(pa, x, y), rtol=1e-5)
    np.testing.assert_allclose(line["cost"][-1], c(pb, x, y), rtol=1e-5)
    mid = jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, pa, pb)
    np.testing.assert_allclose(line["cost"][3], c(mid, x, y), rtol=1e-5)
    b = barrier(net, "quadratic", pa, pb, x, y, num=7)
    np.testing.assert_allclose(b, line["cost"].max() - 0.5 * (line["cost"][0] + line["cost"][-1]), rtol=1e-6)


def test_align_recovers_a_hidden_permutation_and_keeps_the_function():
    net = MLP((6, 9, 7, 3), activation="tanh")
    pa = net.init(jax.random.key(0), init="glorot")
    rng = np.random.default_rng(0)
    perms = [rng.permutation(9), rng.permutation(7)]
    pb = permute_hidden(pa, perms)  # the same network, relabelled
    x = jax.random.uniform(jax.random.key(1), (5, 6))
    np.testing.assert_allclose(net.apply(pb, x), net.apply(pa, x), atol=1e-6)
    aligned = align(net, pa, pb)
    for la, lb in zip(pa, aligned):
        np.testing.assert_allclose(lb["w"], la["w"], atol=1e-7)


def test_aligned_trained_networks_compute_the_same_function(small_digits):
    net = MLP((64, 32, 10), activation="relu", output="softmax")
    keys = jax.random.split(jax.random.key(0), 2)
    pop = fit(keys, net, small_digits, TrainConfig(cost="cross_entropy", optimizer="momentum", learning_rate=0.05,
                                                   batch_size=32, epochs=5, init="he"))
    pa, pb = (jax.tree.map(lambda a: a[i], pop.params) for i in (0, 1))
    aligned = align(net, pa, pb)
    x = jnp.asarray(small_digits.x_test)
    assert float(jnp.max(jnp.abs(net.apply(aligned, x) - net.apply(pb, x)))) <= 1e-5
    before = barrier(net, "cross_entropy", pa, pb, small_digits.x_train, small_digits.y_train)
    after = barrier(net, "cross_entropy", pa, aligned, small_digits.x_train, small_digits.y_train)
    assert after < before


@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy"])
def test_sharpness_equals_the_full_hessians_top_eigenvalue(x64, small_digits, cost):
    net = MLP((64, 4, 10), activation="tanh", output="softmax" if cost == "cross_entropy" else "sigmoid")
    x = jnp.asarray(small_digits.x_train[:200], jnp.float64)
    y = jnp.asarray(small_digits.y_train[:200])
    result = fit(jax.random.key(0), net, jaxgd.data.subset(small_digits, n_train=200),
                 TrainConfig(cost=cost, learning_rate=0.5, epochs=20, init="glorot"))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), result.params)
    flat, unravel = ravel_pytree(params)
    hessian = jax.hessian(lambda p: cost_fn(net, cost)(unravel(p), x, y))(flat)
    eig = jnp.linalg.eigvalsh(hessian)
    top = eig[jnp.argmax(jnp.abs(eig))]
    estimate = jax.jit(lambda p: sharpness(net, cost, p, x, y, iters=500))(params)
    assert abs(float(estimate) - float(top)) <= 1e-4 * abs(float(top))


def test_sharpness_vmaps_over_a_population(small_digits):
    net = MLP((64, 8, 10))
    pop = fit(jax.random.split(jax.random.key(0), 3), net, small_digits, TrainConfig(epochs=2))
    x, y = jnp.asarray(small_digits.x_train), jnp.asarray(small_digits.y_train)
    values = jax.jit(jax.vmap(lambda p: sharpness(net, "quadratic", p, x, y, iters=20)))(pop.params)
    assert values.shape == (3,) and bool(jnp.all(jnp.isfinite(values)))


def test_critical_samples_of_a_linear_classifier_are_those_within_r_of_its_boundary():
    """Two classes, logits (w.x + b, 0): the box of radius r around x holds a differently classified input exactly
    when the margin |w.x + b| is below r * ||w||_1 (the box's corner against sign(w) moves the logit by that)."""
    from jaxgd.landscape import critical_sample_ratio, critical_samples

    w, b = jnp.array([1.0, -2.0, 0.5]), 0.1
    logits_fn = lambda x: jnp.stack([x @ w + b, jnp.zeros(x.shape[0])], axis=-1)  # noqa: E731
    x = jax.random.uniform(jax.random.key(0), (400, 3), minval=-1, maxval=1)
    radius = 0.2
    margin = np.abs(np.asarray(x @ w + b))
    expected = margin < radius * float(jnp.sum(jnp.abs(w)))
    keep = np.abs(margin - radius * float(jnp.sum(jnp.abs(w)))) > 1e-3  # no example on the edge of the box
    found = np.asarray(critical_samples(logits_fn, x, radius, steps=5))
    assert 0.2 < expected.mean() < 0.8 and np.array_equal(found[keep], expected[keep])
    assert float(critical_sample_ratio(logits_fn, x[keep], radius)) == pytest.approx(expected[keep].mean())
    assert not np.any(np.asarray(critical_samples(logits_fn, x, radius, steps=1, step_size=1e-4)) & (margin > 1e-3))
    with pytest.raises(ValueError, match="positive radius"):
        critical_samples(logits_fn, x, 0.0)


def test_the_critical_sample_ratio_is_measured_inside_training_for_every_member(small_digits):
    """A network metric (of_network) sees each member in evaluation mode, on the first `examples` of its splits."""
    from jaxgd.landscape import critical_sample_metric, critical_sample_ratio

    net = jaxgd.CNN((8, 8, 1), 10, channels=(4,), batch_norm=True, dropout=0.0)
    config = TrainConfig(cost="cross_entropy", optimizer="momentum", learning_rate=0.05, batch_size=32, epochs=2)
    metric = critical_sample_metric(0.1, steps=4, examples=50, splits=("train", "test"))
    pop = fit(jax.random.split(jax.random.key(0), 2), net, small_digits, config, metrics={"csr": metric},
              hyperparams={"dropout": np.array([0.0, 0.5])})
    h = pop.history
    assert h["train_csr"].shape == (2, 2) and h["test_csr"].shape == (2, 2) and "csr" not in h
    for i in range(2):
        params, state = jax.tree.map(lambda a: a[i], (pop.params, pop.model_state))
        for split in ("train", "test"):
            x = jnp.asarray(getattr(small_digits, f"x_{split}")[:50])
            direct = critical_sample_ratio(lambda v: net.apply(params, state, v.reshape(-1, 8, 8, 1))[0], x, 0.1,
                                           steps=4)
            assert h[f"{split}_csr"][i, -1] == pytest.approx(float(direct), abs=1e-6)
    with pytest.raises(ValueError, match="splits must be some of"):
        jaxgd.metrics.of_network(lambda f, x, y: x[:, 0], splits=("training",))
