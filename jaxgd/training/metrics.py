"""What is measured at each evaluation: cost and accuracy on every split, the parameter norm, and your metrics.

A metric is a function, of one of four kinds:

- per example, ``fn(logits, y) -> (batch,)``: averaged over each split like the cost,
  recorded as ``{split}_{name}`` (``train_margin``, ``test_margin``);
- of the parameters, ``fn(params) -> scalar``: recorded as ``name``;
- of the gradient of the cost over the whole training split, ``fn(grads) -> scalar``
  (:data:`grad_norm` is one): recorded as ``name``. It costs a backward pass over the
  training set per evaluation;
- of the landscape around the network, ``fn(model, cost, params, x, y) -> scalar`` with the
  signature of :mod:`jaxgd.landscape`'s functions (:func:`jaxgd.landscape.sharpness` is one):
  ``x, y`` are the metric's first ``examples`` training examples (``x`` in the model's input shape),
  ``params`` the network in the model's own layout (a stateful model's ``(params, state)`` pair,
  measured in evaluation mode). Recorded as ``name``. :func:`of_landscape` makes one;
  ``"sharpness"`` (:data:`NAMED`, registered by :mod:`jaxgd.landscape.metrics`) is the top Hessian
  eigenvalue of the training cost.

A plain function is read by its arity (two arguments: per example; one: of the
parameters); :func:`per_example`, :func:`of_params` and :func:`of_gradient` say it
explicitly. Metrics are computed inside the compiled evaluation, for every member of a
population, and appear in ``history``, ``metrics.json``, the callback and the progress bar.
"""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple

import optax

from jaxgd.errors import InvalidArgument, InvalidType


KINDS = ("example", "params", "gradient", "landscape")
SPLITS = ("train", "test", "val")


class Metric(NamedTuple):
    kind: str  # one of KINDS
    fn: Callable
    examples: int | None = None  # landscape metrics: the first this many training examples (None: all)


def per_example(fn: Callable) -> Metric:
    """A metric ``fn(logits (batch, classes), y (batch,)) -> (batch,)``, averaged over each split."""
    return Metric("example", fn)


def of_params(fn: Callable) -> Metric:
    """A metric ``fn(params) -> scalar`` of the parameters (in the model's own layout)."""
    return Metric("params", fn)


def of_gradient(fn: Callable) -> Metric:
    """A metric ``fn(grads) -> scalar`` of the gradient of the cost over the whole training split."""
    return Metric("gradient", fn)


def of_landscape(fn: Callable, examples: int | None = 1000) -> Metric:
    """A metric ``fn(model, cost, params, x, y) -> scalar`` of the cost landscape around the network, measured on
    the first ``examples`` training examples (``None``: all of them); see the module docstring."""
    if examples is not None and (isinstance(examples, bool) or not isinstance(examples, int) or examples < 1):
        raise InvalidArgument(f"A landscape metric's examples must be a positive integer (or None), got {examples!r}.")
    return Metric("landscape", fn, examples)


#: The norm of the gradient of the cost over the whole training split (``optax.tree.norm``).
grad_norm = of_gradient(optax.tree.norm)

#: Metrics by name (``--metrics``); the layers above add theirs with :func:`register` (``"sharpness"``).
NAMED = {"grad_norm": grad_norm}

#: Names the built-in measurements use: a metric may not take them.
RESERVED = ("epoch", "step", "param_norm", "cost", "accuracy")


def register(name: str, metric: Metric) -> None:
    """Makes ``metric`` available by ``name`` (``fit(..., metrics=[name])``, ``--metrics name``)."""
    if not isinstance(metric, Metric) or metric.kind not in KINDS:
        raise InvalidType(f"register takes a jaxgd.training.metrics.Metric, got {metric!r:.80}.")
    NAMED[name] = as_metric(name, metric)


def as_metric(name: str, value) -> Metric:
    """A :class:`Metric` from a metric, a name of :data:`NAMED` or a plain function (read by its arity)."""
    if not isinstance(name, str) or not name.isidentifier() or name in RESERVED or \
            any(name == f"{s}_{m}" for s in SPLITS for m in ("cost", "accuracy")):
        raise InvalidArgument(f"A metric's name must be a new identifier (not {', '.join(RESERVED)}), got {name!r}.")
    if isinstance(value, Metric):
        if value.kind not in KINDS or not callable(value.fn):
            raise InvalidArgument(f"Metric {name!r} has kind {value.kind!r}; choose one of {', '.join(KINDS)}.")
        return value
    if isinstance(value, str):
        if value not in NAMED:
            raise InvalidArgument(f"Unknown metric {value!r}; choose one of {', '.join(NAMED)}, or pass a function.")
        return NAMED[value]
    if not callable(value):
        raise InvalidType(f"Metric {name!r} must be a function, got {value!r:.80}.")
    try:
        params = [p for p in inspect.signature(value).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        params = []
    if len(params) == 2:
        return per_example(value)
    if len(params) == 1:
        return of_params(value)
    raise InvalidType(f"Metric {name!r}: a function of (logits, y) or of (params) was expected; wrap it with "
                    "jaxgd.training.metrics.per_example, of_params or of_gradient to say which.")


def resolve(metrics) -> tuple[tuple[str, Metric], ...]:
    """``fit``'s ``metrics=`` (a dict name -> metric, or a list of names) as sorted ``(name, Metric)`` pairs."""
    if metrics is None:
        return ()
    if isinstance(metrics, (list, tuple)):
        metrics = {m: m for m in metrics}
    if not isinstance(metrics, dict):
        raise InvalidType(f"metrics must be a dict of name -> function (or a list of names), got {metrics!r:.80}.")
    return tuple((name, as_metric(name, value)) for name, value in sorted(metrics.items()))
