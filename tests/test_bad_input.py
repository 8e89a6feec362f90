"""Every bad input is answered with one sentence naming the bad value: exit code 2 at the CLI, never a traceback,
and ValueError/TypeError from the API before any tracing."""
import errno
import os

import numpy as np
import pytest

import jaxgd
from jaxgd.cli import main
from jaxgd.data import write_idx
from tests.conftest import write_fake_idx_dir


def _idx_dir(tmp, name, change=None):
    path = write_fake_idx_dir(tmp / name)
    if change is not None:
        change(path)
    return str(path)


def _bad_magic(path):
    f = path / "train-images-idx3-ubyte"
    f.write_bytes(b"\x12\x34" + f.read_bytes()[2:])


def _truncated(path):
    f = path / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])


def _mismatched(path):
    write_idx(path / "train-labels-idx1-ubyte", np.zeros(59, np.uint8))


def _negative_labels(path):
    write_idx(path / "train-labels-idx1-ubyte", np.full(60, -1, np.int8))


def _nan_images(path):
    images = np.zeros((60, 28, 28), np.float32)
    images[3, 4, 5] = np.nan
    write_idx(path / "train-images-idx3-ubyte", images)


def _label_255(path):
    labels = (np.arange(60) % 10).astype(np.uint8)
    labels[17] = 255
    write_idx(path / "train-labels-idx1-ubyte", labels)


def _float_images(path):
    write_idx(path / "train-images-idx3-ubyte", np.full((60, 28, 28), 255.0, np.float32))


def _checkpointed_run(tmp, name, damage):
    out = tmp / name
    assert main(["train", "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    damage(out / "checkpoints" / "checkpoint.npz")
    return str(out)


def _foreign_version(file):
    import io
    import json

    with np.load(file) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["jaxgd"] = "0.0.9"
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    file.write_bytes(buf.getvalue())


# (id, argv with {placeholders} filled by the fixture, expected fragment of the one-line error)
CLI_CASES = [
    ("unknown dataset", ["train", "--dataset", "no_such_set"], "no_such_set"),
    ("tfds dataset not prepared", ["train", "--dataset", "mnist", "--data-dir", "{empty}"], "mnist"),
    ("missing data dir", ["train", "--data-dir", "{missing}"], "does not exist"),
    ("data dir is a file", ["train", "--data-dir", "{file}"], "is not a directory"),
    ("data dir without IDX files", ["train", "--data-dir", "{empty}"], "train-images"),
    ("IDX wrong magic", ["train", "--data-dir", "{bad_magic}"], "bad IDX magic number"),
    ("IDX truncated", ["train", "--data-dir", "{truncated}"], "is truncated"),
    ("IDX image/label count mismatch", ["train", "--data-dir", "{mismatched}"], "60"),
    ("IDX labels out of range", ["train", "--data-dir", "{negative_labels}"], "non-negative integer labels"),
    ("IDX NaN inputs", ["train", "--data-dir", "{nan_images}"], "NaN"),
    ("IDX label 255 among ten classes", ["train", "--data-dir", "{label_255}"], "has label 255 at index 17"),
    ("IDX float images without a scale", ["train", "--data-dir", "{float_images}"],
     "holds float32 images with values in [255.0, 255.0], not uint8"),
    ("labels beyond --num-classes", ["train", "--num-classes", "5"], "is out of range for num_classes=5"),
    ("input scale for the digits", ["train", "--input-scale", "255"], "applies to IDX files only"),
    ("unknown input scale", ["train", "--input-scale", "max"], "'max'"),
    ("empty hidden sizes", ["train", "--hidden", ""], "got ''"),
    ("zero hidden size", ["train", "--hidden", "16,0"], "'16,0'"),
    ("hidden not numbers", ["train", "--hidden", "16,x"], "'16,x'"),
    ("zero learning rate", ["train", "--lr", "0"], "got '0'"),
    ("negative learning rate", ["train", "--lr", "-3"], "got '-3'"),
    ("NaN learning rate", ["train", "--lr", "nan"], "got 'nan'"),
    ("zero epochs", ["train", "--epochs", "0"], "got '0'"),
    ("zero batch size", ["train", "--batch-size", "0"], "got '0'"),
    ("batch larger than the training set", ["train", "--batch-size", "5000"], "batch_size=5000 is larger than the 1438"),
    ("n_train larger than the data", ["train", "--n-train", "99999"], "n_train=99999 is larger than the 1438"),
    ("momentum out of range", ["train", "--optimizer", "momentum", "--momentum", "1.5"], "momentum must lie in [0, 1), got 1.5"),
    ("unknown optimizer", ["train", "--optimizer", "rmsprops"], "'rmsprops'"),
    ("momentum with plain sgd", ["train", "--momentum", "0.5"], "momentum=0.5 has no effect with the sgd optimizer"),
    ("hidden widths for a cnn", ["train", "--model", "cnn", "--hidden", "16"], "--hidden has no meaning for --model cnn"),
    ("channels for an mlp", ["train", "--channels", "8"], "--channels has no meaning for --model mlp"),
    ("hand-written backprop of a cnn", ["train", "--model", "cnn", "--gradient", "backprop"],
     "The hand-written backprop is written for jaxgd.MLP's layers"),
    ("data dir with the embedded digits", ["train", "--dataset", "digits", "--data-dir", "{empty}"],
     "--data-dir has no effect with --dataset digits"),
    ("unknown metric", ["train", "--metrics", "grad_nrm"], "grad_nrm"),
    ("negative weight decay", ["train", "--weight-decay", "-1"], "got '-1'"),
    ("target accuracy above 1", ["train", "--target-accuracy", "1.5"], "'1.5'"),
    ("negative validation", ["train", "--validation", "-5"], "got -5"),
    ("validation eats the training set", ["train", "--validation", "1438"], "leaves no training examples"),
    ("unknown option", ["train", "--learning-rate", "3"], "--learning-rate"),
    ("out is a file", ["train", "--out", "{file}"], "is a file, not a directory"),
    ("resume without out", ["train", "--resume"], "--resume needs --out"),
    ("corrupt checkpoint", ["train", "--epochs", "2", "--quiet", "--resume", "--out", "{corrupt_ckpt}"],
     "checkpoints/checkpoint.npz changed since the run was committed"),
    ("checkpoint from another version", ["train", "--epochs", "2", "--quiet", "--resume", "--out", "{foreign_ckpt}"],
     "checkpoints/checkpoint.npz changed since the run was committed"),
    ("resume with another config", ["train", "--epochs", "3", "--quiet", "--resume", "--out", "{other_ckpt}"],
     "epochs=2 in the checkpoint but epochs=3"),
    ("rerun of a missing directory", ["rerun", "{missing}"], "holds no config.json"),
    ("gradcheck zero width", ["gradcheck", "--sizes", "784,0,10"], "'784,0,10'"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "empty").mkdir()
    (tmp / "a-file").write_text("not a directory")
    return {
        "empty": str(tmp / "empty"), "missing": str(tmp / "missing"), "file": str(tmp / "a-file"),
        "bad_magic": _idx_dir(tmp, "bad_magic", _bad_magic), "truncated": _idx_dir(tmp, "truncated", _truncated),
        "mismatched": _idx_dir(tmp, "mismatched", _mismatched),
        "negative_labels": _idx_dir(tmp, "negative", _negative_labels),
        "nan_images": _idx_dir(tmp, "nan", _nan_images),
        "label_255": _idx_dir(tmp, "label255", _label_255), "float_images": _idx_dir(tmp, "float", _float_images),
        "corrupt_ckpt": _checkpointed_run(tmp, "corrupt", lambda f: f.write_bytes(f.read_bytes()[:500])),
        "foreign_ckpt": _checkpointed_run(tmp, "foreign", _foreign_version),
        "other_ckpt": _checkpointed_run(tmp, "other", lambda f: None),
    }


def test_the_table_has_at_least_25_cases():
    assert len(CLI_CASES) >= 25 and len({c[0] for c in CLI_CASES}) == len(CLI_CASES)


@pytest.mark.parametrize("argv,expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_cli_input_is_one_line_and_exit_code_2(places, capsys, argv, expected):
    code = main([a.format(**places) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert expected in err, err


NET = jaxgd.MLP((64, 16, 10))


def _data(**changes):
    rng = np.random.default_rng(0)
    fields = dict(x_train=rng.random((40, 64), np.float32), y_train=rng.integers(0, 10, 40).astype(np.int32),
                  x_test=rng.random((10, 64), np.float32), y_test=rng.integers(0, 10, 10).astype(np.int32))
    fields.update(changes)
    return fields


API_CASES = [
    ("labels out of range", lambda: jaxgd.data.Dataset(**_data(y_train=np.full(40, 12, np.int32)), num_classes=10),
     "y_train[0] = 12 is out of range for num_classes=10"),
    ("NaN inputs", lambda: jaxgd.data.Dataset(**_data(x_train=np.full((40, 64), np.nan, np.float32))), "NaN"),
    ("zero width network", lambda: jaxgd.MLP((64, 0, 10)), "0"),
    ("params of another shape", lambda: NET.check_params(jaxgd.MLP((64, 8, 10)).init(jax_key())),
     "params[0]['w'] has shape (64, 8), but (64, 16, 10) needs (64, 16)"),
    ("bad learning rate", lambda: jaxgd.TrainConfig(learning_rate=0).validate(), "learning_rate"),
    ("unknown dataset name type", lambda: jaxgd.data.load(3), "must be a string"),
    ("n_train larger than the data", lambda: jaxgd.data.load("digits", n_train=10 ** 6), "n_train=1000000"),
    ("key of the wrong shape", lambda: jaxgd.fit(np.zeros((2, 2, 2), np.uint32), NET,
                                                 jaxgd.data.Dataset(**_data()), jaxgd.TrainConfig(epochs=1)),
     "key must be one key or a vector of keys"),
    ("checkpoint_every zero", lambda: jaxgd.fit(0, NET, jaxgd.data.Dataset(**_data()), jaxgd.TrainConfig(epochs=1),
                                                checkpoint_every=0), "checkpoint_every"),
    ("divergence factor below 1", lambda: jaxgd.TrainConfig(divergence_factor=0.5).validate(), "divergence_factor"),
]


def jax_key():
    import jax

    return jax.random.key(0)


@pytest.mark.parametrize("call,expected", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_bad_api_input_raises_before_tracing(call, expected, monkeypatch):
    import jax

    def no_tracing(*a, **k):
        raise AssertionError("traced before validating")

    monkeypatch.setattr(jax, "jit", no_tracing)
    monkeypatch.setattr(jax.lax, "scan", no_tracing)
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert expected in str(info.value)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EROFS])
def test_a_failing_file_system_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, code):
    """No space left, a file too large, a read-only file system: one line naming the error and the file."""
    import jaxgd.runs.rundir

    def refuse(path, data, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(jaxgd.runs.rundir, "atomic_write_bytes", refuse)
    assert main(["train", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and os.strerror(code) in err[0] and str(tmp_path / "run") in err[0], err


def test_an_out_on_a_read_only_system_directory_is_one_line(capsys):
    assert main(["train", "--epochs", "1", "--quiet", "--out", "/sys/jaxgd-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/sys/jaxgd-run" in err[0], err
