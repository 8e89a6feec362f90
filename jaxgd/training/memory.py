"""Memory a run needs, checked before anything is allocated: a run that cannot fit is refused with how much it needs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.errors import OutOfMemory
from jaxgd.io.memory import host_available_bytes
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
    return host_available_bytes()


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


#: Host bytes per member besides its parameters, whatever ``max_members`` holds at once: its key, its
#: hyperparameters, its condition, flags, and a few hundred evaluations of history.
PER_MEMBER_BYTES = 4096


def check_population(model, config: TrainConfig, data, members: int, *, max_members: int | None = None,
                     per_member: tuple[str, ...] = (), extra_bytes: int = 0, devices=None) -> None:
    """Refuses, from the configuration alone and before any key or array of the population is made, a
    population of ``members`` networks that cannot fit: one network's parameters (with their gradients and
    updates) and optimizer state, by ``jax.eval_shape``, times the members held at once (``max_members``),
    plus :data:`PER_MEMBER_BYTES` per member, the data and ``extra_bytes`` (per-condition data)."""
    from jaxgd.training import optim

    optimizer, base = optim.build(config, per_member)
    spec = Spec.make(model, config, optimizer, data.n_train, data.input_shape)
    one = jax.eval_shape(lambda k: init_state(k, spec, base, config.data_seed), jax.random.key(0))
    leaf_bytes = lambda tree: sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree)  # noqa: E731
                                  if hasattr(a, "dtype") and not jnp.issubdtype(a.dtype, jax.dtypes.prng_key))
    per_network = 3 * leaf_bytes(one.params) + leaf_bytes(one.opt_state) + leaf_bytes(one.model_state)
    held = min(members, max_members or members)
    data_bytes = sum(np.asarray(a).nbytes for a in data.arrays().values())
    need = per_network * held + PER_MEMBER_BYTES * members + data_bytes + extra_bytes
    have = available_bytes(devices)
    if have is not None and need > have:
        raise OutOfMemory(f"{members:,} networks need at least {need / 1e9:.1f} GB ({per_network * held / 1e9:.2f} GB "
                          f"for the {held:,} trained at once, {PER_MEMBER_BYTES * members / 1e9:.2f} GB of keys, "
                          f"hyperparameters and history for all of them, data {(data_bytes + extra_bytes) / 1e9:.2f} "
                          f"GB) but only {have / 1e9:.1f} GB are available; use fewer seeds or settings "
                          "(or max_members, --max-members, for the networks trained at once).")
