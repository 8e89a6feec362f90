"""Several processes, one population: JAX's multi-controller runtime (``jax.distributed``) for jaxgd.

Every process of a job runs the same program on its own devices; ``jax.devices()`` lists
the devices of all of them, and :func:`jaxgd.fit` spreads a population's members over all
of those. What only one process must do — read a checkpoint, write files — process 0 does;
:func:`from_process_zero` then hands its result (or its error) to every process, so that
the processes never disagree silently and never wait for one another forever.

Start a job with :func:`initialize` (``--distributed`` on the command line): it reads
``JAXGD_COORDINATOR``, ``JAXGD_NUM_PROCESSES`` and ``JAXGD_PROCESS_ID`` when the launcher
(:mod:`jaxgd.parallel.launch`) set them, else leaves the cluster's own environment (SLURM, TPU pod
slices, ...) to ``jax.distributed.initialize()``.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np

from jaxgd import errors
from jaxgd.errors import DisagreementError, StartupError

ENV = ("JAXGD_COORDINATOR", "JAXGD_NUM_PROCESSES", "JAXGD_PROCESS_ID")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Joins a ``jax.distributed`` job; must run before JAX's first computation.

    Explicit arguments win; otherwise the launcher's ``JAXGD_*`` variables; otherwise JAX's
    own detection of the cluster (SLURM, TPU pods, MPI, ...).
    """
    import jax

    if os.environ.get("JAXGD_CPU_DEVICES"):  # the launcher's --cpu-devices
        jax.config.update("jax_num_cpu_devices", int(os.environ["JAXGD_CPU_DEVICES"]))
    if coordinator is None and os.environ.get("JAXGD_COORDINATOR"):
        coordinator = os.environ["JAXGD_COORDINATOR"]
        num_processes = int(os.environ["JAXGD_NUM_PROCESSES"])
        process_id = int(os.environ["JAXGD_PROCESS_ID"])
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except RuntimeError as e:
        raise StartupError(f"jax.distributed.initialize failed: {e}") from None


def process_index() -> int:
    import jax

    return jax.process_index()


def multiprocess() -> bool:
    import jax

    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes files (process 0 of a job, or a lone process)."""
    return process_index() == 0


def _broadcast_bytes(payload: bytes | None) -> bytes:
    """Process 0's ``payload``, on every process."""
    from jax.experimental import multihost_utils

    zero = process_index() == 0
    size = multihost_utils.broadcast_one_to_all(np.array(len(payload) if zero else 0, np.int64))
    buffer = np.frombuffer(payload, np.uint8) if zero else np.zeros(int(size), np.uint8)
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(buffer)))


def from_process_zero(fn: Callable[[], Any], *, raw: bool = False) -> Any:
    """``fn()`` run on process 0 only, its result given to every process; its error raised on every process.

    In a single process this is ``fn()``. The result travels as JSON, or as it is with ``raw`` (bytes).
    """
    if not multiprocess():
        return fn()
    message, error = b"", None
    if process_index() == 0:
        try:
            value = fn()
            message = b"ok" + (value if raw else json.dumps(value).encode())
        except Exception as e:  # every process raises it
            error = e
            message = b"er" + json.dumps([type(e).__name__, str(e)]).encode()
    message = _broadcast_bytes(message)
    if message[:2] == b"er":
        if error is not None:
            raise error
        name, text = json.loads(message[2:])
        raise _error_type(name)(f"{text} (raised on process 0)")
    return message[2:] if raw else json.loads(message[2:])


def _error_type(name: str):
    """The class of an error process 0 raised, by its name: jaxgd's own, the operating system's, or (a bug)
    ``RuntimeError``."""
    own = getattr(errors, name, None)
    if isinstance(own, type) and issubclass(own, errors.JaxgdError):
        return own
    builtin = {"NotADirectoryError": NotADirectoryError, "FileNotFoundError": FileNotFoundError,
               "PermissionError": PermissionError, "IDXError": errors.DataError, "OutOfMemory": errors.OutOfMemory}
    return builtin.get(name, RuntimeError)


def agree(name: str, value: Any) -> None:
    """Raises :class:`DisagreementError` on every process unless every process passes an equal ``value``."""
    if not multiprocess():
        return
    from jax.experimental import multihost_utils

    from jaxgd.io.fingerprint import digest

    mine = np.frombuffer(bytes.fromhex(digest(np.frombuffer(json.dumps(value, sort_keys=True, default=str).encode(),
                                                            np.uint8))), np.uint8)
    every = np.asarray(multihost_utils.process_allgather(mine))
    differ = [i for i in range(len(every)) if not np.array_equal(every[i], every[0])]
    if differ:
        raise DisagreementError(f"The processes of this job disagree about the {name}: process {differ[0]}'s differs "
                                "from process 0's; start every process with the same options and data.")


def barrier(name: str) -> None:
    """Every process waits here for all the others (no-op in a single process)."""
    if multiprocess():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
