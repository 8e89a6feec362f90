"""Plain SGD on a block of minibatches with the first layer's weight updates deferred.

A step of plain SGD changes the first layer's weights by a low-rank matrix,
``w_1 <- w_1 - eta * d.T @ x``, where ``x (batch, n_in)`` is the minibatch and
``d (batch, n_out)`` the gradient of the cost with respect to the first layer's
weighted input ``u = x @ w_1.T``. So over a block of ``K`` steps the weighted input
of step ``k`` is exactly

    u_k = x_k @ w_1.T - sum_{j < k} eta_j * (x_k @ x_j.T) @ d_j,

with ``w_1`` the weights at the start of the block. :func:`sgd_block` computes
``x_k @ w_1.T`` for the whole block as one matrix product, the Gram matrix
``x_k @ x_j.T`` of the block's examples once, runs the ``K`` steps on the small
remaining layers, and applies the ``K`` updates of ``w_1`` as one product at the end.
That is the same arithmetic as ``K`` ordinary steps (up to rounding), but the first
layer, nearly all of the lesson network's weights, is read twice per block instead
of three times per step.

It pays in a population with a shared data order: the Gram matrix does not
depend on the member and is computed once for all of them, and the two products
become ``(S * n_out, n_in) x (n_in, K * batch)`` and ``(S * n_out, K * batch) x
(K * batch, n_in)``, large enough to run near the machine's matrix-multiply rate even
at minibatch 10. The training loop uses it only where it is exact and pays: plain
SGD (no momentum or Adam state), a shared order of inputs that are the same for
every member, autodiff gradients, minibatches of at most 50 examples, and a
population large enough to share the Gram matrix (see :func:`block_steps`).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgd.costs import per_example_cost
from jaxgd.training.dense import dense
from jaxgd.mlp import MLP, Params

#: Examples per block (``K * batch``) the training loop aims for.
BLOCK_EXAMPLES = 100


def block_steps(batch_size: int, members: int | None, n_out: int) -> int:
    """Steps per block for a shared-order population of ``members`` networks (1: do not defer).

    ``K`` steps of ``batch_size`` examples make about :data:`BLOCK_EXAMPLES`. The
    block's Gram matrix costs ``(K * batch)**2 * n_in`` multiply-adds, once for the
    whole population; the first layer's two products cost ``2 * K * batch * n_in *
    members * n_out``. Blocks are used only where the first is at most half the
    second (``K * batch <= members * n_out``) and hold at least two steps.
    """
    k = BLOCK_EXAMPLES // batch_size
    if k < 2 or not members or k * batch_size > members * n_out:
        return 1
    return k


def sgd_block(params: Params, step: jax.Array, x: jax.Array, y: jax.Array, lr: jax.Array, *, net: MLP,
              cost, eta: Callable[[jax.Array, jax.Array], jax.Array]) -> tuple[Params, jax.Array]:
    """``K`` steps of plain SGD for a population of ``S`` networks on shared minibatches.

    Args:
      params: compute-layout parameters with a leading member axis (weights ``(S, n_out, n_in)``).
      step: ``(S,)`` optimizer steps taken so far (the learning-rate schedule's argument).
      x: ``(K, batch, n_in)``, the block's minibatches, the same for every member.
      y: ``(S, K, batch)``, each member's labels for them.
      lr: ``(S,)`` base learning rates.
      net, cost: the network and its cost (a name or a function of the logits, :mod:`jaxgd.costs`).
      eta: one network's learning rate at a step, ``eta(lr, step)``.

    Returns:
      ``(params, step + K)``, equal up to rounding to ``K`` steps of
      ``params - eta(lr, step) * jax.grad(cost)(params, x_k, y_k)`` for every member.

    The first layer is written for the whole population rather than for one network
    under ``jax.vmap``, so that the member axis sits where the products want it: the
    block-start products, the per-step corrections and the deferred updates are then
    plain matrix products, ``(S * n_out, n_in) x (n_in, K * batch)``,
    ``(batch, K * batch) x (K * batch, S * n_out)`` and ``(S * n_out, K * batch) x
    (K * batch, n_in)``, with no copy of the members' deferred updates per step and
    none of the block-start products' result. The remaining layers are one network's
    math, vmapped.
    """
    w1 = params[0]["w"]
    x = x.astype(w1.dtype)  # the Gram matrix in the parameters' precision, whatever the data's
    (members, n_out, n_in), (steps, batch) = w1.shape, x.shape[:2]
    xs = x.reshape(steps * batch, n_in)
    # Every step's first-layer input at the block's start, (K, batch, S, n_out). XLA's CPU compiler
    # makes this one product contracting the last axis of both xs and the weights, which it reads
    # where they lie (no transposed copy of them; in the form x.reshape(...) @ w1.T with the block's
    # (K, batch, n_in) minibatches it made one, a tenth of the block's time: 50 members on one core,
    # 4.5 ms against 5.2).
    u0 = (w1.reshape(members * n_out, n_in) @ xs.T).T.reshape(steps, batch, members, n_out)
    # gram[k, :, j * batch:(j + 1) * batch] = x_k @ x_j.T: each step's rows, in the order of d's rows
    gram = (xs @ xs.T).reshape(steps, batch, steps * batch)
    rest = [{"b": params[0]["b"]}] + list(params[1:])  # what the steps update one at a time

    def step_cost(rest, u, y):
        return jnp.mean(per_example_cost(cost, net.logits_from_first(rest, u, dense), y, net.output))

    grad = jax.vmap(jax.grad(step_cost, argnums=(0, 1)), in_axes=(0, 1, 0), out_axes=(0, 1))
    rate = jax.vmap(eta)

    def one(carry, inputs):
        rest, d, step = carry
        k, u0_k, gram_k, y_k = inputs
        # (batch, K * batch) x (K * batch, S * n_out), two matrices as they lie (rows j >= k of d
        # are still zero); a layout that made XLA copy d transposed cost a tenth of a step
        u = u0_k - (gram_k @ d).reshape(u0_k.shape)
        g_rest, g_u = grad(rest, u, y_k)  # the member axis of u and g_u is their second
        r = rate(lr, step).astype(w1.dtype)
        rest = jax.tree.map(lambda p, g: p - r.reshape((-1,) + (1,) * (p.ndim - 1)) * g, rest, g_rest)
        d = jax.lax.dynamic_update_slice_in_dim(d, (r[None, :, None] * g_u).reshape(batch, -1), k * batch, 0)
        return (rest, d, step + 1), None

    d = jnp.zeros((steps * batch, members * n_out), u0.dtype)  # each step's eta * dC/du, by rows
    (rest, d, step), _ = jax.lax.scan(one, (rest, d, step), (jnp.arange(steps), u0, gram, jnp.moveaxis(y, 1, 0)))
    w1 = w1 - (d.T @ xs).reshape(w1.shape)
    return [{"w": w1, "b": rest[0]["b"]}] + rest[1:], step
