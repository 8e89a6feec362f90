"""The compiled training loop: each epoch's data order, the population's kernel, chunks of epochs.

:func:`train_chunk` is the pure core, ``(state, member, data) -> (state, metrics)`` for
``num_epochs`` epochs (a ``lax.scan`` over epochs of :func:`jaxgd.training.step.train_steps`),
then one evaluation (:mod:`jaxgd.training.evaluation`). It is written for one network; a
population (a leading member axis on the state) runs the kernel
:func:`jaxgd.training.spec.choose_kernel` chose. Minibatches
are gathered by index inside the step, so nothing copies the dataset per epoch or member.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxgd.data.permutation import permutation
from jaxgd.training.deferred import sgd_block
from jaxgd.training.evaluation import evaluate_state, record_examples
from jaxgd.training.members import blocks, over_members, unblock
from jaxgd.training.optim import advanced
from jaxgd.training.spec import Spec
from jaxgd.training.state import TrainState
from jaxgd.training.step import learning_rate, rows, train_steps


def batch_order(key: jax.Array, spec: Spec, n: int) -> jax.Array:
    """Example indices of one epoch, ``(steps_per_epoch, batch_size)`` int32."""
    if spec.full_batch:
        return jnp.arange(n, dtype=jnp.int32)[None]
    perm = permutation(key, n)  # jax.random.permutation's draw, faster on CPUs
    return perm[: spec.steps_per_epoch * spec.batch_size].reshape(spec.steps_per_epoch, spec.batch_size)


def member_orders(keys: jax.Array, spec: Spec, n: int) -> jax.Array:
    """:func:`batch_order` of every member, ``(S, steps_per_epoch, batch_size)``.

    One member's permutation at a time on each device: O(n) sort temporaries per
    device instead of O(S * n). The loop runs within each of the ``spec.member_shards``
    contiguous blocks of members (one per device, see :func:`jaxgd.parallel.sharding.place`); a
    loop over the whole sharded member axis would make every device draw every member's
    permutation.
    """
    idx = jax.vmap(lambda ks: jax.lax.map(lambda k: batch_order(k, spec, n), ks))(blocks(keys, spec))
    return unblock(idx)


def _deferred_steps(params, opt_state, step, member, idx, data, *, spec: Spec):
    """:func:`jaxgd.training.step.train_steps` of a whole shared-order population (leading member axis on
    ``params``, ``step`` and ``member``), plain SGD in blocks of ``spec.deferred_steps`` steps
    (:mod:`jaxgd.training.deferred`)."""
    eta = functools.partial(learning_rate, spec=spec)
    block = functools.partial(sgd_block, net=spec.model, cost=spec.cost, eta=eta)
    labels = jax.vmap(lambda c, i: rows(data, spec, c, "train", i)[1], in_axes=(0, None))
    lr = member["hyperparams"]["learning_rate"]

    def body(carry, block_idx):
        x = data["x_train"][block_idx]  # the same inputs for every member (see choose_kernel)
        return block(*carry, x, labels(member["condition"], block_idx), lr), None

    k = spec.deferred_steps
    whole = idx.shape[0] // k * k
    carry = (params, step)
    if whole:
        carry, _ = jax.lax.scan(body, carry, idx[:whole].reshape(-1, k, idx.shape[1]))
    if whole < idx.shape[0]:
        carry, _ = body(carry, idx[whole:])
    params, new_step = carry
    last = jax.vmap(eta)(lr, new_step - 1)  # the state records the rate of the last step, as optax would
    opt_state = jax.vmap(advanced, in_axes=(0, None, 0))(opt_state, idx.shape[0], last)
    return params, opt_state, new_step


def train_epochs(state: TrainState, member: dict, data: dict, *, spec: Spec, num_epochs: int) -> TrainState:
    """``num_epochs`` epochs of training alone (see :func:`train_chunk` for the arguments)."""
    n = data["y_train"].shape[-1]
    per_member_order = spec.population and not spec.shared_order

    def steps(p, o, s, ms, m, i, nk):
        return train_steps(p, o, s, ms, m, i, data, nk, spec=spec)
    if spec.kernel == "deferred":  # a shared-order population, written for all its members at once
        def steps(p, o, s, ms, m, i, nk):
            return (*_deferred_steps(p, o, s, m, i, data, spec=spec), ms)
    elif spec.population:
        # A shared order leaves the minibatch indices unbatched, so under vmap the first layer of every
        # MLP member becomes one (batch, n_in) x (n_in, S * n_out) matrix product.
        steps = over_members(steps, spec, (0, 0, 0, 0, 0, 0 if per_member_order else None, 0))

    def epoch(state: TrainState, _):
        if per_member_order:
            keys = jax.vmap(jax.random.split)(state.data_key)
            new_key, idx = keys[:, 0], member_orders(keys[:, 1], spec, n)
        else:
            new_key, sub = jax.random.split(state.data_key)
            idx = batch_order(sub, spec, n)
        params, opt_state, step, model_state = steps(state.params, state.opt_state, state.step, state.model_state,
                                                     member, idx, state.noise_key)
        return state._replace(params=params, opt_state=opt_state, step=step, data_key=new_key,
                              model_state=model_state), None

    with jax.default_matmul_precision(spec.matmul_precision):  # read as the products are traced
        state, _ = jax.lax.scan(epoch, state, None, length=num_epochs)
    return state


def train_chunk(state: TrainState, member: dict, data: dict, *, spec: Spec, num_epochs: int,
                evaluate: bool = True):
    """``num_epochs`` epochs, then one evaluation. Pure; jit with ``spec``, ``num_epochs`` and ``evaluate`` static.

    Args:
      state: a :class:`jaxgd.training.state.TrainState` (leaves with a leading member axis when ``spec.population``).
      member: ``{"hyperparams": {"learning_rate": ([S],), ...}, "condition": ([S],) int32}``: each
        network's base learning rate and other per-member hyperparameters, and its row of the
        per-condition data arrays.
      data: ``{"x_train", "y_train", "x_test", "y_test"[, "x_val", "y_val"]}``, inputs as flat rows;
        arrays named in ``spec.condition_arrays`` carry a leading condition axis. Shared by
        all members: never copied per member.
      evaluate: whether to evaluate after the last epoch (``metrics`` is ``None`` otherwise).

    Returns:
      ``(state, metrics)`` with metrics ``{"train_cost", "train_accuracy", ...}`` as
      scalars (or ``(S,)``) after the last epoch of the chunk.
    """
    state = train_epochs(state, member, data, spec=spec, num_epochs=num_epochs)
    if not evaluate:
        return state, None
    if spec.record_examples:
        state = record_examples(state, member, data, spec=spec)
    return state, evaluate_state(state, member, data, spec=spec)


#: :func:`train_chunk` compiled (the state donated): what :func:`jaxgd.fit` calls.
compiled_chunk = jax.jit(train_chunk, static_argnames=("spec", "num_epochs", "evaluate"), donate_argnums=(0,))
