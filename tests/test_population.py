"""Populations: many networks as one program — same results as one at a time, sharded or not."""
import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest

from jaxgd import MLP, Conditions, TrainConfig, fit, member_stats
from jaxgd.training.population import grid

NET = MLP((64, 16, 10))
CONFIG = TrainConfig(epochs=3, learning_rate=3.0)


def _member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def test_population_members_equal_networks_trained_one_at_a_time(small_digits):
    keys = jax.random.split(jax.random.key(0), 4)
    pop = fit(keys, NET, small_digits, CONFIG)
    assert pop.history["test_cost"].shape == (4, 3) and pop.params[0]["w"].shape == (4, 64, 16)
    assert pop.initial["train_cost"].shape == (4,) and pop.diverged.shape == (4,)
    for i in (0, 3):
        single = fit(keys[i], NET, small_digits, CONFIG)
        chex.assert_trees_all_close(_member(pop.params, i), single.params, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(pop.history["test_cost"][i], single.history["test_cost"], rtol=1e-4)


def test_shared_order_gives_every_member_the_same_minibatches(small_digits):
    keys = jax.random.split(jax.random.key(1), 3)
    shared = CONFIG.replace(data_order="shared")
    full = fit(keys, NET, small_digits, shared)
    alone = fit(keys[2:], NET, small_digits, shared)  # a member's order does not depend on the others
    chex.assert_trees_all_close(_member(full.params, 2), _member(alone.params, 0), rtol=1e-4, atol=1e-5)
    same_init = fit(jax.numpy.stack([keys[0], keys[0]]), NET, small_digits, CONFIG)
    chex.assert_trees_all_close(_member(same_init.params, 0), _member(same_init.params, 1))
    per_seed = fit(keys, NET, small_digits, CONFIG)
    assert not np.allclose(per_seed.params[0]["w"][2], full.params[0]["w"][2], atol=1e-3)


def test_diverged_members_are_flagged_and_do_not_poison_the_others(small_digits):
    net = MLP((64, 16, 10), activation="relu", output="identity")
    keys = jax.random.split(jax.random.key(2), 3)
    # He init: with unit-variance weights this relu network's first steps blow its weights up 46-90x
    config = TrainConfig(epochs=3, learning_rate=0.05, init="he")
    pop = fit(keys, net, small_digits, config, learning_rates=[0.05, 100.0, 0.05])
    assert list(pop.diverged) == [False, True, False]
    assert pop.diverged_epoch[1] >= 1 and pop.diverged_epoch[0] == -1
    single = fit(keys[2], net, small_digits, config)
    chex.assert_trees_all_close(_member(pop.params, 2), single.params, rtol=1e-4, atol=1e-5)
    stats = member_stats(pop.final("test_cost"), pop.diverged)
    assert stats["members"] == 2 and stats["excluded"] == 1 and np.isfinite(stats["mean"])


def test_per_member_learning_rates(small_digits):
    keys = jax.numpy.stack([jax.random.key(3)] * 2)
    pop = fit(keys, NET, small_digits, CONFIG, learning_rates=[3.0, 0.5])
    slow = fit(keys[1], NET, small_digits, CONFIG.replace(learning_rate=0.5))
    chex.assert_trees_all_close(_member(pop.params, 1), slow.params, rtol=1e-4, atol=1e-5)


def test_conditions_train_each_member_on_its_own_data_variant(small_digits):
    rng = np.random.default_rng(0)
    random_labels = rng.integers(0, 10, small_digits.n_train).astype(np.int32)
    conditions_y = np.stack([small_digits.y_train, random_labels])
    keys, index = grid(jax.random.key(4), num_conditions=2, seeds=2)
    pop = fit(keys, NET, small_digits, CONFIG, conditions=Conditions({"y_train": conditions_y}, index))
    shuffled = small_digits.replace(y_train=random_labels)
    single = fit(keys[3], NET, shuffled, CONFIG)
    chex.assert_trees_all_close(_member(pop.params, 3), single.params, rtol=1e-4, atol=1e-5)
    # members of the true-label condition generalise, those fitting random labels do not
    assert pop.final("test_accuracy")[:2].min() > 0.4 > 0.25 > pop.final("test_accuracy")[2:].max()


def test_conditions_are_validated(small_digits):
    keys = jax.random.split(jax.random.key(0), 2)
    bad = Conditions({"y_train": np.zeros((1, 5), np.int32)}, np.zeros(2, int))
    with pytest.raises(ValueError, match=r"y_train has shape \(1, 5\)"):
        fit(keys, NET, small_digits, CONFIG, conditions=bad)
    out_of_range = Conditions({"y_train": np.full((1, small_digits.n_train), 12)}, np.zeros(2, int))
    with pytest.raises(ValueError, match="labels outside"):
        fit(keys, NET, small_digits, CONFIG, conditions=out_of_range)
    with pytest.raises(ValueError, match="learning_rates must have shape"):
        fit(keys, NET, small_digits, CONFIG, learning_rates=[1.0])
    with pytest.raises(ValueError, match="need a batch of keys"):
        fit(keys[0], NET, small_digits, CONFIG, learning_rates=[1.0])


def test_members_in_chunks_equal_one_program(small_digits):
    keys = jax.random.split(jax.random.key(5), 5)
    whole = fit(keys, NET, small_digits, CONFIG)
    chunked = fit(keys, NET, small_digits, CONFIG, max_members=2)
    assert chunked.params[0]["w"].shape == (5, 64, 16)
    chex.assert_trees_all_close(chunked.params, whole.params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(chunked.history["test_cost"], whole.history["test_cost"], rtol=1e-4)


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    import jaxgd
    from jaxgd.training.loop import train_epochs
    data = jaxgd.data.subset(jaxgd.data.load("digits"), n_train=300)
    net = jaxgd.MLP((64, 16, 10))
    keys = jax.random.split(jax.random.key(0), 6)  # 6 members on 4 devices: padded to 8
    out = {"devices": jax.device_count()}
    for order in ("per_seed", "shared"):
        config = jaxgd.TrainConfig(epochs=2, data_order=order)
        sharded = jaxgd.fit(keys, net, data, config)
        single = jaxgd.fit(keys, net, data, config, devices=jax.devices()[:1])
        w = sharded.state.params[0]["w"]
        out[order] = {
            "num_devices": sharded.num_devices,
            "device_set": len(w.sharding.device_set),
            "shard_rows": sorted(s.data.shape[0] for s in w.addressable_shards),
            "max_param_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                  for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params))),
            "max_metric_diff": float(np.max(np.abs(sharded.history["test_cost"] - single.history["test_cost"]))),
            "shape": list(sharded.params[0]["w"].shape),
        }
        # the compiled epoch of the sharded population: its members need nothing from other devices
        state, member, arrays, spec = jaxgd.prepare(keys, net, data, config)
        hlo = jax.jit(lambda s: train_epochs(s, member, arrays, spec=spec, num_epochs=1)).lower(state).compile().as_text()
        out[order]["collectives"] = [op for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute",
                                                   "reduce-scatter") if op in hlo]
    print(json.dumps(out))
""")


def test_sharded_population_over_four_devices_equals_the_unsharded_run():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    for order in ("per_seed", "shared"):
        r = out[order]
        assert r["num_devices"] == 4 and r["device_set"] == 4 and r["shard_rows"] == [2, 2, 2, 2]
        assert r["shape"] == [6, 64, 16]
        assert r["max_param_diff"] <= 1e-5 and r["max_metric_diff"] <= 1e-5, r
        assert r["collectives"] == [], r  # e.g. every device drawing every member's data order
