"""Checkpoints: resuming gives exactly the uninterrupted run; bad checkpoints are refused with a reason."""
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxgd
from tests.conftest import Killed, kill_after
from jaxgd import MLP, TrainConfig, fit
from jaxgd.runs.checkpoint import CheckpointError

NET = MLP((64, 16, 16, 10))
CONFIG = TrainConfig(epochs=6, eval_every=2)


def assert_identical(a, b):
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert a.history.keys() == b.history.keys()
    for k in a.history:
        np.testing.assert_array_equal(a.history[k], b.history[k])
    np.testing.assert_array_equal(a.diverged, b.diverged)
    assert a.epochs_run == b.epochs_run


@pytest.mark.parametrize("kind", ["single", "per_seed", "shared", "chunked"])
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(small_digits, tmp_path, kind):
    key, kw, config = jax.random.key(3), {}, CONFIG
    if kind != "single":
        key = jax.random.split(key, 5)
        config = CONFIG.replace(data_order="shared" if kind == "shared" else "per_seed")
        kw = {"max_members": 2} if kind == "chunked" else {}
    whole = fit(key, NET, small_digits, config, **kw)
    with pytest.raises(Killed):
        fit(key, NET, small_digits, config, checkpoint=tmp_path, callback=kill_after(4), **kw)
    assert any(tmp_path.iterdir())
    resumed = fit(key, NET, small_digits, config, checkpoint=tmp_path, **kw)
    assert_identical(whole, resumed)
    again = fit(key, NET, small_digits, config, checkpoint=tmp_path, callback=kill_after(0), **kw)  # finished: no training
    assert_identical(whole, again)


def test_chunk_sizes_do_not_change_the_numbers(small_digits, tmp_path):
    runs = [fit(jax.random.key(1), NET, small_digits, CONFIG.replace(eval_every=6), checkpoint=tmp_path / str(c),
                checkpoint_every=c) for c in (1, 4, 6)]
    runs.append(fit(jax.random.key(1), NET, small_digits, CONFIG.replace(eval_every=6)))
    for r in runs[1:]:
        assert_identical(runs[0], r)


def test_checkpoint_of_another_config_is_refused_naming_the_field(small_digits, tmp_path):
    fit(jax.random.key(0), NET, small_digits, CONFIG.replace(epochs=2), checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match=r"train.learning_rate=3.0 in the checkpoint but train.learning_rate=1.0"):
        fit(jax.random.key(0), NET, small_digits, CONFIG.replace(epochs=2, learning_rate=1.0), checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match="keys="):
        fit(jax.random.key(1), NET, small_digits, CONFIG.replace(epochs=2), checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match="data.n_train=400 in the checkpoint but data.n_train=300"):
        fit(jax.random.key(0), NET, jaxgd.data.subset(small_digits, n_train=300), CONFIG.replace(epochs=2),
            checkpoint=tmp_path)


def test_corrupt_and_foreign_version_checkpoints_are_refused(small_digits, tmp_path, monkeypatch):
    fit(jax.random.key(0), NET, small_digits, CONFIG.replace(epochs=2), checkpoint=tmp_path)
    file = tmp_path / "checkpoint.npz"
    good = file.read_bytes()
    version = jaxgd.__version__
    monkeypatch.setattr(jaxgd.runs.checkpoint, "__version__", "0.0.1")
    with pytest.raises(CheckpointError, match=f"written by jaxgd {version}, this is jaxgd 0.0.1"):
        fit(jax.random.key(0), NET, small_digits, CONFIG.replace(epochs=2), checkpoint=tmp_path)
    monkeypatch.undo()
    for damaged in (good[: len(good) // 2], b"not a checkpoint", good[:100] + b"\0" * 50 + good[150:]):
        file.write_bytes(damaged)
        with pytest.raises(CheckpointError, match="is damaged or not a jaxgd checkpoint"):
            fit(jax.random.key(0), NET, small_digits, CONFIG.replace(epochs=2), checkpoint=tmp_path)


def test_a_blown_up_learning_rate_stops_a_single_network_and_flags_only_bad_members(small_digits):
    result = fit(0, NET, small_digits, TrainConfig(learning_rate=1000.0, epochs=10))
    assert bool(result.diverged) and int(result.diverged_epoch) == 1 and result.epochs_run == 1
    population = fit(jax.random.split(jax.random.key(0), 4), NET, small_digits, TrainConfig(epochs=3),
                     learning_rates=[3.0, 1000.0, 3.0, 1000.0])
    assert population.diverged.tolist() == [False, True, False, True]
    assert population.epochs_run == 3
    stats = jaxgd.member_stats(population.final("test_accuracy"), population.diverged)
    assert stats["excluded"] == 2 and stats["mean"] > 0.5


def test_no_pickle_anywhere_in_jaxgd():
    root = Path(jaxgd.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for banned in ("allow_pickle=True", "pickle.load", "import pickle"):
            assert banned not in text, f"{path} contains {banned}"
