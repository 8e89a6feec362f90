"""One training step: gather a minibatch, compute the gradient of its cost, let the optimizer update.

This is the whole of gradient descent in jaxgd; everything else is bookkeeping around
it. :func:`train_steps` is one network's epoch, a ``lax.scan`` of :func:`sgd_step`
over the epoch's minibatch indices. A population runs the same function for every
member (:mod:`jaxgd.training.loop` vmaps or maps it, as :func:`jaxgd.training.spec.choose_kernel` says).

    x, y = rows(data, ..., batch_idx)                  # gathered by index: nothing copied
    grads = grad(cost)(params, x, y)                   # jax.grad, or the MLP's hand-written backprop
    lr = base_lr * schedule(step)                      # this member's rate at this step
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = params + updates                          # optax.apply_updates
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxgd.backprop import backprop
from jaxgd.costs import per_example_cost
from jaxgd.training.dense import dense
from jaxgd.training.optim import step_size, with_learning_rate
from jaxgd.training.spec import Spec, dense_layout


def logits_fn(spec: Spec, *, training: bool = True) -> Callable:
    """``logits(params, x)`` of the run's model for flat rows ``x (batch, input_dim)``: the one place where
    training and evaluation call the model.

    The model sees its inputs in ``spec.input_shape`` (a CNN sees images). In training
    (``training=True``) the parameters are in the run's compute layout, where an MLP in the
    ``dense`` layout multiplies with :func:`jaxgd.training.dense.dense`; at evaluation they are in the
    model's own layout (:func:`jaxgd.training.spec.from_compute_layout`).
    """
    if training and spec.dense_layout:
        return lambda params, x: spec.model.logits(params, x, dense)
    return lambda params, x: spec.model.apply(params, x.reshape((x.shape[0],) + spec.input_shape))


def loss_fn(spec: Spec) -> Callable:
    """The minibatch cost ``C(params, x, y)``: the mean of the per-example costs."""
    logits = logits_fn(spec)
    return lambda params, x, y: jnp.mean(per_example_cost(spec.cost, logits(params, x), y, spec.output))


def gradient_fn(spec: Spec) -> Callable:
    """``grad(params, x, y)``: ``jax.grad`` of :func:`loss_fn`, or the MLP's hand-written backprop."""
    if spec.gradient == "backprop":
        return lambda p, x, y: dense_layout(backprop(spec.model, spec.cost, dense_layout(p), x, y))
    return jax.grad(loss_fn(spec))


def rows(data: dict, spec: Spec, condition, split: str, idx):
    """Examples ``idx`` of a split, read from this member's condition where the data has one.

    ``data[name][condition, idx]`` is one gather: nothing is copied per member.
    """
    out = []
    for name in (f"x_{split}", f"y_{split}"):
        array = data[name]
        out.append(array[condition, idx] if name in spec.condition_arrays else array[idx])
    return tuple(out)


def learning_rate(base_lr, step, *, spec: Spec):
    """One network's learning rate at optimizer step ``step``: its base rate times the schedule's factor."""
    return step_size(spec.schedule, base_lr, step, spec.total_steps, spec.steps_per_epoch)


def apply_update(params, opt_state, grads, lr, *, spec: Spec):
    """The optimizer's update at learning rate ``lr``, applied: ``(params, opt_state)``."""
    tx = spec.optimizer.transform({name: 0.0 for name in spec.optimizer.numeric})  # values are read from opt_state
    updates, opt_state = tx.update(grads, with_learning_rate(opt_state, lr), params)
    return optax.apply_updates(params, updates), opt_state


def sgd_step(params, opt_state, step, batch_idx, member: dict, data: dict, *, spec: Spec):
    """One optimizer step of one network on the minibatch ``batch_idx``: ``(params, opt_state, step + 1)``."""
    full = slice(None)
    x, y = rows(data, spec, member["condition"], "train", full if spec.full_batch else batch_idx)
    grads = gradient_fn(spec)(params, x, y)
    lr = learning_rate(member["hyperparams"]["learning_rate"], step, spec=spec)
    params, opt_state = apply_update(params, opt_state, grads, lr, spec=spec)
    return params, opt_state, step + 1


def train_steps(params, opt_state, step, member: dict, idx, data: dict, *, spec: Spec):
    """One epoch of one network: a ``lax.scan`` of :func:`sgd_step` over ``idx (steps, batch)``.

    ``member`` holds this network's ``hyperparams`` (its base learning rate and any other
    per-member hyperparameters) and ``condition`` (its row of the per-condition data).
    """
    def body(carry, batch_idx):
        return sgd_step(*carry, batch_idx, member, data, spec=spec), None

    (params, opt_state, step), _ = jax.lax.scan(body, (params, opt_state, step), idx)
    return params, opt_state, step
