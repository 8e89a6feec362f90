"""Flax modules (NNX, and Linen) as jaxgd models: their ``Param`` variables are the pytree jaxgd trains.

A built Flax module holds its own parameters and cannot be re-initialised from another
key, while every member of a population needs its own initialisation: so
:func:`from_flax` takes ``make(key)``, the function that builds the module, and calls it
(under ``jax.vmap`` for a population) inside :meth:`FlaxModel.init`. Following Flax's
convention, the module is called on a batch. Needs ``pip install 'jaxgd[flax]'``.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument, InvalidType, MissingDependency
from jaxgd.io.fingerprint import describe_or_none


def _flax():
    try:
        import flax  # noqa: F401
        from flax import linen, nnx
    except ImportError:
        raise MissingDependency("from_flax needs Flax: pip install 'jaxgd[flax]'") from None
    return linen, nnx


class FlaxModel:
    """A Flax module built by ``make(key)`` as a jaxgd model (made by :func:`from_flax`).

    Hashed by identity: wrap a module once and reuse the model, so that its compiled
    programs are reused too.
    """

    def __init__(self, make: Callable[[jax.Array], Any], example_x):
        linen, nnx = _flax()
        if not callable(make):
            raise InvalidType(f"from_flax needs make(key) -> a Flax module, got {make!r}.")
        self.make = make
        self.example_shape = tuple(jnp.shape(example_x))
        if len(self.example_shape) < 1:
            raise InvalidArgument("from_flax: example_x must be a batch of inputs, shape (batch, ...).")
        key = jax.random.key(0)
        module = make(key)
        if isinstance(module, nnx.Module):
            self.kind = "nnx"
            self._graphdef, params, rest = nnx.split(module, nnx.Param, ...)
            others = sorted({type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable))})
            if others:
                raise InvalidArgument(f"from_flax: the module holds {', '.join(others)} variables besides its nnx.Param "
                                 "ones; jaxgd trains Param variables only (no BatchNorm statistics or Dropout state).")
            self._template = params
            self._rest = rest
        elif isinstance(module, linen.Module):
            self.kind = "linen"
            self._module = module
            self._example = jnp.zeros(self.example_shape, jnp.asarray(example_x).dtype)
            collections = set(jax.eval_shape(module.init, key, self._example))
            if collections != {"params"}:
                raise InvalidArgument(f"from_flax: the Linen module has collections {sorted(collections)}; jaxgd trains "
                                 "'params' only (no batch statistics).")
        else:
            raise InvalidType(f"from_flax: make(key) returned {type(module).__name__}, not a flax.nnx or flax.linen Module.")
        out = jax.eval_shape(self.apply, jax.eval_shape(self.init, key), jnp.zeros(self.example_shape, jnp.float32))
        if len(out.shape) != 2 or out.shape[0] != self.example_shape[0]:
            raise InvalidArgument(f"from_flax: the module maps a batch {self.example_shape} to {out.shape}; jaxgd needs "
                             "logits of shape (batch, classes).")
        self.num_outputs = int(out.shape[1])

    def init(self, key: jax.Array):
        """The module's parameters, as nested dicts of arrays, built by ``make(key)``."""
        _, nnx = _flax()
        if self.kind == "nnx":
            return nnx.to_pure_dict(nnx.split(self.make(key), nnx.Param, ...)[1])
        return self.make(key).init(key, self._example)["params"]

    def apply(self, params, x: jax.Array) -> jax.Array:
        """Logits of the module called on the batch ``x``."""
        _, nnx = _flax()
        if self.kind == "nnx":
            state = jax.tree.map(lambda v: v, self._template)  # a fresh State to fill
            nnx.replace_by_pure_dict(state, params)
            return nnx.merge(self._graphdef, state, self._rest)(x)
        return self._module.apply({"params": params}, x)

    def describe(self) -> dict:
        make, _ = describe_or_none(self.make)
        shapes = jax.tree.map(lambda a: list(a.shape), jax.eval_shape(self.init, jax.random.key(0)))
        return {"model": f"flax.{self.kind}", "make": make, "params": shapes}

    def __repr__(self):
        return f"from_flax({getattr(self.make, '__qualname__', self.make)!s}, example_x {self.example_shape})"


def from_flax(make: Callable[[jax.Array], Any], example_x) -> FlaxModel:
    """A Flax module as a jaxgd model.

    Args:
      make: ``make(key)`` builds the module, e.g. ``lambda key: MyNet(rngs=nnx.Rngs(key))``
        for Flax NNX (or returns a ``flax.linen.Module``, initialised with ``key``).
      example_x: a batch of inputs ``(batch, *input_shape)`` (checks that the module
        returns ``(batch, classes)`` logits; Linen modules are initialised on it).

    Returns:
      A model for :func:`jaxgd.fit`: ``init(key)`` gives the module's ``Param``
      variables as nested dicts, ``apply(params, x)`` calls the module on a batch.
    """
    return FlaxModel(make, example_x)
