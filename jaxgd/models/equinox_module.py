"""Equinox modules as jaxgd models: their floating-point arrays are the pytree jaxgd trains.

An Equinox module is a pytree that mixes arrays with static fields (activation
functions, sizes), so it is not hashable; :func:`from_equinox` partitions it
(``eqx.partition(module, eqx.is_inexact_array)``): the arrays are the parameters, the
rest stays static inside the model. Every member of a population needs its own
initialisation, so it takes ``make(key)``. Following Equinox's convention, the module
is called on one example and jaxgd vmaps it over the batch. Needs
``pip install 'jaxgd[equinox]'``.
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
        module = make(jax.random.key(0))
        if not isinstance(module, eqx.Module):
            raise InvalidType(f"from_equinox: make(key) returned {type(module).__name__}, not an equinox.Module.")
        self.make = make
        _, self._static = eqx.partition(module, eqx.is_inexact_array)

    def init(self, key: jax.Array):
        """The module built by ``make(key)`` with its static fields set to ``None``: a pytree of its arrays."""
        eqx = _eqx()
        return eqx.partition(self.make(key), eqx.is_inexact_array)[0]

    def apply(self, params, x: jax.Array) -> jax.Array:
        """Logits: the module, rebuilt from ``params``, called on each example of ``x`` (``jax.vmap``)."""
        eqx = _eqx()
        return jax.vmap(eqx.combine(params, self._static))(x)

    def describe(self) -> dict:
        make, _ = describe_or_none(self.make)
        shapes = [list(a.shape) for a in jax.tree.leaves(jax.eval_shape(self.init, jax.random.key(0)))]
        return {"model": "equinox", "make": make, "params": shapes}

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
