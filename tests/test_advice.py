"""Every refusal that suggests a fix: following its advice literally gets a working run."""
import json

import jax
import numpy as np
import optax
import pytest

import jaxgd
from jaxgd.cli import main
from jaxgd.errors import InvalidArgument, InvalidType, JaxgdError, OutOfMemory
from jaxgd.runs.rundir import PENDING, verify
from tests.conftest import write_fake_idx_dir

QUICK = ["train", "--epochs", "2", "--quiet"]


def refused(capsys, argv, *advice) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    for words in advice:
        assert words in err, err
    return err


def test_an_optimizer_instance_the_advice_is_its_factory(small_digits):
    with pytest.raises(InvalidType, match=r"TrainConfig\(optimizer=optax.adamw, learning_rate=1e-3, optimizer_args"):
        jaxgd.TrainConfig(optimizer=optax.adamw(1e-3)).validate()
    advised = jaxgd.TrainConfig(optimizer=optax.adamw, learning_rate=1e-3, optimizer_args={"weight_decay": 1e-4},
                                epochs=1)
    assert jaxgd.fit(0, jaxgd.MLP((64, 10)), small_digits, advised).epochs_run == 1


def test_a_directory_that_is_not_empty_pass_resume_or_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    refused(capsys, [*QUICK, "--out", str(run)], "Pass --resume", "--overwrite")
    assert main([*QUICK, "--out", str(run), "--resume"]) == 0
    assert main([*QUICK, "--out", str(run), "--overwrite"]) == 0 and verify(run) == []


def test_an_unfinished_run_continue_it_with_resume(tmp_path, capsys, monkeypatch):
    from jaxgd.cli import train

    run = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "write_results", interrupted)
    assert main([*QUICK, "--out", str(run)]) == 130
    monkeypatch.undo()
    assert "continue it with --resume" in verify(run)[0]
    refused(capsys, [*QUICK, "--out", str(run)], "Pass --resume")
    assert main([*QUICK, "--out", str(run), "--resume"]) == 0 and verify(run) == []


def test_images_that_are_not_uint8_pass_input_scale(tmp_path, capsys):
    from jaxgd.data import write_idx

    idx = write_fake_idx_dir(tmp_path / "idx", n_train=60, n_test=20)
    for split in ("train", "t10k"):
        images = jaxgd.data.read_idx(idx / f"{split}-images-idx3-ubyte").astype(np.float32)
        write_idx(idx / f"{split}-images-idx3-ubyte", images)
    refused(capsys, [*QUICK, "--data-dir", str(idx), "--out", str(tmp_path / "a")], "(--input-scale)")
    assert main([*QUICK, "--data-dir", str(idx), "--input-scale", "255", "--out", str(tmp_path / "b")]) == 0


def test_unclear_classes_give_num_classes(tmp_path, capsys):
    from jaxgd.data import write_idx

    idx = write_fake_idx_dir(tmp_path / "idx", n_train=60, n_test=20)
    labels = jaxgd.data.read_idx(idx / "train-labels-idx1-ubyte").copy()
    labels[labels == 3] = 4  # no training example of class 3
    write_idx(idx / "train-labels-idx1-ubyte", labels)
    refused(capsys, [*QUICK, "--data-dir", str(idx), "--out", str(tmp_path / "a")], "(--num-classes)")
    assert main([*QUICK, "--data-dir", str(idx), "--num-classes", "10", "--out", str(tmp_path / "b")]) == 0


def test_a_function_that_cannot_be_recorded_name_it_at_module_level(tmp_path, small_digits):
    from jaxgd.errors import CheckpointError

    opaque = type("Opaque", (), {"__call__": lambda self, step: 1.0})()
    config = jaxgd.TrainConfig(epochs=2, schedule=lambda step: opaque(step))
    jaxgd.fit(0, jaxgd.MLP((64, 10)), small_digits, config, checkpoint=tmp_path / "a")
    with pytest.raises(CheckpointError, match="Name it: a function defined at module level"):
        jaxgd.fit(0, jaxgd.MLP((64, 10)), small_digits, config, checkpoint=tmp_path / "a")
    named = config.replace(schedule=half)  # the advice: a module-level function that reads only numbers
    jaxgd.fit(0, jaxgd.MLP((64, 10)), small_digits, named, checkpoint=tmp_path / "b")
    assert jaxgd.fit(0, jaxgd.MLP((64, 10)), small_digits, named, checkpoint=tmp_path / "b").epochs_run == 2


def half(step):
    return 0.5


def test_the_backprop_refusals_use_autodiff(small_digits, capsys, tmp_path):
    net = jaxgd.MLP((64, 16, 10), dropout=0.1)
    with pytest.raises(InvalidArgument, match="use gradient='autodiff'"):
        jaxgd.fit(0, net, small_digits, jaxgd.TrainConfig(gradient="backprop", epochs=1))
    assert jaxgd.fit(0, net, small_digits, jaxgd.TrainConfig(gradient="autodiff", epochs=1)).epochs_run == 1
    refused(capsys, [*QUICK, "--model", "cnn", "--gradient", "backprop", "--out", str(tmp_path / "a")],
            "gradient='autodiff'")
    assert main([*QUICK, "--model", "cnn", "--gradient", "autodiff", "--out", str(tmp_path / "b")]) == 0


def test_a_population_that_does_not_fit_use_max_members(small_digits, monkeypatch):
    from jaxgd.training import memory

    keys = jax.random.split(jax.random.key(0), 8)
    net = jaxgd.MLP((64, 16, 10))
    config = jaxgd.TrainConfig(epochs=1)
    one = jax.eval_shape(lambda: jaxgd.prepare(keys[:2], net, small_digits, config).state)
    per_member = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(one.params)) // 2
    data = sum(a.nbytes for a in small_digits.arrays().values())
    monkeypatch.setattr(memory, "available_bytes", lambda devices=None: data + 10 * per_member)
    with pytest.raises(OutOfMemory, match=r"\(or max_members\)"):
        jaxgd.fit(keys, net, small_digits, config)
    assert jaxgd.fit(keys, net, small_digits, config, max_members=2).final("test_accuracy").shape == (8,)


def test_regularizers_the_refusals_name_the_model_that_takes_them(tmp_path, capsys, small_digits):
    refused(capsys, [*QUICK, "--batch-norm", "--out", str(tmp_path / "a")], "--batch-norm is for --model cnn")
    assert main([*QUICK, "--batch-norm", "--model", "cnn", "--out", str(tmp_path / "b")]) == 0
    keys = jax.random.split(jax.random.key(0), 2)
    config = jaxgd.TrainConfig(cost="cross_entropy", optimizer="momentum", learning_rate=0.05, batch_size=32, epochs=1)
    with pytest.raises(InvalidArgument, match=r"build jaxgd.MLP or jaxgd.CNN with dropout=0.0"):
        jaxgd.fit(keys, jaxgd.CNN((8, 8, 1), 10), small_digits, config, hyperparams={"dropout": [0.0, 0.5]})
    advised = jaxgd.CNN((8, 8, 1), 10, dropout=0.0)
    assert jaxgd.fit(keys, advised, small_digits, config, hyperparams={"dropout": [0.0, 0.5]}).epochs_run == 1


def test_every_refusal_is_jaxgds_own_error():
    """The exception types a user sees are jaxgd's own (subclasses of the built-in ones)."""
    for cls in (InvalidArgument, InvalidType, OutOfMemory):
        assert issubclass(cls, JaxgdError)
    assert issubclass(InvalidArgument, ValueError) and issubclass(InvalidType, TypeError)
