"""What a command does before JAX's first computation: the compilation cache, CPU devices, a distributed job.

The command line and the studies start JAX the same way (:func:`start_jax`): every compiled
program is kept in a persistent cache (so that the next identical run starts at once),
a population's members are spread over one CPU device per core, and ``--distributed``
joins a ``jax.distributed`` job.
"""
from __future__ import annotations

import os
from pathlib import Path

from jaxgd.errors import InvalidArgument

#: XLA flags that make GPU runs deterministic (slower kernels, no autotuning); no effect on CPU,
#: whose programs are deterministic already.
DETERMINISTIC_XLA_FLAGS = ("--xla_gpu_deterministic_ops=true",)


def use_deterministic_kernels() -> None:
    """Adds :data:`DETERMINISTIC_XLA_FLAGS` to ``XLA_FLAGS``; must run before JAX starts its backends."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join(flags + [f for f in DETERMINISTIC_XLA_FLAGS if f not in flags])


def cache_dir() -> Path:
    """Where the command line keeps JAX's persistent compilation cache (``JAXGD_CACHE_DIR`` to change)."""
    base = os.environ.get("JAXGD_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "jaxgd")
    return Path(base).expanduser() / "xla"


def start_jax(args, population: bool = True) -> None:
    """What the command line sets before JAX's first computation: the compilation cache (every compiled
    program kept, so that the next identical run starts at once), one CPU device per core for populations
    (:func:`jaxgd.parallel.sharding.use_cpu_devices`), and the ``jax.distributed`` job ``--distributed`` asks for."""
    import jax

    if getattr(args, "compilation_cache", True) and os.environ.get("JAXGD_COMPILATION_CACHE", "1") != "0":
        if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            jax.config.update("jax_compilation_cache_dir", str(cache_dir()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    distributed = getattr(args, "distributed", False) or getattr(args, "coordinator", None) is not None
    devices = getattr(args, "cpu_devices", None)
    if devices is not None or (population and not distributed):
        from jaxgd.parallel.sharding import cpu_cores, use_cpu_devices

        try:
            use_cpu_devices(devices if devices is not None else cpu_cores())  # only the CPU backend
        except RuntimeError:
            if devices is not None:  # asked for explicitly: say it could not be done
                raise
            # called from Python after JAX started (jaxgd.cli.main in a session): keep its devices
    start_distributed(args)


def start_distributed(args) -> None:
    """Joins the job ``--distributed`` asks for; before JAX's first computation."""
    explicit = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        raise InvalidArgument("--coordinator, --num-processes and --process-id go together.")
    if args.distributed or args.coordinator is not None:
        from jaxgd.parallel.distributed import initialize

        initialize(args.coordinator, args.num_processes, args.process_id)
