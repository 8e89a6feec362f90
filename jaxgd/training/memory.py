"""Memory a run needs, checked before anything is allocated: a run that cannot fit is refused with how much it needs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.errors import OutOfMemory
from jaxgd.training.config import TrainConfig
from jaxgd.training.spec import Spec
from jaxgd.training.state import init_state


def available_bytes(devices=None) -> int | None:
    """Memory the run's devices offer: an accelerator's limit, or the host's available memory on a CPU."""
    device = (devices or jax.devices())[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # not every backend reports it
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) * len(devices or jax.devices())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(key, spec: Spec, member: dict, arrays: dict, config: TrainConfig, devices=None) -> None:
    """Refuses, with how much it needs, a run whose parameters, optimizer state, gradients and data alone
    exceed the memory available (activations come on top of that)."""
    state = jax.eval_shape(lambda k: init_state(k, spec, member["hyperparams"], config.data_seed), key)
    leaf_bytes = lambda tree: sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree)  # noqa: E731
                                  if hasattr(a, "dtype") and not jnp.issubdtype(a.dtype, jax.dtypes.prng_key))
    params, opt = leaf_bytes(state.params), leaf_bytes(state.opt_state)
    data_bytes = sum(np.asarray(a).nbytes for a in arrays.values())
    need = 3 * params + opt + data_bytes  # parameters, their gradients and updates, optimizer state, data
    have = available_bytes(devices)
    if have is not None and need > have:
        who = f"{spec.members} members" if spec.population else "the network"
        raise OutOfMemory(f"The run needs at least {need / 1e9:.1f} GB ({who}: parameters {params / 1e9:.2f} GB, "
                          f"optimizer state {opt / 1e9:.2f} GB, data {data_bytes / 1e9:.2f} GB) but only "
                          f"{have / 1e9:.1f} GB are available; use fewer or smaller networks (or max_members).")
