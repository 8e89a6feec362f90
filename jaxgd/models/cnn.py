"""A small convolutional network: convolutions, activation, max pooling, then dense layers.

For each width in ``channels`` a ``kernel_size`` convolution (stride 1, ``SAME``
padding) followed by max pooling over ``pool`` x ``pool`` windows and the activation;
then the dense layers ``hidden`` and the output layer. Images ``(H, W, C)`` or
``(H, W)`` get 2-D convolutions, signals ``(L,)`` 1-D ones (``conv_dims=1`` reads
``(L, C)`` as a signal with ``C`` channels). The defaults serve the 8x8 digits
(8 -> 4 -> 2, 128 features), 28x28 MNIST (28 -> 14 -> 7, 1,568 features) and 1-D
signals alike; LeCun et al. 1998 is the ancestor of them all.

Convolutions are computed as matrix products of each position's patch (``im2col``):
on CPUs XLA's own convolutions, and their gradients, are several times slower at these
sizes; the result is the same convolution (checked against ``jax.lax.conv_general_dilated``
in the tests). Pooling comes before the activation, which gives the same values for
every monotone activation (all the built-in ones) and costs a quarter as much.

Parameters: ``{"conv": [{"w": (k, k, c_in, c_out), "b": (c_out,)}, ...],
"dense": [{"w": (positions, c_last, n_out), "b": (n_out,)}, {"w": (n_in, n_out), "b"}, ...]}``:
the first dense layer keeps the last convolution's channel axis, so that
:func:`jaxgd.landscape.align` can permute channels like hidden units.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument
from jaxgd.activations import ACTIVATIONS, check_activation
from jaxgd.mlp import INITIALISERS, check_initialiser, positive_widths


@dataclasses.dataclass(frozen=True)
class CNN:
    """A convolutional classifier following jaxgd's model protocol (``init``, ``apply``; hashable).

    Args:
      input_shape: one example's shape, as :attr:`jaxgd.data.Dataset.input_shape` gives it.
      num_classes: outputs (logits).
      channels: output channels of each convolution (the width of the network).
      kernel_size: the convolutions' window along every spatial axis.
      hidden: widths of dense layers between the convolutions and the output.
      activation: elementwise nonlinearity after each convolution and hidden dense layer.
      pool: max-pooling window and stride after each convolution (1: no pooling; an axis
        already smaller than ``pool`` is not pooled).
      output: the output activation the quadratic cost applies to the logits (see
        :mod:`jaxgd.costs`); cross-entropy uses softmax whatever it says.
      initializer: ``he`` (default), ``lecun``, ``glorot`` or ``normal``, with fan-in
        ``kernel_size**d * c_in`` for convolutions.
      conv_dims: spatial dimensions convolved (default: 1 for ``(L,)`` inputs, else 2).
    """

    input_shape: tuple[int, ...]
    num_classes: int
    channels: tuple[int, ...] = (16, 32)
    kernel_size: int = 3
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    pool: int = 2
    output: str = "identity"
    initializer: str = "he"
    conv_dims: int | None = None

    def __post_init__(self):
        shape = positive_widths("CNN input_shape", self.input_shape)
        dims = self.conv_dims if self.conv_dims is not None else (1 if len(shape) == 1 else 2)
        if dims not in (1, 2) or len(shape) not in (dims, dims + 1):
            raise InvalidArgument(f"CNN input_shape {shape} does not fit {dims}-D convolutions: use (H, W, C) or (H, W) "
                             "images, or (L,) or (L, C) signals with conv_dims=1.")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "conv_dims", dims)
        object.__setattr__(self, "num_classes", positive_widths("CNN num_classes", (self.num_classes,))[0])
        object.__setattr__(self, "channels", positive_widths("CNN channels", self.channels, allow_empty=True))
        object.__setattr__(self, "hidden", positive_widths("CNN hidden", self.hidden, allow_empty=True))
        for name in ("kernel_size", "pool"):
            positive_widths(f"CNN {name}", (getattr(self, name),))
        check_activation(self.activation)
        check_activation(self.output, hidden=False)
        check_initialiser(self.initializer)

    # --- shapes -------------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self.input_shape[self.conv_dims] if len(self.input_shape) > self.conv_dims else 1

    def feature_maps(self) -> list[tuple[int, ...]]:
        """Spatial shape of each convolution's input, then of the features the dense layers read."""
        spatial = list(self.input_shape[:self.conv_dims])
        shapes = [tuple(spatial)]
        for _ in self.channels:
            spatial = [s // self.pool if s >= self.pool else s for s in spatial]
            shapes.append(tuple(spatial))
        return shapes

    def _dense_sizes(self) -> list[int]:
        return [*self.hidden, self.num_classes]

    def num_params(self) -> int:
        return sum(int(math.prod(a.shape)) for a in jax.tree.leaves(jax.eval_shape(self.init, jax.random.key(0))))

    def activation_floats(self) -> int:
        """Floats of the largest activation (a convolution's patches) one example makes: sizes evaluation chunks."""
        k = self.kernel_size ** self.conv_dims
        sizes = [math.prod(s) * k * c for s, c in zip(self.feature_maps(), (self.in_channels, *self.channels))]
        return max(sizes + self._dense_sizes())

    # --- the protocol ---------------------------------------------------------------------------
    def init(self, key: jax.Array, init: str | None = None, dtype: Any = jnp.float32) -> dict:
        """Draws parameters with ``init`` (default: this network's ``initializer``)."""
        init = self.initializer if init is None else init
        check_initialiser(init)
        maps = self.feature_maps()
        positions = math.prod(maps[-1])
        widths = (self.in_channels, *self.channels)
        dense_in = (positions * widths[-1], *self.hidden)
        keys = iter(jax.random.split(key, len(self.channels) + len(self._dense_sizes())))

        def layer(shape, fan_in, fan_out):
            kw, kb = jax.random.split(next(keys))
            w = INITIALISERS[init](fan_in, fan_out) * jax.random.normal(kw, shape, dtype)
            n = shape[-1]
            b = jax.random.normal(kb, (n,), dtype) if init == "normal" else jnp.zeros((n,), dtype)
            return {"w": w, "b": b}

        k = self.kernel_size ** self.conv_dims
        conv = [layer((self.kernel_size,) * self.conv_dims + (c_in, c_out), k * c_in, k * c_out)
                for c_in, c_out in zip(widths[:-1], widths[1:])]
        dense = []
        for i, (n_in, n_out) in enumerate(zip(dense_in, self._dense_sizes())):
            shape = (positions, widths[-1], n_out) if i == 0 else (n_in, n_out)
            dense.append(layer(shape, n_in, n_out))
        return {"conv": conv, "dense": dense}

    def apply(self, params: dict, x: jax.Array) -> jax.Array:
        """Logits ``(batch, num_classes)`` for ``x: (batch, *input_shape)``."""
        act = ACTIVATIONS[self.activation].fn
        h = x.reshape((x.shape[0],) + self.input_shape[:self.conv_dims] + (self.in_channels,))
        for layer in params["conv"]:
            h = act(_max_pool(_conv_same(h, layer["w"]) + layer["b"], self.pool))
        first, *rest = params["dense"]
        h = h.reshape(h.shape[0], -1, h.shape[-1])  # (batch, positions, channels)
        z = jnp.einsum("bpc,pcn->bn", h, first["w"]) + first["b"]
        for layer in rest:
            z = act(z) @ layer["w"] + layer["b"]
        return z

    def describe(self) -> dict:
        return {"model": "cnn", **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    def permutation_spec(self) -> list[list[tuple[tuple, int]]]:
        """Channels and hidden units that can be permuted without changing the function, as
        ``(leaf path, axis)`` groups (see :func:`jaxgd.landscape.align`)."""
        groups = []
        n_conv = len(self.channels)
        for l in range(n_conv):
            consumer = (("conv", l + 1, "w"), -2) if l + 1 < n_conv else (("dense", 0, "w"), 1)
            groups.append([(("conv", l, "w"), -1), (("conv", l, "b"), 0), consumer])
        for j in range(len(self.hidden)):
            groups.append([(("dense", j, "w"), -1), (("dense", j, "b"), 0), (("dense", j + 1, "w"), 0)])
        return groups


def _conv_same(x: jax.Array, w: jax.Array) -> jax.Array:
    """``SAME`` convolution, stride 1, of ``x (batch, *spatial, c_in)`` with ``w (*window, c_in, c_out)``
    as one matrix product of the patches (``im2col``)."""
    window = w.shape[:-2]
    spatial = x.shape[1:-1]
    pads = [(0, 0)] + [((k - 1) // 2, k // 2) for k in window] + [(0, 0)]  # as XLA and TensorFlow pad SAME
    xp = jnp.pad(x, pads)
    patches = [xp[(slice(None),) + tuple(slice(o, o + s) for o, s in zip(offset, spatial))]
               for offset in itertools.product(*(range(k) for k in window))]
    patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    return patches @ w.reshape(-1, w.shape[-1])


def _max_pool(x: jax.Array, p: int) -> jax.Array:
    """Max over non-overlapping ``p``-windows of every spatial axis at least ``p`` long (a remainder is dropped)."""
    if p == 1:
        return x
    shape = [x.shape[0]]
    crop = [slice(None)]
    reduce = []
    for s in x.shape[1:-1]:
        if s >= p:
            crop.append(slice(0, s // p * p))
            shape += [s // p, p]
            reduce.append(len(shape) - 1)
        else:
            crop.append(slice(None))
            shape.append(s)
    if not reduce:
        return x
    return x[tuple(crop)].reshape(shape + [x.shape[-1]]).max(axis=tuple(reduce))
