"""Reader and writer for the IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST.

An IDX file is a big-endian header — two zero bytes, a type code, the number of
dimensions, then one 32-bit size per dimension — followed by the raw array.
(LeCun et al., http://yann.lecun.com/exdb/mnist/.)
"""
from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np

#: IDX type code -> big-endian NumPy dtype.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXError(ValueError):
    """A file is not a well-formed IDX file."""


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a native-endian array."""
    path = Path(path)
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise IDXError(f"Cannot read IDX file {path}: {e}.") from None
    if len(raw) < 4:
        raise IDXError(f"{path} is too short to be an IDX file ({len(raw)} bytes).")
    zero, code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or code not in IDX_TYPES or ndim == 0:
        raise IDXError(f"{path} has a bad IDX magic number 0x{raw[:4].hex()} (expected 0x000008NN for unsigned bytes).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{path} is truncated inside its header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape)) * dtype.itemsize
    body = len(raw) - header
    if body < expected:
        raise IDXError(f"{path} is truncated: its header promises {shape} ({expected} bytes of data) but it holds {body}.")
    if body > expected:
        raise IDXError(f"{path} has {body - expected} bytes after the {shape} array its header describes.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes ``array`` as IDX (gzipped when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {v.newbyteorder("="): k for k, v in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(f"IDX cannot store dtype {array.dtype}.")
    header = bytes([0, 0, codes[native], array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(IDX_TYPES[codes[native]]).tobytes()
    path = Path(path)
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(payload)


# "train-images-idx3-ubyte", "train-images.idx3-ubyte", "emnist-digits-train-images-idx3-ubyte.gz", ...
_PATTERNS = {
    ("train", "images"): re.compile(r"(^|[-_.])train[-_.]images[-_.]idx3[-_.]ubyte(\.gz)?$"),
    ("train", "labels"): re.compile(r"(^|[-_.])train[-_.]labels[-_.]idx1[-_.]ubyte(\.gz)?$"),
    ("test", "images"): re.compile(r"(^|[-_.])(t10k|test)[-_.]images[-_.]idx3[-_.]ubyte(\.gz)?$"),
    ("test", "labels"): re.compile(r"(^|[-_.])(t10k|test)[-_.]labels[-_.]idx1[-_.]ubyte(\.gz)?$"),
}


def find_idx_files(data_dir: str | os.PathLike) -> dict[tuple[str, str], Path]:
    """Finds the four IDX files of a directory, by their canonical names."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise FileNotFoundError(f"Data directory {data_dir} does not exist.")
    if not data_dir.is_dir():
        raise NotADirectoryError(f"Data directory {data_dir} is not a directory.")
    try:
        names = sorted(p.name for p in data_dir.iterdir() if p.is_file())
    except PermissionError:
        raise PermissionError(f"Data directory {data_dir} cannot be read.") from None
    found = {}
    for key, pattern in _PATTERNS.items():
        hits = [n for n in names if pattern.search(n)]
        if not hits:
            raise FileNotFoundError(
                f"No {key[0]} {key[1]} IDX file in {data_dir} (expected a name like "
                f"'{'train' if key[0] == 'train' else 't10k'}-{key[1]}-idx{3 if key[1] == 'images' else 1}-ubyte[.gz]')."
            )
        if len(hits) > 1:
            # Prefer the uncompressed copy when both are present; otherwise the choice is ambiguous.
            stems = {h.removesuffix(".gz") for h in hits}
            if len(stems) > 1:
                raise ValueError(f"Several {key[0]} {key[1]} IDX files in {data_dir}: {', '.join(hits)}.")
            hits = sorted(hits, key=lambda h: h.endswith(".gz"))
        found[key] = data_dir / hits[0]
    return found


def _as_unit_inputs(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(images.shape[0], -1)
    if images.dtype == np.uint8:
        return flat.astype(np.float32) / 255.0
    flat = flat.astype(np.float32)
    if not np.all(np.isfinite(flat)):
        raise IDXError("IDX images contain NaN or infinite values.")
    return flat


def load_idx_dir(data_dir: str | os.PathLike):
    """Loads ``(x_train, y_train, x_test, y_test, image_shape)`` from a directory of IDX files."""
    files = find_idx_files(data_dir)
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[(split, "images")], arrays[(split, "labels")]
        img_path, lbl_path = files[(split, "images")], files[(split, "labels")]
        if images.ndim < 2:
            raise IDXError(f"{img_path} holds a {images.ndim}-d array; images need at least 2 dimensions.")
        if labels.ndim != 1:
            raise IDXError(f"{lbl_path} holds a {labels.ndim}-d array; labels must be 1-d.")
        if images.shape[0] != labels.shape[0]:
            raise IDXError(
                f"{img_path} has {images.shape[0]} images but {lbl_path} has {labels.shape[0]} labels."
            )
        if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
            raise IDXError(f"{lbl_path} must hold non-negative integer labels.")
    train_shape = arrays[("train", "images")].shape[1:]
    test_shape = arrays[("test", "images")].shape[1:]
    if train_shape != test_shape:
        raise IDXError(f"Train images are {train_shape} but test images are {test_shape}.")
    return (
        _as_unit_inputs(arrays[("train", "images")]),
        arrays[("train", "labels")].astype(np.int32),
        _as_unit_inputs(arrays[("test", "images")]),
        arrays[("test", "labels")].astype(np.int32),
        tuple(int(s) for s in train_shape),
    )
