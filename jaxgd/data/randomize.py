"""The data randomizations of Zhang et al. (2017), each a pure function of a key.

Zhang, Bengio, Hardt, Recht and Vinyals, "Understanding deep learning requires
rethinking generalization", ICLR 2017, https://arxiv.org/abs/1611.03530, section 2:
true labels; partially corrupted labels (each label independently replaced, with
probability ``p``, by a class drawn uniformly); random labels (``p = 1``); shuffled
pixels (one permutation of the pixels for every image, train and test); random
pixels (a different permutation for each image); Gaussian inputs (matching the
data's mean and variance). Each returns new arrays; the inputs are not modified.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.errors import DataError, InvalidType
from jaxgd.data.permutation import permutation


def _key(key):
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    raise InvalidType(f"key must be a jax.random.key, got {key!r}.")


def corrupt_labels(key: jax.Array, y, p: float, num_classes: int) -> np.ndarray:
    """Each label replaced, independently with probability ``p``, by a uniformly drawn class.

    As in Zhang et al., the drawn class may equal the true one, so about ``p * (1 - 1/K)``
    of the labels end up wrong.
    """
    if not 0.0 <= float(p) <= 1.0:
        raise DataError(f"Corruption probability must lie in [0, 1], got {p}.")
    k_which, k_class = jax.random.split(_key(key))
    y = jnp.asarray(y, jnp.int32)
    replace = jax.random.bernoulli(k_which, float(p), y.shape)
    drawn = jax.random.randint(k_class, y.shape, 0, num_classes, jnp.int32)
    return np.asarray(jnp.where(replace, drawn, y))


def random_labels(key: jax.Array, y, num_classes: int) -> np.ndarray:
    """Every label drawn uniformly at random (``corrupt_labels`` with ``p = 1``)."""
    return corrupt_labels(key, y, 1.0, num_classes)


def shuffled_pixels(key: jax.Array, *xs) -> tuple[np.ndarray, ...]:
    """One fixed permutation of the features, applied to every image of every array given."""
    d = np.asarray(xs[0]).shape[-1]
    perm = np.asarray(permutation(_key(key), d))
    return tuple(np.asarray(x)[:, perm] for x in xs)


def random_pixels(key: jax.Array, x) -> np.ndarray:
    """A different random permutation of the features for each image."""
    x = jnp.asarray(x)
    keys = jax.random.split(_key(key), x.shape[0])
    return np.asarray(jax.vmap(lambda k, row: row[permutation(k, row.shape[0])])(keys, x))


def gaussian_inputs(key: jax.Array, reference, *shapes) -> tuple[np.ndarray, ...]:
    """Gaussian noise with the mean and variance of ``reference`` (the training inputs), one array per shape."""
    ref = np.asarray(reference, np.float64)
    mean, std = float(ref.mean()), float(ref.std())
    keys = jax.random.split(_key(key), len(shapes))
    return tuple(np.asarray(mean + std * jax.random.normal(k, s, jnp.float32)) for k, s in zip(keys, shapes))
