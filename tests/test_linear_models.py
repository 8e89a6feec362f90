"""Zhang et al. 2017: Theorem 1 (jaxgd.theory.interpolating_network) and experiments/linear_models.py."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from experiments import linear_models
from jaxgd.data import write_idx
from jaxgd.models import check_model, num_params

#: A small digits configuration: kernel on 500 training images, SGD on 16, Theorem 1's network on 500.
#: Measured: kernel test accuracy 0.9777 (train 1.0), SGD relative difference 1.27e-4 after 1,000 epochs.
SMALL = dict(n_train=500, sgd_examples=16, epochs=1000, evaluations=10, bandwidth_factors=(), network_points=500)
KERNEL_TEST_ACCURACY = 0.95


@pytest.mark.parametrize("points", ["digits", "gaussian"])
def test_interpolating_network_has_2n_plus_d_parameters_and_fits_random_targets(x64, digits, points):
    n = 500
    x = digits.x_train[:n] if points == "digits" else np.random.default_rng(1).standard_normal((n, 64))
    y = np.random.default_rng(2).standard_normal(n)
    model, params, count = jaxgd.theory.interpolating_network(x, y)
    d = x.shape[1]
    assert count == 2 * n + d == num_params(model) == sum(np.size(v) for v in params.values())
    assert {k: np.shape(v) for k, v in params.items()} == {"a": (d,), "b": (n,), "w": (n,)}
    assert all(np.asarray(v).dtype == np.float64 for v in params.values())
    out = model.apply(jax.tree.map(jnp.asarray, params), jnp.asarray(x, jnp.float64))
    assert out.shape == (n, 1) and out.dtype == jnp.float64
    assert np.max(np.abs(np.asarray(out)[:, 0] - y)) <= 1e-6
    assert np.max(np.abs(jaxgd.theory.network_output(params, x) - y)) <= 1e-6
    check_model(model)  # a jaxgd model: hashable, init/apply, random params of the same shapes
    init = model.init(jax.random.key(0))
    assert jax.tree.map(np.shape, init) == jax.tree.map(np.shape, params)
    assert json.loads(json.dumps(model.describe()))["num_params"] == count


def test_duplicate_points_are_refused():
    x = np.random.default_rng(0).standard_normal((6, 3))
    x[4] = x[1]
    with pytest.raises(ValueError, match=r"duplicate points \(x\[1\] == x\[4\]\)") as e:
        jaxgd.theory.interpolating_network(x, np.zeros(6))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="shape"):
        jaxgd.theory.interpolating_network(x[:5], np.zeros(6))


def test_median_squared_distance_is_the_median_over_pairs(digits):
    x = digits.x_train[:101].astype(np.float64)
    diff = x[:, None, :] - x[None, :, :]
    pairs = np.sum(diff ** 2, axis=-1)[np.triu_indices(len(x), 1)]
    assert linear_models.median_squared_distance(x, np.empty((len(x), len(x)))) == pytest.approx(np.median(pairs),
                                                                                                   rel=1e-12)
    assert 28e9 < linear_models.kernel_memory(60_000, 10_000, 784) < 30e9  # full MNIST: about 29 GB


@pytest.fixture(scope="module")
def small_run():
    return linear_models.run(linear_models.LinearModelsConfig(**SMALL))


def test_kernel_interpolation_fits_every_label_and_generalizes(small_run):
    k = small_run["kernel_interpolation"]
    assert k["n"] == 500 and k["n_test"] == 359 and k["duplicates_dropped"] == 0
    assert k["train_accuracy"] == 1.0 and k["max_train_residual"] < 1e-8
    assert k["test_accuracy"] >= KERNEL_TEST_ACCURACY


def test_sgd_from_zero_reaches_the_minimum_norm_solution(small_run):
    s = small_run["sgd_vs_min_norm"]
    assert s["n"] == 16 < s["d"] == 64 and s["rank"] == 16
    assert s["relative_difference"] <= 1e-3 and s["train_cost"] < 1e-6 and s["train_accuracy"] == 1.0
    assert s["outside_span"] < 1e-4  # SGD never left the examples' span
    curve = np.asarray(s["curve"]["relative_difference"])
    assert curve[0] > 10 * curve[-1]  # it converged, as gradient descent's theory says
    assert s["curve"]["gd_prediction"][-1] < 1e-3


def test_finite_sample_network_in_the_study(small_run):
    net = small_run["finite_sample_network"]
    assert (net["n"], net["d"], net["num_params"]) == (500, 64, 2 * 500 + 64)
    assert net["max_abs_error"] <= 1e-6


def _write_digits_idx(path, digits):
    """The digits as MNIST-format files: 8x8 uint8 images scaled from 0..1 to 0..255."""
    path.mkdir()
    for split, x, y in (("train", digits.x_train, digits.y_train), ("t10k", digits.x_test, digits.y_test)):
        write_idx(path / f"{split}-images-idx3-ubyte", np.round(x * 255).astype(np.uint8).reshape(-1, 8, 8))
        write_idx(path / f"{split}-labels-idx1-ubyte", y.astype(np.uint8))
    return path


def test_cli_on_idx_files_writes_results(tmp_path, digits, capsys):
    data_dir = _write_digits_idx(tmp_path / "idx", digits)
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--n-train", "500", "--n-test", "200", "--sgd-examples", "16", "--epochs",
            "1000", "--evaluations", "10", "--bandwidth-factors", "0.25,1", "--network-points", "500",
            "--out", str(out), "--quiet"]
    assert linear_models.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| (b) Gaussian kernel interpolation" in printed and "relative difference" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["name"].startswith("idx:") and results["dataset"]["n_test"] == 200
    k, s, net = (results[key] for key in ("kernel_interpolation", "sgd_vs_min_norm", "finite_sample_network"))
    assert {"train_accuracy", "test_accuracy"} <= set(k) and k["train_accuracy"] == 1.0
    assert [r["bandwidth_factor"] for r in k["sweep"]] == [0.25, 0.5, 1.0]
    assert s["relative_difference"] <= 1e-3
    assert {"n", "d", "num_params", "max_abs_error"} <= set(net) and net["num_params"] == 2 * 500 + 64
    assert results["environment"]["jax"] and results["config"]["n_test"] == 200
    assert (out / "linear_models.png").stat().st_size > 10_000


def test_a_kernel_too_large_for_memory_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(linear_models, "available_memory", lambda: 5_000_000)
    out = tmp_path / "run"
    assert linear_models.main(["--preset", "quick", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1,438 training images needs" in err and "--n-train" in err
    assert not out.exists()  # refused before the run directory is made


def test_options_the_study_does_not_use_are_refused(tmp_path, capsys):
    assert linear_models.main(["--cost", "cross_entropy", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "--cost has no meaning" in capsys.readouterr().err
