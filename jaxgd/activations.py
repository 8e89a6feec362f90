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
import numpy as np

from jaxgd.errors import InvalidArgument, InvalidType


class Activation(NamedTuple):
    fn: Callable[[jax.Array], jax.Array]
    derivative: Callable[[jax.Array], jax.Array] | None  # f'(z), elementwise; None: autodiff only


def exp_float32(x: jax.Array) -> jax.Array:
    """``exp`` of float32 ``x`` by XLA's own CPU algorithm, in operations its fused kernels vectorize.

    XLA's CPU compiler emits ``exp`` as a vectorized polynomial when it stands alone, but
    one element at a time inside a fusion with other operations, which is where a
    sigmoid always lands (its bias add before, its ``1 / (1 + e)`` and the backward pass
    after): about 25 us instead of 4 us for ``(50, 10, 16)`` on one core, a fifth of a
    100-member MLP population's step at minibatch 10. Written out here, with the same
    clamps, the same Cody-Waite split of ``ln 2``, the same degree-5 polynomial and the
    same ``2**n`` by exponent bits, the result is the same float32 bits as XLA's (checked
    in the tests; compiled with ``jax_disable_most_optimizations``, one element in 200
    differs by one rounding) and fuses as vectorized arithmetic.
    """
    x = jnp.clip(x, np.float32(-87.8), np.float32(88.8))
    n = jnp.clip(jnp.floor(x * np.float32(1.44269504088896341) + np.float32(0.5)), np.float32(-127), np.float32(127))
    r = x - n * np.float32(0.693359375)
    r = r - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + np.float32(c)
    p = p * (r * r) + r + np.float32(1)
    return p * jax.lax.bitcast_convert_type((n.astype(jnp.int32) + 127) << 23, jnp.float32)


@jax.custom_jvp
def sigmoid(z: jax.Array) -> jax.Array:
    """``jax.nn.sigmoid``, bit for bit, faster inside XLA's fused CPU kernels for float32.

    This is the ``"sigmoid"`` activation of :class:`jaxgd.MLP` and :class:`jaxgd.CNN`.

    On a CPU, float32 ``1 / (1 + exp(-z))`` is computed with :func:`exp_float32`, the
    algorithm XLA itself uses, in a form its fused kernels vectorize; on other platforms
    and for other dtypes this is ``jax.nn.sigmoid``. Its derivative is written as
    ``jax.lax.logistic``'s, ``g * (s * (1 - s))``, so gradients are the same bits too.
    "The same bits" is checked in the tests against the installed XLA, compiled with its
    usual optimizations; a later XLA with another ``exp`` would show there first.
    """
    z = jnp.asarray(z)
    if z.dtype != jnp.float32 or jax.typeof(z).weak_type:  # Python floats stay weak
        return jax.nn.sigmoid(z)
    return jax.lax.platform_dependent(z, cpu=lambda v: 1 / (1 + exp_float32(-v)), default=jax.nn.sigmoid)


@sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    s = sigmoid(primals[0])
    return s, tangents[0] * (s * (1 - s))


def _sigmoid_prime(z):
    s = sigmoid(z)
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
    "sigmoid": Activation(sigmoid, _sigmoid_prime),
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
