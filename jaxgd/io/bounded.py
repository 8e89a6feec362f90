"""Bounded reading, shared by the IDX reader, checkpoints and parameter files: what a file promises is checked
before it is read.

Two rules keep a hostile or damaged file from hanging a run or exhausting memory:
``not_a_regular_file`` is asked before a file is opened (opening a FIFO for reading blocks
until someone writes to it; a device can be endless), and ``read_exact`` reads at most the
number of bytes a header promised, in chunks, into one buffer of that size, so a file that
inflates to more than it promised is never held in memory beyond its promise.
"""
from __future__ import annotations

import math
import os
import stat
import zipfile

import numpy as np

#: The most elements one array of a ``.npz`` file may claim (2**31, as for IDX files).
MAX_ELEMENTS = 2 ** 31

#: Bytes read per call while filling a buffer (and the most read past a promise to report the excess).
CHUNK = 1 << 20

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is not a regular file ("a FIFO", "a directory", ...), else None.

    Follows symbolic links, as opening would; raises ``OSError`` if ``path`` cannot be examined.
    """
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_exact(f, n: int) -> np.ndarray:
    """Reads up to ``n`` bytes of ``f`` into a writable ``uint8`` array; shorter only if ``f`` ends first."""
    out = np.empty(n, np.uint8)
    view, got = memoryview(out), 0
    while got < n:
        block = f.read(min(CHUNK, n - got))
        if not block:
            return out[:got]
        view[got:got + len(block)] = block
        got += len(block)
    return out


def excess(f) -> int:
    """Bytes left in ``f`` after its promised data, reading at most :data:`CHUNK` of them (0: the file ended)."""
    return len(f.read(CHUNK))


def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    """The member opened at its data, with its ``.npy`` header: ``(file, shape, fortran_order, dtype)``."""
    f = zf.open(info)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return (f, *np.lib.format.read_array_header_1_0(f))
    if version == (2, 0):
        return (f, *np.lib.format.read_array_header_2_0(f))
    raise ValueError(f"{info.filename} is a .npy file of version {version}")


def npz_headers(path, zf: zipfile.ZipFile, damaged) -> dict[str, tuple]:
    """Each member's ``(info, shape, dtype)`` by array name, checked before any array is read: every member a
    ``.npy`` array stored uncompressed (a zip bomb declares far more than it stores), all together within the
    file's size, each of a numeric dtype with at most :data:`MAX_ELEMENTS` elements and exactly the bytes its
    header claims. ``damaged(reason)`` makes the error raised."""
    infos = zf.infolist()
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise damaged(f"its member {info.filename!r} is not a .npy array")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise damaged(f"its member {info.filename!r} declares {info.file_size} bytes compressed into "
                          f"{info.compress_size}; jaxgd stores arrays uncompressed")
    declared, size = sum(i.file_size for i in infos), os.stat(path).st_size
    if declared > size:
        raise damaged(f"its members declare {declared} bytes, more than the file's {size}")
    headers = {}
    for info in infos:
        name = info.filename[:-len(".npy")]
        f, shape, _, dtype = _open_member(zf, info)
        with f:
            data_bytes = info.file_size - f.tell()
        if dtype.kind not in "biuf":
            raise damaged(f"its array {name!r} has dtype {dtype}")
        if math.prod(shape) > MAX_ELEMENTS:
            raise damaged(f"its array {name!r} claims shape {shape}, more than {MAX_ELEMENTS} elements")
        if math.prod(shape) * dtype.itemsize != data_bytes:
            raise damaged(f"its array {name!r} claims shape {shape} of {dtype} but its member holds "
                          f"{data_bytes} bytes of data")
        headers[name] = (info, shape, dtype)
    return headers


def read_member(zf: zipfile.ZipFile, name: str, info: zipfile.ZipInfo, damaged) -> np.ndarray:
    """One member's array: exactly the bytes its (checked) header promises, and then the member's end."""
    f, shape, fortran, dtype = _open_member(zf, info)
    with f:
        data = read_exact(f, math.prod(shape) * dtype.itemsize)
        if len(data) < math.prod(shape) * dtype.itemsize or excess(f):  # reading to the end checks the CRC
            raise damaged(f"its array {name!r} does not hold the bytes its header promises")
    return data.view(dtype).reshape(shape, order="F" if fortran else "C")


#: What may go wrong while reading a file that is not what it claims to be.
READ_ERRORS = (OSError, ValueError, TypeError, KeyError, EOFError, RuntimeError, RecursionError,
               zipfile.BadZipFile, UnicodeDecodeError)


def read_npz(path, damaged) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` file written by ``np.savez``, read within the bounds :func:`npz_headers` checks;
    ``damaged(reason)`` makes the error raised for a file that is not such a file (never ``pickle``)."""
    import zlib

    try:
        kind = not_a_regular_file(path)
        if kind is not None:
            raise damaged(f"it is {kind}, not a regular file")
        with zipfile.ZipFile(path) as zf:
            headers = npz_headers(path, zf, damaged)
            return {name: read_member(zf, name, info, damaged) for name, (info, _, _) in headers.items()}
    except READ_ERRORS + (zlib.error,) as e:
        raise damaged(f"{type(e).__name__}: {e}") from None
