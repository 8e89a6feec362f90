"""Peer: a torch.func ensemble — stack_module_state + functional_call + vmap(grad), all members on one minibatch.

The batch-norm CNN (``model="cnn_bn"``) passes each member's buffers (running statistics) to
``functional_call`` with its parameters and takes the updated buffers back as an auxiliary output of
``grad``; dropout draws different masks per member (``vmap(..., randomness="different")``)."""
from __future__ import annotations

import copy

import numpy as np

from benchmarks.common import CNN_LEARNING_RATE, LEARNING_RATE, best_time, torch_device, torch_sync
from benchmarks.peers.torch_eager import inputs, loss_fn


def seconds_per_epoch(x: np.ndarray, y: np.ndarray, batch_size: int, seeds: int, steps: int = 50,
                      model: str = "mlp") -> float:
    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap

    from benchmarks.peers.torch_cnn import make

    torch.manual_seed(0)
    device = torch_device()
    xt, yt = inputs(x, y, model, device)
    models = [make(model, device) for _ in range(seeds)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    cost = loss_fn(model)
    lr = LEARNING_RATE if model == "mlp" else CNN_LEARNING_RATE

    def loss(p, b, xb, yb):
        b = {k: v.clone() for k, v in b.items()}  # functional_call updates running statistics in place
        return cost(functional_call(base, (p, b), (xb,)), yb), b

    grads_of = vmap(grad(loss, has_aux=True), in_dims=(0, 0, None, None), randomness="different")

    def run(k):
        perm = torch.randperm(len(xt), device=device)
        with torch.no_grad():
            for s in range(k):
                i = perm[s * batch_size:(s + 1) * batch_size]
                with torch.enable_grad():
                    g, new_buffers = grads_of(params, buffers, xt[i], yt[i])
                for name in params:
                    params[name].sub_(lr * g[name])
                buffers.update(new_buffers)
        torch_sync(device)

    run(3 if model == "mlp" else 2)
    t = best_time(lambda: run(steps), 2)
    return t / steps * (len(x) // batch_size)
