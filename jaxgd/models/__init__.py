"""Models: anything with ``init(key) -> params`` and ``apply(params, x) -> logits``.

The protocol is two methods. ``params`` is any pytree of arrays; ``x`` is a batch
``(batch, *input_shape)`` in the shape :attr:`jaxgd.data.Dataset.input_shape` gives;
``apply`` returns logits ``(batch, classes)``, as Flax and Equinox modules do. A model
is a static argument of the compiled training programs, so it must be hashable (a
frozen dataclass, or any object hashed by identity). A model may also have:

- ``output``: the output activation the lesson's quadratic cost applies to the logits
  (``"sigmoid"`` for :class:`MLP`, as in the lesson); models without it are compared
  with the one-hot desired output on their logits (``"identity"``);
- ``describe()``: what it is, as JSON, for ``config.json`` and checkpoint fingerprints;
- ``permutation_spec()``: the hidden units or channels :func:`jaxgd.landscape.align` may permute;
- ``initializer`` (a dataclass field): the weight initialiser ``TrainConfig.init`` replaces.

Shipped: :class:`MLP` (the lesson's network, with its hand-written backprop and fast
paths), :class:`CNN`, :func:`from_flax` and :func:`from_equinox`.
"""
from __future__ import annotations

import dataclasses
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
           "output_of", "describe", "from_record", "param_shapes", "check_params", "with_initializer",
           "activation_floats", "num_params"]


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
    return {"model": name, "fields": record, "params": shapes}


def param_shapes(model):
    """The shapes and dtypes of ``model.init``'s parameters, without computing them."""
    return jax.eval_shape(model.init, jax.random.key(0))


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
