"""The critical sample ratio: how complex the learned function is around the data (Arpit et al. 2017).

Arpit et al., "A Closer Look at Memorization in Deep Networks" (ICML 2017, arXiv 1706.05394), Section 4:
an example ``x`` is *critical* when some input within the L-infinity box of radius ``r`` around it,
``||x_hat - x||_inf <= r``, is classified differently from ``x``; the critical sample ratio is the fraction of
examples that are critical. A network that has memorized noise carves a small region around each example,
so its decision boundaries pass close to the data and the ratio is high; one that has learned real data
varies slowly around it.

The adversarial input is searched for as Arpit et al. do (their Algorithm 1): from ``x``, steps of size
``step_size`` along the sign of the gradient that moves away from the class predicted at ``x``, each step
clipped back into the box, stopping at the first input classified differently. The direction here is the
ascent of the cross-entropy of that class (projected gradient ascent, Madry et al. 2018, arXiv 1706.06083);
Arpit et al.'s search also adds Langevin noise to each step, left out here so that the measurement is a
deterministic function of the network (a member measured in a population equals itself measured alone).
Inputs are not clipped to the data's range: the box is the definition's. A search that finds nothing
proves nothing (the ratio is a lower bound), which is why it is compared between networks measured alike.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument
from jaxgd.training.metrics import Metric, of_network


def _check(radius, steps, step_size) -> float:
    if not (isinstance(radius, (int, float)) and radius > 0):
        raise InvalidArgument(f"The critical sample ratio needs a positive radius, got {radius!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidArgument(f"The adversarial search needs a positive number of steps, got {steps!r}.")
    if step_size is None:
        return 2.5 * radius / steps  # Madry et al.'s rule: the search can cross the box and come back
    if not (isinstance(step_size, (int, float)) and step_size > 0):
        raise InvalidArgument(f"The adversarial search needs a positive step size, got {step_size!r}.")
    return float(step_size)


def critical_samples(logits_fn: Callable, x: jax.Array, radius: float, *, steps: int = 10,
                     step_size: float | None = None) -> jax.Array:
    """Whether each example of ``x`` is critical: ``(batch,)`` bool.

    Args:
      logits_fn: ``logits_fn(x) -> (batch, classes)``, a network in evaluation mode; its examples must not
        depend on each other (no batch statistics), so that one gradient of the summed cost gives each
        example's own.
      x: the inputs, in the layout ``logits_fn`` takes.
      radius: the half-width ``r`` of the L-infinity box around each example.
      steps: steps of the search (each a forward and a backward pass).
      step_size: each step's L-infinity length (default ``2.5 * radius / steps``).
    """
    alpha = _check(radius, steps, step_size)
    x = jnp.asarray(x)
    predicted = jnp.argmax(logits_fn(x), axis=-1)

    def cost(x_hat):  # the cross-entropy of the class predicted at x, summed: each example's gradient is its own
        z = logits_fn(x_hat)
        log_p = jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), predicted[:, None], axis=-1)[:, 0]
        return -jnp.sum(log_p), z

    def step(carry, _):
        x_hat, critical = carry
        grad, z = jax.grad(cost, has_aux=True)(x_hat)
        critical = critical | (jnp.argmax(z, axis=-1) != predicted)  # x_hat, before this step, already differs
        x_hat = jnp.clip(x_hat + alpha * jnp.sign(grad), x - radius, x + radius)
        return (x_hat, critical), None

    (x_hat, critical), _ = jax.lax.scan(step, (x, jnp.zeros(predicted.shape, bool)), None, length=steps)
    return critical | (jnp.argmax(logits_fn(x_hat), axis=-1) != predicted)


def critical_sample_ratio(logits_fn: Callable, x: jax.Array, radius: float, *, steps: int = 10,
                          step_size: float | None = None) -> jax.Array:
    """The fraction of the examples of ``x`` that are critical (see :func:`critical_samples`)."""
    return jnp.mean(critical_samples(logits_fn, x, radius, steps=steps, step_size=step_size).astype(jnp.float32))


def critical_sample_metric(radius: float, *, steps: int = 10, step_size: float | None = None,
                           examples: int | None = 200, splits=("train",)) -> Metric:
    """The critical sample ratio as a metric of :func:`jaxgd.fit` (:func:`jaxgd.training.metrics.of_network`):
    measured inside the compiled evaluation, for every member, on the first ``examples`` examples of each of
    ``splits`` (recorded as ``train_<name>``, ...).

    Example:
      >>> result = jaxgd.fit(keys, model, data, config, metrics={"csr": critical_sample_metric(0.1)})
      >>> result.history["train_csr"]   # (members, evaluations)
    """
    _check(radius, steps, step_size)
    fn = functools.partial(_per_example, radius=float(radius), steps=steps,
                           step_size=None if step_size is None else float(step_size))
    return of_network(fn, examples=examples, splits=splits)


def _per_example(logits_fn, x, y, *, radius, steps, step_size):
    """:func:`critical_samples` as a network metric's ``fn(logits_fn, x, y) -> (batch,)`` (the labels are not used:
    the search starts from the predicted class)."""
    del y
    return critical_samples(logits_fn, x, radius, steps=steps, step_size=step_size)
