"""Models with state and randomness in populations: batch norm, dropout, data augmentation.

Each member draws its dropout masks and augmentations from its own key and the step, so a member trained in a
population equals its key trained alone; evaluation is deterministic (running statistics, no dropout).
"""
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from jaxgd.cli import main
from jaxgd.data.augment import augment, parse
from jaxgd.errors import InvalidArgument
from tests.conftest import OPTIMIZED, Killed, kill_after, optimized

ROOT = Path(__file__).resolve().parent.parent


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def member(tree, i):
    return jax.tree.map(lambda a: np.asarray(a)[i], tree)


# --- Flax NNX and Equinox ------------------------------------------------------------------------------------

def flax_cnn():
    """The Flax NNX MNIST tutorial's CNN at 8x8: two 3x3 convolutions of 32 and 64 channels with batch norm,
    average pooling, dense 256, dropout 0.05 and 0.2."""
    from flax import nnx

    class CNN(nnx.Module):
        def __init__(self, *, rngs):
            self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
            self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
            self.dropout1 = nnx.Dropout(rate=0.05, rngs=rngs)
            self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
            self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
            self.avg_pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
            self.linear1 = nnx.Linear(2 * 2 * 64, 256, rngs=rngs)
            self.dropout2 = nnx.Dropout(rate=0.2, rngs=rngs)
            self.linear2 = nnx.Linear(256, 10, rngs=rngs)

        def __call__(self, x):
            x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x)))))
            x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
            x = x.reshape(x.shape[0], -1)
            x = nnx.relu(self.dropout2(self.linear1(x)))
            return self.linear2(x)

    return CNN


def equinox_mlp():
    """A 64-128-10 MLP with eqx.nn.BatchNorm and eqx.nn.Dropout(0.2), built with eqx.nn.make_with_state."""
    import equinox as eqx

    class MLP(eqx.Module):
        hidden: eqx.nn.Linear
        norm: eqx.nn.BatchNorm
        drop: eqx.nn.Dropout
        out: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.hidden = eqx.nn.Linear(64, 128, key=k1)
            self.norm = eqx.nn.BatchNorm(128, axis_name="batch", mode="batch")
            self.drop = eqx.nn.Dropout(0.2)
            self.out = eqx.nn.Linear(128, 10, key=k2)

        def __call__(self, x, state, *, key=None):
            h, state = self.norm(self.hidden(x), state)
            return self.out(self.drop(jax.nn.relu(h), key=key)), state

    return lambda key: eqx.nn.make_with_state(MLP)(key)


ADAM = jaxgd.TrainConfig(cost="cross_entropy", optimizer="adam", learning_rate=1e-3, batch_size=32, epochs=12)


@pytest.fixture(scope="module")
def flax_model(digits):
    from flax import nnx

    make = flax_cnn()
    return jaxgd.from_flax(lambda key: make(rngs=nnx.Rngs(key)), digits.x_train[:2].reshape(2, 8, 8, 1))


def test_a_flax_nnx_cnn_with_batch_norm_and_dropout_trains_as_a_population(flax_model, digits):
    assert flax_model.stateful
    keys = jax.random.split(jax.random.key(0), 4)
    with optimized():
        result = jaxgd.fit(keys, flax_model, digits, ADAM.replace(eval_every=ADAM.epochs))
    accuracy = result.final("test_accuracy")
    assert np.all(accuracy >= 0.94) and accuracy.mean() >= 0.96, accuracy
    stats = result.model_state["batch_norm1"]["mean"]
    assert stats.shape == (4, 32) and np.all(np.ptp(stats, axis=0) > 0)  # each member its own statistics


def test_flax_populations_are_deterministic_and_a_member_equals_its_key_alone(flax_model, digits):
    keys = jax.random.split(jax.random.key(0), 4)
    config = ADAM.replace(epochs=2)
    with optimized():  # as a run is compiled (a member equals its key alone compiled alike)
        first = jaxgd.fit(keys, flax_model, digits, config)
        again = jaxgd.fit(keys, flax_model, digits, config)
        alone = jaxgd.fit(keys[2], flax_model, digits, config)
    assert max_diff(first.params, again.params) == 0.0
    assert max_diff(member(first.params, 2), alone.params) <= 1e-4
    assert max_diff(member(first.model_state, 2), alone.model_state) <= 1e-4


def test_an_equinox_mlp_with_batch_norm_and_dropout_trains_as_a_population(digits):
    model = jaxgd.from_equinox(equinox_mlp())
    assert model.stateful and model.with_state
    flat = digits.replace(input_shape=(64,))
    keys = jax.random.split(jax.random.key(0), 4)
    with optimized():  # the population and the member alone compiled alike
        result = jaxgd.fit(keys, model, flat, ADAM)
        alone = jaxgd.fit(keys[1], model, flat, ADAM.replace(epochs=2))
        pop = jaxgd.fit(keys, model, flat, ADAM.replace(epochs=2))
    assert np.all(result.final("test_accuracy") >= 0.93), result.final("test_accuracy")
    assert max_diff(member(pop.params, 1), alone.params) <= 1e-4


def _differ(a, b) -> bool:
    return bool(np.any(np.asarray(a) != np.asarray(b)))


def test_flax_modules_switch_modes_by_argument_or_field_and_every_rng_stream_gets_the_members_key(digits):
    from flax import linen as nn, nnx

    x = digits.x_test[:40].reshape(-1, 8, 8, 1)
    k1, k2 = jax.random.key(1), jax.random.key(2)

    class Deterministic(nn.Module):  # the switch as Linen's own layers name it
        @nn.compact
        def __call__(self, x, deterministic: bool = True):
            return nn.Dense(10)(nn.Dropout(0.5, deterministic=deterministic)(nn.Dense(32)(x.reshape(x.shape[0], -1))))

    class Field(nn.Module):  # the switch a dataclass field; dropout drawing from its own stream "drop"
        training: bool = False

        @nn.compact
        def __call__(self, x):
            h = nn.BatchNorm(use_running_average=not self.training)(nn.Dense(32)(x.reshape(x.shape[0], -1)))
            return nn.Dense(10)(nn.Dropout(0.5, deterministic=not self.training, rng_collection="drop")(h))

    class TrainArgument(nnx.Module):  # NNX, the switch a __call__ argument beside module.train()
        def __init__(self, rngs):
            self.dense, self.norm, self.out = nnx.Linear(64, 32, rngs=rngs), nnx.BatchNorm(32, rngs=rngs), nnx.Linear(32, 10, rngs=rngs)

        def __call__(self, x, train: bool = False):
            return self.out(self.norm(self.dense(x.reshape(x.shape[0], -1)), use_running_average=not train))

    for make in (lambda k: Deterministic(), lambda k: Field(), lambda k: TrainArgument(nnx.Rngs(k))):
        model = jaxgd.from_flax(make, x[:2])
        assert model.stateful
        params, state = model.init(jax.random.key(0))
        evaluated, kept = model.apply(params, state, x)
        assert not _differ(evaluated, model.apply(params, state, x)[0])  # evaluation is deterministic
        trained, new_state = model.apply(params, state, x, key=k1, train=True)
        if jax.tree.leaves(state):  # batch statistics move in training only
            assert max_diff(kept, state) == 0.0 and max_diff(new_state, state) > 1e-3
        if not isinstance(model.make(k1), nnx.Module):  # dropout in training only, drawn from the key
            assert _differ(trained, model.apply(params, state, x, key=k2, train=True)[0])
            assert not _differ(trained, model.apply(params, state, x, key=k1, train=True)[0])
    with pytest.raises(TypeError, match="not a built TrainArgument"):
        jaxgd.from_flax(TrainArgument(nnx.Rngs(0)), x[:2])

    class Always(nn.Module):  # dropout that nothing switches off
        @nn.compact
        def __call__(self, x):
            return nn.Dense(10)(nn.Dropout(0.5, deterministic=False)(x.reshape(x.shape[0], -1)))

    with pytest.raises(InvalidArgument, match="mode switch"):
        jaxgd.from_flax(lambda k: Always(), x[:2])


def test_equinox_modules_switch_modes_whatever_they_were_built_with_and_name_their_batch_axis(digits):
    import equinox as eqx

    x = digits.x_test[:40]
    k1, k2 = jax.random.key(1), jax.random.key(2)

    class Net(eqx.Module):
        dense: eqx.nn.Linear
        norm: eqx.nn.BatchNorm
        drop: eqx.nn.Dropout
        out: eqx.nn.Linear

        def __init__(self, key, axis_name="batch"):
            self.dense, self.out = eqx.nn.Linear(64, 32, key=key), eqx.nn.Linear(32, 10, key=jax.random.fold_in(key, 1))
            self.norm = eqx.nn.BatchNorm(32, axis_name=axis_name, mode="batch")
            self.drop = eqx.nn.Dropout(0.5, inference=True)  # built for inference: jaxgd trains it with dropout

        def __call__(self, x, state, *, key=None):
            h, state = self.norm(self.dense(x), state)
            return self.out(self.drop(h, key=key)), state

    model = jaxgd.from_equinox(lambda k: eqx.nn.make_with_state(Net)(k, axis_name="examples"))
    assert model.axis_name == "examples"
    params, state = model.init(jax.random.key(0))
    trained, new_state = model.apply(params, state, x, key=k1, train=True)
    assert _differ(trained, model.apply(params, state, x, key=k2, train=True)[0])
    assert max_diff(new_state, state) > 1e-3
    assert max_diff(model.apply(params, state, x, train=True)[1], state) > 1e-3  # training without a key: no dropout
    assert max_diff(model.apply(params, state, x)[1], state) == 0.0
    with pytest.raises(InvalidArgument, match="make_with_state"):
        jaxgd.from_equinox(Net)
    with pytest.raises(TypeError, match="not a built MLP"):
        jaxgd.from_equinox(eqx.nn.MLP(64, 10, 8, 1, key=k1))


def test_lines_between_dropout_networks_are_measured_in_evaluation_mode(digits):
    import equinox as eqx

    model = jaxgd.from_equinox(lambda k: eqx.nn.Sequential([
        eqx.nn.Linear(64, 32, key=k), eqx.nn.Lambda(jax.nn.relu), eqx.nn.Dropout(0.5),
        eqx.nn.Linear(32, 10, key=jax.random.fold_in(k, 1))]))
    a, b = model.init(jax.random.key(0)), model.init(jax.random.key(1))
    x, y = digits.x_test[:100], digits.y_test[:100]
    line = jaxgd.landscape.interpolate(model, "cross_entropy", a, b, x, y, num=3)
    for end, params in ((0, a), (-1, b)):  # the ends are the networks themselves, without dropout
        cost, _ = jaxgd.training.evaluation.evaluate(model, "cross_entropy", params[0], x, y, state=params[1])
        assert abs(float(line["cost"][end]) - float(cost)) <= 1e-5


def test_augmentations_are_recorded_in_one_spelling():
    from jaxgd.cli.options import augmentation
    from jaxgd.data.augment import canonical

    assert canonical(" crop:1 , flip") == augmentation("crop:1,flip") == "crop:1,flip"
    assert canonical("noise:1e-1,crop:2") == "noise:0.1,crop:2" and augmentation("") is None
    for bad, message in (("crop:1,", "comma too many"), ("noise:inf", "positive finite")):
        with pytest.raises(InvalidArgument, match=message):
            canonical(bad)


# --- jaxgd.CNN: batch norm, dropout, augmentation, per-member regularizers -------------------------------------

CNN = jaxgd.CNN((8, 8, 1), 10, channels=(16, 32), hidden=(128,), batch_norm=True, dropout=0.0)
SGD = jaxgd.TrainConfig(cost="cross_entropy", optimizer="momentum", learning_rate=0.02, batch_size=32, epochs=15,
                        augment="crop:1")
#: Two keys x {plain; dropout 0.5 and augmentation}: one population.
REGULARIZERS = {"dropout": np.array([0.0, 0.0, 0.5, 0.5]), "augment": np.array([0.0, 0.0, 1.0, 1.0])}


def grid_keys():
    keys = jax.random.split(jax.random.key(0), 2)
    return jnp.concatenate([keys, keys])


@pytest.fixture(scope="module")
def regularized(digits):
    with optimized():
        return jaxgd.fit(grid_keys(), CNN, digits, SGD, hyperparams=REGULARIZERS)


def test_a_regularizer_grid_is_one_population(regularized):
    accuracy = regularized.final("test_accuracy")
    assert np.all(accuracy[:2] >= 0.95) and np.all(accuracy[2:] >= 0.85), accuracy
    assert max_diff(member(regularized.params, 0), member(regularized.params, 2)) > 0.01  # same key, regularized
    assert regularized.hyperparams["dropout"].tolist() == [0, 0, 0.5, 0.5]
    assert set(regularized.model_state) == {"norm"}


def test_a_regularized_member_equals_the_same_configuration_trained_alone(regularized, digits):
    key = grid_keys()[3]
    with optimized():
        alone = jaxgd.fit(key, dataclasses.replace(CNN, dropout=0.5), digits, SGD)
    assert max_diff(member(regularized.params, 3), alone.params) <= 1e-4
    assert max_diff(member(regularized.model_state, 3), alone.model_state) <= 1e-4


def test_evaluation_is_deterministic_with_running_statistics_and_no_dropout(regularized, digits):
    params, state = member(regularized.params, 2), member(regularized.model_state, 2)
    x = digits.x_test.reshape(-1, 8, 8, 1)
    first, state_after = CNN.apply(params, state, x, dropout=0.5)  # evaluation: the rate is not used
    second, _ = CNN.apply(params, state, x, key=jax.random.key(5), dropout=0.5)  # a key alone does not train
    assert np.array_equal(first, second) and max_diff(state, state_after) == 0.0
    accuracy = float(np.mean(np.argmax(first, -1) == digits.y_test))
    assert abs(accuracy - regularized.final("test_accuracy")[2]) < 1e-6
    trained, moved = CNN.apply(params, state, x, key=jax.random.key(5), train=True, dropout=0.5)
    assert not np.array_equal(trained, first) and max_diff(state, moved) > 0  # batch statistics in training


def test_a_stochastic_run_resumes_bit_identically(tmp_path, small_digits):
    config = SGD.replace(epochs=4)
    model = dataclasses.replace(CNN, dropout=0.3)
    whole = jaxgd.fit(jax.random.key(1), model, small_digits, config)
    with pytest.raises(Killed):
        jaxgd.fit(jax.random.key(1), model, small_digits, config, checkpoint=tmp_path, callback=kill_after(2))
    resumed = jaxgd.fit(jax.random.key(1), model, small_digits, config, checkpoint=tmp_path)
    assert max_diff(whole.params, resumed.params) == 0.0 and max_diff(whole.model_state, resumed.model_state) == 0.0


def test_an_mlp_with_dropout_trains_by_autodiff_and_the_backprop_refuses_it(small_digits):
    net = jaxgd.MLP((64, 32, 10), activation="relu", output="softmax", initializer="he", dropout=0.2)
    assert net.stateful and net.describe()["dropout"] == 0.2 and "dropout" not in jaxgd.MLP((64, 10)).describe()
    config = jaxgd.TrainConfig(cost="cross_entropy", optimizer="momentum", learning_rate=0.05, batch_size=32, epochs=8)
    result = jaxgd.fit(jax.random.split(jax.random.key(0), 2), net, small_digits, config,
                       hyperparams={"dropout": np.array([0.0, 0.5])})
    assert np.all(result.final("test_accuracy") > 0.85)
    with pytest.raises(InvalidArgument, match="hand-written backprop has no dropout"):
        jaxgd.fit(0, net, small_digits, config.replace(gradient="backprop"))


def test_per_member_regularizers_are_checked(small_digits):
    keys = jax.random.split(jax.random.key(0), 2)
    plain = jaxgd.CNN((8, 8, 1), 10)
    config = SGD.replace(epochs=1)
    with pytest.raises(InvalidArgument, match="build jaxgd.MLP or jaxgd.CNN with dropout=0.0"):
        jaxgd.fit(keys, plain, small_digits, config, hyperparams={"dropout": np.array([0.0, 0.5])})
    with pytest.raises(InvalidArgument, match=r"rates in \[0, 1\), got 1.0"):
        jaxgd.fit(keys, CNN, small_digits, config, hyperparams={"dropout": np.array([0.0, 1.0])})
    with pytest.raises(InvalidArgument, match="name the augmentation"):
        jaxgd.fit(keys, CNN, small_digits, config.replace(augment=None), hyperparams={"augment": np.array([0, 1.])})
    with pytest.raises(InvalidArgument, match="needs images"):
        jaxgd.fit(keys, CNN, small_digits.replace(input_shape=(64,)), config)
    with pytest.raises(InvalidArgument, match="Unknown augmentation 'rotate'"):
        jaxgd.TrainConfig(augment="rotate:2").validate()


def test_augmentations_are_pure_functions_of_the_key():
    assert parse("crop:2,flip,noise:0.1") == (("crop", 2), ("flip", None), ("noise", 0.1))
    for bad in ("crop", "crop:0", "flip:2", "noise:x", "crop:1,crop:2"):
        with pytest.raises(InvalidArgument):
            parse(bad)
    x = jnp.arange(2 * 16, dtype=jnp.float32).reshape(2, 16) + 1
    key = jax.random.key(0)
    crop = augment(key, x, parse("crop:1"), (4, 4, 1))
    assert np.array_equal(crop, augment(key, x, parse("crop:1"), (4, 4, 1)))
    for row, image in zip(np.asarray(crop).reshape(2, 4, 4), np.asarray(x).reshape(2, 4, 4)):
        padded = np.pad(image, 1)  # the crop is a 4x4 window of the zero-padded image
        assert any(np.array_equal(row, padded[i:i + 4, j:j + 4]) for i in range(3) for j in range(3))
    flipped = augment(key, x, parse("flip"), (4, 4))
    for row, image in zip(np.asarray(flipped).reshape(2, 4, 4), np.asarray(x).reshape(2, 4, 4)):
        assert np.array_equal(row, image) or np.array_equal(row, image[:, ::-1])
    assert np.array_equal(augment(key, x, parse("crop:1,noise:0.5"), (4, 4), p=0.0), x)  # p = 0: none augmented
    noisy = augment(key, x, parse("noise:0.5"), (16,))
    assert 0.2 < float(jnp.std(noisy - x)) < 0.8


# --- the landscape of batch-norm networks --------------------------------------------------------------------

def test_barriers_between_batch_norm_cnns_recompute_statistics_and_align_permutes_them(digits):
    model = jaxgd.CNN((8, 8, 1), 10, channels=(8, 16), hidden=(32,), batch_norm=True)
    config = SGD.replace(epochs=4, augment=None)
    result = jaxgd.fit(jax.random.split(jax.random.key(3), 2), model, digits, config)
    a = (member(result.params, 0), member(result.model_state, 0))
    b = (member(result.params, 1), member(result.model_state, 1))
    x, y = digits.x_train.reshape(-1, 8, 8, 1), digits.y_train
    aligned = jaxgd.landscape.align(model, a, b)
    xt = digits.x_test.reshape(-1, 8, 8, 1)
    assert max_diff(model.apply(*b, xt)[0], model.apply(*aligned, xt)[0]) <= 1e-5  # the same function
    assert not np.array_equal(aligned[1]["norm"][0]["mean"], b[1]["norm"][0]["mean"])  # statistics moved
    before = float(jaxgd.landscape.barrier(model, "cross_entropy", a, b, x, y, 9))
    after = float(jaxgd.landscape.barrier(model, "cross_entropy", a, aligned, x, y, 9))
    assert after < before, (before, after)
    line = jaxgd.landscape.interpolate(model, "cross_entropy", a, a, x, y, 3)
    recomputed = model.batch_statistics(a[0], x)
    cost, _ = jaxgd.training.evaluation.evaluate(model, "cross_entropy", a[0], x, y, state=recomputed)
    assert abs(float(line["cost"][1]) - float(cost)) < 1e-5  # each point measured with recomputed statistics
    with pytest.raises(InvalidArgument, match=r"\(params, state\) pair"):
        jaxgd.landscape.barrier(model, "cross_entropy", a[0], b[0], x, y)
    assert float(jaxgd.landscape.sharpness(model, "cross_entropy", a, x[:256], y[:256], iters=20)) > 0


# --- the command line -----------------------------------------------------------------------------------------

TRAIN = ["train", "--model", "cnn", "--batch-norm", "--dropout", "0.25", "--augment", "crop:1", "--n-train", "300",
         "--epochs", "8", "--quiet"]


def test_the_command_line_trains_batch_norm_dropout_and_augmentation_and_resumes_after_sigkill(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **OPTIMIZED)
    whole, run = tmp_path / "whole", tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "jaxgd", *TRAIN, "--out", str(whole)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads((whole / "config.json").read_text())
    assert record["model"]["batch_norm"] and record["model"]["dropout"] == 0.25 and record["train"]["augment"] == "crop:1"
    proc = subprocess.Popen([sys.executable, "-m", "jaxgd", *TRAIN, "--out", str(run)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from jaxgd.runs.checkpoint import read

    checkpoint = run / ".pending" / "checkpoints" / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if read(checkpoint)[0]["epochs_done"] >= 3:
                break
        except Exception:  # not written yet, or being replaced
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (run / "params.npz").exists()  # killed before it finished
    resumed = subprocess.run([sys.executable, "-m", "jaxgd", *TRAIN, "--out", str(run), "--resume"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (whole / "params.npz").read_bytes() == (run / "params.npz").read_bytes()
    assert (whole / "model_state.npz").read_bytes() == (run / "model_state.npz").read_bytes()
    # the run directory holds what evaluates the network as the run did: parameters and running statistics
    loaded = jaxgd.load_run(whole)
    assert loaded.model_state["norm"][1]["var"].shape == (32,)
    digits = jaxgd.data.load("digits")
    x = digits.x_test.reshape((-1,) + loaded.model.input_shape)
    logits, _ = loaded.model.apply(loaded.params, loaded.model_state, x)
    accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == digits.y_test))
    assert abs(accuracy - loaded.metrics["test_accuracy"]) <= 1 / len(digits.y_test), accuracy
    _, initial = loaded.model.init(jax.random.key(0))  # not the initial statistics
    assert max_diff(initial, loaded.model_state) > 0.1
    pair = jaxgd.load_run(whole, like=loaded.model.init(jax.random.key(0)))  # a stateful model's (params, state)
    assert max_diff(pair.params, loaded.params) == 0.0 and max_diff(pair.model_state, loaded.model_state) == 0.0


def test_bad_regularizer_options_exit_2_in_one_line(tmp_path, capsys):
    for argv, message in ((["--model", "cnn", "--dropout", "1.2"], "dropout rate in [0, 1)"),
                          (["--model", "cnn", "--augment", "rotate:5"], "Unknown augmentation 'rotate'"),
                          (["--batch-norm"], "--batch-norm is for --model cnn")):
        assert main(["train", *argv, "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_linen_field_filled_by_its_argument_is_one_switch_and_factories_that_are_modules_are_taken(digits):
    """Flax's ``nn.merge_param`` pattern (a field ``train = None`` that the argument fills); eqx.Partial."""
    import equinox as eqx
    from flax import linen as nn

    class Merged(nn.Module):
        train: bool | None = None

        @nn.compact
        def __call__(self, x, train: bool | None = None):
            train = nn.merge_param("train", self.train, train)
            h = nn.BatchNorm(use_running_average=not train)(nn.Dense(16)(x.reshape(x.shape[0], -1)))
            return nn.Dense(10)(h)

    x = digits.x_test[:20].reshape(-1, 8, 8, 1)
    for built in (Merged(), Merged(train=False)):  # the argument fills the field; the field set: jaxgd sets it
        model = jaxgd.from_flax(lambda k, built=built: built, x[:2])
        params, state = model.init(jax.random.key(0))
        assert max_diff(model.apply(params, state, x, key=jax.random.key(1), train=True)[1], state) > 1e-3
        assert max_diff(model.apply(params, state, x)[1], state) == 0.0
    made = jaxgd.from_equinox(eqx.Partial(lambda key, width: eqx.nn.MLP(64, 10, width, 1, key=key), width=8))
    assert [a.shape for a in jax.tree.leaves(made.init(jax.random.key(0)))] == [(8, 64), (8,), (10, 8), (10,)]


def test_flax_batch_norm_statistics_are_recomputed_along_lines(digits):
    """A Flax network's batch statistics recomputed from inputs are those inputs' own (dropout off), for NNX
    and Linen; lines between two such networks are measured with them."""
    from flax import linen as nn, nnx

    x, y = digits.x_test[:100].reshape(-1, 8, 8, 1), digits.y_test[:100]

    class Nnx(nnx.Module):
        def __init__(self, rngs):
            self.conv, self.norm = nnx.Conv(1, 8, (3, 3), rngs=rngs), nnx.BatchNorm(8, rngs=rngs)
            self.drop, self.out = nnx.Dropout(0.5, rngs=rngs), nnx.Linear(8 * 64, 10, rngs=rngs)

        def __call__(self, x):  # dropout before batch norm: its statistics are of the undropped inputs
            h = nnx.relu(self.norm(self.drop(self.conv(x))))
            return self.out(h.reshape(h.shape[0], -1))

    class Linen(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            h = nn.Dropout(0.5, deterministic=not train)(nn.Conv(8, (3, 3))(x))
            h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
            return nn.Dense(10)(h.reshape(h.shape[0], -1))

    for make, conv, norm in ((lambda k: Nnx(nnx.Rngs(k)), "conv", "norm"), (lambda k: Linen(), "Conv_0", "BatchNorm_0")):
        model = jaxgd.from_flax(make, x[:2])
        a, b = model.init(jax.random.key(0)), model.init(jax.random.key(1))
        stats = model.batch_statistics(a[0], x)
        z = jax.lax.conv_general_dilated(x, a[0][conv]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + a[0][conv]["bias"]
        assert np.allclose(stats[norm]["mean"], z.mean(axis=(0, 1, 2)), atol=1e-5)
        assert np.allclose(stats[norm]["var"], z.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
        line = jaxgd.landscape.interpolate(model, "cross_entropy", a, b, x, y, num=3)
        cost, _ = jaxgd.training.evaluation.evaluate(model, "cross_entropy", a[0], x, y, state=stats)
        assert abs(float(line["cost"][0]) - float(cost)) <= 1e-5
