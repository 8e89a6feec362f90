"""The CNNs the torch peers train (:mod:`benchmarks.peers.torch_eager`, :mod:`benchmarks.peers.torch_func` with
``model="cnn"`` or ``"cnn_bn"``): ``jaxgd.models.CNN``'s default for 28x28 images — 3x3 convolutions of 16 and
32 channels, ReLU, 2x2 max pooling, a dense output layer — trained with cross-entropy and plain SGD; ``cnn_bn``
adds batch norm after each convolution and dropout before the dense layer, as
``jaxgd.CNN(..., batch_norm=True, dropout=CNN_DROPOUT)`` has them."""
from __future__ import annotations

from benchmarks.common import CNN_CHANNELS, CNN_DROPOUT


def make_cnn(device, regularized: bool = False):
    import torch

    c1, c2 = CNN_CHANNELS
    norm = (lambda c: [torch.nn.BatchNorm2d(c)]) if regularized else (lambda c: [])
    drop = [torch.nn.Dropout(CNN_DROPOUT)] if regularized else []
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, c1, 3, padding=1), *norm(c1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(c1, c2, 3, padding=1), *norm(c2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), *drop, torch.nn.Linear(c2 * 7 * 7, 10)).to(device)


def make(model: str, device):
    """The network a peer trains for ``model`` (``mlp``, ``cnn`` or ``cnn_bn``), in training mode."""
    from benchmarks.peers.torch_eager import make_mlp

    net = make_mlp(device) if model == "mlp" else make_cnn(device, regularized=model == "cnn_bn")
    return net.train()
