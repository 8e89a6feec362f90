"""Activation functions, the derivatives hand-written backprop needs, and a registry for new ones.

Each entry pairs ``f(z)`` with ``f'(z)`` written out by hand, so that
:mod:`jaxgd.backprop` never calls autodiff. ``relu`` uses ``jax.nn.relu`` whose
derivative at exactly zero is 0, the same convention as the hand-written one.
:func:`register_activation` adds an activation once, by name, for every model and
the command line; ``gradient="backprop"`` needs its derivative.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument, InvalidType


class Activation(NamedTuple):
    fn: Callable[[jax.Array], jax.Array]
    derivative: Callable[[jax.Array], jax.Array] | None  # f'(z), elementwise; None: autodiff only


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


#: Elementwise activations by name (``identity`` only at the output).
ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(jax.nn.sigmoid, _sigmoid_prime),
    "tanh": Activation(jnp.tanh, _tanh_prime),
    "relu": Activation(jax.nn.relu, _relu_prime),
    "identity": Activation(_identity, _one),
}

#: The built-in hidden-layer activations (see :func:`hidden_activations` for the registered ones too).
HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu")
#: Output activations. ``softmax`` is not elementwise and is handled in the costs and backprop.
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "identity")


def hidden_activations() -> tuple[str, ...]:
    """Names usable as a hidden-layer activation: the built-in ones and every registered one."""
    return tuple(name for name in ACTIVATIONS if name != "identity")


def register_activation(name: str, fn: Callable, derivative: Callable | None = None) -> None:
    """Adds an elementwise activation under ``name``, usable by ``MLP``, ``CNN`` and ``--activation``.

    Args:
      name: a new name (re-registering a name with other functions is refused, so that
        a recorded run always means one activation).
      fn: ``f(z)``, elementwise, jittable.
      derivative: ``f'(z)``, elementwise; needed only by ``gradient="backprop"``.

    Example:
      >>> register_activation("softplus", jax.nn.softplus, jax.nn.sigmoid)
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgument(f"An activation's name must be a plain identifier like 'swish', got {name!r}.")
    if not callable(fn) or (derivative is not None and not callable(derivative)):
        raise InvalidType(f"register_activation({name!r}, ...) needs a function f(z) and optionally f'(z).")
    entry = Activation(fn, derivative)
    if name in ACTIVATIONS and ACTIVATIONS[name] != entry:
        raise InvalidArgument(f"The activation {name!r} is already registered with other functions.")
    ACTIVATIONS[name] = entry


def check_activation(name: str, *, hidden: bool = True) -> None:
    options = hidden_activations() if hidden else OUTPUT_ACTIVATIONS
    if name not in options:
        kind = "activation" if hidden else "output activation"
        raise InvalidArgument(f"Unknown {kind} {name!r}; choose one of {', '.join(options)}"
                         + (" (or register one with jaxgd.register_activation)." if hidden else "."))


def output_activation(name: str, z: jax.Array) -> jax.Array:
    """Applies the output nonlinearity ``name`` to logits ``z`` of shape ``(..., n_out)``."""
    if name == "softmax":
        return jax.nn.softmax(z, axis=-1)
    return ACTIVATIONS[name].fn(z)
