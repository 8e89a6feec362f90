"""The multilayer perceptron of the lesson: a static description plus pure functions.

``MLP`` holds no arrays: it is a frozen, hashable description (so it can be a
static argument of ``jax.jit``), and parameters are a plain pytree — a list with
one ``{"w": (n_in, n_out), "b": (n_out,)}`` dict per layer. It follows jaxgd's model
protocol (:mod:`jaxgd.models`): ``init(key) -> params`` and ``apply(params, x) ->
logits``. The forward pass is written for a batch ``x: (batch, ...)`` (flattened to
``(batch, n_in)``); seeds and conditions are added by ``jax.vmap`` over the parameters.

With ``dropout`` set, the network is stochastic and follows the protocol's stateful form
(``init(key) -> (params, {})``, ``apply(params, state, x, *, key, train)``): each hidden
layer's activations are dropped with that probability in training (Srivastava et al. 2014).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument, InvalidType
from jaxgd.activations import ACTIVATIONS, check_activation, output_activation

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


def check_rate(name: str, rate, allow_none: bool = True) -> None:
    """Refuses a dropout rate outside ``[0, 1)`` (``None``: no dropout layers)."""
    if rate is None and allow_none:
        return
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise InvalidArgument(f"{name} must be a Python float, a rate in [0, 1), got {rate!r} "
                              f"({type(rate).__name__}{': float(rate) converts it' if hasattr(rate, '__float__') else ''}).")
    if not 0 <= rate < 1:
        raise InvalidArgument(f"{name} must be a rate in [0, 1), got {rate!r}.")


def apply_dropout(key: jax.Array | None, h: jax.Array, rate) -> jax.Array:
    """Inverted dropout: each unit of ``h`` kept with probability ``1 - rate`` and scaled by ``1 / (1 - rate)``.

    ``rate`` may be traced (one per member of a population); at ``rate = 0`` every unit is kept and ``h``
    is returned exactly. ``key=None`` (evaluation) returns ``h``.
    """
    if key is None:
        return h
    keep = 1.0 - jnp.asarray(rate, h.dtype)
    mask = jax.random.bernoulli(key, keep, h.shape)
    return jnp.where(mask, h / keep, jnp.zeros((), h.dtype))


def check_initialiser(init: str) -> None:
    if init not in INITIALISERS:
        raise InvalidArgument(f"Unknown initialiser {init!r}; choose one of {', '.join(INITIALISERS)}.")


def positive_widths(kind: str, widths, *, allow_empty: bool = False) -> tuple[int, ...]:
    """``widths`` as a tuple of positive ints, or ``TypeError``/``ValueError`` naming ``kind`` and the value."""
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise InvalidType(f"{kind} must be a sequence of positive integers, got {widths!r}.")
    values = tuple(widths)
    if not values and not allow_empty:
        raise InvalidArgument(f"{kind} needs at least one width, got {values!r}.")
    for s in values:
        if isinstance(s, bool) or not isinstance(s, int) and not hasattr(s, "__index__"):
            raise InvalidType(f"{kind} must hold integers, got {s!r} in {values!r}.")
        if int(s) < 1:
            raise InvalidArgument(f"{kind} must hold positive integers, got {int(s)} in {values!r}.")
    return tuple(int(s) for s in values)


@dataclasses.dataclass(frozen=True)
class MLP:
    """A fully connected network ``sizes[0] -> ... -> sizes[-1]``.

    Args:
      sizes: layer widths including input and output, e.g. ``(784, 16, 16, 10)``.
      activation: hidden-layer nonlinearity: ``sigmoid``, ``tanh``, ``relu`` or one
        registered with :func:`jaxgd.register_activation`.
      output: the output activation the lesson's quadratic cost compares with the
        desired output, one of ``sigmoid`` (the lesson's), ``softmax`` or ``identity``.
        :meth:`apply` returns logits whatever it says; :meth:`predict` applies it.
        The cross-entropy cost always uses softmax on the logits.
      initializer: how :meth:`init` draws parameters, one of :data:`INITIALISERS`
        (``normal``, the lesson's, by default).
      dropout: ``None`` (no dropout, the lesson's network) or a rate in ``[0, 1)``: every hidden
        layer's activations are dropped with that probability in training, and the network follows
        the protocol's stateful form. ``0.0`` adds the dropout with rate 0, for a population whose
        members set their own rate (``fit(..., hyperparams={"dropout": ...})``). Trains with
        ``gradient="autodiff"``.

    Example:
      >>> net = MLP((784, 16, 16, 10))
      >>> net.num_params()
      13002
    """

    sizes: tuple[int, ...]
    activation: str = "sigmoid"
    output: str = "sigmoid"
    initializer: str = "normal"
    dropout: float | None = None

    @property
    def stateful(self) -> bool:
        """Whether the network follows the protocol's stateful form (it has dropout)."""
        return self.dropout is not None

    def __post_init__(self):
        if isinstance(self.sizes, (str, bytes)) or not hasattr(self.sizes, "__iter__"):
            raise InvalidType(f"MLP sizes must be a sequence of layer widths, got {self.sizes!r}.")
        if len(tuple(self.sizes)) < 2:
            raise InvalidArgument(f"MLP sizes needs at least an input and an output width, got {tuple(self.sizes)!r}.")
        object.__setattr__(self, "sizes", positive_widths("MLP sizes", self.sizes))
        check_activation(self.activation)
        check_activation(self.output, hidden=False)
        check_initialiser(self.initializer)
        check_rate("MLP dropout", self.dropout)

    @property
    def num_layers(self) -> int:
        """Number of weight layers (``len(sizes) - 1``)."""
        return len(self.sizes) - 1

    def num_params(self) -> int:
        """Total count of weights and biases."""
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def init(self, key: jax.Array, init: str | None = None, dtype: Any = jnp.float32) -> Params:
        """Draws parameters with ``init`` (default: this network's ``initializer``).

        Returns:
          ``[{"w": (n_in, n_out), "b": (n_out,)}, ...]``, one dict per layer (with ``dropout``:
          ``(params, {})``, the stateful form).
        """
        init = self.initializer if init is None else init
        check_initialiser(init)
        keys = jax.random.split(key, self.num_layers)
        params = []
        for k, n_in, n_out in zip(keys, self.sizes[:-1], self.sizes[1:]):
            kw, kb = jax.random.split(k)
            std = INITIALISERS[init](n_in, n_out)
            w = std * jax.random.normal(kw, (n_in, n_out), dtype)
            b = jax.random.normal(kb, (n_out,), dtype) if init == "normal" else jnp.zeros((n_out,), dtype)
            params.append({"w": w, "b": b})
        return (params, {}) if self.stateful else params

    def logits(self, params: Params, x: jax.Array, matmul: Callable = jnp.matmul) -> jax.Array:
        """Pre-activations ``z_L`` of the output layer for ``x: (batch, n_in)``, shape ``(batch, n_out)``.

        ``matmul(a, w)`` multiplies activations by a layer's weights; the training loop
        passes :func:`jaxgd.training.dense.dense` for its ``(n_out, n_in)`` weight layout.
        """
        return self.logits_from_first(params, matmul(x, params[0]["w"]), matmul)

    def logits_from_first(self, params: Params, u: jax.Array, matmul: Callable = jnp.matmul) -> jax.Array:
        """:meth:`logits` given the first layer's weighted input ``u = x @ w_1`` (before its bias).

        Reads every parameter but ``params[0]["w"]``; the training loop's deferred
        first-layer updates (:mod:`jaxgd.training.deferred`) compute ``u`` their own way.
        """
        act = ACTIVATIONS[self.activation].fn
        z = u + params[0]["b"]
        for layer in params[1:]:
            z = matmul(act(z), layer["w"]) + layer["b"]
        return z

    def apply(self, params: Params, *args, key: jax.Array | None = None, train: bool = False, dropout=None):
        """Logits for a batch ``x: (batch, ...)`` (each example flattened to ``n_in``) -> ``(batch, n_out)``.

        ``apply(params, x)``; with ``dropout`` set, the stateful form ``apply(params, state, x, *, key, train)
        -> (logits, state)``: in training (``train`` and a ``key``) each hidden layer's activations are
        dropped with probability ``dropout`` (the argument, a per-member rate, overrides the network's).
        """
        if not self.stateful:
            (x,) = args
            return self.logits(params, x.reshape(x.shape[0], -1))
        state, x = args
        rate = self.dropout if dropout is None else dropout
        keys = [None] * self.num_layers if key is None or not train else list(jax.random.split(key, self.num_layers))
        act = ACTIVATIONS[self.activation].fn
        z = x.reshape(x.shape[0], -1) @ params[0]["w"] + params[0]["b"]
        for layer, k in zip(params[1:], keys):
            z = apply_dropout(k, act(z), rate) @ layer["w"] + layer["b"]
        return z, state

    def predict(self, params: Params, x: jax.Array) -> jax.Array:
        """The output activations ``a_L`` (``output`` applied to the logits), the lesson's network output."""
        if self.stateful:
            return output_activation(self.output, self.apply(params, {}, x)[0])
        return output_activation(self.output, self.apply(params, x))

    def describe(self) -> dict:
        """What the network is, for ``config.json`` and checkpoint fingerprints."""
        record = {"model": "mlp", "sizes": list(self.sizes), "activation": self.activation, "output": self.output,
                  "initializer": self.initializer}
        return record if self.dropout is None else {**record, "dropout": self.dropout}

    def permutation_spec(self) -> list[list[tuple[tuple, int]]]:
        """Hidden units that can be permuted without changing the function (see :func:`jaxgd.landscape.align`).

        One group per hidden layer ``l``: the columns of ``w_l``, the entries of ``b_l``
        and the rows of ``w_{l+1}``, as ``(leaf path, axis)`` pairs.
        """
        return [[((l, "w"), 1), ((l, "b"), 0), ((l + 1, "w"), 0)] for l in range(self.num_layers - 1)]

    def check_params(self, params: Params) -> None:
        """Raises ``ValueError`` naming the first leaf whose shape does not fit this network."""
        if not isinstance(params, (list, tuple)) or len(params) != self.num_layers:
            got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
            raise InvalidArgument(f"Parameters must be a list of {self.num_layers} layers for {self.sizes}, got {got}.")
        for i, (layer, n_in, n_out) in enumerate(zip(params, self.sizes[:-1], self.sizes[1:])):
            if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
                raise InvalidArgument(f"Layer {i} of the parameters must be a dict with keys 'w' and 'b'.")
            for name, shape in (("w", (n_in, n_out)), ("b", (n_out,))):
                got = tuple(jnp.shape(layer[name]))
                if got[-len(shape):] != shape:
                    raise InvalidArgument(
                        f"params[{i}][{name!r}] has shape {got}, but {self.sizes} needs {shape}."
                    )
