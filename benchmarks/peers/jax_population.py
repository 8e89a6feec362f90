"""Peer: the population a JAX expert writes in thirty lines — ``vmap`` of an optax step inside ``lax.scan``
inside ``jit``, every member on the same minibatch, the member axis sharded over the devices.

The MLP is the lesson's sigmoid network with the quadratic cost; the CNN is ``jaxgd.models.CNN``'s default
for 28x28 images written with XLA's own ``lax.conv_general_dilated`` and ``reduce_window``, as Flax's and
Equinox's layers are."""
from __future__ import annotations

import numpy as np

from benchmarks.common import CNN_CHANNELS, CNN_LEARNING_RATE, LEARNING_RATE, SIZES, best_time


def seconds_per_epoch(x: np.ndarray, y: np.ndarray, batch_size: int, seeds: int, model: str = "mlp",
                      steps: int = 50) -> float:
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    c1, c2 = CNN_CHANNELS

    def init_mlp(key):
        ks = jax.random.split(key, len(SIZES) - 1)
        return [{"w": jax.random.normal(k, (a, b)), "b": jnp.zeros(b)} for k, a, b in zip(ks, SIZES[:-1], SIZES[1:])]

    def loss_mlp(p, xb, yb):
        a = xb
        for layer in p:
            a = jax.nn.sigmoid(a @ layer["w"] + layer["b"])
        return jnp.mean(jnp.sum((a - jax.nn.one_hot(yb, SIZES[-1])) ** 2, axis=-1))

    def init_cnn(key):
        k1, k2, k3 = jax.random.split(key, 3)
        he = lambda k, shape, fan_in: jax.random.normal(k, shape) * (2.0 / fan_in) ** 0.5  # noqa: E731
        return {"c1": he(k1, (3, 3, 1, c1), 9), "b1": jnp.zeros(c1), "c2": he(k2, (3, 3, c1, c2), 9 * c1),
                "b2": jnp.zeros(c2), "d": he(k3, (49 * c2, 10), 49 * c2), "bd": jnp.zeros(10)}

    def block(a, w, b):
        a = jax.lax.conv_general_dilated(a, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
        return jax.lax.reduce_window(jax.nn.relu(a), -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def loss_cnn(p, xb, yb):
        a = block(block(xb.reshape(-1, 28, 28, 1), p["c1"], p["b1"]), p["c2"], p["b2"])
        logits = a.reshape(a.shape[0], -1) @ p["d"] + p["bd"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

    init, loss, lr = (init_mlp, loss_mlp, LEARNING_RATE) if model == "mlp" else (init_cnn, loss_cnn, CNN_LEARNING_RATE)
    tx = optax.sgd(lr)
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    def step(p, s, xb, yb):
        updates, s = tx.update(jax.grad(loss)(p, xb, yb), s, p)
        return optax.apply_updates(p, updates), s

    @jax.jit
    def train(p, s, idx):
        body = lambda c, i: (jax.vmap(step, in_axes=(0, 0, None, None))(*c, xs[i], ys[i]), None)  # noqa: E731
        return jax.lax.scan(body, (p, s), idx)[0]

    mesh = Mesh(np.array(jax.devices()), ("members",))
    params = jax.device_put(jax.vmap(init)(jax.random.split(jax.random.key(0), seeds)), NamedSharding(mesh, P("members")))
    state = [params, jax.vmap(tx.init)(params)]
    idx = jnp.asarray(np.random.default_rng(0).permutation(len(x))[: steps * batch_size].reshape(steps, batch_size))

    def run():
        state[:] = jax.block_until_ready(train(*state, idx))

    run()
    t = best_time(run, 2)
    return t / steps * (len(x) // batch_size)
