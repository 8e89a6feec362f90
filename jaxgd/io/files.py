"""Results as files: atomic writes (a kill leaves the old file or the new one), JSON, and parameters as ``.npz``."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxgd.errors import InvalidArgument


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Writes ``payload`` to a temporary file beside ``path``, fsyncs it, then renames it over ``path``.

    A kill at any instant leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_jsonable(value: Any) -> Any:
    """NumPy/JAX arrays and scalars to lists and floats; non-finite floats to ``None``."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating,)):
        return to_jsonable(float(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


def flatten_params(params) -> dict[str, np.ndarray]:
    """Any parameter pytree -> ``{"0/w": ..., "0/b": ..., "conv/1/w": ...}``, named by the leaves' paths."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = jax.tree_util.keystr(path, simple=True, separator="/") or "params"
        flat[name] = np.asarray(leaf)
    return flat


def unflatten_params(arrays: dict[str, np.ndarray], like=None):
    """The inverse of :func:`flatten_params`: into ``like``'s structure if given (a model's
    ``init(key)``, which an Equinox or Flax model needs), else nested lists and dicts rebuilt from
    the names (an MLP's ``[{"w", "b"}, ...]``, a CNN's ``{"conv": [...], "dense": [...]}``)."""
    if like is not None:
        names = list(flatten_params(like))
        missing = [n for n in names if n not in arrays]
        if missing or len(names) != len(arrays):
            extra = sorted(set(arrays) - set(names))
            raise InvalidArgument(f"The parameter file does not fit the model: missing {missing[:3]}, extra {extra[:3]}.")
        return jax.tree.unflatten(jax.tree.structure(like), [arrays[n] for n in names])
    root: dict = {}
    for name, value in arrays.items():
        node = root
        parts = name.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def rebuild(node):
        if not isinstance(node, dict):
            return node
        keys = list(node)
        if keys and all(k.isdigit() for k in keys):
            idx = sorted(int(k) for k in keys)
            if idx != list(range(len(idx))):
                raise InvalidArgument(f"Parameter file has list entries {idx}; expected 0..{len(idx) - 1}.")
            return [rebuild(node[str(i)]) for i in idx]
        return {k: rebuild(v) for k, v in node.items()}

    return rebuild(root)


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_params(path: str | os.PathLike, like=None):
    """Reads parameters written by :func:`save_npz` of :func:`flatten_params` through the bounded reader (never
    with pickle, never more than the file holds); ``like`` (e.g. ``model.init(key)``) gives their structure
    (see :func:`unflatten_params`)."""
    return unflatten_params(read_arrays(path), like)


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file jaxgd wrote, read within bounds (:func:`jaxgd.io.bounded.read_npz`);
    a file that is not one is refused with one line."""
    from jaxgd.errors import DataError
    from jaxgd.io.bounded import read_npz

    return read_npz(path, lambda reason: DataError(f"{path} is damaged or not an array file jaxgd wrote ({reason})."))
