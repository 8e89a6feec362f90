"""The compiled training loop: each epoch's data order, the population's kernel, evaluation, chunks of epochs.

:func:`train_chunk` is the pure core, ``(state, member, data) -> (state, metrics)`` for
``num_epochs`` epochs (a ``lax.scan`` over epochs of :func:`jaxgd.step.train_steps`),
then one evaluation. It is written for one network; a population (a leading member
axis on the state) runs the kernel :func:`jaxgd.spec.choose_kernel` chose. Minibatches
are gathered by index inside the step, so nothing copies the dataset per epoch or member.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxgd.deferred import sgd_block
from jaxgd.metrics import SPLITS, evaluate_split, param_norm, split_gradient
from jaxgd.mlp import MLP
from jaxgd.optim import advanced
from jaxgd.costs import per_example_cost
from jaxgd.permutation import permutation
from jaxgd.spec import Spec, from_compute_layout
from jaxgd.state import TrainState
from jaxgd.step import learning_rate, rows, train_steps


def batch_order(key: jax.Array, spec: Spec, n: int) -> jax.Array:
    """Example indices of one epoch, ``(steps_per_epoch, batch_size)`` int32."""
    if spec.full_batch:
        return jnp.arange(n, dtype=jnp.int32)[None]
    perm = permutation(key, n)  # jax.random.permutation's draw, faster on CPUs
    return perm[: spec.steps_per_epoch * spec.batch_size].reshape(spec.steps_per_epoch, spec.batch_size)


def _blocks(tree, spec: Spec):
    """Leading member axis ``(S, ...)`` -> ``(member_shards, S / member_shards, ...)``: one block per device."""
    return jax.tree.map(lambda a: a.reshape((spec.member_shards, -1) + a.shape[1:]), tree)


def _unblock(tree):
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), tree)


def member_orders(keys: jax.Array, spec: Spec, n: int) -> jax.Array:
    """:func:`batch_order` of every member, ``(S, steps_per_epoch, batch_size)``.

    One member's permutation at a time on each device: O(n) sort temporaries per
    device instead of O(S * n). The loop runs within each of the ``spec.member_shards``
    contiguous blocks of members (one per device, see :func:`jaxgd.sharding.place`); a
    loop over the whole sharded member axis would make every device draw every member's
    permutation.
    """
    idx = jax.vmap(lambda ks: jax.lax.map(lambda k: batch_order(k, spec, n), ks))(_blocks(keys, spec))
    return _unblock(idx)


def over_members(fn, spec: Spec, in_axes: tuple):
    """``fn`` (written for one network) for every member: ``jax.vmap``, or with the ``map`` kernel each
    device's members ``spec.member_batch`` at a time (``lax.map``), so one member's activations stay in cache.

    ``in_axes`` is 0 (a leading member axis) or ``None`` (shared) per argument.
    """
    if spec.kernel != "map":
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        per_member = [i for i, ax in enumerate(in_axes) if ax == 0]

        def block(*block_args):
            def one(xs):
                full = list(args)
                for i, x in zip(per_member, xs):
                    full[i] = x
                return fn(*full)
            batch = spec.member_batch if spec.member_batch > 1 else None
            return jax.lax.map(one, tuple(block_args), batch_size=batch)

        return _unblock(jax.vmap(block)(*[_blocks(args[i], spec) for i in per_member]))

    return mapped


def _deferred_steps(params, opt_state, step, member, idx, data, *, spec: Spec):
    """:func:`jaxgd.step.train_steps` of a whole shared-order population (leading member axis on
    ``params``, ``step`` and ``member``), plain SGD in blocks of ``spec.deferred_steps`` steps
    (:mod:`jaxgd.deferred`)."""
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
    train = functools.partial(train_steps, spec=spec)
    if spec.kernel == "deferred":  # a shared-order population, written for all its members at once
        train = functools.partial(_deferred_steps, spec=spec)
    elif spec.population:
        # A shared order leaves the minibatch indices unbatched, so under vmap the first layer of every
        # MLP member becomes one (batch, n_in) x (n_in, S * n_out) matrix product.
        train = over_members(lambda p, o, s, m, i: train_steps(p, o, s, m, i, data, spec=spec), spec,
                             (0, 0, 0, 0, 0 if per_member_order else None))

    def epoch(state: TrainState, _):
        if per_member_order:
            keys = jax.vmap(jax.random.split)(state.data_key)
            new_key, idx = keys[:, 0], member_orders(keys[:, 1], spec, n)
        else:
            new_key, sub = jax.random.split(state.data_key)
            idx = batch_order(sub, spec, n)
        if spec.kernel == "deferred" or not spec.population:
            params, opt_state, step = train(state.params, state.opt_state, state.step, member, idx, data)
        else:
            params, opt_state, step = train(state.params, state.opt_state, state.step, member, idx)
        return TrainState(params, opt_state, step, new_key, state.examples), None

    with jax.default_matmul_precision(spec.matmul_precision):  # read as the products are traced
        state, _ = jax.lax.scan(epoch, state, None, length=num_epochs)
    return state


def evaluate_params(params, member: dict, data: dict, *, spec: Spec) -> dict[str, jax.Array]:
    """Cost, accuracy and the metrics of one network on every split present in ``data``."""
    public = from_compute_layout(spec, params)
    if isinstance(spec.model, MLP):
        logits = lambda p, xb: spec.model.logits(p, xb)  # noqa: E731
    else:
        logits = lambda p, xb: spec.model.apply(p, xb.reshape((xb.shape[0],) + spec.input_shape))  # noqa: E731
    out = {}
    for split in SPLITS:
        if f"x_{split}" not in data:
            continue
        n = data[f"y_{split}"].shape[-1]
        values = evaluate_split(lambda i, s=split: rows(data, spec, member["condition"], s, i), n,
                                data[f"x_{split}"].dtype, spec.eval_batch_size, lambda xb: logits(public, xb),
                                spec.cost, spec.output, spec.metrics)
        out.update({f"{split}_{k}": v for k, v in values.items()})
    out["param_norm"] = param_norm(params)
    for name, metric in spec.metrics:
        if metric.kind == "params":
            out[name] = jnp.asarray(metric.fn(public))
    if any(m.kind == "gradient" for _, m in spec.metrics):
        def loss_sum(p, xb, yb, mask):
            return jnp.sum(per_example_cost(spec.cost, logits(p, xb), yb, spec.output) * mask)

        grads = split_gradient(lambda i: rows(data, spec, member["condition"], "train", i),
                               data["y_train"].shape[-1], data["x_train"].dtype, spec.eval_batch_size,
                               loss_sum, public)
        for name, metric in spec.metrics:
            if metric.kind == "gradient":
                out[name] = jnp.asarray(metric.fn(grads))
    return out


def train_correct(params, member: dict, data: dict, *, spec: Spec) -> jax.Array:
    """Whether one network classifies each training example correctly, ``(n_train,)`` bool."""
    public = from_compute_layout(spec, params)
    n = data["y_train"].shape[-1]
    chunk = min(spec.eval_batch_size, n)
    idx = jnp.arange(-(-n // chunk) * chunk).reshape(-1, chunk) % n

    def one(i):
        xb, yb = rows(data, spec, member["condition"], "train", i)
        if isinstance(spec.model, MLP):
            z = spec.model.logits(public, xb)
        else:
            z = spec.model.apply(public, xb.reshape((xb.shape[0],) + spec.input_shape))
        return jnp.argmax(z, axis=-1) == yb

    return jax.lax.map(one, idx).reshape(-1)[:n]


def record_examples(state: TrainState, member: dict, data: dict, *, spec: Spec) -> TrainState:
    """Updates each training example's record after an evaluation (Arpit et al. 2017, arXiv 1706.05394;
    Toneva et al. 2019, arXiv 1812.05159).

    ``learned_at`` is the epoch from which the example has stayed correctly classified at every
    evaluation since (-1 while it is misclassified); ``forgets`` counts its forgetting events
    (correct at one evaluation, wrong at the next); ``correct`` is its latest state;
    ``first_correct`` its state at the first evaluation after training began (epoch
    ``first_epoch``), which Arpit et al.'s Figure 1 compares across runs. The first call (step 0)
    starts the record from the initial network.
    """
    def one(params, m, record, step):
        correct = train_correct(params, m, data, spec=spec)
        epoch = (step // max(spec.steps_per_epoch, 1)).astype(jnp.int32)
        first = step == 0
        stayed = record["correct"] & correct & ~first
        snapshot = (record["first_epoch"] < 0) & ~first  # the first evaluation after some training
        return {"learned_at": jnp.where(correct, jnp.where(stayed, record["learned_at"], epoch), -1),
                "forgets": record["forgets"] + (record["correct"] & ~correct & ~first),
                "correct": correct,
                "first_correct": jnp.where(snapshot, correct, record["first_correct"]),
                "first_epoch": jnp.where(snapshot, epoch, record["first_epoch"])}

    fn = over_members(one, spec, (0, 0, 0, 0)) if spec.population else one
    with jax.default_matmul_precision(spec.matmul_precision):
        return state._replace(examples=fn(state.params, member, state.examples, state.step))


def evaluate_state(state: TrainState, member: dict, data: dict, *, spec: Spec):
    fn = functools.partial(evaluate_params, spec=spec)
    if spec.population:
        fn = over_members(lambda p, m: evaluate_params(p, m, data, spec=spec), spec, (0, 0))
        with jax.default_matmul_precision(spec.matmul_precision):
            return fn(state.params, member)
    with jax.default_matmul_precision(spec.matmul_precision):
        return fn(state.params, member, data)


def train_chunk(state: TrainState, member: dict, data: dict, *, spec: Spec, num_epochs: int,
                evaluate: bool = True):
    """``num_epochs`` epochs, then one evaluation. Pure; jit with ``spec``, ``num_epochs`` and ``evaluate`` static.

    Args:
      state: a :class:`jaxgd.state.TrainState` (leaves with a leading member axis when ``spec.population``).
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
#: :func:`evaluate_state` compiled.
compiled_eval = jax.jit(evaluate_state, static_argnames=("spec",))
#: :func:`record_examples` compiled (the record's start, from the initial networks).
compiled_record = jax.jit(record_examples, static_argnames=("spec",))
