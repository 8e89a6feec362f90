"""MNIST-1D as a data source (the authors' generator, isolated and cached) and the MNIST-1D table's claims."""
import json
import pickle
import random
import sys

import numpy as np
import pytest

import jaxgd
from jaxgd.data import DatasetNotPrepared
from jaxgd.data import mnist1d as source
from tests.conftest import optimized

pytest.importorskip("mnist1d")


@pytest.fixture(scope="module")
def reference():
    """A direct ``make_dataset()`` call, with the global random state put back afterwards."""
    from mnist1d.data import make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return make_dataset()
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("mnist1d-cache")
    jaxgd.data.load("mnist1d", data_dir=path)
    return path


def _same_state(a, b):
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def test_equals_make_dataset_and_leaves_the_global_random_state_alone(tmp_path, reference):
    np.random.seed(123)
    random.seed(456)
    np_state, py_state = np.random.get_state(), random.getstate()
    ds = jaxgd.data.load("mnist1d", data_dir=tmp_path)
    assert _same_state(np.random.get_state(), np_state) and random.getstate() == py_state
    assert ds.name == "mnist1d" and ds.input_shape == (40,) and ds.num_classes == 10
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    np.testing.assert_array_equal(ds.x_train, reference["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.x_test, reference["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, reference["y"])
    np.testing.assert_array_equal(ds.y_test, reference["y_test"])
    assert abs(ds.x_train.mean()) < 0.05 and 0.9 < ds.x_train.std() < 1.1  # as generated: standardised, not [0, 1]


def test_cache_round_trip_without_pickle(cache, reference, monkeypatch):
    [path] = cache.glob("mnist1d-*.npz")
    assert path.name == f"mnist1d-{source.cache_key()}.npz"
    with np.load(path, allow_pickle=False) as f:  # plain arrays: no object arrays, no pickle
        np.testing.assert_array_equal(f["x_train"], reference["x"])
        np.testing.assert_array_equal(f["y_test"], reference["y_test"])

    def refuse(*args, **kwargs):
        raise AssertionError("called")

    monkeypatch.setattr(source, "generate", refuse)  # a cache hit generates nothing...
    for module, name in ((pickle, "load"), (pickle, "loads"), (sys.modules["mnist1d.utils"], "from_pickle"),
                         (sys.modules["mnist1d.data"], "get_dataset"), (sys.modules["requests"], "get")):
        monkeypatch.setattr(module, name, refuse)  # ...and reads no pickle, downloads nothing
    np.testing.assert_array_equal(jaxgd.data.load("mnist1d", data_dir=cache).x_test,
                                  reference["x_test"].astype(np.float32))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing_array"])
def test_a_damaged_cache_is_generated_again(tmp_path, cache, reference, damage):
    [good] = cache.glob("mnist1d-*.npz")
    path = tmp_path / good.name
    if damage == "garbage":
        path.write_bytes(b"not an npz")
    elif damage == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        np.savez(path, x_train=reference["x"])
    ds = jaxgd.data.load("mnist1d", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.y_train, reference["y"])
    assert path.read_bytes() == good.read_bytes()


def test_cache_key_follows_the_package_version_and_the_default_directory(monkeypatch, tmp_path):
    key = source.cache_key()
    make, args, version = source._package()
    monkeypatch.setattr(source, "_package", lambda: (make, args, version + ".other"))
    assert source.cache_key() != key
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert source.default_cache_dir() == tmp_path / "jaxgd"


def test_missing_package_is_one_sentence(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DatasetNotPrepared, match=r"pip install 'jaxgd\[mnist1d\]'"):
        jaxgd.data.load("mnist1d", data_dir=tmp_path)
    from jaxgd.cli import main

    assert main(["train", "--dataset", "mnist1d", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "jaxgd[mnist1d]" in err


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_cli_trains_on_mnist1d(cache, tmp_path, model):
    from jaxgd.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist1d", "--data-dir", str(cache), "--model", model, "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "mnist1d" and config["input_shape"] == [40]
    assert metrics["test_accuracy"] > 0.2 and (out / "weights.png").exists()


@pytest.fixture(scope="module")
def quick(cache, tmp_path_factory):
    from experiments import mnist1d

    out = tmp_path_factory.mktemp("mnist1d-table")
    with optimized():
        assert mnist1d.main(["--preset", "quick", "--data-dir", str(cache), "--out", str(out), "--quiet"]) == 0
    assert (out / "mnist1d.png").stat().st_size > 10_000
    return json.loads((out / "results.json").read_text())


def _rows(results):
    return {(r["model"], r["condition"]): r for r in results["summary"]}


def test_results_file_has_config_environment_and_per_seed_numbers(quick):
    rows = _rows(quick)
    assert set(rows) == {(m, c) for m in ("logistic", "mlp", "cnn") for c in ("original", "shuffled")}
    seeds = quick["config"]["seeds"]
    for r in rows.values():
        assert len(r["test_accuracy_per_seed"]) == seeds and r["seeds"] == seeds and r["diverged"] == 0
        assert r["min"] <= r["mean"] <= r["max"]
    assert rows[("cnn", "original")]["paper"] == 0.94 and quick["environment"]["jax"]
    assert quick["dataset"]["name"] == "mnist1d" and quick["models"]["logistic"]["num_params"] == 410


def test_the_cnn_beats_the_mlp_and_logistic_regression(quick):
    rows = _rows(quick)
    cnn, mlp, logistic = (rows[(m, "original")] for m in ("cnn", "mlp", "logistic"))
    assert cnn["min"] > mlp["max"] + 0.1 and mlp["min"] > logistic["max"] + 0.1
    assert cnn["mean"] >= 0.85 and 0.25 <= logistic["mean"] <= 0.40


def test_shuffling_hurts_the_cnn_more_than_the_mlp(quick):
    rows = _rows(quick)
    drop = {m: rows[(m, "original")]["mean"] - rows[(m, "shuffled")]["mean"] for m in ("cnn", "mlp")}
    assert drop["cnn"] >= 0.15 and abs(drop["mlp"]) < 0.05 and drop["cnn"] > drop["mlp"] + 0.1


def test_bad_options_exit_2(capsys):
    from experiments import mnist1d

    assert mnist1d.main(["--models", "gru", "--quiet"]) == 2
    assert "gru" in capsys.readouterr().err
