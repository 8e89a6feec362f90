"""Flax modules (NNX, and Linen) as jaxgd models: their ``Param`` variables are the pytree jaxgd trains.

A built Flax module holds its own parameters and cannot be re-initialised from another
key, while every member of a population needs its own initialisation: so
:func:`from_flax` takes ``make(key)``, the function that builds the module, and calls it
(under ``jax.vmap`` for a population) inside :meth:`FlaxModel.init`. Following Flax's
convention, the module is called on a batch. Needs ``pip install 'jaxgd[flax]'``.

**Batch norm and dropout.** A module with batch statistics (``nnx.BatchNorm``'s ``BatchStat``
variables, Linen's ``batch_stats`` collection) or dropout (``nnx.Dropout``'s RNG streams; a Linen
module whose ``__call__`` takes ``train``) follows the protocol's stateful form: its batch
statistics are the model's state, trained per member and checkpointed. jaxgd replaces the module's
own RNG streams with the member's key at every step (``nnx.reseed``; Linen's ``rngs={"dropout": key}``),
and switches training and evaluation modes (``module.train()`` / ``module.eval()``; Linen's
``train=True/False`` with ``batch_stats`` mutable in training).
"""
from __future__ import annotations

import inspect
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
            self._graphdef, params, stats, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
            rng_types = (nnx.RngKey, nnx.RngCount)
            others = sorted({type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable))
                             if not isinstance(v, rng_types)})
            if others:
                raise InvalidArgument(f"from_flax: the module holds {', '.join(others)} variables besides its Param, "
                                      "BatchStat and RNG ones; jaxgd trains Param variables and keeps BatchStat "
                                      "variables as the model's state.")
            self._template, self._stats_template, self._rest = params, stats, rest
            self._streams = tuple(sorted({stream.key.tag for _, stream in nnx.iter_graph(module)
                                          if isinstance(stream, nnx.RngStream)}))
            self.stateful = bool(jax.tree.leaves(stats)) or bool(self._streams)
        elif isinstance(module, linen.Module):
            self.kind = "linen"
            self._module = module
            self._example = jnp.zeros(self.example_shape, jnp.asarray(example_x).dtype)
            self._takes_train = "train" in inspect.signature(module.__call__).parameters
            kwargs = {"train": False} if self._takes_train else {}
            collections = set(jax.eval_shape(lambda k: module.init(k, self._example, **kwargs), key))
            if not collections <= {"params", "batch_stats"}:
                raise InvalidArgument(f"from_flax: the Linen module has collections {sorted(collections)}; jaxgd trains "
                                      "'params' and keeps 'batch_stats' as the model's state.")
            if "batch_stats" in collections and not self._takes_train:
                raise InvalidArgument("from_flax: the Linen module has batch statistics but its __call__ takes no "
                                      "'train' argument; jaxgd switches training and evaluation with train=True/False.")
            self._batch_stats = "batch_stats" in collections
            self.stateful = self._takes_train
        else:
            raise InvalidType(f"from_flax: make(key) returned {type(module).__name__}, not a flax.nnx or flax.linen Module.")
        x = jax.ShapeDtypeStruct(self.example_shape, jnp.float32)
        if self.stateful:
            params, state = jax.eval_shape(self.init, key)
            out = jax.eval_shape(lambda p, s, x: self.apply(p, s, x)[0], params, state, x)
        else:
            out = jax.eval_shape(self.apply, jax.eval_shape(self.init, key), x)
        if len(out.shape) != 2 or out.shape[0] != self.example_shape[0]:
            raise InvalidArgument(f"from_flax: the module maps a batch {self.example_shape} to {out.shape}; jaxgd needs "
                                  "logits of shape (batch, classes).")
        self.num_outputs = int(out.shape[1])

    def init(self, key: jax.Array):
        """The module's parameters, as nested dicts of arrays, built by ``make(key)`` (and, for a stateful
        module, its batch statistics: ``(params, state)``)."""
        _, nnx = _flax()
        if self.kind == "nnx":
            _, params, stats, _ = nnx.split(self.make(key), nnx.Param, nnx.BatchStat, ...)
            params = nnx.to_pure_dict(params)
            return (params, nnx.to_pure_dict(stats)) if self.stateful else params
        kwargs = {"train": False} if self._takes_train else {}
        variables = self.make(key).init(key, self._example, **kwargs)
        if not self.stateful:
            return variables["params"]
        return variables["params"], dict(variables.get("batch_stats", {}))

    def apply(self, params, *args, key: jax.Array | None = None, train: bool = False):
        """Logits of the module called on the batch ``x``: ``apply(params, x)``, or for a stateful module
        ``apply(params, state, x, *, key, train) -> (logits, state)``."""
        _, nnx = _flax()
        if not self.stateful:
            (x,) = args
            if self.kind == "nnx":
                return nnx.merge(self._graphdef, self._fill(self._template, params), self._stats_template,
                                 self._rest)(x)
            return self._module.apply({"params": params}, x)
        state, x = args
        if self.kind == "linen":
            variables = {"params": params, **({"batch_stats": state} if self._batch_stats else {})}
            rngs = {"dropout": key} if train and key is not None else {}
            if not train:
                return self._module.apply(variables, x, train=False), state
            logits, updated = self._module.apply(variables, x, train=True, rngs=rngs,
                                                 mutable=["batch_stats"] if self._batch_stats else [])
            return logits, dict(updated.get("batch_stats", state)) if self._batch_stats else state
        module = nnx.merge(self._graphdef, self._fill(self._template, params),
                           self._fill(self._stats_template, state),
                           jax.tree.map(lambda v: v, self._rest))  # fresh RNG variables, at this trace level
        if train:
            module.train()
            if key is not None and self._streams:  # the member's own draws, not the module's streams
                nnx.reseed(module, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(self._streams)})
        else:
            module.eval()
        logits = module(x)
        return logits, nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))

    @staticmethod
    def _fill(template, values):
        _, nnx = _flax()
        state = jax.tree.map(lambda v: v, template)  # a fresh State to fill
        nnx.replace_by_pure_dict(state, values)
        return state

    def describe(self) -> dict:
        make, _ = describe_or_none(self.make)
        shapes = jax.eval_shape(self.init, jax.random.key(0))
        record = {"model": f"flax.{self.kind}", "make": make}
        if not self.stateful:
            return {**record, "params": jax.tree.map(lambda a: list(a.shape), shapes)}
        return {**record, "params": jax.tree.map(lambda a: list(a.shape), shapes[0]),
                "state": jax.tree.map(lambda a: list(a.shape), shapes[1])}

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
      variables as nested dicts, ``apply(params, x)`` calls the module on a batch. A module with
      batch norm or dropout follows the stateful form (see the module docstring).
    """
    return FlaxModel(make, example_x)
