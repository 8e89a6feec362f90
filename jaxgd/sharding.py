"""Spreading a population's member axis over every device with JAX's own sharding.

The member axis is padded to a multiple of the device count (padding members are
copies of the first ones and are dropped afterwards), laid out with
``NamedSharding(Mesh(devices, ("members",)), P("members"))``; the data is
replicated. ``jax.jit`` then partitions the whole training program. Threefry keys
(the default) draw the same bits whatever the sharding. On several hosts, call
``jax.distributed.initialize()`` first: ``jax.devices()`` then lists every host's devices.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "members"


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


def shard_members(tree, mesh: Mesh):
    """Lays each leaf's leading axis over the mesh (leaves of rank 0 are replicated)."""
    def put(a):
        spec = P(AXIS) if getattr(a, "ndim", 0) >= 1 else P()
        return jax.device_put(a, NamedSharding(mesh, spec))
    return jax.tree.map(put, tree)


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, NamedSharding(mesh, P()))
