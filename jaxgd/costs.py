"""Costs of the lesson and their evaluation metrics, as pure functions.

The quadratic cost is the lesson's: for one example, the sum over the outputs of
``(a_j - y_j)**2`` (no factor 1/2), where ``a`` is the network's output activation
and ``y`` the one-hot desired output; the cost of the network is its average over
the examples. The cross-entropy cost applies softmax to the logits, whatever
``net.output`` says (Nielsen, *Neural Networks and Deep Learning*, ch. 3).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgd.activations import output_activation
from jaxgd.mlp import MLP, Params

COSTS = ("quadratic", "cross_entropy")


def check_cost(cost: str) -> None:
    if cost not in COSTS:
        raise ValueError(f"Unknown cost {cost!r}; choose one of {', '.join(COSTS)}.")


def per_example_cost(net: MLP, cost: str, logits: jax.Array, y: jax.Array) -> jax.Array:
    """Cost of each example: ``logits (batch, n_out)``, integer ``y (batch,)`` -> ``(batch,)``."""
    if cost == "quadratic":
        a = output_activation(net.output, logits)
        target = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
        return jnp.sum((a - target) ** 2, axis=-1)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, y[..., None].astype(jnp.int32), axis=-1)[..., 0]


def cost_fn(net: MLP, cost: str = "quadratic",
            matmul: Callable = jnp.matmul) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """The cost ``C(params, x, y) -> scalar``, averaged over the batch.

    Args:
      net: the network description.
      cost: ``"quadratic"`` (the lesson's) or ``"cross_entropy"`` (softmax).
      matmul: how layers multiply (see :meth:`MLP.logits`); the default is ``a @ w``.

    Returns:
      A pure function of ``params``, ``x: (batch, n_in)`` and integer labels
      ``y: (batch,)``, safe to ``jax.jit``, ``jax.grad`` and ``jax.vmap``.
    """
    check_cost(cost)

    def cost_of(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(per_example_cost(net, cost, net.logits(params, x, matmul), y))

    cost_of.__name__ = f"{cost}_cost"
    return cost_of


def evaluate(net: MLP, cost: str, params: Params, x: jax.Array, y: jax.Array, chunk: int = 4096):
    """Mean cost and accuracy over a whole split, in chunks of ``chunk`` examples.

    Chunking bounds memory when many networks are evaluated at once under ``vmap``.

    Returns:
      ``(cost, accuracy)`` as scalars.
    """
    return evaluate_rows(net, cost, params, lambda i: (x[i], y[i]), x.shape[0], x.dtype, chunk)


def evaluate_rows(net: MLP, cost: str, params: Params, rows, n: int, dtype, chunk: int = 4096):
    """:func:`evaluate` over examples fetched by ``rows(indices) -> (x, y)``.

    Fetching by index lets per-condition data variants (a leading condition axis)
    be read in place, without a copy per network.
    """
    if n == 0:
        nan = jnp.array(jnp.nan, dtype)
        return nan, nan
    chunk = min(chunk, n)
    num_chunks = -(-n // chunk)
    pad = num_chunks * chunk - n
    idx = jnp.concatenate([jnp.arange(n), jnp.zeros(pad, jnp.int32)]).reshape(num_chunks, chunk)
    mask = jnp.concatenate([jnp.ones(n, dtype), jnp.zeros(pad, dtype)]).reshape(num_chunks, chunk)

    def body(totals, inputs):
        i, m = inputs
        xb, yb = rows(i)
        z = net.logits(params, xb)
        c = per_example_cost(net, cost, z, yb)
        hit = (jnp.argmax(z, axis=-1) == yb).astype(dtype)
        return (totals[0] + jnp.sum(c * m), totals[1] + jnp.sum(hit * m)), None

    zero = jnp.zeros((), dtype)
    (total_cost, hits), _ = jax.lax.scan(body, (zero, zero), (idx, mask))
    return total_cost / n, hits / n
