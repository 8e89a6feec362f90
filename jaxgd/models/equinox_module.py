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
the batch-norm layers' ``axis_name`` (``"batch"`` in Equinox's examples), as ``eqx.nn.BatchNorm``
expects. A module without state that holds ``eqx.nn.Dropout`` is called as ``module(x, key=key)``.
Each example gets its own key, split from the member's key at the step. Training uses
``eqx.nn.inference_mode(module, False)`` and evaluation ``eqx.nn.inference_mode(module)``, whatever
the module was built with (as NNX's ``module.train()`` / ``module.eval()``). Either follows the
protocol's stateful form.
"""
from __future__ import annotations

from typing import Any, Callable

import jax

from jaxgd.errors import InvalidArgument, InvalidType, MissingDependency
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
        if isinstance(make, eqx.Module) and jax.tree.leaves(eqx.filter(make, eqx.is_inexact_array)):
            # a built network (it holds weights), not a factory such as eqx.Partial or eqx.filter_jit(make)
            raise InvalidType(f"from_equinox needs make(key), the function that builds the module, not a built "
                              f"{type(make).__name__}: e.g. from_equinox(lambda key: {type(make).__name__}(..., key=key)), "
                              "so that every member gets its own initialisation.")
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
        layers = jax.tree.leaves(module, is_leaf=lambda v: isinstance(v, (eqx.nn.Dropout, eqx.nn.BatchNorm)))
        dropout = any(isinstance(layer, eqx.nn.Dropout) for layer in layers)
        names = [layer.axis_name for layer in layers if isinstance(layer, eqx.nn.BatchNorm)]
        if any(isinstance(n, (list, tuple)) for n in names):
            raise InvalidArgument(f"from_equinox: a batch-norm layer names several batch axes ({names}); jaxgd vmaps "
                                  "the examples under one name.")
        norms = set(names)
        if norms and not self.with_state:
            raise InvalidArgument("from_equinox: the module holds eqx.nn.BatchNorm, whose running statistics are "
                                  "state: make(key) must return the (module, state) pair of "
                                  "eqx.nn.make_with_state(Model)(key).")
        if len(norms) > 1:
            raise InvalidArgument(f"from_equinox: the module's batch-norm layers name different batch axes "
                                  f"({', '.join(sorted(map(repr, norms)))}); jaxgd vmaps the examples under one name.")
        #: The batch axis's name, as the batch-norm layers have it (examples are vmapped under it).
        self.axis_name = norms.pop() if norms else "batch"
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
        ``apply(params, x)``, or for a stateful module ``apply(params, state, x, *, key, train) -> (logits, state)``
        (``train=True`` without a key: batch statistics in training mode, no dropout, as :class:`jaxgd.CNN`)."""
        eqx = _eqx()
        module = eqx.combine(params, self._static)
        if not self.stateful:
            (x,) = args
            return jax.vmap(module)(x)
        state, x = args
        # a fresh State object of the same arrays: called eagerly, Equinox marks the one it is given as used, and
        # the protocol's apply is pure (the caller's state stays usable)
        state = jax.tree.map(lambda a: a, state)
        module = eqx.nn.inference_mode(module, not train)  # whatever the module was built with
        keys = jax.random.split(key, x.shape[0]) if train and key is not None else None
        if train and key is None:  # batch statistics in training mode, dropout off (nothing to draw it from)
            module = jax.tree.map(lambda v: eqx.nn.inference_mode(v) if isinstance(v, eqx.nn.Dropout) else v, module,
                                  is_leaf=lambda v: isinstance(v, eqx.nn.Dropout))
        if not self.with_state:
            return jax.vmap(lambda xi, ki: module(xi, key=ki), in_axes=(0, 0 if keys is not None else None))(x, keys), state
        call = jax.vmap(lambda xi, ki: module(xi, state, key=ki), axis_name=self.axis_name,
                        in_axes=(0, 0 if keys is not None else None), out_axes=(0, None))
        return call(x, keys)

    def describe(self) -> dict:
        make, _ = describe_or_none(self.make)
        shapes = jax.eval_shape(self.init, jax.random.key(0))
        params = shapes[0] if self.stateful else shapes
        # "modes": how jaxgd switches the module's modes (2: inference_mode both ways); a checkpoint trained the
        # older way is not resumed the newer
        record = {"model": "equinox", "make": make, "modes": 2,
                  "params": [list(a.shape) for a in jax.tree.leaves(params)]}
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
