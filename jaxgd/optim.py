"""Optimizers (through optax) and learning-rate schedules, split from the step size.

Each optimizer is an optax transformation that turns gradients into a *direction*
(identity for plain gradient descent, a momentum trace, Adam's moments); the step
size is applied by the training step as ``params -= lr * factor(step) * direction``.
Keeping the learning rate out of the optax state lets it be a traced value, so a
population can train every member at its own learning rate in one program.
"""
from __future__ import annotations

import jax.numpy as jnp
import optax


def direction(optimizer: str, momentum: float = 0.9) -> optax.GradientTransformation:
    """The optax transformation of ``optimizer`` without its learning-rate scaling."""
    if optimizer == "sgd":
        return optax.identity()
    if optimizer == "momentum":
        return optax.trace(decay=momentum, nesterov=False)
    if optimizer == "adam":
        return optax.scale_by_adam()
    raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of sgd, momentum, adam.")


def step_size(schedule, lr, step, total_steps: int, steps_per_epoch: int):
    """Learning rate at optimizer step ``step`` (0-based) for a base rate ``lr``."""
    if callable(schedule):
        return jnp.asarray(schedule(step), lr.dtype)
    if schedule in (None, "constant"):
        return lr
    if schedule == "cosine":
        factor = optax.cosine_decay_schedule(1.0, max(total_steps, 1))(step)
    elif schedule == "linear":
        factor = optax.linear_schedule(1.0, 0.0, max(total_steps, 1))(step)
    elif schedule == "exponential":
        factor = optax.exponential_decay(1.0, transition_steps=steps_per_epoch, decay_rate=0.95)(step)
    else:
        raise ValueError(f"Unknown schedule {schedule!r}.")
    return lr * factor
