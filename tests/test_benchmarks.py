"""The benchmark's contenders train the same network with the same math; its report is well formed."""
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from benchmarks import common, train_speed
from benchmarks.peers import numpy_textbook


@pytest.fixture(autouse=True)
def _no_minimum_timing(monkeypatch):
    """The smoke tests here time tiny programs; they need not spend benchmark-length seconds on them."""
    monkeypatch.setattr(common, "MIN_SECONDS", 0.0)


def test_best_time_keeps_timing_until_its_minimum_is_spent():
    calls = []

    def fn():
        calls.append(None)
        time.sleep(0.01)

    assert common.best_time(fn, repeats=3, min_seconds=0.0) >= 0.01 and len(calls) == 3
    calls.clear()
    common.best_time(fn, repeats=3, min_seconds=0.2)
    assert 4 <= len(calls) <= 20  # calls of at least 0.01 s until 0.2 s are spent
    calls.clear()
    common.best_time(fn, repeats=1, min_seconds=10.0, max_calls=5)
    assert len(calls) == 5


def test_interleaved_timing_takes_turns_and_keeps_each_fastest_call():
    log = []

    def timed(name, seconds):
        def fn():
            log.append(name)
            time.sleep(seconds.pop(0) if seconds else 0.01)
        return fn

    # gaps of 30 ms between the sleeps, so that a busy machine's late wake-ups do not reorder them
    a, b = timed("a", [0.15, 0.03, 0.09]), timed("b", [0.06, 0.12, 0.18])
    best = common.interleaved_best_times([a, b], rounds=3, min_seconds=0.0)
    assert log == ["a", "b"] * 3  # one call of each per round, in turn
    assert 0.03 <= best[0] < 0.06 <= best[1] < 0.09  # the fastest call of each: a's second, b's first
    log.clear()
    common.interleaved_best_times([timed("a", []), timed("b", [])], rounds=2, min_seconds=0.1)
    turns = [name for i, name in enumerate(log) if i == 0 or log[i - 1] != name]
    assert turns == ["a", "b", "a", "b"] and len(log) >= 8  # several calls per turn until 0.05 s are spent
    with pytest.raises(ValueError, match="rounds must be at least 1, got 0"):
        common.interleaved_best_times([a], rounds=0)


def test_numpy_textbook_peer_computes_the_lessons_gradient():
    rng = np.random.default_rng(0)
    net = numpy_textbook.Network(common.SIZES, rng)
    x = rng.random((5, 784), dtype=np.float32)
    y = rng.integers(0, 10, 5)
    eye = np.eye(10, dtype=np.float32)
    sums_w = [np.zeros_like(w) for w in net.weights]
    for xi, yi in zip(x, y):
        _, dw = net.backprop(xi[:, None], eye[yi][:, None])
        sums_w = [s + d for s, d in zip(sums_w, dw)]
    params = [{"w": jnp.asarray(w.T), "b": jnp.asarray(b[:, 0])} for w, b in zip(net.weights, net.biases)]
    ours = jaxgd.backprop(jaxgd.MLP(common.SIZES), "quadratic", params, x, y)
    for s, g in zip(sums_w, ours):
        np.testing.assert_allclose(s.T / 5, g["w"], rtol=2e-3, atol=1e-5)


def test_jaxgd_timing_scales_to_an_epoch():
    x, y = common.mnist_shaped(2_000)
    data = jax.device_put({"x_train": x, "y_train": y})
    t = train_speed.jaxgd_seconds_per_epoch(data, seeds=3, order="shared", batch_size=10, steps=4)
    assert np.isfinite(t) and t > 0


def test_populations_up_to_100_seeds_are_timed_over_whole_epochs():
    assert train_speed.steps_for(1, 10, quick=False) is None
    assert train_speed.steps_for(100, 10, quick=False) is None
    assert train_speed.steps_for(1000, 10, quick=False) == 100  # 1,000,000 examples x seeds, scaled
    assert train_speed.steps_for(100, 10, quick=True) == 50
    assert train_speed.steps_for(100, 32, quick=False, model="cnn") == 10  # a CNN is always timed in part
    x, y = common.mnist_shaped(500)
    data = jax.device_put({"x_train": x, "y_train": y})
    t = train_speed.jaxgd_seconds_per_epoch(data, seeds=20, order="shared", batch_size=10, steps=None)
    assert np.isfinite(t) and t > 0


def test_jaxgd_cnn_timing_scales_to_an_epoch():
    x, y = common.mnist_shaped(2_000)
    data = jax.device_put({"x_train": x, "y_train": y})
    t = train_speed.jaxgd_seconds_per_epoch(data, seeds=3, order="shared", batch_size=32, steps=2, model="cnn")
    assert np.isfinite(t) and t > 0


def test_the_cnn_peers_train_the_same_network_as_jaxgd():
    """The torch CNN and the thirty-line JAX CNN compute jaxgd.models.CNN's function, given its parameters."""
    torch = pytest.importorskip("torch")
    from benchmarks.peers import torch_cnn

    model, _ = train_speed.jaxgd_model("cnn")
    params = model.init(jax.random.key(0))
    x = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    net = torch_cnn.make_cnn(torch.device("cpu"))
    with torch.no_grad():
        for layer, p in zip([net[0], net[3]], params["conv"]):
            layer.weight.copy_(torch.from_numpy(np.asarray(p["w"]).transpose(3, 2, 0, 1).copy()))
            layer.bias.copy_(torch.from_numpy(np.array(p["b"])))
        w = np.asarray(params["dense"][0]["w"])  # (positions, channels, classes) -> torch's (classes, c * h * w)
        net[7].weight.copy_(torch.from_numpy(w.transpose(2, 1, 0).reshape(10, -1).copy()))
        net[7].bias.copy_(torch.from_numpy(np.array(params["dense"][0]["b"])))
        theirs = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(theirs, model.apply(params, x), rtol=1e-4, atol=1e-5)
    assert common.cnn_macs() == 28 * 28 * 9 * 16 + 14 * 14 * 9 * 16 * 32 + 7 * 7 * 32 * 10


def test_the_thirty_line_population_trains(monkeypatch):
    from benchmarks.peers import jax_population

    x, y = common.mnist_shaped(200)
    for model in ("mlp", "cnn"):
        t = jax_population.seconds_per_epoch(x, y, 10, 3, model, steps=2)
        assert np.isfinite(t) and t > 0


def test_a_missing_peer_is_skipped_not_failed(monkeypatch):
    from benchmarks.peers import torch_eager

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    seconds, note = train_speed.peer(torch_eager.seconds_per_epoch, *common.mnist_shaped(100), 10)
    assert seconds is None and note.startswith("skipped")


def test_checks_read_the_targets_off_the_rows():
    rows = [
        {"contender": "jaxgd", "seeds": 1, "order": None, "batch": 10, "seconds_per_seed_epoch": 0.1},
        {"contender": "pytorch eager", "seeds": 1, "order": None, "batch": 10, "seconds_per_seed_epoch": 2.0},
        {"contender": "jaxgd", "seeds": 100, "order": "shared", "batch": 10, "seconds_per_seed_epoch": 0.05},
    ]
    out = {c["check"]: c for c in train_speed.checks(rows, [])}
    assert out["CNN 100 seeds shared, batch 32: x faster than torch.func ensemble"]["met"] is None
    assert out["1 seed, batch 10: x faster than pytorch eager"]["value"] == pytest.approx(20.0)
    assert out["1 seed, batch 10: x faster than pytorch eager"]["met"] is True
    assert out["100 seeds shared, batch 10: x faster than pytorch eager"]["met"] is False
    assert out["100 seeds shared, batch 10: x faster than torch.func ensemble"]["met"] is None


def test_the_pyhessian_peer_measures_jaxgds_network_and_cost():
    """The torch copy of a member computes jaxgd's outputs and quadratic cost, and PyHessian's Hessian-vector
    products are jaxgd's."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("pyhessian")
    from jax.flatten_util import ravel_pytree
    from pyhessian import hessian

    from benchmarks import hessian_speed
    from benchmarks.peers import pyhessian_peer
    from jaxgd.costs import cost_fn

    net = jaxgd.MLP(hessian_speed.SIZES, activation=hessian_speed.ACTIVATION, output=hessian_speed.OUTPUT)
    params = net.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 64), dtype=np.float32), rng.integers(0, 10, 20).astype(np.int32)
    model = pyhessian_peer.make_mlp(params, hessian_speed.ACTIVATION, hessian_speed.OUTPUT)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    with torch.no_grad():
        np.testing.assert_allclose(model(xt).numpy(), net.predict(params, x), rtol=1e-5, atol=1e-6)
        cost = float(pyhessian_peer.quadratic_cost()(model(xt), yt))
    np.testing.assert_allclose(cost, cost_fn(net, "quadratic")(params, x, y), rtol=1e-5)
    flat, unravel = ravel_pytree(params)
    v = rng.standard_normal(flat.shape[0]).astype(np.float32)
    grad = jax.grad(lambda q: cost_fn(net, "quadratic")(unravel(q), x, y))
    ours = np.asarray(jax.jvp(grad, (flat,), (jnp.asarray(v),))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # backward(create_graph=True)'s reference-cycle warning
        h = hessian(model, pyhessian_peer.quadratic_cost(), data=(xt, yt), cuda=False)
    # torch's parameters, in its order (weight (out, in), bias, per layer) as jaxgd's pytree
    vs = jax.tree.map(np.asarray, unravel(jnp.asarray(v)))
    torch_v = [torch.from_numpy(np.array(a)) for layer in vs for a in (layer["w"].T, layer["b"])]
    with pyhessian_peer.counting() as count:
        theirs = sys.modules["pyhessian.hessian"].hessian_vector_product(h.gradsH, h.params, torch_v)
    assert count[0] == 1
    theirs_tree = [{"w": theirs[2 * i].detach().numpy().T, "b": theirs[2 * i + 1].detach().numpy()}
                   for i in range(len(params))]
    np.testing.assert_allclose(ravel_pytree(theirs_tree)[0], ours, rtol=2e-3, atol=1e-5 * np.abs(ours).max())
    for p in model.parameters():
        p.grad = None


def test_the_hessian_benchmark_runs_and_reports():
    """A smoke run: 2 networks; every row timed or skipped, every check read (PyHessian skipped without it)."""
    from benchmarks import hessian_speed

    result = hessian_speed.run(quick=True, members=2, chunk=1)
    keys = [r["key"] for r in result["rows"]]
    assert {"jaxgd_eigenvalue", "jaxgd_trace", "jaxgd_trace_plus", "jaxgd_density", "jaxgd_sharpness_one_vmap",
            "jaxgd_eigenvalue_one_vmap"} <= set(keys)
    for r in result["rows"]:
        if r["key"].startswith("jaxgd"):
            assert r["ms_per_network"] > 0 and r["compile_seconds"] > 0
    assert len(result["checks"]) == 4
    spectra = result["accuracy"]["eigenvalue"]["jaxgd"]
    assert 0 <= spectra["median"] <= spectra["p90"] <= spectra["max"]
    text = hessian_speed.format_table(result)
    assert "top eigenvalue" in text and "density" in text and "x faster per network" in text


def test_the_hessian_benchmark_skips_a_missing_peer(monkeypatch):
    """torch first (PyHessian needs it), then PyHessian itself; either is named in the skip."""
    from benchmarks import hessian_speed

    monkeypatch.setitem(sys.modules, "pyhessian", None)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch", None)
        assert hessian_speed.peer_available() == "skipped (torch not installed)"
    try:
        import torch  # noqa: F401
    except ImportError:
        return  # a machine without torch (CI) has checked the first case
    assert hessian_speed.peer_available() == "skipped (pyhessian not installed)"
