"""Checkpoints: everything a run needs to continue exactly where it stopped, in one ``.npz`` file.

A checkpoint holds the :class:`jaxgd.training.state.TrainState` (parameters, optimizer state,
step counters and the data-order key, stored as key data because typed keys do not
serialise), the epochs done, the history and initial metrics so far, the divergence
flags, and a *fingerprint* of everything that determines the run (network, every
training hyper-parameter, the keys, the data). It is written with
:func:`jaxgd.io.files.atomic_write_bytes` (temporary file, fsync, rename), so a kill at
any instant leaves the previous checkpoint or the new one, never a torn file. Its JSON
header carries a blake2b checksum of the header fields and of every array (name, dtype,
shape, bytes), so a checkpoint edited after it was written is refused.

Reading is bounded and executes nothing (see :func:`read`): the file must be a regular
file, its ``.npy`` members stored uncompressed (as :func:`save` writes them) and their
headers plausible and as the run expects, all checked before any array is read.

Loading refuses, with a sentence naming the reason, a file that is not a jaxgd
checkpoint or is damaged, one written by another jaxgd version or format, one modified
after it was written, and one whose fingerprint differs from the run being resumed
(naming the first field that differs).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxgd.errors import CheckpointError, InvalidArgument
from jaxgd.io.bounded import MAX_ELEMENTS, READ_ERRORS, not_a_regular_file, npz_headers, read_member  # noqa: F401
from jaxgd.io.fingerprint import digest  # noqa: F401  (re-exported)
from jaxgd.io.files import atomic_write_bytes, to_jsonable
from jaxgd.version import __version__

#: 2: the header carries a checksum (format 1 had none).
FORMAT = 2
_META = "__meta__"
#: Header fields besides ``format`` and ``jaxgd``, with their types.
_FIELDS = {"epochs_done": int, "finished": bool, "fingerprint": dict, "checksum": str}
_READ_ERRORS = READ_ERRORS + (zlib.error,)


def _leaf_names(tree) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def keyless(state):
    """The state with typed keys (the data-order key, the noise key) as raw key data."""
    return jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a, state)


def _host_state(state) -> Any:
    """The state with typed keys as raw key data, as NumPy arrays."""
    return jax.tree.map(np.asarray, keyless(state))


def _layout(state) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The stored name, shape and dtype of each state leaf, without copying the state."""
    raw = keyless(state)
    dtype = lambda leaf: np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype  # noqa: E731
    return {f"state{name}": (tuple(np.shape(leaf)), dtype(leaf))
            for name, leaf in zip(_leaf_names(raw), jax.tree.leaves(raw))}


def _checksum(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    """blake2b of the header fields (all but the checksum) and of every array's name, dtype, shape and bytes."""
    h = hashlib.blake2b(digest_size=32)

    def part(data: bytes):
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    part(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        part(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))  # the length follows from dtype and shape
    return h.hexdigest()


def save(path: str | os.PathLike, state, *, fingerprint: dict, epochs_done: int, finished: bool,
         history: dict[str, np.ndarray], initial: dict[str, np.ndarray], diverged: np.ndarray,
         diverged_epoch: np.ndarray) -> None:
    """Writes a checkpoint atomically, its header carrying the checksum (see the module docstring)."""
    host = _host_state(state)
    arrays = {f"state{name}": leaf for name, leaf in zip(_leaf_names(host), jax.tree.leaves(host))}
    arrays.update({f"history/{k}": np.asarray(v) for k, v in history.items()})
    arrays.update({f"initial/{k}": np.asarray(v) for k, v in initial.items()})
    arrays["diverged"] = np.asarray(diverged)
    arrays["diverged_epoch"] = np.asarray(diverged_epoch)
    meta = {"format": FORMAT, "jaxgd": __version__, "epochs_done": int(epochs_done),
            "finished": bool(finished), "fingerprint": to_jsonable(fingerprint)}
    meta = json.loads(json.dumps(meta))  # the header exactly as read() will see it
    meta["checksum"] = _checksum(meta, arrays)
    arrays[_META] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _damaged(path, reason: str) -> CheckpointError:
    return CheckpointError(f"The checkpoint {path} is damaged or not a jaxgd checkpoint ({reason}); "
                           "delete it to start the run again.")


def _headers(path: Path, zf: zipfile.ZipFile) -> dict[str, tuple]:
    """Each member's ``(info, shape, dtype)``, checked by :func:`jaxgd.io.bounded.npz_headers`, and only the
    arrays a checkpoint holds."""
    headers = npz_headers(path, zf, lambda reason: _damaged(path, reason))
    for name, (_, shape, dtype) in headers.items():
        if name not in (_META, "diverged", "diverged_epoch") and not name.startswith(("state", "history/", "initial/")):
            raise _damaged(path, f"it holds an unexpected array {name!r}")
        if name == _META and (dtype != np.uint8 or len(shape) != 1):
            raise _damaged(path, f"its array {name!r} has dtype {dtype}")
    for name in (_META, "diverged", "diverged_epoch"):
        if name not in headers:
            raise _damaged(path, f"it has no {name!r} array")
    return headers


def _read_member(path: Path, zf: zipfile.ZipFile, name: str, info: zipfile.ZipInfo) -> np.ndarray:
    return read_member(zf, name, info, lambda reason: _damaged(path, reason))


def _check_header(path: Path, meta) -> dict:
    """The header, a JSON object of this format and jaxgd version with every field of its type."""
    if not isinstance(meta, dict):
        raise _damaged(path, f"its header is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"The checkpoint {path} has format {meta.get('format')!r:.40}, this jaxgd reads format "
                              f"{FORMAT}; start the run again.")
    if meta.get("jaxgd") != __version__:
        raise CheckpointError(f"The checkpoint {path} was written by jaxgd {meta.get('jaxgd')!s:.40}, this is jaxgd "
                              f"{__version__}; resume it with that version or start the run again.")
    for field, kind in _FIELDS.items():
        value = meta.get(field)
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            what = "non-negative int" if kind is int else kind.__name__
            raise _damaged(path, f"its header's {field} is {value!r:.40}, not a {what}")
    return meta


def read(path: str | os.PathLike, like=None, *, fingerprint: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a checkpoint file; :class:`CheckpointError` if it is not a usable one.

    Checked before any array is read, so that no file can hang the reader or make it allocate
    more than the file holds: the path must be a regular file (opening a FIFO blocks); every zip
    member must be a ``.npy`` array stored uncompressed, as :func:`save` writes it, and together
    they may declare no more bytes than the file has (a zip bomb declares far more); every
    ``.npy`` header must be well formed, of a numeric dtype, and claim at most
    :data:`MAX_ELEMENTS` elements and exactly the bytes its member holds. Then the JSON header
    must be an object with the expected fields, of this :data:`FORMAT` and jaxgd version; with
    ``fingerprint``, the run's, no field may differ; with ``like``, a state of the run, the state
    arrays must be exactly ``like``'s in name, shape and dtype. After reading, the checksum must
    match the header and the arrays.
    """
    path = Path(path)
    try:
        kind = not_a_regular_file(path)
    except OSError as e:
        raise _damaged(path, e) from None
    if kind is not None:
        raise CheckpointError(f"The checkpoint {path} is {kind}, not a regular file; remove it to start the run "
                              "again.")
    try:
        with zipfile.ZipFile(path) as zf:
            headers = _headers(path, zf)
            meta = _check_header(path, json.loads(_read_member(path, zf, _META, headers[_META][0]).tobytes()))
            diff = None if fingerprint is None else first_difference(meta["fingerprint"], fingerprint)
            if diff is not None:
                raise CheckpointError(f"The checkpoint {path} belongs to another configuration: {diff}. Resume "
                                      "with the same configuration, or start a new run in another directory.")
            if like is not None:
                _check_state(path, headers, _layout(like))
            arrays = {name: _read_member(path, zf, name, info) for name, (info, _, _) in headers.items()
                      if name != _META}
    except CheckpointError:
        raise
    except _READ_ERRORS as e:
        raise _damaged(path, f"{type(e).__name__}: {e}" if isinstance(e, KeyError) else e) from None
    if _checksum(meta, arrays) != meta["checksum"]:
        raise CheckpointError(f"The checkpoint {path} was modified after it was written: its checksum does not "
                              "match; delete it to start the run again.")
    return meta, arrays


def _check_state(path: Path, headers: dict, layout: dict) -> None:
    """The stored state arrays are exactly the run's, in name, shape and dtype."""
    for name, (shape, dtype) in layout.items():
        got = headers.get(name)
        if got is None or (got[1], got[2]) != (shape, dtype):
            stored = "no such array" if got is None else f"{got[2]}{list(got[1])}"
            raise CheckpointError(f"The checkpoint {path} holds {name} as {stored}, but this run needs "
                                  f"{dtype}{list(shape)}.")
    extra = [n for n in headers if n.startswith("state") and n not in layout]
    if extra:
        raise _damaged(path, f"it holds an unexpected array {extra[0]!r}")


def first_difference(saved: dict, current: dict) -> str | None:
    """The first fingerprint field whose value differs, as a sentence fragment, or None."""
    current = to_jsonable(current)
    for field in list(current) + [f for f in saved if f not in current]:  # in the run's own order
        if saved.get(field) != current.get(field):
            return f"{field}={saved.get(field)!r} in the checkpoint but {field}={current.get(field)!r} in this run"
    return None


def load(path: str | os.PathLike, like, *, fingerprint: dict) -> dict:
    """Reads a checkpoint for the run described by ``fingerprint``.

    Args:
      path: the checkpoint file.
      like: a state of the run (fresh from :func:`jaxgd.training.state.init_state`): gives the tree
        structure, shapes and dtypes the stored arrays must have.
      fingerprint: the run's fingerprint; any difference is refused.

    Returns:
      ``{"state", "epochs_done", "finished", "history", "initial", "diverged", "diverged_epoch"}``.
    """
    meta, arrays = read(path, like, fingerprint=fingerprint)
    raw = keyless(like)
    state = jax.tree.unflatten(jax.tree.structure(raw), [arrays[f"state{n}"] for n in _leaf_names(raw)])
    state = jax.tree.map(lambda a, ref: jax.random.wrap_key_data(a) if _is_key(ref) else a, state, like)
    section = lambda prefix: {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    return {"state": state, "epochs_done": meta["epochs_done"], "finished": meta["finished"],
            "history": section("history/"), "initial": section("initial/"),
            "diverged": arrays["diverged"], "diverged_epoch": arrays["diverged_epoch"]}
