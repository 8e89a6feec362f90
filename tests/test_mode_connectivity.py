"""Spawning children from a trunk (fit's start=, branch, jaxgd.landscape.spawn), bootstrap intervals, and the
mode-connectivity study on a tiny configuration."""
import json

import jax
import numpy as np
import pytest

import jaxgd
from jaxgd.analysis.statistics import bootstrap_ci
from jaxgd.errors import InvalidArgument
from jaxgd.landscape import spawn
from jaxgd.training.evaluation import evaluate
from jaxgd.training.state import branch
from tests.conftest import optimized

NET = jaxgd.MLP((64, 16, 10), activation="relu", output="softmax")
CONFIG = jaxgd.TrainConfig(cost="cross_entropy", learning_rate=0.3, batch_size=40, epochs=3, init="he")


@pytest.fixture(scope="module")
def data(small_digits):
    return jaxgd.data.subset(small_digits, n_train=200)


@pytest.fixture(scope="module")
def spawned(data):
    return spawn(jax.random.key(4), NET, data, CONFIG, epochs=(0, 1, 2), children=2)


def test_children_start_as_the_trunk_at_their_epoch_and_differ_afterwards(spawned, data):
    assert spawned.epochs == (0, 1, 2) and list(spawned.spawned_at) == [0, 0, 1, 1, 2, 2]
    trunk_key = jax.random.split(jax.random.key(4))[0]
    uninterrupted = jaxgd.fit(trunk_key[None], NET, data, CONFIG.replace(epochs=2), devices=jax.local_devices()[:1])
    for a, b in zip(jax.tree.leaves(uninterrupted.member(0).params), jax.tree.leaves(spawned.trunk[2])):
        np.testing.assert_array_equal(a, b)  # the trunk's segments chain its state exactly
    x, y = data.images("train"), data.y_train
    children = spawned.children
    for k in spawned.epochs:
        members = spawned.group(k)
        trunk_cost = float(evaluate(NET, CONFIG.cost, spawned.trunk[k], x, y)[0])
        np.testing.assert_allclose(children.initial["train_cost"][members], trunk_cost, rtol=1e-5)
        a, b = (jax.tree.map(lambda v: np.asarray(v)[i], children.params) for i in members)
        assert max(float(np.abs(u - v).max()) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))) > 1e-3


def test_every_child_trains_to_the_trunks_last_epoch(spawned):
    cost = spawned.children.history["train_cost"]  # the children's run: 3 epochs, evaluated after each
    assert list(spawned.children.history["epoch"]) == [1, 2, 3]
    late = spawned.group(2)  # spawned at 2 of 3 epochs: one epoch of training, then held
    np.testing.assert_array_equal(cost[late, 1], cost[late, 0])
    np.testing.assert_array_equal(cost[late, 2], cost[late, 0])
    middle = spawned.group(1)
    np.testing.assert_array_equal(cost[middle, 2], cost[middle, 1])
    assert np.all(cost[spawned.group(0), 2] != cost[spawned.group(0), 1])


def test_start_is_checked_against_the_run(data):
    result = jaxgd.fit(0, NET, data, CONFIG.replace(epochs=1))
    keys = jax.random.split(jax.random.key(2), 2)
    copies = branch(result.state, keys)
    assert jaxgd.fit(keys, NET, data, CONFIG.replace(epochs=1), start=copies).params[0]["w"].shape == (2, 64, 16)
    with pytest.raises(InvalidArgument, match="not a state of this run"):
        jaxgd.fit(keys, jaxgd.MLP((64, 8, 10), output="softmax"), data, CONFIG, start=copies)
    with pytest.raises(InvalidArgument, match="max_members"):
        jaxgd.fit(keys, NET, data, CONFIG, start=copies, max_members=1)
    with pytest.raises(InvalidArgument, match="per_seed"):
        spawn(jax.random.key(0), NET, data, CONFIG.replace(data_order="shared"), epochs=(0, 1))


def test_bootstrap_intervals_are_seeded_and_hold_the_mean():
    values = np.random.default_rng(0).exponential(size=15)
    low, high = bootstrap_ci(values, seed=3)
    assert low < values.mean() < high and (low, high) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)
    assert all(np.isnan(bootstrap_ci([])))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The quick preset's CNN at its high learning rate, smaller: 600 examples, 10 epochs, 3 seeds, 3 children."""
    from experiments import mode_connectivity

    out = tmp_path_factory.mktemp("mode_connectivity")
    argv = ["--preset", "quick", "--n-train", "600", "--epochs", "10", "--spawn-epochs", "0,3,6", "--children", "3",
            "--seeds", "3", "--resamples", "1000", "--out", str(out), "--quiet"]
    with optimized():
        assert mode_connectivity.main(argv) == 0
    for png in ("mode_connectivity.png", "weights_across_seeds.png"):
        assert (out / png).stat().st_size > 10_000
    return json.loads((out / "results.json").read_text())


def test_the_study_reports_barriers_per_spawn_epoch_with_intervals(tiny):
    assert [r["epoch"] for r in tiny["spawn"]] == [0, 3, 6]
    for r in tiny["spawn"] + [tiny["seeds"]]:
        assert r["pairs"] == 3
        for name in ("barrier", "barrier_aligned", "error_barrier"):
            low, high = r[f"{name}_ci"]
            assert low <= r[f"{name}_mean"] <= high, (name, r)
    seeds = tiny["seeds"]
    matrix = np.asarray(seeds["barrier_matrix"])
    assert matrix.shape == (3, 3) and np.allclose(matrix, matrix.T) and np.all(np.diag(matrix) == 0)
    assert np.mean(matrix[np.triu_indices(3, 1)]) == pytest.approx(seeds["barrier_mean"])
    assert np.asarray(tiny["first_layer"]["weights"]).shape == (3, 9, 16)  # 3 x 3 kernels, 16 channels


def test_children_spawned_at_initialisation_are_unstable_and_later_ones_are_not(tiny):
    """Frankle et al.'s instability at this scale: the barrier between children spawned at k = 0 is more than twice
    (measured: tens of times) the barrier between children spawned at the last k; seeds are apart."""
    first, last = tiny["spawn"][0]["barrier_mean"], tiny["spawn"][-1]["barrier_mean"]
    assert first > 2 * last and tiny["seeds"]["barrier_mean"] > first


def test_bad_options_exit_2(capsys):
    from experiments import mode_connectivity

    assert mode_connectivity.main(["--spawn-epochs", "0,40", "--quiet"]) == 2
    assert "Spawn epochs" in capsys.readouterr().err
