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

With ``batch_norm`` each convolution's output is normalised over the batch and positions (Ioffe &
Szegedy 2015, arXiv 1502.03167) before pooling and the activation, with a learned scale and offset
per channel (``params["norm"]``) and running statistics (the state ``{"norm": [{"mean", "var"}]}``,
updated with momentum 0.9 in training and used in evaluation, as ``torch.nn.BatchNorm2d`` does). With
``dropout`` the inputs of every dense layer are dropped with that probability in training. Either
makes the network follow the protocol's stateful form (:mod:`jaxgd.models`).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument
from jaxgd.activations import ACTIVATIONS, check_activation
from jaxgd.mlp import INITIALISERS, apply_dropout, check_initialiser, check_rate, positive_widths

#: Batch norm: the running statistics' momentum (the weight of the old value) and the variance epsilon.
NORM_MOMENTUM = 0.9
NORM_EPS = 1e-5


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
      batch_norm: batch normalisation after each convolution (see the module docstring).
      dropout: ``None`` (no dropout) or a rate in ``[0, 1)`` for the inputs of every dense layer;
        ``0.0`` adds the dropout with rate 0, for members that set their own rate
        (``fit(..., hyperparams={"dropout": ...})``).
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
    batch_norm: bool = False
    dropout: float | None = None

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
        if not isinstance(self.batch_norm, bool):
            raise InvalidArgument(f"CNN batch_norm must be True or False, got {self.batch_norm!r}.")
        check_rate("CNN dropout", self.dropout)

    @property
    def stateful(self) -> bool:
        """Whether the network follows the protocol's stateful form (batch norm or dropout)."""
        return self.batch_norm or self.dropout is not None

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
        shapes = jax.eval_shape(self.init, jax.random.key(0))
        return sum(int(math.prod(a.shape)) for a in jax.tree.leaves(shapes[0] if self.stateful else shapes))

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
        params = {"conv": conv, "dense": dense}
        if not self.stateful:
            return params
        if not self.batch_norm:
            return params, {}
        params["norm"] = [{"scale": jnp.ones((c,), dtype), "offset": jnp.zeros((c,), dtype)} for c in self.channels]
        return params, {"norm": [{"mean": jnp.zeros((c,), dtype), "var": jnp.ones((c,), dtype)}
                                 for c in self.channels]}

    def apply(self, params: dict, *args, key: jax.Array | None = None, train: bool = False, dropout=None):
        """Logits ``(batch, num_classes)`` for ``x: (batch, *input_shape)``: ``apply(params, x)``.

        With batch norm or dropout, the stateful form ``apply(params, state, x, *, key, train) ->
        (logits, state)``: in training (``train``) batch norm normalises with the batch's statistics and
        updates the running ones, and with a ``key`` dropout drops units (``dropout``, a per-member rate,
        overrides the network's); in evaluation the running statistics are used and nothing is dropped.
        """
        if not self.stateful:
            (x,) = args
            return self._forward(params, None, x, None, False, None, NORM_MOMENTUM)[0]
        state, x = args
        return self._forward(params, state, x, key, train, self.dropout if dropout is None else dropout,
                             NORM_MOMENTUM)

    def batch_statistics(self, params: dict, x: jax.Array, batch_size: int = 256) -> dict:
        """The batch-norm state recomputed from the inputs ``x (n, *input_shape)``: each layer's batch means
        and variances in training mode (no dropout), averaged over batches of ``batch_size`` (the last partial
        batch left out when there are several), as Git Re-Basin and REPAIR reset statistics after
        changing the weights (Jordan et al. 2022, arXiv 2211.08403)."""
        if not self.batch_norm:
            return {}
        n = x.shape[0]
        size = min(batch_size, n)
        batches = x[:n // size * size].reshape((n // size, size) + x.shape[1:])
        zero = {"norm": [{"mean": jnp.zeros((c,), x.dtype), "var": jnp.zeros((c,), x.dtype)} for c in self.channels]}

        def one(xb):  # momentum 0: the "updated" state is the batch's own statistics
            return self._forward(params, zero, xb, None, True, None, 0.0)[1]

        return jax.tree.map(lambda a: jnp.mean(a, axis=0), jax.lax.map(one, batches))

    def _forward(self, params, state, x, key, train, rate, momentum):
        act = ACTIVATIONS[self.activation].fn
        h = x.reshape((x.shape[0],) + self.input_shape[:self.conv_dims] + (self.in_channels,))
        norms = []
        for l, layer in enumerate(params["conv"]):
            z = _conv_same(h, layer["w"]) + layer["b"]
            if self.batch_norm:
                z = _gradient_in_memory(z)  # the same derivatives, computed faster (see there)
                h, stats = _normalized_pool(z, params["norm"][l], state["norm"][l], train, momentum, self.pool)
                norms.append(stats)
                h = act(h)
            else:
                h = act(_max_pool(z, self.pool))
        keys = [None] * len(params["dense"])
        if rate is not None and train and key is not None:
            keys = list(jax.random.split(key, len(params["dense"])))
        first, *rest = params["dense"]
        h = h.reshape(h.shape[0], -1, h.shape[-1])  # (batch, positions, channels)
        if rate is not None:
            h = apply_dropout(keys[0], h, rate)
        z = jnp.einsum("bpc,pcn->bn", h, first["w"]) + first["b"]
        for layer, k in zip(rest, keys[1:]):
            a = act(z)
            if rate is not None:
                a = apply_dropout(k, a, rate)
            z = a @ layer["w"] + layer["b"]
        return z, ({"norm": norms} if self.batch_norm else state)

    def describe(self) -> dict:
        record = {"model": "cnn", **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        if not self.batch_norm:  # a run without them is recorded as before they existed
            del record["batch_norm"]
        if self.dropout is None:
            del record["dropout"]
        return record

    def permutation_spec(self) -> list[list[tuple[tuple, int]]]:
        """Channels and hidden units that can be permuted without changing the function, as
        ``(leaf path, axis)`` groups (see :func:`jaxgd.landscape.align`)."""
        groups = []
        n_conv = len(self.channels)
        for l in range(n_conv):
            consumer = (("conv", l + 1, "w"), -2) if l + 1 < n_conv else (("dense", 0, "w"), 1)
            norm = [(("norm", l, "scale"), 0), (("norm", l, "offset"), 0)] if self.batch_norm else []
            groups.append([(("conv", l, "w"), -1), (("conv", l, "b"), 0), *norm, consumer])
        for j in range(len(self.hidden)):
            groups.append([(("dense", j, "w"), -1), (("dense", j, "b"), 0), (("dense", j + 1, "w"), 0)])
        return groups

    def state_permutation_spec(self) -> list[list[tuple[tuple, int]]]:
        """The state's leaves that follow :meth:`permutation_spec`'s groups: each batch norm's running
        statistics move with their convolution's channels (one list per group, empty for dense groups)."""
        groups = [[(("norm", l, "mean"), 0), (("norm", l, "var"), 0)] if self.batch_norm else []
                  for l in range(len(self.channels))]
        return groups + [[] for _ in self.hidden]


@jax.custom_jvp
def _gradient_in_memory(x: jax.Array) -> jax.Array:
    """The identity, whose derivative XLA writes to memory whole before it is transposed.

    A convolution's weight gradient is a product of its patches with the gradient ``dz`` of its
    outputs, and XLA's CPU backend transposes ``dz`` for it. Batch norm's backward pass makes ``dz``
    a chain of elementwise terms (its outputs' gradient, the convolution's outputs, per-channel
    factors), which XLA fused into that transposing copy and then evaluated in the transposed order,
    reading every input strided: profiled on one core (jaxlib 0.10, 50 members, batch 32), the two
    layers' copies took 44 of a step's 313 ms, against 9.7 ms for the same copies without batch
    norm. The tangent here passes through a select on a condition (the input's first element is not
    NaN) that XLA cannot decide at compile time and does not fuse into the copy, so ``dz`` is computed
    once in order (10.6 ms for the two layers) and then copied (9.8 ms); a 100-member population's step
    on 2 CPU devices went from 337 to 306 ms (246 without batch norm and dropout). Both branches are the
    tangent itself (``t`` and ``t + 0``), so every derivative is unchanged but for the sign of a zero (in
    reverse mode a cotangent's ``-0.0`` becomes ``+0.0``); the tests check gradients and Hessian-vector
    products, compiled and not, and a first element that is NaN.
    """
    return x


@_gradient_in_memory.defjvp
def _gradient_in_memory_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    if x.size == 0:
        return x, t
    first = jnp.reshape(x, -1)[0]
    return x, jnp.where(first == first, t, t + jnp.zeros((), t.dtype))


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


def _windows(x: jax.Array, p: int):
    """``x``'s non-overlapping ``p``-windows: ``(blocks, reduce axes, crop)``, or None when nothing is pooled."""
    if p == 1:
        return None
    shape, crop, reduce = [x.shape[0]], [slice(None)], []
    for s in x.shape[1:-1]:
        if s >= p:
            crop.append(slice(0, s // p * p))
            shape += [s // p, p]
            reduce.append(len(shape) - 1)
        else:
            crop.append(slice(None))
            shape.append(s)
    if not reduce:
        return None
    return x[tuple(crop)].reshape(shape + [x.shape[-1]]), tuple(reduce), tuple(crop)


def _max_pool(x: jax.Array, p: int) -> jax.Array:
    """Max over non-overlapping ``p``-windows of every spatial axis at least ``p`` long (a remainder is dropped)."""
    w = _windows(x, p)
    return x if w is None else w[0].max(axis=w[1])


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _safe_max_pool(x: jax.Array, p: int) -> jax.Array:
    """:func:`_max_pool` whose derivative always reaches the window's largest element.

    After batch norm the pooled values are ``z * a + c``, which an unoptimized XLA program may compute
    twice, once with a fused multiply-add and once without: then no element may equal the maximum
    computed apart, and JAX's rule (the derivative shared among the elements equal to the maximum)
    divides 0 by 0, while sharing among "equal" elements only would drop the window's derivative and
    change second derivatives with the program. Here the derivative goes to the first largest element
    of the window, chosen as ``argmax`` chooses, from the one array of values (exact ties, the only case where
    this differs from JAX's sharing, do not occur after a normalisation of real data). A JVP rule:
    reverse mode transposes it, and Hessian-vector products differentiate it again.
    """
    return _max_pool(x, p)


@_safe_max_pool.defjvp
def _safe_max_pool_jvp(p, primals, tangents):
    (x,), (t,) = primals, tangents
    w = _windows(x, p)
    if w is None:
        return x, t
    blocks, reduce, crop = w
    out = _safe_max_pool(x, p)  # differentiated again (a Hessian-vector product) by this rule, not JAX's
    blocks = jax.lax.stop_gradient(blocks)
    t = t[crop].reshape(blocks.shape)
    # argmax over the window, elements in row-major order, as a running comparison of its elements (the
    # first largest wins: a later element only where strictly larger), carrying the tangent of the winner:
    # elementwise selects on the pooled shape, without moving the window's axes together (transposing the
    # activations for jnp.argmax made a batch-norm + dropout CNN's step 1.7 times as long: 4.74 against 2.85 ms)
    def element(a, offsets):
        index = [slice(None)] * a.ndim
        for axis, o in zip(reduce, offsets):
            index[axis] = o
        return a[tuple(index)]

    offsets = itertools.product(range(p), repeat=len(reduce))
    first = next(offsets)
    best, tangent = element(blocks, first), element(t, first)
    for o in offsets:
        v = element(blocks, o)
        larger = v > best
        best, tangent = jnp.where(larger, v, best), jnp.where(larger, element(t, o), tangent)
    return out, tangent


def _normalized_pool(z: jax.Array, p: dict, s: dict, train: bool, momentum: float, pool: int):
    """Max pooling of the batch-normalised ``z (batch, *spatial, c)``: ``(pooled, new state)``.

    Batch norm normalises over every axis but the channels (Ioffe & Szegedy 2015, arXiv 1502.03167): in
    training with the batch's mean and (biased) variance, computed in one pass, moving the running
    statistics towards them (the variance unbiased, as PyTorch keeps it); in evaluation with the running
    ones. It comes before the pooling: with a negative scale the normalisation would not commute with the max.
    """
    axes = tuple(range(z.ndim - 1))
    if train:
        mean = jnp.mean(z, axis=axes)
        var = jnp.maximum(jnp.mean(jnp.square(z), axis=axes) - jnp.square(mean), 0.0)
        n = z.size // z.shape[-1]
        unbiased = var * (n / max(n - 1, 1))
        new = {"mean": momentum * s["mean"] + (1 - momentum) * jax.lax.stop_gradient(mean),
               "var": momentum * s["var"] + (1 - momentum) * jax.lax.stop_gradient(unbiased)}
    else:
        mean, var, new = s["mean"], s["var"], s
    a = jax.lax.rsqrt(var + NORM_EPS) * p["scale"]  # per channel, the normalisation is z * a + c
    return _safe_max_pool(z * a + (p["offset"] - mean * a), pool), new
