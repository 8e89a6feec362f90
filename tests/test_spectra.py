"""Hessian spectra (jaxgd.landscape.spectra) against the exact Hessian of small networks, formed here only."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxgd
from jaxgd.costs import cost_fn, per_example_cost
from jaxgd.landscape import block_names, hessian_density, hessian_eigenvalues, hessian_trace, sharpness

NET = jaxgd.MLP((8, 6, 4), activation="tanh", output="softmax")  # 82 parameters
COST = "cross_entropy"


def exact_hessian(model, cost, params, x, y):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda p: cost_fn(model, cost)(unravel(p), x, y)))(flat))


def problem(seed=0, data_seed=None, n=50):
    """Float64 parameters of NET, random inputs and labels, and its exact Hessian and spectrum (ascending)."""
    params = NET.init(jax.random.key(seed), dtype=jnp.float64)
    rng = np.random.default_rng(seed if data_seed is None else data_seed)
    x = jnp.asarray(rng.normal(size=(n, 8)))
    y = jnp.asarray(rng.integers(0, 4, n))
    hessian = exact_hessian(NET, COST, params, x, y)
    return params, x, y, hessian, np.linalg.eigvalsh(hessian)


def test_top_eigenvalues_and_vectors_match_the_exact_hessian(x64):
    params, x, y, hessian, eig = problem()
    values, vectors = hessian_eigenvalues(NET, COST, params, x, y, k=5, key=jax.random.key(1), vectors=True)
    assert values.shape == (5,) and values.dtype == jnp.float64
    np.testing.assert_allclose(values, eig[::-1][:5], rtol=1e-6)  # the default steps
    assert jax.tree.map(jnp.shape, vectors) == jax.tree.map(lambda a: (5, *a.shape), params)
    v = np.stack([ravel_pytree(jax.tree.map(lambda a: a[i], vectors))[0] for i in range(5)])
    np.testing.assert_allclose(v @ v.T, np.eye(5), atol=1e-8)
    np.testing.assert_allclose(v @ hessian, np.asarray(values)[:, None] * v, atol=1e-6 * eig.max())


def test_the_largest_eigenvalues_in_magnitude_keep_their_signs(x64):
    """which="magnitude" orders the Ritz values from both ends by absolute value, as power iteration would
    find them: on the Hessian and on its negative (the cost negated), whose largest in magnitude is negative."""
    params, x, y, hessian, eig = problem()
    negated = lambda logits, labels: -per_example_cost(COST, logits, labels)  # noqa: E731
    for cost, spectrum in ((COST, eig), (negated, -eig)):
        expected = spectrum[np.argsort(-np.abs(spectrum))][:3]
        values, vectors = hessian_eigenvalues(NET, cost, params, x, y, k=3, steps=60, key=jax.random.key(1),
                                              which="magnitude", vectors=True)
        np.testing.assert_allclose(values, expected, rtol=1e-6)
        h = hessian if cost == COST else -hessian
        v = np.stack([ravel_pytree(jax.tree.map(lambda a: a[i], vectors))[0] for i in range(3)])
        np.testing.assert_allclose(v @ h, np.asarray(values)[:, None] * v, atol=1e-6 * np.abs(eig).max())
    top = hessian_eigenvalues(NET, negated, params, x, y, k=1, steps=60, key=jax.random.key(1))
    np.testing.assert_allclose(top, [-eig[0]], rtol=1e-6)  # the default: the algebraically largest
    assert float(top[0]) > 0 > float(expected[0])


def test_a_whole_spectrum_through_lanczos_breakdowns(x64):
    """A linear model's Hessian has 3 distinct eigenvalues, so the Krylov space is invariant after 3 steps;
    restarts give all 10 eigenvalues, multiplicities included, and nothing is NaN."""
    net = jaxgd.MLP((4, 2), output="identity")
    params = net.init(jax.random.key(0), dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4)))
    y = jnp.array([0, 1])
    eig = np.linalg.eigvalsh(exact_hessian(net, "quadratic", params, x, y))
    values = hessian_eigenvalues(net, "quadratic", params, x, y, k=10, steps=10, key=jax.random.key(0))
    np.testing.assert_allclose(values, eig[::-1], atol=1e-10 * eig.max())
    grid, density = hessian_density(net, "quadratic", params, x, y, key=jax.random.key(0), steps=10, num_points=200)
    assert np.all(np.isfinite(density)) and grid[0] <= eig.min() and grid[-1] >= eig.max()


def test_trace_matches_the_exact_trace_within_its_standard_error(x64):
    params, x, y, hessian, eig = problem()
    trace, error = hessian_trace(NET, COST, params, x, y, probes=2000, key=jax.random.key(3))
    exact = np.trace(hessian)
    assert abs(float(trace) - exact) <= 0.05 * np.abs(eig).sum()
    # Var(z^T H z) = 2 * sum over i != j of H_ij^2 for Rademacher z
    expected = np.sqrt(2 * (np.sum(hessian ** 2) - np.sum(np.diag(hessian) ** 2)) / 2000)
    assert 0.8 * expected <= float(error) <= 1.25 * expected
    assert abs(float(trace) - exact) <= 4 * float(error)


def test_hutch_plus_plus_is_unbiased_and_exact_when_the_sketch_spans_the_hessian(x64):
    params, x, y, hessian, eig = problem()
    exact = np.trace(hessian)
    trace, error = hessian_trace(NET, COST, params, x, y, probes=90, key=jax.random.key(3), method="hutch++")
    assert abs(float(trace) - exact) <= 4 * float(error)
    _, plain = hessian_trace(NET, COST, params, x, y, probes=90, key=jax.random.key(3))
    assert 0 < float(error) < 0.8 * float(plain)  # the largest eigenvalues deflated by a sketch of 30
    # a linear model on 2 examples: a Hessian of rank 4, which a sketch of 5 vectors spans whole
    net = jaxgd.MLP((4, 2), output="identity")
    params = net.init(jax.random.key(0), dtype=jnp.float64)
    x, y = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4))), jnp.array([0, 1])
    hessian = exact_hessian(net, "quadratic", params, x, y)
    assert np.linalg.matrix_rank(hessian) == 4
    trace, error = hessian_trace(net, "quadratic", params, x, y, probes=15, key=jax.random.key(0), method="hutch++")
    np.testing.assert_allclose(float(trace), np.trace(hessian), rtol=1e-10)
    assert float(error) <= 1e-10 * np.trace(hessian)


def test_density_integrates_to_one_over_the_whole_spectrum(x64):
    params, x, y, _, eig = problem()
    grid, density = hessian_density(NET, COST, params, x, y, key=jax.random.key(4), probes=2, steps=40,
                                    num_points=500)
    assert grid.shape == density.shape == (500,) and np.all(np.diff(grid) > 0) and np.all(density >= 0)
    assert abs(float(np.trapezoid(density, grid)) - 1) <= 0.05
    assert grid[0] <= eig.min() and grid[-1] >= eig.max()
    # the Gaussians are centred on the Ritz values: the highest mass lies where the eigenvalues are
    assert eig.min() - 0.1 <= grid[np.argmax(density)] <= eig.max() + 0.1


def test_blocks_are_the_diagonal_blocks_of_the_hessian(x64):
    params, x, y, hessian, _ = problem()
    assert block_names(params) == ["0", "1"]
    leaves = [a.size for a in jax.tree.leaves(params)]  # raveled in leaf order: 0/b, 0/w, 1/b, 1/w
    bounds = np.cumsum([0] + leaves)
    layer = {"0": np.arange(bounds[0], bounds[2]), "1": np.arange(bounds[2], bounds[4])}
    kind = {"b": np.r_[bounds[0]:bounds[1], bounds[2]:bounds[3]], "w": np.r_[bounds[1]:bounds[2], bounds[3]:bounds[4]]}
    by_layer = hessian_eigenvalues(NET, COST, params, x, y, k=2, key=jax.random.key(5), blocks="layers", vectors=True)
    by_kind = hessian_eigenvalues(NET, COST, params, x, y, k=2, key=jax.random.key(5),
                                  blocks=lambda path: path.split("/")[-1])  # all biases, all weights
    for top, index in ((by_layer, layer), (by_kind, kind)):
        assert list(top) == list(index)
        for name, i in index.items():
            values = top[name][0] if isinstance(top[name], tuple) else top[name]
            np.testing.assert_allclose(values, np.linalg.eigvalsh(hessian[np.ix_(i, i)])[::-1][:2], rtol=1e-6)
    vectors = by_layer["1"][1]
    assert not np.any(np.asarray(vectors[0]["w"])) and np.any(np.asarray(vectors[1]["w"]))  # zero outside "1"
    traces = hessian_trace(NET, COST, params, x, y, probes=500, key=jax.random.key(5), blocks="layers")
    for name, i in layer.items():
        assert abs(float(traces[name][0]) - np.trace(hessian[np.ix_(i, i)])) <= 4 * float(traces[name][1])
    grids = hessian_density(NET, COST, params, x, y, key=jax.random.key(5), steps=10, num_points=50, blocks="layers")
    assert list(grids) == ["0", "1"] and grids["1"][1].shape == (50,)


def test_every_function_vmaps_over_a_population_and_jits_in_float32(x64):
    members = [problem(seed, data_seed=0) for seed in range(3)]  # one dataset
    x, y = members[0][1], members[0][2]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[m[0] for m in members])
    keys = jax.random.split(jax.random.key(6), 3)

    def spectra(p, k):  # the three functions, compiled as one program
        return (hessian_eigenvalues(NET, COST, p, x, y, k=2, steps=20, key=k),
                hessian_trace(NET, COST, p, x, y, probes=20, key=k),
                hessian_density(NET, COST, p, x, y, key=k, steps=20, num_points=100))

    together = jax.jit(jax.vmap(spectra))(stacked, keys)
    alone = jax.jit(spectra)
    for i, m in enumerate(members):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-9, atol=1e-12), together,
                     alone(m[0], keys[i]))
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), stacked)
    values = jax.jit(jax.vmap(lambda p, k: hessian_eigenvalues(NET, COST, p, x, y, k=2, steps=20, key=k)))(p32, keys)
    assert values.dtype == jnp.float32 and values.shape == (3, 2)
    np.testing.assert_allclose(values[:, 0], [m[4][-1] for m in members], rtol=1e-4)


def test_the_top_eigenvalue_of_a_cnn_is_power_iterations(small_digits):
    net = jaxgd.CNN((8, 8, 1), 10, channels=(4,))
    params = net.init(jax.random.key(0))
    x, y = jnp.asarray(small_digits.x_train[:100]).reshape(-1, 8, 8, 1), jnp.asarray(small_digits.y_train[:100])
    assert block_names(params) == ["conv/0", "dense/0"]
    top = hessian_eigenvalues(net, COST, params, x, y, key=jax.random.key(0), steps=30)
    power = jax.jit(lambda p: sharpness(net, COST, p, x, y, iters=200))(params)
    assert abs(float(top[0]) - float(power)) <= 1e-3 * abs(float(power))


def test_bad_arguments_are_refused_before_tracing():
    params = NET.init(jax.random.key(0))
    x, y, key = jnp.zeros((5, 8)), jnp.zeros(5, jnp.int32), jax.random.key(0)
    bad = [
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, k=0, key=key), "k=0"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, k=True, key=key), "k=True"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, k=2.0, key=key), "k=2.0"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, k=5, steps=4, key=key), "steps=4"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, k=83, key=key), "k=83"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, steps=83, key=key), "steps=83"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, steps=40, key=key, blocks="layers"), "block '1'"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, key=None), "key=None"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, key=key, blocks="layer"), "blocks='layer'"),
        (lambda: hessian_eigenvalues(NET, COST, params, x, y, key=key, which="smallest"), "which='smallest'"),
        (lambda: hessian_trace(NET, COST, params, x, y, probes=1, key=key), "probes=1"),
        (lambda: hessian_trace(NET, COST, params, x, y, key=key, batch_size=0), "batch_size=0"),
        (lambda: hessian_trace(NET, COST, params, x, y, key=key, method="exact"), "method='exact'"),
        (lambda: hessian_trace(NET, COST, params, x, y, probes=3, key=key, method="hutch++"), "probes=3"),
        (lambda: hessian_density(NET, COST, params, x, y, key=key, probes=0), "probes=0"),
        (lambda: hessian_density(NET, COST, params, x, y, key=key, steps=0), "steps=0"),
        (lambda: hessian_density(NET, COST, params, x, y, key=key, num_points=1), "num_points=1"),
        (lambda: hessian_density(NET, COST, params, x, y, key=key, sigma=-1.0), "sigma=-1.0"),
    ]
    for call, message in bad:
        with pytest.raises(ValueError, match=message):
            call()


def test_a_stateful_network_is_measured_in_evaluation_mode(small_digits):
    """A batch-norm CNN's (params, state) pair: Lanczos agrees with power iteration, both in evaluation mode."""
    net = jaxgd.CNN((8, 8, 1), 10, channels=(4,), batch_norm=True, dropout=0.5)
    params, state = net.init(jax.random.key(0))
    state = jax.tree.map(lambda a: a + 0.3, state)  # running statistics that differ from the batch's
    x, y = jnp.asarray(small_digits.x_train[:100]).reshape(-1, 8, 8, 1), jnp.asarray(small_digits.y_train[:100])
    top = hessian_eigenvalues(net, COST, (params, state), x, y, k=2, key=jax.random.key(0), steps=30)
    power = jax.jit(lambda p: sharpness(net, COST, (p, state), x, y, iters=300))(params)
    assert abs(float(top[0]) - float(power)) <= 1e-3 * abs(float(power))
    with pytest.raises(ValueError, match="pass params as a"):
        hessian_trace(net, COST, params, x, y, key=jax.random.key(0))


SHARDED = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import jaxgd
    from jaxgd.landscape import hessian_density, hessian_trace
    net = jaxgd.MLP((16, 8, 10), activation="tanh")  # 226 parameters
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.normal(size=(64, 16))), jnp.asarray(rng.integers(0, 10, 64))
    keys = jax.random.split(jax.random.key(0), 20)
    params = jax.vmap(lambda k: net.init(k, dtype=jnp.float64))(keys)
    mesh = jax.make_mesh((2,), ("m",))
    def one(p, k):
        return (hessian_density(net, "quadratic", p, x, y, key=k, steps=100, num_points=50)[1],
                hessian_trace(net, "quadratic", p, x, y, key=k, probes=12, method="hutch++")[0])
    # 10 members on each device, vmapped there; jax.shard_map checks the loops' carried types over the mesh
    f = jax.jit(jax.shard_map(jax.vmap(one), mesh=mesh, in_specs=(P("m"), P("m")), out_specs=P("m")))
    p, k = jax.device_put((params, keys), NamedSharding(mesh, P("m")))
    for _ in range(10):
        density, trace = f(p, k)
    alone = jax.jit(jax.vmap(one))(params, keys)
    np.testing.assert_allclose(np.asarray(trace), np.asarray(alone[1]), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(density), np.asarray(alone[0]), rtol=1e-7, atol=1e-12)
    print("finished")
""")


def test_a_population_sharded_over_two_cpu_devices_finishes_and_matches_one_device(tmp_path):
    """jaxlib 0.10.2's batched CPU LAPACK kernels deadlocked here, one per device, each waiting for the thread
    pool the other held (without jaxgd's one-matrix-at-a-time decompositions this script hung every time)."""
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=Path(__file__).resolve().parent.parent, env=env,
                              capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("the sharded Hessian spectra did not finish in 240 s (a deadlock: 12 s is usual)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished" in done.stdout
