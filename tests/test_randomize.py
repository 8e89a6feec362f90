import jax
import numpy as np
import pytest

from jaxgd.data import corrupt_labels, gaussian_inputs, random_labels, random_pixels, shuffled_pixels


def test_corrupt_labels_replaces_about_p_of_them_with_uniform_classes():
    y = np.arange(20_000) % 10
    for p in (0.0, 0.2, 0.6):
        z = corrupt_labels(jax.random.key(0), y, p, 10)
        assert abs(np.mean(z != y) - p * 0.9) < 0.015  # a drawn class equals the true one 1 time in 10
    r = random_labels(jax.random.key(1), y, 10)
    assert np.all(np.abs(np.bincount(r, minlength=10) / len(r) - 0.1) < 0.01)
    np.testing.assert_array_equal(corrupt_labels(jax.random.key(0), y, 0.3, 10), corrupt_labels(jax.random.key(0), y, 0.3, 10))
    with pytest.raises(ValueError, match="1.5"):
        corrupt_labels(jax.random.key(0), y, 1.5, 10)


def test_corruption_levels_drawn_with_one_key_are_nested():
    y = np.arange(5000) % 10
    low, high = (corrupt_labels(jax.random.key(3), y, p, 10) for p in (0.2, 0.6))
    assert np.all((low == y) | (low == high))  # every label changed at 0.2 is changed the same way at 0.6


def test_shuffled_pixels_use_one_permutation_for_all_images():
    x = np.random.default_rng(0).random((5, 12))
    t = np.random.default_rng(1).random((3, 12))
    xs, ts = shuffled_pixels(jax.random.key(0), x, t)
    order = [int(np.flatnonzero(x[0] == v)[0]) for v in xs[0]]  # the permutation, read off the first image
    np.testing.assert_array_equal(xs, x[:, order])
    np.testing.assert_array_equal(ts, t[:, order])
    assert order != list(range(12))


def test_random_pixels_permute_each_image_on_its_own():
    x = np.tile(np.arange(16.0), (4, 1))
    z = random_pixels(jax.random.key(0), x)
    for row in z:
        np.testing.assert_array_equal(np.sort(row), np.arange(16.0))
    assert len({tuple(r) for r in z}) == 4


def test_gaussian_inputs_match_the_datas_mean_and_variance():
    x = np.random.default_rng(0).random((2000, 30)).astype(np.float32) * 0.5
    (g,) = gaussian_inputs(jax.random.key(0), x, (2000, 30))
    assert g.shape == (2000, 30)
    assert abs(g.mean() - x.mean()) < 0.01 and abs(g.std() / x.std() - 1) < 0.02
