"""Evaluation: the cost, accuracy and metrics of networks over whole splits, inside the compiled program.

:func:`evaluate_state` measures every member of a run on every split (:func:`evaluate_params` for
one network); :func:`record_examples` keeps each training example's learning dynamics;
:func:`evaluate` is the same measurement for one network outside training (the landscape's lines).
Splits are read in chunks of examples fetched by index, which bounds memory when many networks are
evaluated at once and lets per-condition data variants be read in place.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgd.costs import output_of, per_example_cost
from jaxgd.models import call
from jaxgd.training.members import over_members
from jaxgd.training.metrics import SPLITS
from jaxgd.training.spec import Spec, from_compute_layout
from jaxgd.training.state import TrainState
from jaxgd.training.step import forward_fn, rows


def _chunks(n: int, chunk: int, dtype):
    """The indices ``(chunks, chunk)`` of ``n`` examples read ``chunk`` at a time (the last chunk padded with
    example 0) and the mask that leaves the padding out."""
    chunk = min(chunk, n)
    num_chunks = -(-n // chunk)
    pad = num_chunks * chunk - n
    idx = jnp.concatenate([jnp.arange(n), jnp.zeros(pad, jnp.int32)]).reshape(num_chunks, chunk)
    mask = jnp.concatenate([jnp.ones(n, dtype), jnp.zeros(pad, dtype)]).reshape(num_chunks, chunk)
    return idx, mask


def evaluate_split(rows, n: int, dtype, chunk: int, logits_of: Callable, cost, output: str,
                   metrics: tuple = ()) -> dict:
    """Mean cost, accuracy and per-example metrics over ``n`` examples fetched by ``rows(indices) -> (x, y)``.

    Chunks of ``chunk`` examples bound memory when many networks are evaluated at once;
    fetching by index lets per-condition data variants be read in place.
    """
    names = [name for name, m in metrics if m.kind == "example"]
    if n == 0:
        nan = jnp.array(jnp.nan, dtype)
        return {"cost": nan, "accuracy": nan, **{k: nan for k in names}}
    idx, mask = _chunks(n, chunk, dtype)
    fns = [m.fn for _, m in metrics if m.kind == "example"]

    def body(totals, inputs):
        i, m = inputs
        xb, yb = rows(i)
        z = logits_of(xb)
        values = [per_example_cost(cost, z, yb, output), (jnp.argmax(z, axis=-1) == yb).astype(dtype)]
        values += [fn(z, yb) for fn in fns]
        return tuple(t + jnp.sum(v.astype(dtype) * m) for t, v in zip(totals, values)), None

    zero = jnp.zeros((), dtype)
    totals, _ = jax.lax.scan(body, (zero,) * (2 + len(fns)), (idx, mask))
    return dict(zip(["cost", "accuracy", *names], [t / n for t in totals]))


def network_metric(rows, n: int, dtype, chunk: int, logits_of: Callable, fn: Callable) -> jax.Array:
    """The mean over ``n`` examples fetched by ``rows(indices) -> (x, y)`` of a network metric
    ``fn(logits_of, x, y) -> (batch,)`` (:func:`jaxgd.training.metrics.of_network`)."""
    if n == 0:
        return jnp.array(jnp.nan, dtype)
    idx, mask = _chunks(n, chunk, dtype)

    def body(total, inputs):
        i, m = inputs
        xb, yb = rows(i)
        return total + jnp.sum(fn(logits_of, xb, yb).astype(dtype) * m), None

    total, _ = jax.lax.scan(body, jnp.zeros((), dtype), (idx, mask))
    return total / n


def split_gradient(rows, n: int, dtype, chunk: int, loss_sum: Callable, params):
    """The gradient of the mean cost over ``n`` examples: chunk gradients of ``loss_sum(params, x, y, mask)`` summed."""
    idx, mask = _chunks(n, chunk, dtype)
    grad = jax.grad(loss_sum)

    def body(total, inputs):
        i, m = inputs
        xb, yb = rows(i)
        return jax.tree.map(jnp.add, total, grad(params, xb, yb, m)), None

    total, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), (idx, mask))
    return jax.tree.map(lambda g: g / n, total)


def param_norm(params) -> jax.Array:
    """The Euclidean norm of all parameters together."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params)))


def evaluate(model, cost, params, x, y, chunk: int = 4096, state=None):
    """Mean cost and accuracy of ``model`` over a whole split, in chunks of ``chunk`` examples (a stateful
    model in evaluation mode, with its ``state``).

    Returns:
      ``(cost, accuracy)`` as scalars.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    out = evaluate_split(lambda i: (x[i], y[i]), y.shape[0], x.dtype, chunk,
                         lambda xb: call(model, params, state, xb)[0], cost, output_of(model))
    return out["cost"], out["accuracy"]


def evaluate_params(params, member: dict, data: dict, model_state=None, *, spec: Spec) -> dict[str, jax.Array]:
    """Cost, accuracy and the metrics of one network on every split present in ``data`` (a stateful model in
    evaluation mode: running statistics, no dropout); a network metric on the first ``examples`` of the splits
    it names."""
    public = from_compute_layout(spec, params)
    logits = _eval_logits(spec, model_state)
    out = {}
    for split in SPLITS:
        if f"x_{split}" not in data:
            continue
        n, dtype = data[f"y_{split}"].shape[-1], data[f"x_{split}"].dtype
        fetch = lambda i, s=split: rows(data, spec, member["condition"], s, i)  # noqa: E731
        logits_of = lambda xb: logits(public, xb)  # noqa: E731
        values = evaluate_split(fetch, n, dtype, spec.eval_batch_size, logits_of, spec.cost, spec.output,
                                spec.metrics)
        out.update({f"{split}_{k}": v for k, v in values.items()})
        for name, metric in spec.metrics:
            if metric.kind == "network" and split in metric.splits:
                out[f"{split}_{name}"] = network_metric(fetch, min(n, metric.examples or n), dtype,
                                                        spec.eval_batch_size, logits_of, metric.fn)
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
    for name, metric in spec.metrics:
        if metric.kind == "landscape":
            out[name] = landscape_metric(metric, public, member, data, model_state, spec=spec)
    return out


def landscape_metric(metric, params, member: dict, data: dict, model_state=None, *, spec: Spec) -> jax.Array:
    """A landscape metric (:func:`jaxgd.training.metrics.of_landscape`) of one network in the model's layout, on
    the metric's first training examples in the model's input shape; a stateful model as ``(params, state)``."""
    n = data["y_train"].shape[-1] if metric.examples is None else min(metric.examples, data["y_train"].shape[-1])
    x, y = rows(data, spec, member["condition"], "train", jnp.arange(n))
    network = (params, model_state) if spec.stateful else params
    return jnp.asarray(metric.fn(spec.model, spec.cost, network, x.reshape((n,) + spec.input_shape), y))


def _eval_logits(spec: Spec, model_state):
    forward = forward_fn(spec, training=False)
    return lambda params, x: forward(params, model_state, x)[0]


def train_correct(params, member: dict, data: dict, model_state=None, *, spec: Spec) -> jax.Array:
    """Whether one network classifies each training example correctly, ``(n_train,)`` bool."""
    public = from_compute_layout(spec, params)
    logits = _eval_logits(spec, model_state)
    n = data["y_train"].shape[-1]
    chunk = min(spec.eval_batch_size, n)
    idx = jnp.arange(-(-n // chunk) * chunk).reshape(-1, chunk) % n

    def one(i):
        xb, yb = rows(data, spec, member["condition"], "train", i)
        return jnp.argmax(logits(public, xb), axis=-1) == yb

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
    def one(params, m, record, step, model_state):
        correct = train_correct(params, m, data, model_state, spec=spec)
        epoch = (step // max(spec.steps_per_epoch, 1)).astype(jnp.int32)
        first = step == 0
        stayed = record["correct"] & correct & ~first
        snapshot = (record["first_epoch"] < 0) & ~first  # the first evaluation after some training
        return {"learned_at": jnp.where(correct, jnp.where(stayed, record["learned_at"], epoch), -1),
                "forgets": record["forgets"] + (record["correct"] & ~correct & ~first),
                "correct": correct,
                "first_correct": jnp.where(snapshot, correct, record["first_correct"]),
                "first_epoch": jnp.where(snapshot, epoch, record["first_epoch"])}

    fn = over_members(one, spec, (0, 0, 0, 0, 0)) if spec.population else one
    with jax.default_matmul_precision(spec.matmul_precision):
        return state._replace(examples=fn(state.params, member, state.examples, state.step, state.model_state))


def evaluate_state(state: TrainState, member: dict, data: dict, *, spec: Spec):
    """:func:`evaluate_params` of every member of the run (``([S],)`` each)."""
    def fn(params, m, model_state):
        return evaluate_params(params, m, data, model_state, spec=spec)
    if spec.population:
        fn = over_members(fn, spec, (0, 0, 0))
    with jax.default_matmul_precision(spec.matmul_precision):
        return fn(state.params, member, state.model_state)


#: :func:`evaluate_state` compiled.
compiled_eval = jax.jit(evaluate_state, static_argnames=("spec",))
#: :func:`record_examples` compiled (the record's start, from the initial networks).
compiled_record = jax.jit(record_examples, static_argnames=("spec",))
