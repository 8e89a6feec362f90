"""The CNN the torch peers train (:mod:`benchmarks.peers.torch_eager`, :mod:`benchmarks.peers.torch_func` with
``model="cnn"``): ``jaxgd.models.CNN``'s default for 28x28 images — 3x3 convolutions of 16 and 32 channels,
ReLU, 2x2 max pooling, a dense output layer — trained with cross-entropy and plain SGD."""
from __future__ import annotations

from benchmarks.common import CNN_CHANNELS


def make_cnn(device):
    import torch

    c1, c2 = CNN_CHANNELS
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, c1, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(c1, c2, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(c2 * 7 * 7, 10)).to(device)
