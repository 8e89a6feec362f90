"""Bounded readers (issue 17): hostile IDX files and checkpoints are refused in one sentence, before they cost
memory or hang; a checkpoint edited after it was written is refused by its checksum; IDX labels and image
scales are checked, never guessed."""
import contextlib
import os
import re
import shutil
import signal

import numpy as np
import pytest

import jaxgd
from jaxgd.runs import checkpoint
from jaxgd.runs.checkpoint import CheckpointError
from jaxgd.cli import main
from jaxgd.data import IDXError, read_idx, write_idx
from tests.conftest import write_fake_idx_dir
from tests.measure_readers import (edit_header, idx_header, npy_bytes, peak_memory, rewrite_checkpoint,
                                   write_checkpoint, write_gzip_idx, write_huge_header, write_zip_bomb)

#: How much more memory refusing a hostile file may take than reading a valid file of the same kind.
MARGIN = 200 * 2 ** 20


@contextlib.contextmanager
def deadline(seconds=10):
    """Fails the test instead of hanging if the body blocks (opening a FIFO waits for a writer)."""
    def expired(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def one_line_exit_2(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# --- IDX files: bounded reading ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape,code", [((10 ** 6, 10 ** 6), 0x08), ((2 ** 29, 2), 0x0E)],
                         ids=["too many elements", "too many bytes"])
def test_an_idx_header_claiming_too_much_is_refused_before_reading(tmp_path, shape, code):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_header(shape, code) + bytes(100))
    with pytest.raises(IDXError, match=re.escape(f"{path} claims a {shape} array") + ".* more than the 2147483648"):
        read_idx(path)


def test_a_gzip_bomb_is_refused_within_the_memory_of_a_valid_file(tmp_path):
    shape = (1000, 28, 28)
    valid = write_gzip_idx(tmp_path / "valid-idx3-ubyte.gz", shape)
    bomb = write_gzip_idx(tmp_path / "bomb-idx3-ubyte.gz", shape, inflated_extra=300 * 2 ** 20)
    assert bomb.stat().st_size < 2 ** 20  # 300 MB inflated from under 1 MB
    with pytest.raises(IDXError, match=r"bomb-idx3-ubyte.gz has at least 1048576 bytes after the \(1000, 28, 28\)"):
        read_idx(bomb)
    bomb_peak, outcome = peak_memory("jaxgd.data.idx:read_idx", bomb)
    valid_peak, read = peak_memory("jaxgd.data.idx:read_idx", valid)
    assert outcome.startswith("IDXError") and read == "read"
    assert bomb_peak < valid_peak + MARGIN, (bomb_peak, valid_peak)


def test_a_slightly_oversized_idx_file_reports_its_exact_excess(tmp_path):
    path = write_gzip_idx(tmp_path / "a-idx3-ubyte.gz", (2, 3), inflated_extra=5)
    with pytest.raises(IDXError, match=r"has 5 bytes after the \(2, 3\) array"):
        read_idx(path)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_an_idx_path_that_is_not_a_regular_file_is_refused_without_opening_it(tmp_path, capsys, kind):
    data_dir = write_fake_idx_dir(tmp_path / "idx")
    target = data_dir / "train-labels-idx1-ubyte"
    target.unlink()
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    what = "a FIFO" if kind == "fifo" else "a directory"
    with deadline():
        with pytest.raises(IDXError, match=f"{target} is {what}, not a regular file"):
            jaxgd.data.load(None, data_dir=data_dir)
        assert f"is {what}" in one_line_exit_2(["train", "--data-dir", str(data_dir)], capsys)


def test_big_endian_idx_data_is_swapped_in_place(tmp_path):
    array = np.arange(-6, 6, dtype=np.int16).reshape(3, 4) * 1000
    write_idx(tmp_path / "a-idx2", array)
    back = read_idx(tmp_path / "a-idx2")
    assert back.dtype == np.int16 and back.dtype.isnative and back.flags.writeable
    np.testing.assert_array_equal(back, array)


# --- IDX files: labels and scales are checked, not guessed -------------------------------------------------


def _labels(path, split, labels):
    write_idx(path / f"{split}-labels-idx1-ubyte", np.asarray(labels))


def _digits_dir(tmp_path, n_train=60, **kw):
    """A fake IDX directory whose training labels hold every class 0..9."""
    path = write_fake_idx_dir(tmp_path / "idx", n_train=n_train, **kw)
    _labels(path, "train", (np.arange(n_train) % 10).astype(np.uint8))
    return path


def test_a_stray_255_is_an_error_not_256_classes(tmp_path, capsys):
    path = _digits_dir(tmp_path)
    labels = np.arange(60) % 10
    labels[17] = 255
    _labels(path, "train", labels.astype(np.uint8))
    train = path / "train-labels-idx1-ubyte"
    with pytest.raises(IDXError, match=rf"{train} has label 255 at index 17 but no training example of class 10"):
        jaxgd.data.load(None, data_dir=path)
    with pytest.raises(IDXError, match=rf"{train} has label 255 at index 17, outside \[0, 10\)"):
        jaxgd.data.load(None, data_dir=path, num_classes=10)
    assert jaxgd.data.load(None, data_dir=path, num_classes=256).num_classes == 256  # said, not guessed
    assert "label 255 at index 17" in one_line_exit_2(["train", "--data-dir", str(path)], capsys)
    assert "outside [0, 10)" in one_line_exit_2(["train", "--data-dir", str(path), "--num-classes", "10"], capsys)


def test_a_rare_extra_class_is_an_error_not_an_eleventh_class(tmp_path):
    path = _digits_dir(tmp_path, n_train=1200, side=4)
    labels = np.arange(1200) % 10
    labels[700] = 10
    _labels(path, "train", labels.astype(np.uint8))
    with pytest.raises(IDXError, match=r"label 10 at index 700 but only 1 of its 1200 examples in class 10"):
        jaxgd.data.load(None, data_dir=path)
    with pytest.raises(IDXError, match=r"label 10 at index 700, outside \[0, 10\)"):
        jaxgd.data.load(None, data_dir=path, num_classes=10)
    assert jaxgd.data.load(None, data_dir=path, num_classes=11).num_classes == 11


def test_test_labels_beyond_the_inferred_classes_are_named(tmp_path):
    path = _digits_dir(tmp_path)
    labels = np.arange(20) % 10
    labels[4] = 10
    _labels(path, "t10k", labels.astype(np.uint8))
    with pytest.raises(IDXError, match=rf"{path / 't10k-labels-idx1-ubyte'} has label 10 at index 4, outside"):
        jaxgd.data.load(None, data_dir=path)


def test_wide_labels_are_range_checked_before_narrowing(tmp_path):
    path = _digits_dir(tmp_path)
    labels = (np.arange(60) % 10).astype(np.int32)
    labels[3] = 2 ** 31 - 1  # would stay itself in int32, but is no class; bincount would need 16 GB
    _labels(path, "train", labels)
    with pytest.raises(IDXError, match="label 2147483647 at index 3 but no training example of class 10"):
        jaxgd.data.load(None, data_dir=path)
    with pytest.raises(IDXError, match=r"label 2147483647 at index 3, outside \[0, 10\)"):
        jaxgd.data.load(None, data_dir=path, num_classes=10)


def _images(path, split, images):
    write_idx(path / f"{split}-images-idx3-ubyte", images)


@pytest.mark.parametrize("dtype,values,shown", [(np.float32, (0, 255), r"\[0.0, 255.0\]"),
                                                (np.int16, (-100, 300), r"\[-100, 300\]")])
def test_images_that_are_not_uint8_need_a_scale(tmp_path, capsys, dtype, values, shown):
    path = _digits_dir(tmp_path, side=4)
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        images = rng.integers(values[0], values[1], (n, 4, 4)).astype(dtype)
        images[0, 0, :2] = values
        _images(path, split, images)
    file = path / "train-images-idx3-ubyte"
    with pytest.raises(IDXError, match=rf"{file} holds {np.dtype(dtype).name} images with values in {shown}, not "
                                       r"uint8.*--input-scale"):
        jaxgd.data.load(None, data_dir=path)
    assert "--input-scale" in one_line_exit_2(["train", "--data-dir", str(path)], capsys)
    raw = jaxgd.data.load(None, data_dir=path, scale="none")
    assert raw.x_train.min() == values[0] and raw.x_train.max() == values[1]
    np.testing.assert_array_equal(jaxgd.data.load(None, data_dir=path, scale="255").x_train,
                                  raw.x_train / np.float32(255))
    minmax = jaxgd.data.load(None, data_dir=path, scale="minmax")
    assert minmax.x_train.min() == 0.0 and minmax.x_train.max() == 1.0
    low, high = values
    np.testing.assert_allclose(minmax.x_test, (raw.x_test - low) / (high - low), rtol=1e-6)  # the training map


def test_uint8_images_are_divided_by_255_unless_told_otherwise(tmp_path):
    path = _digits_dir(tmp_path)
    default = jaxgd.data.load(None, data_dir=path)
    raw = jaxgd.data.load(None, data_dir=path, scale="none")
    assert raw.x_train.max() == 255.0 and default.x_train.max() == 1.0
    np.testing.assert_array_equal(default.x_train, raw.x_train / np.float32(255))
    np.testing.assert_array_equal(jaxgd.data.load(None, data_dir=path, scale="255").x_train, default.x_train)


def test_scale_and_num_classes_are_checked(tmp_path):
    path = _digits_dir(tmp_path)
    with pytest.raises(ValueError, match=r"scale must be one of '255', 'minmax', 'none', got 'max'"):
        jaxgd.data.load(None, data_dir=path, scale="max")
    with pytest.raises(ValueError, match="scale='255' applies to IDX files only; digits"):
        jaxgd.data.load("digits", scale="255")
    with pytest.raises(ValueError, match="num_classes must be positive, got 0"):
        jaxgd.data.load(None, data_dir=path, num_classes=0)
    with pytest.raises(ValueError, match=r"y_train\[\d+\] = \d+ is out of range for num_classes=5"):
        jaxgd.data.load("digits", num_classes=5)


# --- checkpoints: bounded reading ---------------------------------------------------------------------------


@pytest.fixture
def valid(tmp_path):
    return write_checkpoint(tmp_path / "valid.npz")


def test_a_checkpoint_zip_bomb_is_refused_within_the_memory_of_a_valid_file(tmp_path, valid):
    bomb = write_zip_bomb(valid, tmp_path / "bomb.npz", inflated=300 * 2 ** 20)
    assert bomb.stat().st_size < 2 ** 20
    with pytest.raises(CheckpointError, match=r"its member 'diverged.npy' declares 314572928 bytes compressed into"):
        checkpoint.read(bomb)
    bomb_peak, outcome = peak_memory("jaxgd.runs.checkpoint:read", bomb)
    valid_peak, read = peak_memory("jaxgd.runs.checkpoint:read", valid)
    assert outcome.startswith("CheckpointError") and read == "read"
    assert bomb_peak < valid_peak + MARGIN, (bomb_peak, valid_peak)


def test_members_declaring_more_than_the_file_holds_are_refused(tmp_path, valid):
    raw = bytearray(valid.read_bytes())
    entry = raw.rindex(b"diverged.npy") - 46  # its central directory entry: sizes at bytes 20..27
    assert raw[entry:entry + 4] == b"PK\x01\x02"
    raw[entry + 20:entry + 28] = (2 ** 30).to_bytes(4, "little") * 2  # stored, but 1 GiB
    (tmp_path / "overlong.npz").write_bytes(raw)
    with pytest.raises(CheckpointError, match=rf"its members declare \d+ bytes, more than the file's {len(raw)}"):
        checkpoint.read(tmp_path / "overlong.npz")


def test_a_huge_npy_header_is_refused_before_allocating(tmp_path, valid):
    huge = write_huge_header(valid, tmp_path / "huge.npz")
    with pytest.raises(CheckpointError, match=r"its array 'diverged' claims shape \(1000000000000,\), more than"):
        checkpoint.read(huge)
    huge_peak, outcome = peak_memory("jaxgd.runs.checkpoint:read", huge)
    valid_peak, _ = peak_memory("jaxgd.runs.checkpoint:read", valid)
    assert outcome.startswith("CheckpointError") and huge_peak < valid_peak + MARGIN


def test_a_header_promising_other_bytes_than_its_member_holds_is_refused(tmp_path, valid):
    lying = write_huge_header(valid, tmp_path / "lying.npz", shape=(5,))
    with pytest.raises(CheckpointError, match=r"'diverged' claims shape \(5,\) of float64 but its member holds 8"):
        checkpoint.read(lying)


def test_a_fifo_checkpoint_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "checkpoint.npz"
    os.mkfifo(fifo)
    with deadline():
        with pytest.raises(CheckpointError, match=f"The checkpoint {fifo} is a FIFO, not a regular file"):
            checkpoint.read(fifo)
        with pytest.raises(CheckpointError, match="is a FIFO"):
            jaxgd.fit(0, jaxgd.MLP((64, 4, 10)), jaxgd.data.load("digits", n_train=50), jaxgd.TrainConfig(epochs=1),
                      checkpoint=tmp_path)


MALFORMED = [
    ("header is a list", dict(replace={"__meta__": np.frombuffer(b"[1, 2]", np.uint8)}), "its header is a JSON list"),
    ("header is not JSON", dict(replace={"__meta__": np.frombuffer(b"{bomb", np.uint8)}), "damaged"),
    ("no header", None, "it has no '__meta__' array"),
    ("unexpected array", dict(replace={"bomb": np.zeros(3)}), "it holds an unexpected array 'bomb'"),
    ("object dtype", dict(raw={"diverged": npy_bytes({"descr": "|O", "fortran_order": False, "shape": (1,)})}),
     "its array 'diverged' has dtype object"),
    ("npy header without a shape", dict(raw={"diverged": npy_bytes({"descr": "<f8", "fortran_order": False})}),
     "damaged"),
    ("not a .npy member", dict(raw={"diverged": b"\x93NUMPY\x09\x00"}), "damaged"),
]


@pytest.mark.parametrize("change,message", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_checkpoints_are_one_sentence(tmp_path, valid, change, message):
    if change is None:  # drop the header member
        with np.load(valid) as f:
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
        np.savez(tmp_path / "bad.npz", **arrays)
    else:
        rewrite_checkpoint(valid, tmp_path / "bad.npz", **change)
    with pytest.raises(CheckpointError) as info:
        checkpoint.read(tmp_path / "bad.npz")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("field,value,message", [
    ("epochs_done", None, "its header's epochs_done is None, not a non-negative int"),
    ("epochs_done", "2", "its header's epochs_done is '2', not a non-negative int"),
    ("epochs_done", -1, "its header's epochs_done is -1"),
    ("finished", 1, "its header's finished is 1, not a bool"),
    ("fingerprint", "bomb", "its header's fingerprint is 'bomb', not a dict"),
    ("checksum", None, "its header's checksum is None, not a str"),
    ("format", 1, "has format 1, this jaxgd reads format 2"),
])
def test_malformed_header_fields_are_named(tmp_path, valid, field, value, message):
    edit_header(valid, tmp_path / "bad.npz", **{field: value})
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read(tmp_path / "bad.npz")


# --- checkpoints: the checksum ---------------------------------------------------------------------------------


def test_a_checkpoint_reads_back_and_carries_a_checksum(valid):
    meta, arrays = checkpoint.read(valid)
    assert meta["format"] == checkpoint.FORMAT == 2 and len(meta["checksum"]) == 64
    np.testing.assert_array_equal(arrays["state.params[0]['w']"], np.arange(1000, dtype=np.float32))
    assert meta["epochs_done"] == 2 and arrays["state.step"].dtype == np.int32


def test_edited_epochs_done_is_refused_by_the_checksum(tmp_path, valid):
    edit_header(valid, tmp_path / "edited.npz", epochs_done=4)
    with pytest.raises(CheckpointError, match="was modified after it was written: its checksum does not match"):
        checkpoint.read(tmp_path / "edited.npz")


def test_a_scaled_weight_is_refused_by_the_checksum(tmp_path, valid):
    with np.load(valid) as f:
        w = f["state.params[0]['w']"]
    rewrite_checkpoint(valid, tmp_path / "scaled.npz", replace={"state.params[0]['w']": w * np.float32(1.001)})
    with pytest.raises(CheckpointError, match="was modified after it was written"):
        checkpoint.read(tmp_path / "scaled.npz")
    rewrite_checkpoint(valid, tmp_path / "same.npz", replace={"state.params[0]['w']": w})  # rewritten, unchanged
    checkpoint.read(tmp_path / "same.npz")


def test_resuming_from_an_edited_checkpoint_is_refused_at_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--epochs", "2", "--hidden", "4", "--n-train", "100", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    file = out / "checkpoints" / "checkpoint.npz"
    edit_header(file, file, epochs_done=1)
    # A finished run: its manifest no longer verifies.
    assert "checkpoints/checkpoint.npz changed since the run was committed" in one_line_exit_2(
        argv + ["--resume"], capsys)
    # An interrupted run (its files still in .pending, no manifest): the checkpoint's own checksum refuses it.
    pending = out / ".pending"
    pending.mkdir()
    shutil.move(out / "config.json", pending / "config.json")
    shutil.move(out / "checkpoints", pending / "checkpoints")
    for f in out.iterdir():
        if f.is_file():
            f.unlink()
    assert "was modified after it was written" in one_line_exit_2(argv + ["--resume"], capsys)
