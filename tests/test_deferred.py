"""Deferred first-layer updates (jaxgd.training.deferred): the same SGD, scheduled in blocks of steps."""
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from jaxgd import MLP, Conditions, TrainConfig, fit
from jaxgd.training.deferred import BLOCK_EXAMPLES, block_steps
from jaxgd.training.loop import train_epochs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_both_ways(net, config, data, members, k, conditions=None, learning_rates=None):
    """The same shared-order population trained step by step and in blocks of ``k`` deferred steps."""
    keys = jax.random.split(jax.random.key(3), members)
    ds = jaxgd.data.Dataset(np.asarray(data["x_train"]), np.asarray(data["y_train"])[0 if conditions else ...],
                            np.asarray(data["x_train"])[:5], np.zeros(5, np.int32), num_classes=10)
    run = jaxgd.prepare(keys, net, ds, config, conditions=conditions, learning_rates=learning_rates,
                        devices=jax.devices()[:1])
    assert run.spec.kernel == "deferred" and run.spec.deferred_steps == k
    state = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, run.state)
    arrays = {**run.data, **{k_: jnp.asarray(v) for k_, v in data.items()}}
    out = []
    for s in (run.spec, dataclasses.replace(run.spec, kernel="vmap", deferred_steps=1)):
        step = jax.jit(lambda st, s=s: train_epochs(st, run.member, arrays, spec=s, num_epochs=1))
        out.append(step(state))
    return out, state


def _max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("sizes, activation, output, cost, batch, schedule", [
    ((64, 16, 16, 10), "sigmoid", "sigmoid", "quadratic", 10, None),       # the lesson's network
    ((64, 8, 10), "relu", "softmax", "cross_entropy", 7, "cosine"),        # 142 steps: a short last block
    ((64, 10), "tanh", "sigmoid", "quadratic", 10, "exponential"),          # one layer: u is the logits
])
def test_deferred_blocks_equal_step_by_step_sgd_in_float64(x64, sizes, activation, output, cost, batch, schedule):
    rng = np.random.default_rng(0)
    data = {"x_train": jnp.asarray(rng.random((1000, 64))), "y_train": jnp.asarray(rng.integers(0, 10, 1000))}
    net = MLP(sizes, activation=activation, output=output)
    config = TrainConfig(batch_size=batch, epochs=1, data_order="shared", learning_rate=0.5, cost=cost,
                         schedule=schedule)
    members = 20
    k = BLOCK_EXAMPLES // batch
    (deferred, stepwise), start = _train_both_ways(net, config, data, members, k,
                                                   learning_rates=np.linspace(0.1, 1.0, members))
    assert int(deferred.step[0]) == int(stepwise.step[0]) == 1000 // batch
    assert _max_diff(stepwise.params, start.params) > 1e-2  # the networks did train
    assert _max_diff(deferred.params, stepwise.params) < 1e-10
    # the optimizer state records the same step count and last learning rate either way
    assert int(deferred.opt_state.count[0]) == int(stepwise.opt_state.count[0]) == 1000 // batch
    np.testing.assert_allclose(deferred.opt_state.hyperparams["learning_rate"],
                               stepwise.opt_state.hyperparams["learning_rate"], rtol=1e-12)


def test_deferred_blocks_with_a_label_condition_per_member(x64):
    """Memorization's shape: every member sees the same inputs but its own labels."""
    rng = np.random.default_rng(1)
    x = rng.random((500, 64))
    labels = np.stack([rng.integers(0, 10, 500), rng.permutation(np.repeat(np.arange(10), 50))])
    data = {"x_train": jnp.asarray(x), "y_train": jnp.asarray(labels)}
    net = MLP((64, 16, 10))
    config = TrainConfig(batch_size=10, epochs=1, data_order="shared", learning_rate=1.0)
    members = 12
    cond = Conditions(arrays={"y_train": labels}, index=np.arange(members) % 2)
    (deferred, stepwise), _ = _train_both_ways(net, config, data, members, 10, conditions=cond)
    assert _max_diff(deferred.params, stepwise.params) < 1e-10
    assert _max_diff(deferred.params[0]["w"][0], deferred.params[0]["w"][1]) > 1e-3  # the labels mattered


def test_deferred_updates_are_used_only_where_they_are_exact():
    from jaxgd.training.optim import build
    from jaxgd.training.spec import choose_kernel

    net = MLP((784, 16, 16, 10))

    def k(members=100, shared=True, condition_arrays=(), per_member=(), **kw):
        config = TrainConfig(**{"batch_size": 10, "data_order": "shared" if shared else "per_seed", **kw})
        return choose_kernel(net, config, build(config, per_member)[0], batch_size=config.batch_size or 50_000,
                             population=True, members=members, shared_order=shared,
                             condition_arrays=condition_arrays, per_member=per_member, input_dim=784)["deferred_steps"]

    assert k() == 10 and k(batch_size=20) == 5 and k(batch_size=7) == 14
    assert k(shared=False) == 1                      # each member its own minibatches: no shared Gram matrix
    assert k(optimizer="momentum") == 1 and k(optimizer="adam") == 1
    assert k(weight_decay=1e-4) == 1                 # decoupled weight decay is not plain SGD
    assert k(weight_decay=0.0) == 10                 # ... and no decay is
    assert k(per_member=("weight_decay",)) == 1 and k(per_member=("learning_rate",)) == 10
    assert k(gradient="backprop") == 1               # the hand-written backprop keeps its own loop
    assert k(batch_size=None) == 1 and k(batch_size=64) == 1  # full batch; a block would be one step
    assert k(condition_arrays=("x_train",)) == 1     # inputs that differ per member
    assert k(condition_arrays=("y_train",)) == 10
    assert k(members=4) == 1                         # the Gram matrix would cost more than it saves
    assert block_steps(10, None, 16) == 1


TWO_DEVICES = textwrap.dedent("""
    import json
    from jaxgd.parallel.sharding import use_cpu_devices
    use_cpu_devices(2)
    import jax, numpy as np
    import jaxgd
    data = jaxgd.data.subset(jaxgd.data.load("digits"), n_train=300)
    net = jaxgd.MLP((64, 16, 10))
    keys = jax.random.split(jax.random.key(0), 9)  # 9 members on 2 devices: padded to 10
    config = jaxgd.TrainConfig(epochs=2, data_order="shared")
    sharded = jaxgd.fit(keys, net, data, config)
    single = jaxgd.fit(keys, net, data, config, devices=jax.devices()[:1])
    w = sharded.state.params[0]["w"]
    print(json.dumps({
        "devices": [d.platform for d in jax.devices()],
        "num_devices": sharded.num_devices,
        "shard_rows": sorted(s.data.shape[0] for s in w.addressable_shards),
        "max_param_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                              for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params))),
        "test_accuracy": float(sharded.final("test_accuracy").mean()),
    }))
""")


def test_cpu_devices_spread_a_deferred_population_and_give_the_same_result():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", TWO_DEVICES], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == ["cpu", "cpu"] and out["num_devices"] == 2 and out["shard_rows"] == [5, 5]
    assert out["max_param_diff"] <= 1e-5, out
    assert out["test_accuracy"] > 0.3  # chance is 0.1


def test_use_cpu_devices_refuses_bad_counts_and_a_started_backend():
    from jaxgd.parallel.sharding import use_cpu_devices

    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            use_cpu_devices(bad)
    jax.devices()  # the backend of this test process has started
    with pytest.raises(RuntimeError, match=r"use_cpu_devices\(3\) must be called before"):
        use_cpu_devices(3)
