"""Peer: the idiomatic PyTorch eager loop — nn.Sequential, optim.SGD, one seed at a time."""
from __future__ import annotations

import numpy as np

from benchmarks.common import LEARNING_RATE, SIZES, best_time, torch_device, torch_sync


def seconds_per_epoch(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int = 300) -> float:
    """Times ``steps`` SGD steps after a warm-up and scales to one epoch of ``len(x)`` examples."""
    import torch

    torch.manual_seed(0)
    device = torch_device()
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers += [torch.nn.Linear(a, b), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    eye = torch.eye(SIZES[-1], device=device)

    def run(k):
        perm = torch.randperm(len(xt), device=device)
        for s in range(k):
            i = perm[s * batch_size:(s + 1) * batch_size]
            out = model(xt[i])
            loss = ((out - eye[yt[i]]) ** 2).sum(1).mean()  # the lesson's quadratic cost
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch_sync(device)

    run(20)
    t = best_time(lambda: run(steps), 2)
    return t / steps * (len(x) // batch_size)
