"""The sharpness measured inside training, evaluations every N steps, and the edge-of-stability study."""
import json

import jax
import numpy as np
import pytest

import jaxgd
from jaxgd.errors import InvalidArgument
from jaxgd.landscape import sharpness, sharpness_metric
from jaxgd.landscape.metrics import SHARPNESS_SEED
from tests.conftest import Killed, kill_after, optimized

METRIC = {"sharpness": sharpness_metric(iters=5, examples=100)}


def outside(model, cost, network, data, examples=100, iters=5):
    """The sharpness metric's value computed outside training, by jaxgd.landscape.sharpness."""
    x = data.x_train[:examples].reshape((examples, *data.input_shape))
    return float(sharpness(model, cost, network, x, data.y_train[:examples], iters=iters,
                           key=jax.random.key(SHARPNESS_SEED)))


@pytest.fixture(scope="module")
def data(small_digits):
    return jaxgd.data.subset(small_digits, n_train=200)


def test_the_metric_inside_training_is_landscape_sharpness_outside(data):
    """An MLP population (trained in its compute layout, a rate per member), a batch-norm CNN (measured in evaluation
    mode) and an Equinox module, each measured at the end of training and again from its returned parameters."""
    import equinox as eqx

    config = jaxgd.TrainConfig(cost="cross_entropy", learning_rate=0.1, batch_size=50, epochs=1)
    mlp = jaxgd.MLP((64, 16, 10), activation="relu", output="softmax")
    population = jaxgd.fit(jax.random.split(jax.random.key(1), 2), mlp, data, config, metrics=METRIC,
                           learning_rates=[0.05, 0.2])
    assert population.initial["sharpness"].shape == (2,)
    for i in range(2):
        params = jax.tree.map(lambda a: a[i], population.params)
        assert population.final("sharpness")[i] == pytest.approx(outside(mlp, config.cost, params, data), rel=1e-4)
    for model, d in [(jaxgd.CNN((8, 8, 1), 10, channels=(4,), batch_norm=True), data),
                     (jaxgd.from_equinox(lambda key: eqx.nn.MLP(64, 10, 8, 1, key=key)),
                      data.replace(input_shape=(64,)))]:
        result = jaxgd.fit(0, model, d, config, metrics=METRIC)
        network = result.params if result.model_state is None else (result.params, result.model_state)
        inside = float(result.final("sharpness"))
        assert np.isfinite(inside) and inside != 0
        assert inside == pytest.approx(outside(model, config.cost, network, d), rel=1e-4), type(model).__name__


def test_sharpness_is_a_named_metric_and_the_command_line_takes_it(tmp_path):
    from jaxgd.cli import main
    from jaxgd.training.metrics import NAMED, as_metric

    assert main(["train", "--batch-size", "full", "--lr", "0.5", "--epochs", "4", "--eval-every", "2", "--eval-unit",
                 "steps", "--metrics", "sharpness", "--n-train", "200", "--quiet", "--out", str(tmp_path / "run")]) == 0
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert history["step"] == [2, 4] and len(history["sharpness"]) == 2
    assert NAMED["sharpness"].kind == "landscape" and NAMED["sharpness"].examples == 1000
    with pytest.raises(InvalidArgument):
        sharpness_metric(iters=0)
    with pytest.raises(InvalidArgument):
        as_metric("step", NAMED["sharpness"])  # the evaluation axis is reserved


def test_eval_every_steps_gives_the_steps_and_resumes_bit_identically(data, tmp_path):
    net = jaxgd.MLP((64, 16, 10), activation="tanh", output="identity")
    config = jaxgd.TrainConfig(batch_size=None, epochs=7, eval_every=2, eval_unit="steps", learning_rate=0.05)
    whole = jaxgd.fit(3, net, data, config, metrics=METRIC)
    assert list(whole.history["step"]) == [2, 4, 6, 7] and list(whole.history["epoch"]) == [2, 4, 6, 7]
    with pytest.raises(Killed):
        jaxgd.fit(3, net, data, config, metrics=METRIC, checkpoint=tmp_path, callback=kill_after(4))
    resumed = jaxgd.fit(3, net, data, config, metrics=METRIC, checkpoint=tmp_path)
    for name, values in whole.history.items():
        np.testing.assert_array_equal(resumed.history[name], values, err_msg=name)
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)


def test_steps_of_minibatch_runs_count_whole_epochs_or_are_refused(data):
    net = jaxgd.MLP((64, 8, 10))
    config = jaxgd.TrainConfig(batch_size=50, epochs=4, eval_every=8, eval_unit="steps")  # 4 steps an epoch
    assert list(jaxgd.fit(0, net, data, config).history["step"]) == [8, 16]
    with pytest.raises(InvalidArgument, match="falls inside an epoch of 4 steps"):
        jaxgd.fit(0, net, data, config.replace(eval_every=6))
    with pytest.raises(InvalidArgument, match="eval_unit"):
        jaxgd.TrainConfig(eval_unit="minutes").validate()


@pytest.fixture(scope="module")
def eos(tmp_path_factory):
    """The quick preset at its largest rate for 2,000 steps (its sharpness reaches 0.9 x 2/eta after 750 steps)."""
    from experiments import edge_of_stability

    out = tmp_path_factory.mktemp("edge_of_stability")
    with optimized():
        assert edge_of_stability.main(["--preset", "quick", "--lrs", "0.1", "--epochs", "2000", "--eval-every", "100",
                                       "--out", str(out), "--quiet"]) == 0
    assert (out / "edge_of_stability.png").stat().st_size > 10_000
    return json.loads((out / "results.json").read_text())


def test_the_sharpness_rises_to_two_over_the_learning_rate_and_stays_there(eos):
    (run,) = eos["runs"]
    assert {"learning_rate", "steps", "sharpness", "cost"} <= set(run)
    assert run["learning_rate"] == 0.1 and run["steps"][0] == 0 and run["steps"][-1] == 2000
    assert len(run["steps"]) == len(run["sharpness"]) == len(run["cost"]) == 21
    edge = 2 / run["learning_rate"]
    sharp = np.asarray(run["sharpness"])
    assert sharp[0] < 0.8 * edge  # measured: 0.74 x 2/eta
    assert 0.9 <= np.median(sharp[len(sharp) // 2:]) / edge <= 1.1  # measured: see the README
    assert run["cost"][-1] < 0.5 * run["cost"][0]
