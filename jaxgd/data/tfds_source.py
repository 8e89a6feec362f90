"""TFDS datasets read through ``tfds.data_source`` (random access, no TensorFlow to read).

Preparing a dataset that is not on disk yet needs TensorFlow (``pip install
'jaxgd[tfds]'``) and the network; reading a prepared ``array_record`` dataset does not.
"""
from __future__ import annotations

import numpy as np

from jaxgd.errors import DataError
from jaxgd.errors import DatasetNotPrepared  # noqa: F401  (raised here; jaxgd.data re-exports it)


def _records(source, keys: tuple[str, str], batch: int = 4096):
    image_key, label_key = keys
    images, labels = [], []
    n = len(source)
    batched = hasattr(source, "__getitems__")
    for start in range(0, n, batch):
        idx = list(range(start, min(n, start + batch)))
        rows = None
        if batched:
            try:  # one read per batch of records; TFDS's mock sources lack a working __getitems__
                rows = source.__getitems__(idx)
            except TypeError:
                batched = False
        if rows is None:
            rows = [source[i] for i in idx]
        images.append(np.stack([np.asarray(r[image_key]) for r in rows]))
        labels.append(np.asarray([r[label_key] for r in rows]))
    return np.concatenate(images), np.concatenate(labels)


def _to_unit(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(images.shape[0], -1)
    if images.dtype == np.uint8:
        return flat.astype(np.float32) / 255.0
    return flat.astype(np.float32)


def load_tfds(name: str, data_dir: str | None = None):
    """Loads ``(x_train, y_train, x_test, y_test, image_shape, num_classes)`` of a TFDS dataset."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"Unknown dataset {name!r}: it is neither 'digits' nor a TFDS dataset name "
            "(e.g. mnist, fashion_mnist, kmnist, cifar10); for IDX files use --data-dir."
        ) from None
    splits = ["train", "test"]
    try:
        sources = tfds.data_source(name, split=splits, data_dir=data_dir, download=False)
    except Exception as first_error:  # not prepared, or prepared as TFRecord only
        try:
            import tensorflow  # noqa: F401  (preparing needs TensorFlow)
        except ImportError:
            where = data_dir or "~/tensorflow_datasets"
            raise DatasetNotPrepared(
                f"TFDS dataset {name!r} is not prepared in {where} and preparing it needs TensorFlow: "
                f"run `pip install 'jaxgd[tfds]'`, or put its IDX files in a directory and pass --data-dir."
            ) from None
        try:
            builder.download_and_prepare(file_format="array_record")
            sources = tfds.data_source(name, split=splits, data_dir=data_dir, download=False)
        except Exception as e:
            raise DatasetNotPrepared(
                f"TFDS dataset {name!r} could not be prepared ({type(e).__name__}: {e}); "
                f"first attempt to read it said: {first_error}"
            ) from None
    info = builder.info
    keys = tuple(info.supervised_keys) if info.supervised_keys else ("image", "label")
    x_train, y_train = _records(sources[0], keys)
    x_test, y_test = _records(sources[1], keys)
    try:
        num_classes = int(info.features[keys[1]].num_classes)
    except (AttributeError, KeyError, TypeError):
        num_classes = None
    image_shape = tuple(int(s) for s in x_train.shape[1:])
    return _to_unit(x_train), y_train.astype(np.int32), _to_unit(x_test), y_test.astype(np.int32), image_shape, num_classes
