"""Activation functions and the derivatives that hand-written backprop needs.

Each entry pairs ``f(z)`` with ``f'(z)`` written out by hand, so that
:mod:`jaxgd.backprop` never calls autodiff. ``relu`` uses ``jax.nn.relu`` whose
derivative at exactly zero is 0, the same convention as the hand-written one.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Activation(NamedTuple):
    fn: Callable[[jax.Array], jax.Array]
    derivative: Callable[[jax.Array], jax.Array]  # f'(z), elementwise


def _sigmoid_prime(z):
    s = jax.nn.sigmoid(z)
    return s * (1.0 - s)


def _tanh_prime(z):
    t = jnp.tanh(z)
    return 1.0 - t * t


def _relu_prime(z):
    return (z > 0).astype(z.dtype)


def _identity(z):
    return z


def _one(z):
    return jnp.ones_like(z)


#: Elementwise activations usable in hidden layers (and ``sigmoid``/``identity`` at the output).
ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(jax.nn.sigmoid, _sigmoid_prime),
    "tanh": Activation(jnp.tanh, _tanh_prime),
    "relu": Activation(jax.nn.relu, _relu_prime),
    "identity": Activation(_identity, _one),
}

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu")
#: Output activations. ``softmax`` is not elementwise and is handled in the costs and backprop.
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "identity")


def output_activation(name: str, z: jax.Array) -> jax.Array:
    """Applies the output nonlinearity ``name`` to logits ``z`` of shape ``(..., n_out)``."""
    if name == "softmax":
        return jax.nn.softmax(z, axis=-1)
    return ACTIVATIONS[name].fn(z)
