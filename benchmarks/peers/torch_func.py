"""Peer: a torch.func ensemble — stack_module_state + functional_call + vmap(grad), all members on one minibatch."""
from __future__ import annotations

import copy

import numpy as np

from benchmarks.common import LEARNING_RATE, SIZES, best_time, torch_device, torch_sync


def seconds_per_epoch(x: np.ndarray, y: np.ndarray, batch_size: int, seeds: int, steps: int = 50) -> float:
    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.manual_seed(0)
    device = torch_device()
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device)

    def make():
        layers = []
        for a, b in zip(SIZES[:-1], SIZES[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.Sigmoid()]
        return torch.nn.Sequential(*layers).to(device)

    models = [make() for _ in range(seeds)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    eye = torch.eye(SIZES[-1], device=device)

    def loss(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb,))
        return ((out - eye[yb]) ** 2).sum(1).mean()

    grads_of = vmap(grad(loss), in_dims=(0, 0, None, None))

    def run(k):
        perm = torch.randperm(len(xt), device=device)
        with torch.no_grad():
            for s in range(k):
                i = perm[s * batch_size:(s + 1) * batch_size]
                with torch.enable_grad():
                    g = grads_of(params, buffers, xt[i], yt[i])
                for name in params:
                    params[name].sub_(LEARNING_RATE * g[name])
        torch_sync(device)

    run(3)
    t = best_time(lambda: run(steps), 2)
    return t / steps * (len(x) // batch_size)
