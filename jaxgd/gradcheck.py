"""Checks the hand-written backprop against JAX autodiff, layer by layer."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgd.backprop import backprop
from jaxgd.costs import cost_fn
from jaxgd.mlp import MLP, Params


def gradcheck(net: MLP, cost: str, params: Params, x, y) -> list[dict]:
    """Compares :func:`jaxgd.backprop` with ``jax.grad(cost_fn(net, cost))``.

    Returns:
      One row per layer and parameter: ``{"layer", "param", "shape", "max_abs_diff",
      "max_rel_diff"}``, where the relative difference is the largest absolute
      difference divided by the largest absolute autodiff entry of that leaf.
    """
    net.check_params(params)
    by_hand = backprop(net, cost, params, x, y)
    by_autodiff = jax.grad(cost_fn(net, cost))(params, x, y)
    rows = []
    for i, (h, a) in enumerate(zip(by_hand, by_autodiff)):
        for name in ("w", "b"):
            hi, ai = np.asarray(h[name]), np.asarray(a[name])
            diff = float(np.max(np.abs(hi - ai)))
            scale = float(np.max(np.abs(ai)))
            rows.append({
                "layer": i,
                "param": name,
                "shape": list(ai.shape),
                "max_abs_diff": diff,
                "max_rel_diff": diff / scale if scale > 0 else diff,
            })
    return rows


def random_problem(net: MLP, key: jax.Array, batch: int = 32, init: str = "normal", dtype=jnp.float32):
    """Parameters, inputs in [0, 1) and integer labels to run :func:`gradcheck` on."""
    return _random_problem(net, key, batch, init, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))  # one program instead of many eager random draws
def _random_problem(net, key, batch, init, dtype):
    kp, kx, ky = jax.random.split(key, 3)
    params = net.init(kp, init=init, dtype=dtype)
    x = jax.random.uniform(kx, (batch, net.sizes[0]), dtype)
    y = jax.random.randint(ky, (batch,), 0, net.sizes[-1])
    return params, x, y
