"""Everything :func:`jaxgd.fit` checks before anything is traced, and what a run is made of once it has.

:func:`plan` validates ``fit``'s arguments — the model against the protocol and the data, the
config, the keys, per-member hyperparameters and conditions, the metrics — and returns a
:class:`Plan`: the model (with ``TrainConfig.init`` applied), the keys, each member's values and
how to make the run's :class:`jaxgd.training.spec.Spec`.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.backprop import check_backprop
from jaxgd.data.dataset import Dataset
from jaxgd.errors import InvalidArgument, InvalidType
from jaxgd.mlp import MLP
from jaxgd.data import augment
from jaxgd.models import call, check_model, init_variables, takes_rate, with_initializer
from jaxgd.training import metrics as metrics_module
from jaxgd.training import optim
from jaxgd.training.config import TrainConfig
from jaxgd.training.spec import Spec
from jaxgd.training.state import as_key


class Plan(NamedTuple):
    """A run's validated arguments.

    Attributes:
      model: the model, with ``TrainConfig.init`` applied.
      key: a typed key, or ``(S,)`` keys for a population.
      member: ``{"hyperparams": {name: ([S],) float32}, "condition": ([S],) int32}``, and
        ``"regularizers": {"dropout", "augment": ([S],) float32}`` where a population sets them per member.
      metrics: ``((name, jaxgd.training.metrics.Metric), ...)``.
      make_spec: ``make_spec(members=, devices=) -> Spec``.
    """

    model: object
    key: jax.Array
    member: dict
    metrics: tuple
    make_spec: Callable[..., Spec]

    @property
    def members(self) -> int | None:
        """``S`` for a population, ``None`` for one network."""
        return int(self.key.shape[0]) if self.key.ndim == 1 else None


def check_data(model, data: Dataset) -> None:
    """Refuses, with a sentence, a model that cannot read ``data``'s inputs or has too few outputs for its classes."""
    if not isinstance(data, Dataset):
        raise InvalidType(f"data must be a jaxgd.data.Dataset, got {type(data).__name__}.")
    if isinstance(model, MLP):
        if data.input_dim != model.sizes[0]:
            raise InvalidArgument(f"The network takes {model.sizes[0]} inputs but {data.name} has {data.input_dim} features.")
        if data.num_classes > model.sizes[-1]:
            raise InvalidArgument(f"The network has {model.sizes[-1]} outputs but {data.name} has {data.num_classes} classes.")
        return
    shape = getattr(model, "input_shape", None)
    if shape is not None and int(np.prod(shape)) != data.input_dim:
        raise InvalidArgument(f"The model takes inputs of shape {tuple(shape)} but {data.name}'s are {data.input_shape}.")
    try:
        x = jax.ShapeDtypeStruct((2, *data.input_shape), jnp.float32)
        params, state = jax.eval_shape(lambda k: init_variables(model, k), jax.random.key(0))
        out, _ = jax.eval_shape(lambda p, s, x: call(model, p, s, x), params, state, x)
    except Exception as e:  # anything the model raises on these shapes
        raise InvalidArgument(f"The model cannot be applied to a batch of {data.name}'s inputs, shape (batch, "
                         f"{', '.join(map(str, data.input_shape))}): {type(e).__name__}: {e}") from None
    if getattr(out, "shape", None) is None or len(out.shape) != 2 or out.shape[0] != 2:
        raise InvalidArgument(f"The model's apply must return logits (batch, classes); for a batch of 2 it "
                         f"returned {getattr(out, 'shape', type(out).__name__)}.")
    if out.shape[1] < data.num_classes:
        raise InvalidArgument(f"The model has {out.shape[1]} outputs but {data.name} has {data.num_classes} classes.")


def member_hyperparams(config: TrainConfig, base: dict[str, float], hyperparams, learning_rates,
                       members: int | None) -> dict[str, np.ndarray]:
    """Each member's base hyperparameters, ``{name: ([S],) float32}``: the config's values, per-member ones
    from ``hyperparams`` (or ``learning_rates``, its shorthand) where given."""
    if learning_rates is not None:
        if hyperparams is not None and "learning_rate" in hyperparams:
            raise InvalidArgument("Give per-member learning rates once: learning_rates= or hyperparams['learning_rate'].")
        hyperparams = {**(hyperparams or {}), "learning_rate": learning_rates}
    hyperparams = dict(hyperparams or {})
    shape = (members,) if members is not None else ()
    out = {name: np.full(shape, value, np.float32) for name, value in base.items()}
    for name, values in hyperparams.items():
        label = "learning_rates" if name == "learning_rate" and learning_rates is not None else f"hyperparams[{name!r}]"
        try:
            arr = np.asarray(values, np.float64)
        except (TypeError, ValueError):
            raise InvalidType(f"{label} must be numbers, one per member, got {values!r:.80}.") from None
        if arr.shape != shape:
            raise InvalidArgument(f"{label} must have shape {shape} (one per member), got {arr.shape}.")
        if not np.all(np.isfinite(arr)):
            raise InvalidArgument(f"{label} must be finite, got {arr[~np.isfinite(arr)].flat[0]} among them.")
        if name == "learning_rate":
            optim.check_learning_rate(label, arr)
        elif name == "weight_decay" and np.any(arr < 0):
            raise InvalidArgument(f"{label} must be non-negative, got {float(arr.min())!r} among them.")
        elif name == "momentum" and not np.all((arr >= 0) & (arr < 1)):  # as TrainConfig.momentum
            raise InvalidArgument(f"{label} must lie in [0, 1), got {float(arr[(arr < 0) | (arr >= 1)].flat[0])!r} "
                                  "among them.")
        out[name] = arr.astype(np.float32)
    return out


def plan(key, model, data, config, hyperparams=None, learning_rates=None, conditions=None, metrics=None,
         max_members=None, record_examples=False) -> Plan:
    """Checks :func:`jaxgd.fit`'s arguments (of the same names) before anything is traced; returns the :class:`Plan`."""
    check_model(model)
    if not isinstance(config, TrainConfig):
        raise InvalidType(f"config must be a jaxgd.TrainConfig, got {type(config).__name__}.")
    if not isinstance(data, Dataset):
        raise InvalidType(f"data must be a jaxgd.data.Dataset, got {type(data).__name__}.")
    config.validate(data.n_train)
    model = with_initializer(model, config.init)
    check_data(model, data)
    if config.gradient == "backprop":
        check_backprop(model, config.cost)
    key = as_key(key)
    if key.ndim > 1:
        raise InvalidArgument(f"key must be one key or a vector of keys, got shape {key.shape}.")
    population = key.ndim == 1
    members = int(key.shape[0]) if population else None
    if population and members < 1:
        raise InvalidArgument("A population needs at least one key.")
    if not population and any(v is not None for v in (hyperparams, learning_rates, conditions, max_members)):
        raise InvalidArgument("hyperparams, learning_rates, conditions and max_members need a batch of keys (a population).")
    if hyperparams is not None and not isinstance(hyperparams, dict):
        raise InvalidType(f"hyperparams must be a dict of name -> per-member values, got {hyperparams!r:.80}.")
    if conditions is not None:
        conditions.check(data, members)
    if max_members is not None:
        if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 1:
            raise InvalidArgument(f"max_members must be a positive integer, got {max_members!r}.")
    regularizers = {k: v for k, v in (hyperparams or {}).items() if k in REGULARIZERS}
    hyperparams = {k: v for k, v in (hyperparams or {}).items() if k not in REGULARIZERS} or None
    check_regularizers(model, config, regularizers, members, data)
    per_member = tuple(sorted(set(hyperparams or {}) | ({"learning_rate"} if learning_rates is not None else set())))
    optimizer, base = optim.build(config, per_member)
    hp = member_hyperparams(config, base, hyperparams, learning_rates, members)
    cond = np.zeros((members,) if population else (), np.int32) if conditions is None else \
        np.asarray(conditions.index, np.int32)
    member = {"hyperparams": hp, "condition": cond}
    if regularizers:
        member["regularizers"] = {k: np.asarray(v, np.float32) for k, v in sorted(regularizers.items())}
    metric_list = metrics_module.resolve(metrics)
    make_spec = functools.partial(Spec.make, model, config, optimizer, data.n_train, data.input_shape,
                                  population=population, per_member=per_member, metrics=metric_list,
                                  condition_arrays=tuple(sorted(conditions.arrays)) if conditions is not None else (),
                                  record_examples=bool(record_examples), regularizers=tuple(sorted(regularizers)))
    return Plan(model, key, member, metric_list, make_spec)


#: Per-member hyperparameters that are not the optimizer's: a model's dropout rate, the augmentation probability.
REGULARIZERS = ("dropout", "augment")


def check_regularizers(model, config: TrainConfig, values: dict, members: int | None, data: Dataset) -> None:
    """Refuses per-member ``dropout`` for a model that does not take a rate, ``augment`` without
    ``TrainConfig.augment``, and values outside their ranges (``[0, 1)`` and ``[0, 1]``)."""
    if config.augment:
        augment.check(augment.parse(config.augment), data.input_shape, data.name)
    for name, value in values.items():
        arr = np.asarray(value, np.float64) if np.ndim(value) or np.isscalar(value) else None
        if arr is None or arr.shape != (members,):
            raise InvalidArgument(f"hyperparams[{name!r}] must have shape {(members,)} (one per member), "
                                  f"got {np.shape(value)}.")
        if name == "dropout":
            if not takes_rate(model):
                raise InvalidArgument("hyperparams['dropout'] sets each member's dropout rate, which needs a model "
                                      "with dropout layers that takes a rate: build jaxgd.MLP or jaxgd.CNN with "
                                      "dropout=0.0 (or the rate the others use).")
            if not np.all((arr >= 0) & (arr < 1)):
                raise InvalidArgument(f"hyperparams['dropout'] must hold rates in [0, 1), got "
                                      f"{float(arr[~((arr >= 0) & (arr < 1))].flat[0])!r} among them.")
        if name == "augment":
            if not config.augment:
                raise InvalidArgument("hyperparams['augment'] is the probability that an example is augmented; "
                                      "name the augmentation with TrainConfig(augment='crop:2,flip', ...).")
            if not np.all((arr >= 0) & (arr <= 1)):
                raise InvalidArgument(f"hyperparams['augment'] must hold probabilities in [0, 1], got "
                                      f"{float(arr[~((arr >= 0) & (arr <= 1))].flat[0])!r} among them.")
