"""Data augmentation inside the compiled loop: pure functions of a key, applied to the gathered minibatch.

``TrainConfig(augment="crop:2,flip,noise:0.1")`` names the transformations, applied in this order
to each example of a minibatch that is augmented (each with probability ``p``, the member's
``augment`` hyperparameter, 1 by default):

- ``crop:K``: pad the image with K zeros on every side and crop a random window of its size (random
  crops, as Zhang et al. 2017 and the CIFAR literature use them; images only);
- ``flip``: mirror the image left to right with probability 1/2 (images only);
- ``noise:S``: add Gaussian noise of standard deviation S to every input (any data).

Every draw comes from the key the step gives (the member's own key and the step), so a member
augments the same way in a population as alone, and a resumed run as an uninterrupted one.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument

#: The transformations, and whether each takes a number.
TRANSFORMS = {"crop": int, "flip": None, "noise": float}
#: Those that need images ``(H, W[, C])``.
IMAGE_ONLY = ("crop", "flip")


def parse(text: str | None) -> tuple[tuple[str, float | None], ...]:
    """``"crop:2,flip,noise:0.1"`` -> ``(("crop", 2), ("flip", None), ("noise", 0.1))``; ``None`` or ``""`` -> ``()``.

    Raises ``InvalidArgument`` naming the first part that is not a known transformation with a valid value.
    """
    if text is None:
        return ()
    if not isinstance(text, str):
        raise InvalidArgument(f"augment must be a string such as 'crop:2,flip,noise:0.1', got {text!r}.")
    out = []
    if not text.strip():
        return ()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise InvalidArgument(f"An empty augmentation in {text!r} (a comma too many?).")
        name, _, value = part.partition(":")
        kind = TRANSFORMS.get(name)
        if name not in TRANSFORMS:
            raise InvalidArgument(f"Unknown augmentation {name!r} in {text!r}; choose from crop:K, flip, noise:S.")
        if kind is None:
            if value:
                raise InvalidArgument(f"The augmentation {name!r} takes no value, got {part!r}.")
            out.append((name, None))
            continue
        try:
            number = kind(value)
        except ValueError:
            raise InvalidArgument(f"The augmentation {name!r} needs a number, as in {name}:"
                                  f"{'2' if kind is int else '0.1'}; got {part!r}.") from None
        if not (math.isfinite(number) and number > 0):
            raise InvalidArgument(f"The augmentation {part!r} needs a positive finite value.")
        out.append((name, number))
    if len({n for n, _ in out}) != len(out):
        raise InvalidArgument(f"An augmentation is repeated in {text!r}.")
    return tuple(out)


def canonical(text: str | None) -> str | None:
    """The spelling of an augmentation that is recorded (``config.json``, checkpoints): ``" crop:1 , flip"``
    -> ``"crop:1,flip"``, ``"noise:1e-1"`` -> ``"noise:0.1"``, ``""`` -> ``None``; equivalent specs record alike."""
    ops = parse(text)
    return ",".join(name if value is None else f"{name}:{value!r}" for name, value in ops) or None


def check(ops: tuple, input_shape: tuple[int, ...], name: str = "the data") -> None:
    """Refuses image transformations for data that are not images (``input_shape`` of rank 2 or 3)."""
    for op, value in ops:
        if op in IMAGE_ONLY and len(input_shape) not in (2, 3):
            raise InvalidArgument(f"The augmentation {op!r} needs images (H, W) or (H, W, C), but the inputs of "
                                  f"{name} have shape {tuple(input_shape)}; use noise:S for other data.")
        if op == "crop" and value >= min(input_shape[:2]):
            raise InvalidArgument(f"crop:{value} pads and crops by as much as the images' side or more "
                                  f"({tuple(input_shape[:2])}).")


def _one(key, image, ops):
    """One example ``(H, W, C)`` (or any shape, for noise alone), every transformation applied."""
    for op, value in ops:
        key, k = jax.random.split(key)
        if op == "crop":
            h, w = image.shape[:2]
            padded = jnp.pad(image, ((value, value), (value, value)) + ((0, 0),) * (image.ndim - 2))
            dy, dx = jax.random.randint(k, (2,), 0, 2 * value + 1)
            image = jax.lax.dynamic_slice(padded, (dy, dx) + (0,) * (image.ndim - 2), image.shape)
        elif op == "flip":
            image = jnp.where(jax.random.bernoulli(k), image[:, ::-1], image)
        elif op == "noise":
            image = image + value * jax.random.normal(k, image.shape, image.dtype)
    return image


def augment(key: jax.Array, x: jax.Array, ops: tuple, input_shape: tuple[int, ...], p=1.0) -> jax.Array:
    """The minibatch ``x (batch, input_dim)`` (flat rows) with each example augmented with probability ``p``.

    Args:
      key: this step's key.
      x: flat rows, reshaped to ``input_shape`` for the transformations and back.
      ops: :func:`parse`'s transformations.
      p: the probability that an example is augmented (a member's ``augment`` hyperparameter; may be traced).
    """
    if not ops:
        return x
    k_which, k_each = jax.random.split(key)
    images = x.reshape((x.shape[0],) + tuple(input_shape))
    out = jax.vmap(lambda k, im: _one(k, im, ops))(jax.random.split(k_each, x.shape[0]), images)
    chosen = jax.random.bernoulli(k_which, jnp.asarray(p, jnp.float32), (x.shape[0],))
    return jnp.where(chosen[:, None], out.reshape(x.shape), x)
