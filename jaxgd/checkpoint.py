"""Checkpoints: everything a run needs to continue exactly where it stopped, in one ``.npz`` file.

A checkpoint holds the :class:`jaxgd.train.TrainState` (parameters, optimizer state,
step counters and the data-order key, stored as key data because typed keys do not
serialise), the epochs done, the history and initial metrics so far, the divergence
flags, and a *fingerprint* of everything that determines the run (network, every
training hyper-parameter, the keys, the data). It is written with
:func:`jaxgd.results.atomic_write_bytes` (temporary file, fsync, rename), so a kill at
any instant leaves the previous checkpoint or the new one, never a torn file. It is read
with ``allow_pickle=False``: arrays and a JSON header, nothing executable.

Loading refuses, with a sentence naming the reason, a file that is not a jaxgd
checkpoint or is damaged, one written by another jaxgd version, and one whose
fingerprint differs from the run being resumed (naming the first field that differs).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxgd.fingerprint import digest  # noqa: F401  (re-exported)
from jaxgd.results import atomic_write_bytes, to_jsonable

FORMAT = 1
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, from another version, or from another configuration."""


def _leaf_names(tree) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _host_state(state) -> Any:
    """The state with typed keys as raw key data, as NumPy arrays."""
    key = state.data_key
    if key is not None and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return jax.tree.map(np.asarray, state._replace(data_key=key))


def save(path: str | os.PathLike, state, *, fingerprint: dict, epochs_done: int, finished: bool,
         history: dict[str, np.ndarray], initial: dict[str, np.ndarray], diverged: np.ndarray,
         diverged_epoch: np.ndarray) -> None:
    """Writes a checkpoint atomically (see the module docstring)."""
    import jaxgd

    host = _host_state(state)
    arrays = {f"state{name}": leaf for name, leaf in zip(_leaf_names(host), jax.tree.leaves(host))}
    arrays.update({f"history/{k}": np.asarray(v) for k, v in history.items()})
    arrays.update({f"initial/{k}": np.asarray(v) for k, v in initial.items()})
    arrays["diverged"] = np.asarray(diverged)
    arrays["diverged_epoch"] = np.asarray(diverged_epoch)
    meta = {"format": FORMAT, "jaxgd": jaxgd.__version__, "epochs_done": int(epochs_done),
            "finished": bool(finished), "fingerprint": to_jsonable(fingerprint)}
    arrays[_META] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a checkpoint file; :class:`CheckpointError` if it is not a readable one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(f"The checkpoint {path} is damaged or not a jaxgd checkpoint ({e}); "
                              "delete it to start the run again.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"The checkpoint {path} has an unknown format {meta.get('format')!r}.")
    return meta, arrays


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
      like: a state of the run (fresh from :func:`jaxgd.train.init_state`): gives the tree
        structure, shapes and dtypes the stored arrays must have.
      fingerprint: the run's fingerprint; any difference is refused.

    Returns:
      ``{"state", "epochs_done", "finished", "history", "initial", "diverged", "diverged_epoch"}``.
    """
    import jaxgd

    meta, arrays = read(path)
    if meta.get("jaxgd") != jaxgd.__version__:
        raise CheckpointError(f"The checkpoint {path} was written by jaxgd {meta.get('jaxgd')}, this is jaxgd "
                              f"{jaxgd.__version__}; resume it with that version or start the run again.")
    diff = first_difference(meta.get("fingerprint", {}), fingerprint)
    if diff is not None:
        raise CheckpointError(f"The checkpoint {path} belongs to another configuration: {diff}. Resume with the "
                              "same configuration, or start a new run in another directory.")
    host = _host_state(like)
    leaves = []
    for name, ref in zip(_leaf_names(host), jax.tree.leaves(host)):
        stored = arrays.get(f"state{name}")
        if stored is None or stored.shape != ref.shape or stored.dtype != ref.dtype:
            got = None if stored is None else f"{stored.dtype}{list(stored.shape)}"
            raise CheckpointError(f"The checkpoint {path} holds state{name} as {got}, but this run needs "
                                  f"{ref.dtype}{list(ref.shape)}.")
        leaves.append(stored)
    state = jax.tree.unflatten(jax.tree.structure(host), leaves)
    if state.data_key is not None:
        state = state._replace(data_key=jax.random.wrap_key_data(state.data_key))
    section = lambda prefix: {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    return {"state": state, "epochs_done": int(meta["epochs_done"]), "finished": bool(meta["finished"]),
            "history": section("history/"), "initial": section("initial/"),
            "diverged": arrays["diverged"], "diverged_epoch": arrays["diverged_epoch"]}
