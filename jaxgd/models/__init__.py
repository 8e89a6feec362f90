"""Models: anything with ``init(key) -> params`` and ``apply(params, x) -> logits``.

The protocol is two methods. ``params`` is any pytree of arrays; ``x`` is a batch
``(batch, *input_shape)`` in the shape :attr:`jaxgd.data.Dataset.input_shape` gives;
``apply`` returns logits ``(batch, classes)``, as Flax and Equinox modules do. A model
is a static argument of the compiled training programs, so it must be hashable (a
frozen dataclass, or any object hashed by identity).

**State and randomness.** A model with batch statistics or dropout declares ``stateful = True``
and follows the stateful form of the protocol::

    init(key) -> (params, state)
    apply(params, state, x, *, key=None, train=False) -> (logits, state)

``state`` is any pytree that is not trained (batch norm's running statistics; ``{}`` for dropout
alone): it lives per member in the training state, is checkpointed and restored. In training jaxgd
calls ``apply`` with ``train=True`` and a key of the member's own (drawn from its key and the step);
in evaluation with ``train=False`` and no key: running statistics, no dropout, deterministic. A model
whose ``apply`` also takes ``dropout=`` (a rate, traced) lets each member of a population set its own
(``fit(..., hyperparams={"dropout": ...})``); :class:`MLP` and :class:`CNN` do.

A model may also have:

- ``output``: the output activation the lesson's quadratic cost applies to the logits
  (``"sigmoid"`` for :class:`MLP`, as in the lesson); models without it are compared
  with the one-hot desired output on their logits (``"identity"``);
- ``describe()``: what it is, as JSON, for ``config.json`` and checkpoint fingerprints;
- ``permutation_spec()``: the hidden units or channels :func:`jaxgd.landscape.align` may permute (and, for
  a stateful model, ``state_permutation_spec()``: the state's leaves that move with them);
- ``batch_statistics(params, x)``: its state recomputed from inputs (the landscape's lines do, for batch norm);
- ``initializer`` (a dataclass field): the weight initialiser ``TrainConfig.init`` replaces.

Shipped: :class:`MLP` (the lesson's network, with its hand-written backprop and fast
paths), :class:`CNN`, :func:`from_flax` and :func:`from_equinox`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

from jaxgd.errors import InvalidArgument, InvalidType
from jaxgd.activations import OUTPUT_ACTIVATIONS
from jaxgd.costs import output_of
from jaxgd.io.fingerprint import Unrecordable, describe_value
from jaxgd.mlp import MLP
from jaxgd.models.cnn import CNN
from jaxgd.models.equinox_module import EquinoxModel, from_equinox
from jaxgd.models.flax_module import FlaxModel, from_flax

__all__ = ["Model", "MLP", "CNN", "from_flax", "from_equinox", "FlaxModel", "EquinoxModel", "check_model",
           "output_of", "describe", "from_record", "param_shapes", "state_shapes", "check_params", "with_initializer",
           "activation_floats", "num_params", "is_stateful", "init_variables", "call", "takes_rate"]


@runtime_checkable
class Model(Protocol):
    def init(self, key: jax.Array) -> Any: ...

    def apply(self, params: Any, x: jax.Array) -> jax.Array: ...


def check_model(model) -> None:
    """Raises ``TypeError`` with a sentence when ``model`` does not follow the protocol."""
    for method in ("init", "apply"):
        if not callable(getattr(model, method, None)):
            raise InvalidType(f"A model needs init(key) -> params and apply(params, x) -> logits; "
                            f"{type(model).__name__} has no {method} method.")
    if isinstance(model, type):
        raise InvalidType(f"The model is the class {model.__name__}, not an instance of it.")
    try:
        hash(model)
    except TypeError:
        raise InvalidType(f"A model must be hashable (it is a static argument of the compiled programs); "
                        f"{type(model).__name__} is not. Make it a frozen dataclass, or wrap Flax and Equinox "
                        "modules with jaxgd.models.from_flax / from_equinox.") from None
    out = getattr(model, "output", "identity")
    if out not in OUTPUT_ACTIVATIONS:
        raise InvalidArgument(f"The model's output activation {out!r} is not one of {', '.join(OUTPUT_ACTIVATIONS)}.")


def is_stateful(model) -> bool:
    """Whether ``model`` follows the protocol's stateful form (batch statistics or dropout)."""
    return bool(getattr(model, "stateful", False))


def init_variables(model, key: jax.Array):
    """``(params, state)`` of a new network: a pure model's state is ``None``."""
    out = model.init(key)
    if not is_stateful(model):
        return out, None
    if not isinstance(out, tuple) or len(out) != 2:
        raise InvalidArgument(f"{type(model).__name__} declares stateful = True, so init(key) must return "
                              f"(params, state); it returned {type(out).__name__}.")
    return out


def call(model, params, state, x: jax.Array, *, key: jax.Array | None = None, train: bool = False, dropout=None):
    """``(logits, state)`` of ``model`` on the batch ``x``, whatever its form: a pure model ignores ``key`` and
    ``train`` and keeps ``state``; ``dropout``, if given, is passed on (see :func:`takes_rate`)."""
    if not is_stateful(model):
        return model.apply(params, x), state
    rates = {} if dropout is None else {"dropout": dropout}
    return model.apply(params, state, x, key=key, train=train, **rates)


def takes_rate(model) -> bool:
    """Whether ``model.apply`` takes a per-member ``dropout=`` rate (``jaxgd.MLP`` and ``jaxgd.CNN`` built with
    ``dropout`` set, ``0.0`` included)."""
    if not is_stateful(model) or getattr(model, "dropout", 0) is None:
        return False
    try:
        return "dropout" in inspect.signature(model.apply).parameters
    except (TypeError, ValueError):
        return False


def describe(model) -> Any:
    """A JSON-able record of the model (its ``describe()``, its dataclass fields, or its type and shapes)."""
    if callable(getattr(model, "describe", None)):
        return model.describe()
    try:
        record = describe_value(model) if dataclasses.is_dataclass(model) else None
    except Unrecordable:
        record = None
    shapes = [list(s.shape) for s in jax.tree.leaves(param_shapes(model))]
    name = f"{type(model).__module__}.{type(model).__qualname__}"
    out = {"model": name, "fields": record, "params": shapes}
    if is_stateful(model):
        out["state"] = [list(s.shape) for s in jax.tree.leaves(state_shapes(model))]
    return out


def param_shapes(model):
    """The shapes and dtypes of ``model.init``'s parameters, without computing them."""
    return jax.eval_shape(lambda k: init_variables(model, k)[0], jax.random.key(0))


def state_shapes(model):
    """The shapes and dtypes of a stateful model's state (``None`` for a pure model), without computing them."""
    return jax.eval_shape(lambda k: init_variables(model, k)[1], jax.random.key(0))


def check_params(model, params) -> None:
    """Raises ``ValueError`` naming the first leaf of ``params`` that does not fit ``model``."""
    if callable(getattr(model, "check_params", None)):
        return model.check_params(params)
    expected = param_shapes(model)
    if jax.tree.structure(params) != jax.tree.structure(expected):
        raise InvalidArgument(f"The parameters' structure does not match {model!r}'s: "
                         f"{jax.tree.structure(params)} vs {jax.tree.structure(expected)}.")
    for (path, leaf), ref in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(expected)):
        got = tuple(np.shape(leaf))
        if got[len(got) - len(ref.shape):] != tuple(ref.shape):
            raise InvalidArgument(f"params{jax.tree_util.keystr(path)} has shape {got}, but the model needs {ref.shape}.")


def with_initializer(model, init: str | None):
    """``model`` with its weight initialiser replaced by ``init`` (``TrainConfig.init``); ``None`` keeps it."""
    if init is None:
        return model
    if not dataclasses.is_dataclass(model) or "initializer" not in {f.name for f in dataclasses.fields(model)}:
        raise InvalidArgument(f"TrainConfig.init={init!r} chooses the initialiser of jaxgd's MLP and CNN; "
                         f"{type(model).__name__} initialises itself (leave init=None).")
    return dataclasses.replace(model, initializer=init)


def activation_floats(model, input_dim: int) -> int:
    """Floats of the largest activation one example makes in ``model``, to size evaluation chunks.

    Models may say (``activation_floats()``); an MLP's is its widest layer; others are
    assumed to make about eight times their input.
    """
    if isinstance(model, MLP):
        return max(model.sizes[1:])
    if callable(getattr(model, "activation_floats", None)):
        return int(model.activation_floats())
    return 8 * max(int(input_dim), 1)


def from_record(record):
    """The model a ``describe()`` record names: ``jaxgd.MLP`` and ``jaxgd.models.CNN`` are rebuilt; others give None."""
    if not isinstance(record, dict):
        return None
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k != "model"}
    if record.get("model") == "mlp":
        return MLP(**fields)
    if record.get("model") == "cnn":
        return CNN(**fields)
    return None


def num_params(model) -> int:
    return sum(int(math.prod(s.shape)) for s in jax.tree.leaves(param_shapes(model)))
