"""Backpropagation written out by hand — no ``jax.grad``, ``vjp`` or any autodiff.

The four equations (Nielsen, *Neural Networks and Deep Learning*, ch. 2), for a
batch of ``B`` examples stacked as rows, with ``a_0 = x``,
``z_l = a_{l-1} W_l + b_l`` and ``a_l = act(z_l)``:

1. output error       ``delta_L = dC/da_L * out'(z_L)``  (softmax + cross-entropy: ``(a_L - y) / B``)
2. backward recursion ``delta_l = (delta_{l+1} W_{l+1}^T) * act'(z_l)``
3. bias gradient      ``dC/db_l = sum over the batch of delta_l``
4. weight gradient    ``dC/dW_l = a_{l-1}^T delta_l``

The ``1/B`` of the batch average is folded into ``delta_L``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument
from jaxgd.activations import ACTIVATIONS, output_activation
from jaxgd.costs import COSTS
from jaxgd.mlp import MLP, Params


def forward_cache(net: MLP, params: Params, x: jax.Array):
    """Forward pass keeping every layer's ``z`` and ``a`` (``activations[0] = x``)."""
    act = ACTIVATIONS[net.activation].fn
    activations, zs = [x], []
    for i, layer in enumerate(params):
        z = activations[-1] @ layer["w"] + layer["b"]
        zs.append(z)
        last = i == len(params) - 1
        activations.append(output_activation(net.output, z) if last else act(z))
    return zs, activations


def output_error(net: MLP, cost: str, z_out: jax.Array, a_out: jax.Array, y: jax.Array) -> jax.Array:
    """``delta_L = dC/dz_L`` for the batch-averaged cost, shape ``(B, n_out)``.

    The operations follow the order in which reverse-mode autodiff evaluates the same
    chain rule, so that the two agree to the last bits even where the output saturates
    and the gradient is a small difference of large terms.
    """
    batch = z_out.shape[0]
    target = jax.nn.one_hot(y, z_out.shape[-1], dtype=z_out.dtype)
    per_example = 1.0 / batch  # dC/dC_i of the batch average
    if cost == "cross_entropy":
        # C_i = -log softmax(z)_y: the error is softmax(z) - onehot(y), computed as
        # g + softmax(z) * (-sum g) with g = -onehot / B.
        g = target * -per_example
        e = jnp.exp(z_out - jnp.max(z_out, axis=-1, keepdims=True))
        return g + (-jnp.sum(g, axis=-1, keepdims=True) / jnp.sum(e, axis=-1, keepdims=True)) * e
    grad_a = (2.0 * (a_out - target)) * per_example  # dC/da_L of sum_j (a_j - y_j)^2, averaged
    if net.output == "softmax":  # Jacobian of softmax applied to grad_a: a*g - a*sum(a*g)
        c = a_out * grad_a
        return c + a_out * -jnp.sum(c, axis=-1, keepdims=True)
    return grad_a * ACTIVATIONS[net.output].derivative(z_out)


def check_backprop(net, cost) -> None:
    """Raises ``ValueError`` with a sentence when the hand-written backprop cannot compute this gradient."""
    if not isinstance(net, MLP):
        raise InvalidArgument(f"The hand-written backprop is written for jaxgd.MLP's layers; {type(net).__name__} "
                         "trains with gradient='autodiff'.")
    if net.dropout is not None:
        raise InvalidArgument(f"The hand-written backprop has no dropout (the network has dropout={net.dropout}); "
                              "use gradient='autodiff'.")
    if callable(cost) or cost not in COSTS:
        raise InvalidArgument(f"The hand-written backprop knows the {' and '.join(COSTS)} costs, not {cost!r}; "
                         "use gradient='autodiff'.")
    if ACTIVATIONS[net.activation].derivative is None:
        raise InvalidArgument(f"The activation {net.activation!r} was registered without its derivative, which the "
                         "hand-written backprop needs (jaxgd.register_activation(name, fn, derivative)).")


def backprop(net: MLP, cost: str, params: Params, x: jax.Array, y: jax.Array) -> Params:
    """Gradient of ``cost_fn(net, cost)`` at ``params`` on the batch ``(x, y)``, by hand.

    Args:
      net: the network description.
      cost: ``"quadratic"`` or ``"cross_entropy"``.
      params: ``[{"w": (n_in, n_out), "b": (n_out,)}, ...]``.
      x: inputs ``(B, n_in)``.
      y: integer labels ``(B,)``.

    Returns:
      A pytree with the structure of ``params``: ``dC/dW_l`` and ``dC/db_l``.
    """
    check_backprop(net, cost)
    act_prime = ACTIVATIONS[net.activation].derivative
    zs, activations = forward_cache(net, params, x.reshape(x.shape[0], -1))
    delta = output_error(net, cost, zs[-1], activations[-1], y)
    grads = [None] * len(params)
    for l in reversed(range(len(params))):
        grads[l] = {"w": activations[l].T @ delta, "b": jnp.sum(delta, axis=0)}
        if l > 0:
            delta = (delta @ params[l]["w"].T) * act_prime(zs[l - 1])
    return grads
