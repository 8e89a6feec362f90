"""Spreading a population's member axis over every device with JAX's own sharding.

The member axis is padded to a multiple of the device count (padding members are
copies of the first ones and are dropped afterwards), laid out with
``NamedSharding(Mesh(devices, ("members",)), P("members"))``; the data is
replicated. ``jax.jit`` then partitions the whole training program. Threefry keys
(the default) draw the same bits whatever the sharding. On several hosts (a
``jax.distributed`` job, :mod:`jaxgd.parallel.distributed`), ``jax.devices()`` lists every host's
devices: each process builds the global arrays from its own copy of the host values
(``jax.make_array_from_callback``; typed keys travel as key data), and :func:`host` gathers
a result to every process (``multihost_utils.process_allgather``).

On a CPU, JAX makes one device of all the cores, and a population's many small
products keep little more than one core busy. :func:`use_cpu_devices`, called before
JAX's first computation, makes one device per core instead, so that the member axis
is spread over the cores the same way it is over accelerators.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgd.errors import InvalidArgument, StartupError

AXIS = "members"


def cpu_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_cpu_devices(n: int | None = None) -> int:
    """Makes JAX's CPU backend ``n`` devices (default: one per core); returns ``n``.

    Must run before JAX's first computation (JAX fixes its devices then). Only the
    CPU backend is affected: on a GPU or TPU machine the accelerators stay the
    default devices.
    """
    n = cpu_cores() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgument(f"The number of CPU devices must be a positive integer, got {n!r}.")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as e:
        raise StartupError(f"use_cpu_devices({n}) must be called before JAX's first computation "
                           "(JAX has already created its devices in this process).") from e
    return n


def member_mesh(devices=None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (AXIS,))


def padded_size(members: int, mesh: Mesh) -> int:
    d = mesh.devices.size
    return -(-members // d) * d


def pad_members(tree, members: int, size: int):
    """Pads every leaf's leading member axis from ``members`` to ``size`` by repeating members."""
    if size == members:
        return tree
    take = np.arange(size) % members
    return jax.tree.map(lambda a: a[take], tree)


def put(a, sharding: NamedSharding):
    """``a`` laid out as ``sharding``; across processes, each builds its own shards from its copy of ``a``."""
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    if jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(put(jax.random.key_data(a), sharding))
    host_value = np.asarray(a)
    return jax.make_array_from_callback(host_value.shape, sharding, lambda index: host_value[index])


def shard_members(tree, mesh: Mesh):
    """Lays each leaf's leading axis over the mesh (leaves of rank 0 are replicated)."""
    return jax.tree.map(lambda a: put(a, NamedSharding(mesh, P(AXIS) if getattr(a, "ndim", 0) >= 1 else P())), tree)


def replicate(tree, mesh: Mesh):
    return jax.tree.map(lambda a: put(a, NamedSharding(mesh, P())), tree)


def host(tree):
    """Every leaf as NumPy on this process, gathered from the other processes where it spans them."""
    from jax.experimental import multihost_utils

    def one(a):
        if a is None:
            return None
        if jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key):
            a = jax.random.key_data(a)
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            if a.is_fully_replicated:
                return np.asarray(a.addressable_shards[0].data)
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(one, tree)


def place(state, member: dict, arrays: dict, *, spec, devices=None):
    """Puts a run on its devices: a population's member axis spread over ``devices``
    (default every device; padded to a multiple of their count) in contiguous blocks,
    the data replicated.

    Returns ``(state, member, arrays, spec)``, the spec's ``member_shards`` set to the
    number of devices: the compiled program depends on it.
    """
    import dataclasses

    if not spec.population:
        return (*jax.device_put((state, member, arrays)), spec)
    mesh = member_mesh(devices)
    members = int(member["condition"].shape[0])
    size = padded_size(members, mesh)
    per_member = state._replace(data_key=state.data_key if not spec.shared_order else None)
    per_member, member = pad_members((per_member, member), members, size)
    per_member, member = shard_members((per_member, member), mesh)
    data_key = per_member.data_key if not spec.shared_order else replicate(state.data_key, mesh)
    return (per_member._replace(data_key=data_key), member, replicate(arrays, mesh),
            dataclasses.replace(spec, member_shards=int(mesh.devices.size)))
