"""The training loop's dense layer: ``x @ w.T`` for weights stored ``(n_out, n_in)``.

Mathematically this is the plain product; only its weight gradient is scheduled
differently. For a minibatch of at most :data:`OUTER_PRODUCT_MAX_BATCH` examples the
weight gradient ``d.T @ x`` is written as a sum of ``batch`` outer products, an
elementwise expression XLA fuses with the parameter update that follows it: one pass
over the weights instead of a matrix product, a temporary and an update. Under ``vmap``
(a population) this avoids XLA's slow batched ``(batch, n_out) x (batch, n_in)``
products; with a shared data order it also avoids a transposed copy of every member's
weights. Larger minibatches use the matrix product, and their forward product is
written ``(w @ x.T).T``: with a shared data order, XLA's CPU product then reads all
members' weights where they lie rather than first copying them transposed, a tenth
of a 100-member population's step at minibatch 100. ``jax.grad`` through this layer
is checked against the hand-written backprop and against ``jax.grad`` of
:meth:`jaxgd.MLP.logits` in the tests.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

#: Largest minibatch whose weight gradient is written as a sum of outer products.
OUTER_PRODUCT_MAX_BATCH = 32


@jax.custom_vjp
def dense(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x (batch, n_in) @ w.T`` with ``w (n_out, n_in)`` -> ``(batch, n_out)``."""
    if x.ndim == 2 and x.shape[0] > OUTER_PRODUCT_MAX_BATCH:
        # the weights as the left operand: no transposed copy of them per step (module docstring)
        return jnp.swapaxes(w @ jnp.swapaxes(x, -1, -2), -1, -2)
    return x @ jnp.swapaxes(w, -1, -2)


def _dense_fwd(x, w):
    return dense(x, w), (x, w)


def _dense_bwd(residuals, d):
    x, w = residuals
    if x.ndim == 2 and x.shape[0] <= OUTER_PRODUCT_MAX_BATCH:
        dw = sum(d[i, :, None] * x[i, None, :] for i in range(x.shape[0]))
    else:
        dw = jnp.swapaxes(d, -1, -2) @ x
    return d @ w, dw.astype(w.dtype)


dense.defvjp(_dense_fwd, _dense_bwd)
