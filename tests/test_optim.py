"""Any optax optimizer, per-member hyperparameters, schedules as factors, open costs, activations and metrics."""
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgd
from tests.conftest import Killed, kill_after
from jaxgd import MLP, TrainConfig, fit
from jaxgd.runs.checkpoint import CheckpointError

NET = MLP((64, 16, 10), activation="relu", output="softmax")
ADAMW = TrainConfig(cost="cross_entropy", optimizer=optax.adamw, learning_rate=0.01, batch_size=20, epochs=4)


@pytest.fixture(scope="module")
def weight_decay_grid():
    data = jaxgd.data.subset(jaxgd.data.load("digits"), n_train=400)
    s = jaxgd.sweep(jax.random.key(0), {"weight_decay": [0.0, 0.3, 1.0, 3.0]}, seeds=5)
    return data, s, fit(s.keys, NET, data, ADAMW, hyperparams=s.hyperparams)


def test_an_adamw_grid_of_weight_decays_trains_as_one_population(weight_decay_grid):
    data, s, result = weight_decay_grid
    assert result.num_members == 20
    np.testing.assert_allclose(result.hyperparams["weight_decay"], np.repeat([0.0, 0.3, 1.0, 3.0], 5), rtol=1e-6)
    rows = jaxgd.grouped_stats(result.final("param_norm"), s.group, result.diverged, labels=s.groups)
    norms = [r["mean"] for r in rows]
    assert [r["weight_decay"] for r in rows] == [0.0, 0.3, 1.0, 3.0]
    assert all(a > b for a, b in zip(norms, norms[1:])), norms  # more decay, smaller parameters
    assert rows[0]["ci_low"] > rows[-1]["ci_high"]
    # the weight decay lives in the optimizer state, one value per member
    state_decay = np.asarray(result.state.opt_state.hyperparams["weight_decay"])[:20]
    np.testing.assert_allclose(state_decay, s.hyperparams["weight_decay"])


def test_a_member_of_a_per_seed_population_equals_its_configuration_trained_alone(weight_decay_grid):
    data, s, result = weight_decay_grid
    i = 12  # weight decay 1.0, the third seed
    alone = fit(s.keys[i], NET, data, ADAMW.replace(weight_decay=1.0))
    chex.assert_trees_all_close(result.member(i).params, alone.params, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.member(i).history["test_cost"], alone.history["test_cost"], rtol=1e-4)
    assert result.member(i).hyperparams["weight_decay"] == pytest.approx(1.0)


def test_grouped_statistics_give_the_t_interval_of_scipy():
    from scipy import stats

    values = np.array([1.0, 2.0, 4.0, 3.0, 10.0, 11.0, 12.0, np.nan])
    rows = jaxgd.grouped_stats(values, np.array([0, 0, 0, 0, 1, 1, 1, 1]), np.array([0, 0, 0, 0, 0, 0, 1, 0], bool))
    low, high = stats.t.interval(0.95, 3, loc=2.5, scale=stats.sem([1.0, 2.0, 4.0, 3.0]))
    assert rows[0]["ci_low"] == pytest.approx(low) and rows[0]["ci_high"] == pytest.approx(high)
    assert rows[1]["members"] == 2 and rows[1]["excluded"] == 2 and rows[1]["mean"] == pytest.approx(10.5)


def test_weight_decay_works_with_plain_sgd_as_decoupled_decay(small_digits, x64):
    net = MLP((64, 5, 10))
    data = jaxgd.data.subset(small_digits, n_train=50)
    config = TrainConfig(batch_size=None, learning_rate=0.5, epochs=1, weight_decay=0.1)
    result = fit(jax.random.key(0), net, data, config)
    run = jaxgd.prepare(jax.random.key(0), net, data, config)
    params0 = jaxgd.training.spec.from_compute_layout(run.spec, run.state.params)
    grads = jax.grad(jaxgd.cost_fn(net, "quadratic"))(params0, jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    expected = jax.tree.map(lambda p, g: p - 0.5 * (g + 0.1 * p), params0, grads)
    chex.assert_trees_all_close(result.params, expected, rtol=1e-6, atol=1e-7)
    assert result.config.to_dict()["hyperparameters"]["weight_decay"] == 0.1


def test_optimizers_are_recorded_by_name_and_hyperparameters():
    d = TrainConfig(optimizer=optax.adamw, learning_rate=1e-3, optimizer_args={"b1": 0.95}).to_dict()
    assert d["optimizer"] == "adamw" and d["optimizer_args"] == {"b1": 0.95}
    assert d["hyperparameters"]["b1"] == 0.95 and d["hyperparameters"]["b2"] == 0.999
    assert d["hyperparameters"]["weight_decay"] == 1e-4  # optax.adamw's own default, recorded
    assert TrainConfig(optimizer="lion").to_dict()["hyperparameters"]["b2"] == 0.99
    assert TrainConfig(optimizer="momentum").to_dict()["hyperparameters"]["momentum"] == 0.9
    with pytest.raises(TypeError, match=r"pass its factory and hyperparameters instead, e.g. "
                                        r"TrainConfig\(optimizer=optax.adamw"):
        TrainConfig(optimizer=optax.adamw(1e-3)).validate()
    with pytest.raises(ValueError, match="The adam optimizer has no hyperparameter 'weight_decays'"):
        TrainConfig(optimizer="adam", optimizer_args={"weight_decays": 1.0}).validate()


def test_per_member_hyperparameters_are_checked_and_fingerprinted(small_digits, tmp_path):
    keys = jax.random.split(jax.random.key(0), 3)
    config = TrainConfig(optimizer="adam", learning_rate=0.01, epochs=2)
    with pytest.raises(ValueError, match=r"hyperparams\['b1'\] must have shape \(3,\)"):
        fit(keys, NET, small_digits, config, hyperparams={"b1": [0.9, 0.8]})
    with pytest.raises(ValueError, match="The adam optimizer has no hyperparameter 'beta'"):
        fit(keys, NET, small_digits, config, hyperparams={"beta": [0.9, 0.8, 0.7]})
    with pytest.raises(ValueError, match=r"learning_rates=1e-50 is zero in float32"):
        fit(keys, NET, small_digits, config, learning_rates=[0.1, 1e-50, 0.1])
    fit(keys, NET, small_digits, config, hyperparams={"b1": [0.9, 0.8, 0.7]}, checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match="hyperparams.b1="):
        fit(keys, NET, small_digits, config, hyperparams={"b1": [0.9, 0.8, 0.6]}, checkpoint=tmp_path)
    pop = fit(keys, NET, small_digits, config, hyperparams={"b1": [0.9, 0.8, 0.7]}, checkpoint=tmp_path)
    assert pop.hyperparams["b1"].tolist() == pytest.approx([0.9, 0.8, 0.7])


def test_a_schedule_scales_each_members_own_learning_rate(small_digits):
    decay = optax.linear_schedule(1.0, 0.1, 60)
    config = TrainConfig(epochs=2, schedule=decay)
    keys = jax.random.split(jax.random.key(1), 2)
    pop = fit(keys, NET, small_digits, config, learning_rates=[0.01, 3.0])
    for i, lr in enumerate((0.01, 3.0)):
        alone = fit(keys[i], NET, small_digits, config.replace(learning_rate=lr))
        chex.assert_trees_all_close(pop.member(i).params, alone.params, rtol=1e-4, atol=1e-5)
    moved = [float(optax.tree.norm(jax.tree.map(lambda a, b: a - b, pop.member(i).params, NET.init(
        jax.random.split(keys[i])[0])))) for i in (0, 1)]
    assert moved[1] > 10 * moved[0]  # the members' rates differ; the schedule did not replace them


def test_resuming_with_another_lambda_schedule_is_refused_in_one_line(small_digits, tmp_path, capsys):
    config = TrainConfig(epochs=4, schedule=lambda step: 0.5)
    with pytest.raises(Killed):
        fit(0, NET, small_digits, config, checkpoint=tmp_path, callback=kill_after(2))
    with pytest.raises(CheckpointError, match="train.schedule.closure|train.schedule.code") as info:
        fit(0, NET, small_digits, config.replace(schedule=lambda step: 0.05), checkpoint=tmp_path)
    assert "\n" not in str(info.value)
    resumed = fit(0, NET, small_digits, config.replace(schedule=lambda step: 0.5), checkpoint=tmp_path)
    whole = fit(0, NET, small_digits, config)
    chex.assert_trees_all_equal(resumed.params, whole.params)  # the same lambda, redefined, resumes


def test_a_schedule_that_cannot_be_recorded_is_refused_on_resume(small_digits, tmp_path):
    class Opaque:
        factor = 0.5

    holder = Opaque()
    config = TrainConfig(epochs=3, schedule=lambda step: holder.factor)
    with pytest.raises(Killed):
        fit(0, NET, small_digits, config, checkpoint=tmp_path, callback=kill_after(2))
    with pytest.raises(CheckpointError, match="the schedule cannot be recorded by value.*Name it"):
        fit(0, NET, small_digits, config, checkpoint=tmp_path)


def test_a_cost_function_of_the_logits_trains(small_digits, tmp_path):
    def hinge(logits, y):
        true = jnp.take_along_axis(logits, y[:, None], axis=-1)
        return jnp.sum(jnp.maximum(0.0, 1.0 + logits - true), axis=-1) - 1.0

    config = TrainConfig(cost=hinge, learning_rate=0.05, epochs=5, init="he")
    result = fit(0, NET, small_digits, config, checkpoint=tmp_path)
    assert result.history["test_accuracy"][-1] > 0.8
    record = config.to_dict()["cost"]
    assert record["function"].endswith("hinge") and "code" in record
    again = fit(0, NET, small_digits, config, checkpoint=tmp_path)  # the same function resumes (finished)
    chex.assert_trees_all_equal(again.params, result.params)


def test_a_registered_activation_is_usable_and_backprop_asks_for_its_derivative(small_digits):
    jaxgd.register_activation("softplus_test", jax.nn.softplus, jax.nn.sigmoid)
    jaxgd.register_activation("swish_test", jax.nn.swish)
    net = MLP((64, 16, 10), activation="softplus_test", output="softmax")
    config = TrainConfig(cost="cross_entropy", learning_rate=0.5, epochs=2)
    a = fit(0, net, small_digits, config)
    b = fit(0, net, small_digits, config.replace(gradient="backprop"))
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-3, atol=1e-4)
    fit(0, jaxgd.CNN(small_digits.input_shape, 10, channels=(4,), activation="swish_test"), small_digits,
        config.replace(epochs=1))
    with pytest.raises(ValueError, match="registered without its derivative"):
        fit(0, MLP((64, 8, 10), activation="swish_test"), small_digits, config.replace(gradient="backprop"))
    with pytest.raises(ValueError, match="already registered with other functions"):
        jaxgd.register_activation("relu", jax.nn.gelu)


def test_custom_metrics_and_grad_norm_are_recorded_per_member(small_digits, x64):
    def margin(logits, y):  # per example: the true class's logit above the best other one
        true = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
        return true - jnp.max(jnp.where(jax.nn.one_hot(y, 10) > 0, -jnp.inf, logits), axis=-1)

    def first_layer_norm(params):
        return jnp.linalg.norm(params[0]["w"])

    data = jaxgd.data.subset(small_digits, n_train=100)
    seen = []
    pop = fit(jax.random.split(jax.random.key(0), 3), NET, data, TrainConfig(cost="cross_entropy", epochs=2,
                                                                              learning_rate=0.3, eval_batch_size=64),
              metrics={"margin": margin, "w1": first_layer_norm, "grad_norm": "grad_norm"},
              callback=lambda e, m: seen.append(sorted(m)))
    h = pop.history
    assert h["train_margin"].shape == (3, 2) and h["test_margin"].shape == (3, 2) and h["w1"].shape == (3, 2)
    assert "grad_norm" in seen[0] and "train_margin" in seen[0]
    for i in range(3):
        p = pop.member(i).params
        x, y = jnp.asarray(data.x_train, jnp.float64), jnp.asarray(data.y_train)
        g = jax.grad(jaxgd.cost_fn(NET, "cross_entropy"))(jax.tree.map(lambda a: a.astype(jnp.float64), p), x, y)
        np.testing.assert_allclose(h["grad_norm"][i, -1], optax.tree.norm(g), rtol=1e-4)
        np.testing.assert_allclose(h["w1"][i, -1], np.linalg.norm(p[0]["w"]), rtol=1e-5)
        np.testing.assert_allclose(h["train_margin"][i, -1], np.mean(margin(NET.apply(p, x), y)), rtol=1e-4)
    with pytest.raises(ValueError, match="A metric's name must be a new identifier"):
        fit(0, NET, data, TrainConfig(epochs=1), metrics={"train_cost": margin})


def test_grad_norm_reaches_metrics_json_from_the_command_line(tmp_path):
    from jaxgd.cli import main

    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--metrics", "grad_norm", "--optimizer", "adamw", "--lr", "0.01",
                 "--weight-decay", "0.001", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert len(metrics["history"]["grad_norm"]) == 2 and metrics["grad_norm"] > 0
    assert config["train"]["hyperparameters"]["weight_decay"] == 0.001
    assert config["train"]["optimizer"] == "adamw"
