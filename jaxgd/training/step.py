"""One training step: gather a minibatch, compute the gradient of its cost, let the optimizer update.

This is the whole of gradient descent in jaxgd; everything else is bookkeeping around
it. :func:`train_steps` is one network's epoch, a ``lax.scan`` of :func:`sgd_step`
over the epoch's minibatch indices. A population runs the same function for every
member (:mod:`jaxgd.training.loop` vmaps or maps it, as :func:`jaxgd.training.spec.choose_kernel` says).

    x, y = rows(data, ..., batch_idx)                  # gathered by index: nothing copied
    key = fold_in(noise_key, step)                     # this member's draws at this step (dropout, augmentation)
    x = augment(key, x)                                # with TrainConfig.augment
    grads, model_state = grad(cost)(params, model_state, x, y, key)  # jax.grad, or the MLP's backprop
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
from jaxgd.data.augment import augment
from jaxgd.models import call
from jaxgd.training.dense import dense
from jaxgd.training.optim import step_size, with_learning_rate
from jaxgd.training.spec import Spec, dense_layout


def forward_fn(spec: Spec, *, training: bool = True) -> Callable:
    """``forward(params, model_state, x, key=None, rate=None) -> (logits, model_state)`` of the run's model for
    flat rows ``x (batch, input_dim)``: the one place where training and evaluation call the model.

    The model sees its inputs in ``spec.input_shape`` (a CNN sees images). In training
    (``training=True``) the parameters are in the run's compute layout, where an MLP in the
    ``dense`` layout multiplies with :func:`jaxgd.training.dense.dense`, and a stateful model runs in
    training mode with the step's ``key`` and the member's dropout ``rate``; at evaluation they are in
    the model's own layout (:func:`jaxgd.training.spec.from_compute_layout`) and it runs in evaluation mode.
    """
    if training and spec.dense_layout:
        return lambda params, state, x, key=None, rate=None: (spec.model.logits(params, x, dense), state)

    def forward(params, state, x, key=None, rate=None):
        return call(spec.model, params, state, x.reshape((x.shape[0],) + spec.input_shape), key=key,
                    train=training, dropout=rate)
    return forward


def gradient_fn(spec: Spec) -> Callable:
    """``grad(params, model_state, x, y, key, rate) -> (grads, model_state)``: ``jax.grad`` of the minibatch
    cost (the mean of the per-example costs), or the MLP's hand-written backprop."""
    if spec.gradient == "backprop":
        return lambda p, s, x, y, key, rate: (dense_layout(backprop(spec.model, spec.cost, dense_layout(p), x, y)), s)
    forward = forward_fn(spec)

    def cost(params, state, x, y, key, rate):
        z, state = forward(params, state, x, key, rate)
        return jnp.mean(per_example_cost(spec.cost, z, y, spec.output)), state
    return jax.grad(cost, has_aux=True)


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


def sgd_step(params, opt_state, step, model_state, batch_idx, member: dict, data: dict, noise_key=None, *,
             spec: Spec):
    """One optimizer step of one network on the minibatch ``batch_idx``: ``(params, opt_state, step + 1,
    model_state)``. ``noise_key`` is the member's own (see :func:`jaxgd.training.state.init_state`)."""
    x, y = rows(data, spec, member["condition"], "train", slice(None) if spec.full_batch else batch_idx)
    key = None if noise_key is None else jax.random.fold_in(noise_key, step)  # never the member's position
    regularizers = member.get("regularizers", {})
    if spec.augment:
        key, k_augment = jax.random.split(key)
        x = augment(k_augment, x, spec.augment, spec.input_shape, regularizers.get("augment", 1.0))
    grads, model_state = gradient_fn(spec)(params, model_state, x, y, key, regularizers.get("dropout"))
    lr = learning_rate(member["hyperparams"]["learning_rate"], step, spec=spec)
    params, opt_state = apply_update(params, opt_state, grads, lr, spec=spec)
    return params, opt_state, step + 1, model_state


def train_steps(params, opt_state, step, model_state, member: dict, idx, data: dict, noise_key=None, *,
                spec: Spec):
    """One epoch of one network: a ``lax.scan`` of :func:`sgd_step` over ``idx (steps, batch)``.

    ``member`` holds this network's ``hyperparams`` (its base learning rate and the optimizer's other
    per-member hyperparameters), ``condition`` (its row of the per-condition data) and, where set per
    member, its ``regularizers`` (``dropout`` rate, ``augment`` probability).
    """
    def body(carry, batch_idx):
        return sgd_step(*carry, batch_idx, member, data, noise_key, spec=spec), None

    (params, opt_state, step, model_state), _ = jax.lax.scan(body, (params, opt_state, step, model_state), idx)
    return params, opt_state, step, model_state
