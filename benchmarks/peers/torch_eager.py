"""Peer: the idiomatic PyTorch eager loop — nn.Sequential, optim.SGD, one seed at a time."""
from __future__ import annotations

import numpy as np

from benchmarks.common import CNN_LEARNING_RATE, LEARNING_RATE, SIZES, best_time, torch_device, torch_sync


def make_mlp(device):
    """The lesson's 784-16-16-10 sigmoid network."""
    import torch

    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Sigmoid()]
    return torch.nn.Sequential(*layers).to(device)


def loss_fn(model: str):
    """The lesson's quadratic cost for the MLP, cross-entropy for the CNN."""
    import torch

    if model == "mlp":
        eye = torch.eye(SIZES[-1])
        return lambda out, yb: ((out - eye.to(out.device)[yb]) ** 2).sum(1).mean()
    return torch.nn.functional.cross_entropy


def inputs(x: np.ndarray, y: np.ndarray, model: str, device):
    import torch

    xt = torch.from_numpy(x).to(device)
    return (xt if model == "mlp" else xt.reshape(-1, 1, 28, 28)), torch.from_numpy(y).long().to(device)


def seconds_per_epoch(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int = 300, model: str = "mlp") -> float:
    """Times ``steps`` SGD steps after a warm-up and scales to one epoch of ``len(x)`` examples."""
    import torch

    from benchmarks.peers.torch_cnn import make

    torch.manual_seed(0)
    device = torch_device()
    xt, yt = inputs(x, y, model, device)
    net = make(model, device)
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE if model == "mlp" else CNN_LEARNING_RATE)
    loss = loss_fn(model)

    def run(k):
        perm = torch.randperm(len(xt), device=device)
        for s in range(k):
            i = perm[s * batch_size:(s + 1) * batch_size]
            value = loss(net(xt[i]), yt[i])
            opt.zero_grad()
            value.backward()
            opt.step()
        torch_sync(device)

    run(20 if model == "mlp" else 5)
    t = best_time(lambda: run(steps), 2)
    return t / steps * (len(x) // batch_size)
