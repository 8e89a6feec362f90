"""The data order's permutation: jax.random.permutation's draw, made by radix passes on CPUs."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgd.data import permutation as perm_module
from jaxgd.data.permutation import permutation, rounds, stable_argsort


@pytest.mark.parametrize("n", [2, 3, 10, 1000, 50_000, 65_537])
def test_permutation_equals_jax_random_permutation(n):
    draw = jax.jit(permutation, static_argnums=1)
    for seed in range(4):
        key = jax.random.key(seed)
        ours = np.asarray(draw(key, n))
        assert ours.dtype == np.int32
        np.testing.assert_array_equal(ours, np.asarray(jax.random.permutation(key, n)))
    assert sorted(ours.tolist()) == list(range(n))


def test_permutation_under_vmap_and_map_equals_one_at_a_time():
    keys = jax.random.split(jax.random.key(3), 6).reshape(2, 3)
    many = jax.jit(jax.vmap(lambda ks: jax.lax.map(lambda k: permutation(k, 5000), ks)))(keys)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(many[i, j], jax.random.permutation(keys[i, j], 5000))


def test_permutation_uses_jax_for_sizes_beyond_the_radix_sort(monkeypatch):
    monkeypatch.setattr(perm_module, "MAX_N", 100)
    key = jax.random.key(7)
    np.testing.assert_array_equal(permutation(key, 1000), jax.random.permutation(key, 1000))
    np.testing.assert_array_equal(permutation(key, 1), [0])


@pytest.mark.parametrize("n,high", [(1, 5), (7, 2), (5000, 2), (5000, 50), (4097, 2 ** 32), (65_536, 2 ** 32)])
def test_stable_argsort_keeps_ties_in_order(n, high):
    keys = np.random.default_rng(n).integers(0, high, n, dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(stable_argsort(jnp.asarray(keys)), np.argsort(keys, kind="stable"))


def test_stable_argsort_refuses_an_empty_array():
    with pytest.raises(ValueError, match="got 0"):
        stable_argsort(jnp.zeros(0, jnp.uint32))


def test_rounds_match_the_collision_analysis():
    assert [rounds(n) for n in (1, 1000, 50_000, 60_000, 10 ** 7)] == [0, 1, 2, 2, 3]


def test_on_cpu_the_permutation_sorts_single_uint32_arrays():
    key = jax.device_put(jax.random.key(0), jax.devices("cpu")[0])  # compiled for the CPU whatever the default
    hlo = jax.jit(permutation, static_argnums=1).lower(key, 50_000).compile().as_text()
    sorts = re.findall(r"= (\S+) sort\(", hlo)
    assert len(sorts) == 4, sorts  # two rounds of two radix passes
    assert all(s.startswith("u32[") for s in sorts), sorts  # not (key, value) pairs with a comparator
