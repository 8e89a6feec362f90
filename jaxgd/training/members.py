"""Running one network's function for every member of a population, as the kernel chose.

The math is written for one network; :func:`over_members` runs it for a whole population: under
``jax.vmap``, or with the ``map`` kernel each device's members ``spec.member_batch`` at a time
(:func:`jaxgd.training.spec.choose_kernel` says which and why). A population's members lie in
``spec.member_shards`` contiguous blocks, one per device (:func:`jaxgd.parallel.sharding.place`).
"""
from __future__ import annotations

import jax

from jaxgd.training.spec import Spec


def blocks(tree, spec: Spec):
    """Leading member axis ``(S, ...)`` -> ``(member_shards, S / member_shards, ...)``: one block per device."""
    return jax.tree.map(lambda a: a.reshape((spec.member_shards, -1) + a.shape[1:]), tree)


def unblock(tree):
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), tree)


def over_members(fn, spec: Spec, in_axes: tuple):
    """``fn`` (written for one network) for every member: ``jax.vmap``, or with the ``map`` kernel each
    device's members ``spec.member_batch`` at a time (``lax.map``), so one member's activations stay in cache.

    ``in_axes`` is 0 (a leading member axis) or ``None`` (shared) per argument.
    """
    if spec.kernel != "map":
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        per_member = [i for i, ax in enumerate(in_axes) if ax == 0]

        def block(*block_args):
            def one(xs):
                full = list(args)
                for i, x in zip(per_member, xs):
                    full[i] = x
                return fn(*full)
            batch = spec.member_batch if spec.member_batch > 1 else None
            return jax.lax.map(one, tuple(block_args), batch_size=batch)

        return unblock(jax.vmap(block)(*[blocks(args[i], spec) for i in per_member]))

    return mapped
