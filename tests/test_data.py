import gzip

import numpy as np
import pytest

from jaxgd import data
from jaxgd.data import Dataset, IDXError, read_idx, write_idx
from tests.conftest import write_fake_idx_dir


def test_digits_is_a_reproducible_stratified_split(digits):
    again = data.load("digits")
    assert digits.x_train.shape == (1438, 64) and digits.x_test.shape == (359, 64)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    np.testing.assert_array_equal(digits.x_train, again.x_train)
    np.testing.assert_array_equal(digits.y_test, again.y_test)
    counts = np.bincount(digits.y_test, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # 20% of each digit's ~180 images
    assert digits.num_classes == 10 and digits.input_dim == 64 and digits.input_shape == (8, 8, 1)


def test_n_train_and_validation(digits):
    ds = data.load("digits", n_train=300, validation=50)
    assert ds.n_train == 250 and ds.x_val.shape == (50, 64)
    np.testing.assert_array_equal(ds.x_val, digits.x_train[250:300])
    assert data.load("digits", validation=0.25).x_val.shape[0] == round(0.25 * 1438)
    with pytest.raises(ValueError, match="n_train=5000"):
        data.load("digits", n_train=5000)
    with pytest.raises(ValueError, match="n_train must be positive, got 0"):
        data.load("digits", n_train=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 4) % 100).astype(dtype).reshape(2, 3, 4)
    write_idx(tmp_path / f"a-idx3{suffix}", array)
    back = read_idx(tmp_path / f"a-idx3{suffix}")
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian_and_canonical(tmp_path):
    write_idx(tmp_path / "labels", np.array([7, 2, 1], np.uint8))
    assert (tmp_path / "labels").read_bytes() == bytes.fromhex("00000801 00000003 070201".replace(" ", ""))


def test_load_idx_directory(tmp_path):
    write_fake_idx_dir(tmp_path / "mnist", n_train=50, n_test=20, gz=True)
    ds = data.load(None, data_dir=tmp_path / "mnist")
    assert ds.x_train.shape == (50, 784) and ds.x_test.shape == (20, 784) and ds.input_shape == (28, 28, 1)
    assert ds.x_train.max() == 1.0 and ds.x_train.min() >= 0.0
    assert data.load("idx", data_dir=tmp_path / "mnist", n_train=10).n_train == 10


def test_idx_dotted_and_prefixed_names_are_found(tmp_path):
    imgs = np.zeros((3, 2, 2), np.uint8)
    lbls = np.array([0, 1, 2], np.uint8)
    write_idx(tmp_path / "emnist-digits-train-images-idx3-ubyte", imgs)
    write_idx(tmp_path / "emnist-digits-train-labels-idx1-ubyte", lbls)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", imgs)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", lbls)
    assert data.load(None, data_dir=tmp_path).x_test.shape == (3, 4)


def _break(path, how):
    raw = path.read_bytes()
    if how == "magic":
        path.write_bytes(b"\x12\x34" + raw[2:])
    elif how == "truncated":
        path.write_bytes(raw[:-5])
    elif how == "header":
        path.write_bytes(raw[:6])


@pytest.mark.parametrize("how,message", [("magic", "bad IDX magic number"), ("truncated", "truncated"),
                                         ("header", "truncated inside its header")])
def test_broken_idx_files_are_named_in_the_error(tmp_path, how, message):
    write_fake_idx_dir(tmp_path, n_train=5, n_test=3)
    _break(tmp_path / "train-images-idx3-ubyte", how)
    with pytest.raises(IDXError, match=message) as info:
        data.load(None, data_dir=tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_mismatched_image_and_label_counts(tmp_path):
    write_fake_idx_dir(tmp_path, n_train=5, n_test=3)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(IDXError, match="3 images but .*t10k-labels-idx1-ubyte has 4 labels"):
        data.load(None, data_dir=tmp_path)


def test_corrupt_gzip_is_named(tmp_path):
    write_fake_idx_dir(tmp_path, n_train=5, n_test=3, gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"x")[:-4])
    with pytest.raises(IDXError, match="train-labels-idx1-ubyte.gz"):
        data.load(None, data_dir=tmp_path)


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(None, data_dir=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="No train images IDX file"):
        data.load(None, data_dir=tmp_path)
    with pytest.raises(ValueError, match="needs data_dir"):
        data.load("idx")


def test_tfds_datasets_load_through_data_source(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load("mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (12, 784)
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1) and ds.name == "mnist"
    assert ds.y_train.min() >= 0 and ds.y_train.max() < 10


def test_unknown_tfds_name_is_named():
    with pytest.raises(ValueError, match="'not_a_dataset'"):
        data.load("not_a_dataset")


def test_unprepared_tfds_dataset_without_tensorflow_says_how_to_install(tmp_path):
    try:
        import tensorflow  # noqa: F401
        pytest.skip("TensorFlow is installed here; this checks the message given without it")
    except ImportError:
        pass
    with pytest.raises(data.DatasetNotPrepared, match=r"jaxgd\[tfds\]"):
        data.load("mnist", data_dir=tmp_path)


def test_dataset_container_validates_its_arrays():
    x = np.zeros((4, 3), np.float32)
    ds = Dataset(x_train=x, y_train=[0, 1, 2, 1], x_test=x, y_test=[0, 0, 0, 0])
    assert ds.num_classes == 3 and ds.y_train.dtype == np.int32
    with pytest.raises(ValueError, match=r"y_train\[2\] = 5 is out of range for num_classes=3"):
        Dataset(x, [0, 1, 5, 1], x, [0, 0, 0, 0], num_classes=3)
    with pytest.raises(ValueError, match="x_train contains NaN"):
        Dataset(np.full((4, 3), np.nan), [0, 1, 2, 1], x, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="y_test must be a vector of 4 labels"):
        Dataset(x, [0, 1, 2, 1], x, [0, 0])
    with pytest.raises(ValueError, match=r"y_train\[1\] = -1 is not a class index"):
        Dataset(x, [0, -1, 2, 1], x, [0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"y_train\[0\] = 4294967299 is not a class index"):
        Dataset(x, np.array([2 ** 32 + 3, 1, 2, 1], np.int64), x, [0, 0, 0, 0])  # never narrowed to 3
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 2.5"):
        Dataset(x, [0, 1, 1, 1], x, [0, 0, 0, 0], num_classes=2.5)
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got True"):
        Dataset(x, [0, 1, 1, 1], x, [0, 0, 0, 0], num_classes=True)


def test_dataset_keeps_the_shape_of_its_inputs():
    images = np.zeros((4, 6, 5, 2), np.float32)
    ds = Dataset(images, [0, 1, 0, 1], images, [0, 0, 1, 1])
    assert ds.x_train.shape == (4, 60) and ds.input_shape == (6, 5, 2) and ds.input_dim == 60
    assert ds.images().shape == (4, 6, 5, 2)
    flat = ds.replace(input_shape=(60,))
    assert flat.input_shape == (60,) and flat.images("test").shape == (4, 60)
    labels = [0, 1, 0, 1]
    assert Dataset(images.reshape(4, -1), labels, images.reshape(4, -1), labels).input_shape == (60,)
    assert Dataset(images[..., 0], labels, images[..., 0], labels, image_shape=(6, 5)).input_shape == (6, 5, 1)
    with pytest.raises(ValueError, match=r"input_shape \(7, 7\) does not hold the 60 features"):
        Dataset(images, labels, images, labels, input_shape=(7, 7))
