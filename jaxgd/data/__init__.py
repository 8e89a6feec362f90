"""Data sources: scikit-learn's bundled digits, MNIST-1D, TFDS datasets and IDX directories.

``load(name)`` returns a :class:`Dataset` of float32 inputs (images in [0, 1], IDX files as
``scale`` says; MNIST-1D's as its generator gives them), stored as flat rows with their
``input_shape``, and int32 labels; research code can also build a ``Dataset`` from its own arrays.
"""
from __future__ import annotations

import os

import numpy as np

from jaxgd.data.dataset import Dataset
from jaxgd.data.idx import IDXError, load_idx_dir, read_idx, write_idx
from jaxgd.data.mnist1d import load_mnist1d
from jaxgd.errors import DataError, DatasetNotPrepared, InvalidType
from jaxgd.data import randomize
from jaxgd.data.randomize import corrupt_labels, gaussian_inputs, random_labels, random_pixels, shuffled_pixels

__all__ = ["Dataset", "load", "load_digits", "subset", "IDXError", "DatasetNotPrepared", "read_idx", "write_idx",
           "randomize", "corrupt_labels", "random_labels", "shuffled_pixels", "random_pixels", "gaussian_inputs",
           "load_mnist1d"]

#: Fraction of scikit-learn's 1,797 digits held out as the test split.
DIGITS_TEST_FRACTION = 0.2
#: Seed of the fixed, documented digits split (NumPy's own Generator; no global state).
DIGITS_SPLIT_SEED = 0


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (UCI), split 80/20 with a fixed stratified permutation."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):  # stratified: the same share of every digit in the test split
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: int(round(DIGITS_TEST_FRACTION * len(members)))]] = True
    train_idx = rng.permutation(np.flatnonzero(~test))
    test_idx = np.flatnonzero(test)
    return Dataset(x[train_idx], y[train_idx], x[test_idx], y[test_idx], num_classes=10, name="digits",
                   input_shape=(8, 8, 1))


def _positive_count(name: str, value, allow_zero: bool = False):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidType(f"{name} must be an integer, got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise DataError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}.")
    return int(value)


def load(name: str | None = "digits", *, data_dir: str | os.PathLike | None = None, n_train: int | None = None,
         validation: int | float = 0, num_classes: int | None = None, scale: str | None = None) -> Dataset:
    """Loads a dataset.

    Args:
      name: ``"digits"`` (embedded, offline), ``"mnist1d"`` (generated offline by the
        ``mnist1d`` package, :mod:`jaxgd.data.mnist1d`), a TFDS name such as ``"mnist"``,
        ``"fashion_mnist"``, ``"kmnist"`` or ``"cifar10"``, or ``None`` / ``"idx"``
        with ``data_dir`` pointing at a directory of IDX files.
      data_dir: for TFDS, where prepared datasets live (TFDS's default otherwise); for
        MNIST-1D, the cache directory (``~/.cache/jaxgd`` otherwise);
        with ``name=None`` or ``"idx"``, a directory holding ``train-images-idx3-ubyte[.gz]``,
        ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]`` and
        ``t10k-labels-idx1-ubyte[.gz]``.
      n_train: keep only the first ``n_train`` training examples.
      validation: examples (an int) or a fraction (a float in (0, 1)) moved from
        the end of the training split into ``x_val``/``y_val``.
      num_classes: the number of classes; every label must lie in ``[0, num_classes)``. For IDX
        files it is otherwise inferred only when the training labels are 0..K-1 with every class
        present (see :func:`jaxgd.data.idx.infer_num_classes`); other sources know their own.
      scale: IDX files only: how images become inputs, ``"255"`` (divide by 255), ``"minmax"``
        (the training images' min and max to 0 and 1, the test images by the same map) or
        ``"none"`` (as they are). Without it ``uint8`` images are divided by 255 and any other
        dtype is refused, naming the file, its dtype and value range.

    Returns:
      A :class:`Dataset`.
    """
    n_train = _positive_count("n_train", n_train)
    if isinstance(validation, float) and not isinstance(validation, bool):
        if not 0.0 <= validation < 1.0:
            raise DataError(f"validation as a fraction must lie in [0, 1), got {validation}.")
    else:
        validation = _positive_count("validation", validation, allow_zero=True)
    if name is not None and not isinstance(name, str):
        raise InvalidType(f"Dataset name must be a string, got {name!r}.")

    num_classes = _positive_count("num_classes", num_classes)
    if scale is not None and name not in (None, "idx"):
        raise DataError(f"scale={scale!r} applies to IDX files only; {name} is scaled by its source.")

    if name in (None, "idx"):
        if data_dir is None:
            raise DataError("Reading IDX files needs data_dir, the directory that holds them.")
        x_tr, y_tr, x_te, y_te, shape, classes = load_idx_dir(data_dir, num_classes=num_classes, scale=scale)
        ds = Dataset(x_tr, y_tr, x_te, y_te, num_classes=classes, name=f"idx:{os.fspath(data_dir)}",
                     input_shape=shape + (1,) if len(shape) == 2 else shape)
    elif name == "digits":
        ds = load_digits()
    elif name == "mnist1d":
        ds = load_mnist1d(data_dir)
    else:
        from jaxgd.data.tfds_source import load_tfds

        x_tr, y_tr, x_te, y_te, shape, classes = load_tfds(name, None if data_dir is None else os.fspath(data_dir))
        ds = Dataset(x_tr, y_tr, x_te, y_te, num_classes=classes, name=name, input_shape=shape)
    if num_classes is not None and num_classes != ds.num_classes:
        ds = ds.replace(num_classes=num_classes)  # Dataset checks every label against it
    return subset(ds, n_train=n_train, validation=validation)


def subset(ds: Dataset, *, n_train: int | None = None, validation: int | float = 0) -> Dataset:
    """Keeps the first ``n_train`` training examples, then moves ``validation`` of them to a validation split."""
    x, y = ds.x_train, ds.y_train
    if n_train is not None:
        if n_train > len(y):
            raise DataError(f"n_train={n_train} is larger than the {len(y)} training examples of {ds.name}.")
        x, y = x[:n_train], y[:n_train]
    n_val = int(round(validation * len(y))) if isinstance(validation, float) else int(validation)
    if n_val >= len(y) and n_val > 0:
        raise DataError(f"validation={validation} leaves no training examples out of {len(y)}.")
    if n_val == 0 and n_train is None:
        return ds
    changes = {"x_train": x[: len(y) - n_val], "y_train": y[: len(y) - n_val]}
    if n_val:
        changes.update(x_val=x[len(y) - n_val:], y_val=y[len(y) - n_val:])
    return ds.replace(**changes)
