"""Bounded reading, shared by the IDX reader and checkpoints: what a file promises is checked before it is read.

Two rules keep a hostile or damaged file from hanging a run or exhausting memory:
``not_a_regular_file`` is asked before a file is opened (opening a FIFO for reading blocks
until someone writes to it; a device can be endless), and ``read_exact`` reads at most the
number of bytes a header promised, in chunks, into one buffer of that size, so a file that
inflates to more than it promised is never held in memory beyond its promise.
"""
from __future__ import annotations

import os
import stat

import numpy as np

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
