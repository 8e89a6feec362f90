"""Equinox modules as jaxgd models: their floating-point arrays are the pytree jaxgd trains.

An Equinox module is a pytree that mixes arrays with static fields (activation
functions, sizes), so it is not hashable; :func:`from_equinox` partitions it
(``eqx.partition(module, eqx.is_inexact_array)``): the arrays are the parameters, the
rest stays static inside the model. Every member of a population needs its own
initialisation, so it takes ``make(key)``. Following Equinox's convention, the module
is called on one example and jaxgd vmaps it over the batch. Needs
``pip install 'jaxgd[equinox]'``.

**Batch norm and dropout.** ``make(key)`` may return the ``(module, state)`` pair of
``eqx.nn.make_with_state`` (``eqx.nn.BatchNorm``'s running statistics are the state): the module
is then called as ``module(x, state, key=key) -> (logits, state)`` on one example, vmapped with
``axis_name="batch"`` as ``eqx.nn.BatchNorm`` expects. A module without state that holds
``eqx.nn.Dropout`` is called as ``module(x, key=key)``. Each example gets its own key, split from
the member's key at the step; evaluation uses ``eqx.nn.inference_mode``. Either follows the
protocol's stateful form.
"""
from __future__ import annotations

from typing import Any, Callable

import jax

from jaxgd.errors import InvalidType, MissingDependency
from jaxgd.io.fingerprint import describe_or_none


def _eqx():
    try:
        import equinox as eqx
    except ImportError:
        raise MissingDependency("from_equinox needs Equinox: pip install 'jaxgd[equinox]'") from None
    return eqx


class EquinoxModel:
    """An Equinox module built by ``make(key)`` as a jaxgd model (made by :func:`from_equinox`).

    Hashed by identity: wrap a module once and reuse the model, so that its compiled
    programs are reused too.
    """

    def __init__(self, make: Callable[[jax.Array], Any]):
        eqx = _eqx()
        if not callable(make):
            raise InvalidType(f"from_equinox needs make(key) -> an equinox.Module, got {make!r}.")
        built = make(jax.random.key(0))
        self.with_state = isinstance(built, tuple) and len(built) == 2 and isinstance(built[1], eqx.nn.State)
        module = built[0] if self.with_state else built
        if not isinstance(module, eqx.Module):
            raise InvalidType(f"from_equinox: make(key) returned {type(built).__name__}, not an equinox.Module "
                              "(or the (module, state) pair of eqx.nn.make_with_state).")
        self.make = make
        _, self._static = eqx.partition(module, eqx.is_inexact_array)
        dropout = any(isinstance(leaf, eqx.nn.Dropout) for leaf in
                      jax.tree.leaves(module, is_leaf=lambda v: isinstance(v, eqx.nn.Dropout)))
        self.stateful = self.with_state or dropout

    def init(self, key: jax.Array):
        """The module built by ``make(key)`` with its static fields set to ``None``: a pytree of its arrays
        (with ``make_with_state``: ``(params, state)``; with dropout alone: ``(params, None)``)."""
        eqx = _eqx()
        built = self.make(key)
        module = built[0] if self.with_state else built
        params = eqx.partition(module, eqx.is_inexact_array)[0]
        if not self.stateful:
            return params
        return params, (built[1] if self.with_state else None)

    def apply(self, params, *args, key: jax.Array | None = None, train: bool = False):
        """Logits: the module, rebuilt from ``params``, called on each example of ``x`` (``jax.vmap``):
        ``apply(params, x)``, or for a stateful module ``apply(params, state, x, *, key, train) -> (logits, state)``."""
        eqx = _eqx()
        module = eqx.combine(params, self._static)
        if not self.stateful:
            (x,) = args
            return jax.vmap(module)(x)
        state, x = args
        if not train or key is None:
            module = eqx.nn.inference_mode(module)
            keys = None
        else:
            keys = jax.random.split(key, x.shape[0])
        if not self.with_state:
            return jax.vmap(lambda xi, ki: module(xi, key=ki), in_axes=(0, 0 if keys is not None else None))(x, keys), state
        call = jax.vmap(lambda xi, ki: module(xi, state, key=ki), axis_name="batch",
                        in_axes=(0, 0 if keys is not None else None), out_axes=(0, None))
        return call(x, keys)

    def describe(self) -> dict:
        make, _ = describe_or_none(self.make)
        shapes = jax.eval_shape(self.init, jax.random.key(0))
        params = shapes[0] if self.stateful else shapes
        record = {"model": "equinox", "make": make, "params": [list(a.shape) for a in jax.tree.leaves(params)]}
        if self.stateful:
            record["state"] = [list(a.shape) for a in jax.tree.leaves(shapes[1])]
        return record

    def __repr__(self):
        return f"from_equinox({getattr(self.make, '__qualname__', self.make)!s})"


def from_equinox(make: Callable[[jax.Array], Any]) -> EquinoxModel:
    """An Equinox module as a jaxgd model.

    Args:
      make: ``make(key)`` builds the module, e.g. ``lambda key: eqx.nn.MLP(64, 10, 32, 2, key=key)``;
        it is called on one example ``(*input_shape)`` and returns its logits ``(classes,)``.

    Returns:
      A model for :func:`jaxgd.fit`.
    """
    return EquinoxModel(make)
