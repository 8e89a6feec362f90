"""The landscape measured inside training: the top Hessian eigenvalue as a metric of every evaluation.

``fit(..., metrics=["sharpness"])`` (``--metrics sharpness``) measures, at every evaluation and for every
member, inside the compiled program, the largest eigenvalue of the Hessian of the training cost on the
first 1,000 training examples (20 power iterations); :func:`sharpness_metric` chooses other numbers.
Cohen et al. (arXiv 2103.00065) follow it along full-batch gradient descent: it rises until it reaches
2 / learning rate, then hovers there ("the edge of stability").
"""
from __future__ import annotations

import functools

import jax

from jaxgd.errors import InvalidArgument
from jaxgd.landscape.curvature import sharpness
from jaxgd.training.metrics import Metric, of_landscape, register

#: The seed of the start vector of every sharpness measurement: evaluations are deterministic.
SHARPNESS_SEED = 0x5348


def top_eigenvalue(model, cost, params, x, y, *, iters: int):
    """The sharpness metric's measurement, in one place: :func:`jaxgd.landscape.sharpness` (power iteration on
    Hessian-vector products) from a fixed start vector."""
    return sharpness(model, cost, params, x, y, iters=iters, key=jax.random.key(SHARPNESS_SEED))


def sharpness_metric(iters: int = 20, examples: int | None = 1000) -> Metric:
    """The top Hessian eigenvalue of the training cost as a metric: ``iters`` power iterations on the first
    ``examples`` training examples (``None``: all), measured at every evaluation for every member."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise InvalidArgument(f"sharpness_metric's iters must be a positive integer, got {iters!r}.")
    return of_landscape(functools.partial(top_eigenvalue, iters=iters), examples)


register("sharpness", sharpness_metric())
