"""The multilayer perceptron of the lesson: a static description plus pure functions.

``MLP`` holds no arrays: it is a frozen, hashable description (so it can be a
static argument of ``jax.jit``), and parameters are a plain pytree — a list with
one ``{"w": (n_in, n_out), "b": (n_out,)}`` dict per layer. The forward pass is
written for a batch ``x: (batch, n_in)``; seeds and conditions are added by
``jax.vmap`` over the parameters.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgd.activations import ACTIVATIONS, HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS, output_activation

Params = list  # list[dict[str, jax.Array]]: one {"w", "b"} per layer

#: Weight initialisers: name -> std of the weights as a function of (fan_in, fan_out).
#: ``normal`` is the lesson's (and Nielsen's) standard normal for weights and biases;
#: the scaled ones (LeCun 1998, Glorot & Bengio 2010, He et al. 2015, arXiv 1502.01852)
#: start the biases at zero.
INITIALISERS = {
    "normal": lambda fan_in, fan_out: 1.0,
    "lecun": lambda fan_in, fan_out: math.sqrt(1.0 / fan_in),
    "glorot": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "he": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
}


@dataclasses.dataclass(frozen=True)
class MLP:
    """A fully connected network ``sizes[0] -> ... -> sizes[-1]``.

    Args:
      sizes: layer widths including input and output, e.g. ``(784, 16, 16, 10)``.
      activation: hidden-layer nonlinearity, one of ``sigmoid``, ``tanh``, ``relu``.
      output: what :meth:`apply` puts on the last layer, one of ``sigmoid`` (the
        lesson's), ``softmax`` or ``identity``. The quadratic cost uses it; the
        cross-entropy cost always uses softmax on the logits.

    Example:
      >>> net = MLP((784, 16, 16, 10))
      >>> net.num_params()
      13002
    """

    sizes: tuple[int, ...]
    activation: str = "sigmoid"
    output: str = "sigmoid"

    def __post_init__(self):
        sizes = self.sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"MLP sizes must be a sequence of layer widths, got {sizes!r}.")
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP sizes needs at least an input and an output width, got {sizes!r}.")
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, int) and not (hasattr(s, "__index__")):
                raise TypeError(f"MLP layer widths must be integers, got {s!r} in {sizes!r}.")
            if int(s) < 1:
                raise ValueError(f"MLP layer widths must be positive, got {int(s)} in {sizes!r}.")
        object.__setattr__(self, "sizes", tuple(int(s) for s in sizes))
        if self.activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {self.activation!r}; choose one of {', '.join(HIDDEN_ACTIVATIONS)}."
            )
        if self.output not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"Unknown output activation {self.output!r}; choose one of {', '.join(OUTPUT_ACTIVATIONS)}.")

    @property
    def num_layers(self) -> int:
        """Number of weight layers (``len(sizes) - 1``)."""
        return len(self.sizes) - 1

    def num_params(self) -> int:
        """Total count of weights and biases."""
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def init(self, key: jax.Array, init: str = "normal", dtype: Any = jnp.float32) -> Params:
        """Draws parameters. ``init`` is one of :data:`INITIALISERS`.

        Returns:
          ``[{"w": (n_in, n_out), "b": (n_out,)}, ...]``, one dict per layer.
        """
        if init not in INITIALISERS:
            raise ValueError(f"Unknown initialiser {init!r}; choose one of {', '.join(INITIALISERS)}.")
        keys = jax.random.split(key, self.num_layers)
        params = []
        for k, n_in, n_out in zip(keys, self.sizes[:-1], self.sizes[1:]):
            kw, kb = jax.random.split(k)
            std = INITIALISERS[init](n_in, n_out)
            w = std * jax.random.normal(kw, (n_in, n_out), dtype)
            b = jax.random.normal(kb, (n_out,), dtype) if init == "normal" else jnp.zeros((n_out,), dtype)
            params.append({"w": w, "b": b})
        return params

    def logits(self, params: Params, x: jax.Array, matmul: Callable = jnp.matmul) -> jax.Array:
        """Pre-activations ``z_L`` of the output layer, shape ``(batch, n_out)``.

        ``matmul(a, w)`` multiplies activations by a layer's weights; the training loop
        passes :func:`jaxgd.dense.dense` for its ``(n_out, n_in)`` weight layout.
        """
        return self.logits_from_first(params, matmul(x, params[0]["w"]), matmul)

    def logits_from_first(self, params: Params, u: jax.Array, matmul: Callable = jnp.matmul) -> jax.Array:
        """:meth:`logits` given the first layer's weighted input ``u = x @ w_1`` (before its bias).

        Reads every parameter but ``params[0]["w"]``; the training loop's deferred
        first-layer updates (:mod:`jaxgd.deferred`) compute ``u`` their own way.
        """
        act = ACTIVATIONS[self.activation].fn
        z = u + params[0]["b"]
        for layer in params[1:]:
            z = matmul(act(z), layer["w"]) + layer["b"]
        return z

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Output activations for a batch ``x: (batch, n_in)`` -> ``(batch, n_out)``."""
        return output_activation(self.output, self.logits(params, x))

    def check_params(self, params: Params) -> None:
        """Raises ``ValueError`` naming the first leaf whose shape does not fit this network."""
        if not isinstance(params, (list, tuple)) or len(params) != self.num_layers:
            got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
            raise ValueError(f"Parameters must be a list of {self.num_layers} layers for {self.sizes}, got {got}.")
        for i, (layer, n_in, n_out) in enumerate(zip(params, self.sizes[:-1], self.sizes[1:])):
            if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
                raise ValueError(f"Layer {i} of the parameters must be a dict with keys 'w' and 'b'.")
            for name, shape in (("w", (n_in, n_out)), ("b", (n_out,))):
                got = tuple(jnp.shape(layer[name]))
                if got[-len(shape):] != shape:
                    raise ValueError(
                        f"params[{i}][{name!r}] has shape {got}, but {self.sizes} needs {shape}."
                    )
