"""Costs as pure functions of a model's logits: the lesson's quadratic cost, cross-entropy, or your own.

The quadratic cost is the lesson's: for one example, the sum over the outputs of
``(a_j - y_j)**2`` (no factor 1/2), where ``a`` is the network's output activation
and ``y`` the one-hot desired output; the cost of the network is its average over
the examples. The output activation is the model's ``output`` (the MLP's sigmoid, as in
the lesson); a model without one is compared on its logits (``identity``, the "square
loss" of Hui & Belkin 2021, arXiv 2006.07322). The cross-entropy cost applies softmax
to the logits, whatever ``output`` says (Nielsen, *Neural Networks and Deep Learning*,
ch. 3). Any function ``cost(logits, y) -> (batch,)`` per-example costs is a cost too.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument
from jaxgd.activations import output_activation

COSTS = ("quadratic", "cross_entropy")


def check_cost(cost) -> None:
    if callable(cost):
        return
    if cost not in COSTS:
        raise InvalidArgument(f"Unknown cost {cost!r}; choose one of {', '.join(COSTS)}, "
                         "or pass a function cost(logits, y) -> per-example costs.")


def output_of(model) -> str:
    """The output activation the quadratic cost applies to ``model``'s logits (``identity`` by default)."""
    return getattr(model, "output", "identity")


def per_example_cost(cost, logits: jax.Array, y: jax.Array, output: str = "identity") -> jax.Array:
    """Cost of each example: ``logits (batch, n_out)``, integer ``y (batch,)`` -> ``(batch,)``.

    ``output`` is the model's output activation, which only the quadratic cost reads.
    """
    if callable(cost):
        return cost(logits, y)
    if cost == "quadratic":
        a = output_activation(output, logits)
        target = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
        return jnp.sum((a - target) ** 2, axis=-1)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, y[..., None].astype(jnp.int32), axis=-1)[..., 0]


def cost_fn(model, cost="quadratic", matmul: Callable | None = None, *, state=None) -> Callable[..., jax.Array]:
    """The cost ``C(params, x, y) -> scalar``, averaged over the batch.

    Args:
      model: a model (:mod:`jaxgd.models`).
      cost: ``"quadratic"`` (the lesson's), ``"cross_entropy"`` (softmax), or a function
        ``cost(logits, y) -> (batch,)``.
      matmul: for an :class:`jaxgd.MLP` only, how layers multiply (see :meth:`jaxgd.MLP.logits`).
      state: a stateful model's state: the cost is then the model's in evaluation mode (running
        statistics, no dropout), a function of its parameters alone.

    Returns:
      A pure function of ``params``, ``x: (batch, ...)`` and integer labels
      ``y: (batch,)``, safe to ``jax.jit``, ``jax.grad`` and ``jax.vmap``.
    """
    check_cost(cost)
    output = output_of(model)
    if matmul is not None:
        logits = lambda params, x: model.logits(params, x, matmul)  # noqa: E731
    elif getattr(model, "stateful", False):
        logits = lambda params, x: model.apply(params, state, x)[0]  # noqa: E731
    else:
        logits = model.apply

    def cost_of(params, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(per_example_cost(cost, logits(params, x), y, output))

    cost_of.__name__ = f"{getattr(cost, '__name__', cost)}_cost"
    return cost_of
