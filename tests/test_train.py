import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from jaxgd import MLP, TrainConfig, fit
from jaxgd.training.loop import train_chunk
from jaxgd.training.spec import from_compute_layout
from jaxgd.training.state import init_state

NET = MLP((64, 16, 16, 10))


def test_lesson_training_learns_digits(small_digits):
    result = fit(jax.random.key(0), NET, small_digits, TrainConfig(epochs=15))
    h = result.history
    assert h["train_cost"].shape == (15,) and list(h["epoch"]) == list(range(1, 16))
    assert h["train_cost"][-1] < 0.25 * result.initial["train_cost"]
    assert h["test_accuracy"][-1] >= 0.85
    assert result.epochs_run == 15 and not result.diverged
    jax.tree.map(lambda a, b: chex.assert_equal_shape([a, b]), result.params, NET.init(jax.random.key(1)))


def test_same_key_same_result_and_different_key_different_result(small_digits):
    config = TrainConfig(epochs=3)
    a = fit(jax.random.key(4), NET, small_digits, config)
    b = fit(jax.random.key(4), NET, small_digits, config)
    c = fit(jax.random.key(5), NET, small_digits, config)
    chex.assert_trees_all_equal(a.params, b.params)
    np.testing.assert_array_equal(a.history["test_cost"], b.history["test_cost"])
    assert not np.allclose(a.params[0]["w"], c.params[0]["w"])


def test_eval_every_does_not_change_the_trajectory(small_digits):
    a = fit(jax.random.key(1), NET, small_digits, TrainConfig(epochs=4, eval_every=1))
    b = fit(jax.random.key(1), NET, small_digits, TrainConfig(epochs=4, eval_every=4))
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-6)
    assert list(b.history["epoch"]) == [4]


def test_training_does_not_recompile_per_chunk_or_epoch(small_digits, monkeypatch):
    traced = jax.jit(chex.assert_max_traces(train_chunk, n=1), static_argnames=("spec", "num_epochs", "evaluate"),
                     donate_argnums=(0,))
    monkeypatch.setattr(jaxgd.loop, "compiled_chunk", traced)
    fit(jax.random.key(0), NET, small_digits, TrainConfig(epochs=6, eval_every=2))
    fit(jax.random.key(1), NET, small_digits, TrainConfig(epochs=4, eval_every=2))  # new key, same program
    chex.clear_trace_counter()


def test_pure_epoch_function_vmaps_over_keys(small_digits):
    """vmap of the single-network chunk over keys equals training each key on its own."""
    config = TrainConfig(epochs=2)
    run = jaxgd.prepare(jax.random.key(0), NET, small_digits, config)
    keys = jax.random.split(jax.random.key(0), 3)
    chunk = functools.partial(train_chunk, spec=run.spec, num_epochs=2)
    states = jax.vmap(lambda k: init_state(k, run.spec, run.member["hyperparams"]))(keys)
    batched, metrics = jax.jit(jax.vmap(chunk, in_axes=(0, None, None)))(states, run.member, run.data)
    assert metrics["test_accuracy"].shape == (3,)
    for i, k in enumerate(keys):
        single, m = jax.jit(chunk)(init_state(k, run.spec, run.member["hyperparams"]), run.member, run.data)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], batched.params), single.params, rtol=2e-5,
                                    atol=2e-5)
        np.testing.assert_allclose(metrics["test_cost"][i], m["test_cost"], rtol=1e-4)


def test_full_batch_gradient_descent_decreases_the_cost_every_epoch(small_digits):
    config = TrainConfig(batch_size=None, learning_rate=0.5, epochs=20)
    result = fit(jax.random.key(0), NET, small_digits, config)
    costs = np.concatenate([[result.initial["train_cost"]], result.history["train_cost"]])
    assert np.all(np.diff(costs) < 0)


def test_full_batch_step_is_exactly_one_gradient_step(small_digits, x64):
    net = MLP((64, 5, 10))
    ds = jaxgd.data.subset(small_digits, n_train=50)
    config = TrainConfig(batch_size=None, learning_rate=0.1, epochs=1)
    result = fit(jax.random.key(2), net, ds, config)
    run = jaxgd.prepare(jax.random.key(2), net, ds, config)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params0 = from_compute_layout(run.spec, run.state.params)
    grads = jax.grad(jaxgd.cost_fn(net, "quadratic"))(params0, x, y)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params0, grads)
    chex.assert_trees_all_close(result.params, expected, rtol=1e-5, atol=1e-6)


def test_hand_written_backprop_trains_like_autodiff(small_digits):
    a = fit(jax.random.key(3), NET, small_digits, TrainConfig(epochs=2, gradient="autodiff"))
    b = fit(jax.random.key(3), NET, small_digits, TrainConfig(epochs=2, gradient="backprop"))
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("optimizer,lr,schedule", [("momentum", 0.1, None), ("adam", 0.01, "cosine"),
                                                   ("sgd", 3.0, "linear"), ("sgd", 3.0, "exponential"),
                                                   ("adamw", 0.01, None), ("lion", 0.001, None),
                                                   ("rmsprop", 0.003, None), ("nesterov", 0.1, None)])
def test_optimizers_and_schedules_learn(small_digits, optimizer, lr, schedule):
    net = MLP((64, 16, 10), output="softmax")
    config = TrainConfig(cost="cross_entropy", optimizer=optimizer, learning_rate=lr, schedule=schedule, epochs=5)
    result = fit(jax.random.key(0), net, small_digits, config)
    assert result.history["train_cost"][-1] < 0.5 * result.initial["train_cost"]


def test_a_callable_schedule_is_a_factor_of_the_learning_rate(small_digits):
    import optax

    zero = fit(jax.random.key(0), NET, small_digits, TrainConfig(epochs=1, schedule=optax.constant_schedule(0.0)))
    chex.assert_trees_all_close(zero.params, NET.init(jax.random.split(jax.random.key(0))[0]))
    half = fit(jax.random.key(0), NET, small_digits, TrainConfig(epochs=2, learning_rate=3.0,
                                                                 schedule=lambda step: 0.5))
    plain = fit(jax.random.key(0), NET, small_digits, TrainConfig(epochs=2, learning_rate=1.5))
    chex.assert_trees_all_close(half.params, plain.params, rtol=1e-6, atol=1e-6)


def test_target_accuracy_stops_early(small_digits):
    result = fit(jax.random.key(0), NET, small_digits, TrainConfig(epochs=40, target_accuracy=0.9))
    assert result.epochs_run < 40
    assert result.history["train_accuracy"][-1] >= 0.9 > result.history["train_accuracy"][-2]


def test_a_blown_up_learning_rate_is_flagged_not_raised(small_digits):
    result = fit(jax.random.key(0), MLP((64, 16, 10), activation="relu", output="identity"), small_digits,
                 TrainConfig(learning_rate=100.0, epochs=5))
    assert bool(result.diverged) and int(result.diverged_epoch) == result.epochs_run


@pytest.mark.parametrize("changes,message", [
    ({"learning_rate": -1.0}, "learning_rate must be a positive finite number, got -1.0"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": 1e-50}, "learning_rate=1e-50 is zero in float32"),
    ({"learning_rate": True}, "learning_rate must be a positive finite number, got True"),
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"batch_size": 10_000}, "batch_size=10000 is larger than the 400 training examples"),
    ({"optimizer": "rmsprops"}, "'rmsprops'"),
    ({"cost": "hinge"}, "'hinge'"),
    ({"data_order": "random"}, "'random'"),
    ({"target_accuracy": 1.5}, "target_accuracy"),
    ({"target_accuracy": True}, "target_accuracy"),
    ({"momentum": 0.5}, "momentum=0.5 has no effect with the sgd optimizer"),
    ({"optimizer": "adam", "optimizer_args": {"momentum_": 1}}, "has no hyperparameter 'momentum_'"),
    ({"matmul_precision": "fp32"}, "Unknown matmul_precision 'fp32'; choose one of float32"),
])
def test_bad_configs_fail_before_tracing(small_digits, changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fit(jax.random.key(0), NET, small_digits, TrainConfig().replace(**changes))


@pytest.mark.parametrize("order", ["per_seed", "shared"])
def test_matmul_precision_reaches_every_product_of_training_and_evaluation(small_digits, order):
    """The programs are traced under ``TrainConfig.matmul_precision``: every dot carries it.

    CPUs compute float32 whatever the precision says; on GPUs (TF32) and TPUs (bfloat16
    passes) JAX's default would otherwise round the products' inputs.
    """
    def dots(precision):
        config = TrainConfig(epochs=1, data_order=order, matmul_precision=precision)
        run = jaxgd.prepare(jax.random.split(jax.random.key(0), 3), NET, small_digits, config,
                            devices=jax.devices()[:1])
        text = jax.jit(functools.partial(train_chunk, spec=run.spec, num_epochs=1)).lower(
            run.state, run.member, run.data).as_text()
        return [line for line in text.splitlines() if "dot_general" in line]

    highest, default = dots("float32"), dots("default")
    assert len(highest) >= 6 and len(highest) == len(default)  # forward, backward, evaluation
    assert all("precision = [HIGHEST, HIGHEST]" in line for line in highest)
    assert not any("HIGHEST" in line for line in default)


def test_data_that_does_not_fit_the_network_is_named(small_digits):
    with pytest.raises(ValueError, match="takes 784 inputs but digits has 64 features"):
        fit(jax.random.key(0), MLP((784, 16, 10)), small_digits, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="has 5 outputs but digits has 10 classes"):
        fit(jax.random.key(0), MLP((64, 16, 5)), small_digits, TrainConfig(epochs=1))
