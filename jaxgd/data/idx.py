"""Reader and writer for the IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST.

An IDX file is a big-endian header — two zero bytes, a type code, the number of
dimensions, then one 32-bit size per dimension — followed by the raw array.
(LeCun et al., http://yann.lecun.com/exdb/mnist/.)
"""
from __future__ import annotations

import contextlib
import gzip
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np

from jaxgd.errors import DataError, InvalidType
from jaxgd.io.bounded import CHUNK, excess, not_a_regular_file, read_exact
from jaxgd.io.memory import host_available_bytes

#: IDX type code -> big-endian NumPy dtype.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: The most elements one IDX file may claim: 2**31, the limit of int32 indexing.
MAX_ELEMENTS = 2 ** 31
#: The most bytes of data one IDX file may claim: 2 GiB, four times the largest standard IDX file
#: (EMNIST ByClass's training images, 547 MB). Raise it here for larger data of your own.
MAX_BYTES = 2 ** 31
#: Bytes of memory one element of an IDX file takes once loaded, besides its own: its float32 copy and one
#: float32 temporary while it is scaled. A file whose elements do not fit in the memory available is refused.
LOADED_BYTES_PER_ELEMENT = 8


class IDXError(DataError):
    """A file is not a well-formed IDX file, or holds data that cannot be used as it is."""


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _header(f, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an open IDX file's header promises, refused if malformed or over the limits."""
    head = f.read(4)
    if len(head) < 4:
        raise IDXError(f"{path} is too short to be an IDX file ({len(head)} bytes).")
    zero, code, ndim = int.from_bytes(head[:2], "big"), head[2], head[3]
    if zero != 0 or code not in IDX_TYPES or ndim == 0:
        raise IDXError(f"{path} has a bad IDX magic number 0x{head.hex()} (expected 0x000008NN for "
                       "unsigned bytes).")
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise IDXError(f"{path} is truncated inside its header.")
    shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    dtype = IDX_TYPES[code]
    elements = math.prod(shape)
    expected = elements * dtype.itemsize
    if elements > MAX_ELEMENTS or expected > MAX_BYTES:
        raise IDXError(f"{path} claims a {shape} array of {dtype.name} ({expected} bytes), more than the "
                       f"{MAX_ELEMENTS} elements or {MAX_BYTES} bytes jaxgd reads from one IDX file "
                       "(jaxgd.data.idx.MAX_ELEMENTS, MAX_BYTES).")
    return shape, dtype


def loaded_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Memory an IDX array of ``shape`` and ``dtype`` takes once loaded: its data, its float32 copy and one
    float32 temporary (:data:`LOADED_BYTES_PER_ELEMENT`)."""
    elements = math.prod(shape)
    return elements * dtype.itemsize + LOADED_BYTES_PER_ELEMENT * elements


@contextlib.contextmanager
def _reading(path: Path):
    """The open file ``path``, refused unless it is a regular file; a read error inside is an :class:`IDXError`."""
    try:
        kind = not_a_regular_file(path)
        if kind is not None:
            raise IDXError(f"{path} is {kind}, not a regular file; an IDX file must be one.")
        with _open(path) as f:
            yield f
    except (OSError, EOFError, zlib.error) as e:
        raise IDXError(f"Cannot read IDX file {path}: {e}.") from None


def idx_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` of one IDX file (optionally gzipped) from its header alone, within the same bounds
    and with the same refusals as :func:`read_idx`; its body is not read."""
    path = Path(path)
    with _reading(path) as f:
        return _header(f, path)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a native-endian array, within bounds.

    Refused with a sentence naming the file, before anything large is allocated: a path that
    is not a regular file (a FIFO would block, a device never end), a bad magic number, a
    header claiming more than :data:`MAX_ELEMENTS` elements or :data:`MAX_BYTES` bytes, and one
    whose array would not fit, once loaded, in the memory available. The
    body is then read (gzip inflated) in chunks into one buffer of the promised size; a file
    that ends early is truncated, and one that holds anything after its promise is refused as
    soon as that is seen, so a gzip bomb is never inflated beyond what its header promised.
    """
    path = Path(path)
    with _reading(path) as f:
        shape, dtype = _header(f, path)
        expected = math.prod(shape) * dtype.itemsize
        need, have = loaded_bytes(shape, dtype), host_available_bytes()
        if have is not None and need > have:
            raise IDXError(f"{path} claims a {shape} array of {dtype.name}, which needs {need / 1e9:.1f} GB once "
                           f"loaded (its data and their float32 copy) but only {have / 1e9:.1f} GB are "
                           "available; use a machine with more memory or a part of the data.")
        body = read_exact(f, expected)
        if len(body) < expected:
            raise IDXError(f"{path} is truncated: its header promises {shape} ({expected} bytes of data) but it "
                           f"holds {len(body)}.")
        extra = excess(f)
    if extra:
        more = "at least " if extra == CHUNK else ""
        raise IDXError(f"{path} has {more}{extra} bytes after the {shape} array its header describes.")
    array = body.view(dtype).reshape(shape)
    if not dtype.isnative:  # in place: no second copy of the data
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return array


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes ``array`` as IDX (gzipped when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {v.newbyteorder("="): k for k, v in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise InvalidType(f"IDX cannot store dtype {array.dtype}.")
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
        names = sorted(p.name for p in data_dir.iterdir())  # a FIFO or directory is refused by read_idx, by name
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
                raise DataError(f"Several {key[0]} {key[1]} IDX files in {data_dir}: {', '.join(hits)}.")
            hits = sorted(hits, key=lambda h: h.endswith(".gz"))
        found[key] = data_dir / hits[0]
    return found


#: How ``load_idx_dir`` may scale images, by ``scale=`` (``--input-scale``): ``"255"`` divides by 255,
#: ``"minmax"`` maps the training images' minimum and maximum to 0 and 1 (test images by the same map),
#: ``"none"`` takes the values as they are. Without a choice, only ``uint8`` images are read (divided by 255).
SCALES = ("255", "minmax", "none")


def _scaled(images: np.ndarray, path: Path, scale: str | None, bounds: tuple[float, float] | None = None):
    """Flat float32 rows of ``images``, scaled as ``scale`` says (``bounds``: minmax's (min, max) from training)."""
    flat = images.reshape(images.shape[0], -1)
    if images.dtype != np.uint8 and flat.size and not np.all(np.isfinite(flat)):
        raise IDXError(f"{path} contains NaN or infinite values.")
    if scale is None and images.dtype != np.uint8:
        low, high = (flat.min(), flat.max()) if flat.size else (0, 0)
        raise IDXError(f"{path} holds {images.dtype} images with values in [{low}, {high}], not uint8, so jaxgd "
                       "does not guess their scale: pass scale= (--input-scale) '255', 'minmax' or 'none'.")
    flat = flat.astype(np.float32)
    if scale in (None, "255"):
        flat /= np.float32(255)
    elif scale == "minmax":
        low, high = bounds
        flat -= np.float32(low)
        flat /= np.float32(high - low)
    return flat


def _minmax_bounds(images: np.ndarray, path: Path) -> tuple[float, float]:
    low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise IDXError(f"{path} contains NaN or infinite values.")
    if not low < high:
        raise IDXError(f"{path}: scale='minmax' needs images that are not all equal, but every value is {low}.")
    return low, high


def _check_labels(labels: np.ndarray, path: Path, num_classes: int) -> None:
    """Every label of ``labels`` must lie in ``[0, num_classes)``; names the first that does not."""
    wide = labels.astype(np.int64, copy=False)
    bad = np.flatnonzero((wide < 0) | (wide >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise IDXError(f"{path} has label {int(labels[i])} at index {i}, outside [0, {num_classes}) for "
                       f"{num_classes} classes.")


def infer_num_classes(labels: np.ndarray, path: Path) -> int:
    """The number of classes, K = max+1, when the training labels are 0..K-1 with every class present.

    Refused, naming the first label past the gap, when a class is missing below the largest label
    (a stray 255 among ten digits would otherwise make 256 classes) or is far rarer than an even
    split would make it (fewer than 1% of ``len(labels) / K``: a single stray 10 among 60,000
    digits would otherwise make an eleventh class). Then ``num_classes`` must be given.
    """
    if not labels.size:
        raise IDXError(f"{path} holds no labels, so the number of classes cannot be inferred; give num_classes.")
    values, counts = np.unique(labels, return_counts=True)  # sorted; no array as long as the largest label
    missing = np.flatnonzero(values != np.arange(values.size))
    rare = np.flatnonzero(counts < 0.01 * labels.size / values.size)
    if missing.size:
        gap = int(missing[0])
        i = int(np.argmax(labels > gap))
        why = f"no training example of class {gap}"
    elif rare.size:
        gap = int(rare[0])
        i = int(np.argmax(labels == gap))
        why = f"only {int(counts[gap])} of its {labels.size} examples in class {gap}"
    else:
        return int(values.size)
    raise IDXError(f"{path} has label {int(labels[i])} at index {i} but {why}, so the number of classes is not "
                   "clear: give num_classes= (--num-classes) or fix the labels.")


def load_idx_dir(data_dir: str | os.PathLike, *, num_classes: int | None = None, scale: str | None = None):
    """Loads ``(x_train, y_train, x_test, y_test, image_shape, num_classes)`` from a directory of IDX files.

    Nothing is guessed: labels must be integers in ``[0, num_classes)`` (``num_classes`` is inferred
    by :func:`infer_num_classes` when not given), checked before they are narrowed to int32; images
    that are not ``uint8`` need a ``scale`` from :data:`SCALES`, and ``uint8`` images are divided by
    255 unless another ``scale`` is given. Each refusal names the file.
    """
    if scale is not None and scale not in SCALES:
        raise DataError(f"scale must be one of {', '.join(map(repr, SCALES))}, got {scale!r}.")
    files = find_idx_files(data_dir)
    headers = {key: idx_header(path) for key, path in files.items()}  # the four files together, before any body
    need, have = sum(loaded_bytes(*h) for h in headers.values()), host_available_bytes()
    if have is not None and need > have:
        raise IDXError(f"The IDX files of {data_dir} need {need / 1e9:.1f} GB together once loaded (their data and "
                       f"float32 copies) but only {have / 1e9:.1f} GB are available; use a machine with more memory "
                       "or a part of the data.")
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[(split, "images")], arrays[(split, "labels")]
        img_path, lbl_path = files[(split, "images")], files[(split, "labels")]
        if images.ndim < 2:
            raise IDXError(f"{img_path} holds a {images.ndim}-d array; images need at least 2 dimensions.")
        if labels.ndim != 1:
            raise IDXError(f"{lbl_path} holds a {labels.ndim}-d array; labels must be 1-d.")
        if images.shape[0] == 0:
            raise IDXError(f"{img_path} holds no images: the {split} split is empty, and a run needs examples to "
                           f"{'train on' if split == 'train' else 'measure on'}.")
        if images.shape[0] != labels.shape[0]:
            raise IDXError(
                f"{img_path} has {images.shape[0]} images but {lbl_path} has {labels.shape[0]} labels."
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise IDXError(f"{lbl_path} must hold non-negative integer labels, not {labels.dtype}.")
        if labels.size and labels.min() < 0:
            i = int(np.argmax(labels < 0))
            raise IDXError(f"{lbl_path} must hold non-negative integer labels, but has {int(labels[i])} at index {i}.")
    train_shape = arrays[("train", "images")].shape[1:]
    test_shape = arrays[("test", "images")].shape[1:]
    if train_shape != test_shape:
        raise IDXError(f"Train images are {train_shape} but test images are {test_shape}.")
    if num_classes is None:
        num_classes = infer_num_classes(arrays[("train", "labels")], files[("train", "labels")])
    for split in ("train", "test"):
        _check_labels(arrays[(split, "labels")], files[(split, "labels")], num_classes)
    bounds = None
    if scale == "minmax":
        bounds = _minmax_bounds(arrays[("train", "images")], files[("train", "images")])
    x = {split: _scaled(arrays[(split, "images")], files[(split, "images")], scale, bounds)
         for split in ("train", "test")}
    return (x["train"], arrays[("train", "labels")].astype(np.int32), x["test"],
            arrays[("test", "labels")].astype(np.int32), tuple(int(s) for s in train_shape), num_classes)
