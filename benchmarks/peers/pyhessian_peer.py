"""Peer: PyHessian 0.1 (Yao et al. 2020, arXiv 1912.07145) on one PyTorch network at a time.

Each network is an ``nn.Sequential`` holding a jaxgd MLP's weights (hidden activation, then the MLP's
output activation), with the lesson's quadratic cost as its criterion, exactly as jaxgd defines it
(:func:`jaxgd.costs.per_example_cost`: the sum over the outputs of ``(a_j - y_j)**2`` against the
one-hot label, no factor 1/2, averaged over the examples); ``pyhessian.hessian(model, criterion,
data=(x, y), cuda=False)`` then computes its top eigenvalue (power iteration), trace (Hutchinson) or
density (stochastic Lanczos quadrature), as PyHessian's README shows. Two things are added around
PyHessian, neither inside a loop of its own:

- every Hessian-vector product it computes is counted (its module's ``hessian_vector_product`` is
  wrapped), so that the benchmark can say how many iterations its tolerances stopped at;
- ``density`` calls ``torch.eig``, which PyTorch removed in 2.0: while it runs, ``torch.eig`` is
  the symmetric ``torch.linalg.eigh`` of its tridiagonal matrix, returned in the old format.
"""
from __future__ import annotations

import contextlib
import sys
import time
import warnings

import numpy as np

QUANTITIES = ("eigenvalue", "trace", "density")


def available() -> None:
    """Imports torch and PyHessian (``ImportError`` when either is missing)."""
    import torch  # noqa: F401
    import pyhessian  # noqa: F401


def make_mlp(params, activation: str = "tanh", output: str = "sigmoid"):
    """A torch ``nn.Sequential`` computing jaxgd's MLP ``predict`` (its output activation applied) with
    ``params`` (``[{"w": (n_in, n_out), "b": (n_out,)}, ...]``, one member's)."""
    import torch

    hidden = {"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[activation]
    last = {"sigmoid": torch.nn.Sigmoid, "softmax": lambda: torch.nn.Softmax(dim=-1),
            "identity": torch.nn.Identity}[output]
    layers = []
    for i, layer in enumerate(params):
        w, b = np.asarray(layer["w"], np.float32), np.asarray(layer["b"], np.float32)
        linear = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            linear.bias.copy_(torch.from_numpy(b.copy()))
        layers += [linear, hidden() if i < len(params) - 1 else last()]
    return torch.nn.Sequential(*layers)


def quadratic_cost(classes: int = 10):
    """jaxgd's ``"quadratic"`` cost on output activations: ``mean over examples of sum_j (a_j - onehot_j)**2``
    (``torch.nn.MSELoss`` would also divide by the number of outputs)."""
    import torch

    eye = torch.eye(classes)
    return lambda out, target: ((out - eye[target]) ** 2).sum(1).mean()


@contextlib.contextmanager
def counting():
    """Counts PyHessian's Hessian-vector products inside the block: ``with counting() as count: ...; count[0]``."""
    import pyhessian  # noqa: F401 -- loads pyhessian.hessian (the package exports the class of the same name)

    module = sys.modules["pyhessian.hessian"]
    original, count = module.hessian_vector_product, [0]

    def counted(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    module.hessian_vector_product = counted
    try:
        yield count
    finally:
        module.hessian_vector_product = original


@contextlib.contextmanager
def old_torch_eig():
    """``torch.eig(T, eigenvectors=True)`` as PyTorch < 1.9 had it, for PyHessian's symmetric tridiagonal ``T``:
    ``(eigenvalues as (n, 2) real and imaginary parts, eigenvectors as columns)``."""
    import torch

    def eig(t, eigenvectors=False):
        w, v = torch.linalg.eigh(t)
        return torch.stack([w, torch.zeros_like(w)], 1), v

    original = getattr(torch, "eig", None)
    torch.eig = eig
    try:
        yield
    finally:
        if original is None:
            del torch.eig
        else:
            torch.eig = original


def run(params, x: np.ndarray, y: np.ndarray, quantity: str, seed: int, *, activation: str = "tanh",
        output: str = "sigmoid", tol: float = 1e-3, max_iter: int = 100, density_iter: int = 100) -> dict:
    """One network's ``quantity`` (``"eigenvalue"``, ``"trace"`` or ``"density"``) with PyHessian, timed.

    The timed part is PyHessian's own: building its ``hessian`` object (a forward and a backward pass
    that keeps the graph) and the method: ``eigenvalues(maxIter=max_iter, tol=tol, top_n=1)``,
    ``trace(maxIter=max_iter, tol=tol)`` or ``density(iter=density_iter, n_v=1)``. The model is built
    (its weights copied in) before. ``torch.manual_seed(seed)`` first, so that a repeated call draws
    the same random vectors and does the same work.

    Returns:
      ``{"seconds", "hvps", ...}``: ``"value"`` (the eigenvalue), ``"trace"`` and ``"samples"`` (its
      probes' ``v^T H v``), or ``"ritz"`` and ``"weights"`` (the density's nodes and weights).
    """
    import torch
    from pyhessian import hessian

    if quantity not in QUANTITIES:
        raise ValueError(f"Unknown quantity {quantity!r}; choose one of {', '.join(QUANTITIES)}.")
    model = make_mlp(params, activation, output)
    criterion = quadratic_cost(int(np.asarray(params[-1]["b"]).shape[-1]))
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32).reshape(len(x), -1))
    yt = torch.from_numpy(np.asarray(y, np.int64))
    torch.manual_seed(seed)
    with warnings.catch_warnings(), counting() as count, old_torch_eig():
        warnings.simplefilter("ignore")  # backward(create_graph=True)'s reference-cycle warning
        start = time.perf_counter()
        h = hessian(model, criterion, data=(xt, yt), cuda=False)
        if quantity == "eigenvalue":
            values, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
            out = {"value": float(values[0])}
        elif quantity == "trace":
            samples = h.trace(maxIter=max_iter, tol=tol)
            out = {"trace": float(np.mean(samples)), "samples": [float(s) for s in samples]}
        else:
            ritz, weights = h.density(iter=density_iter, n_v=1)
            out = {"ritz": [float(r) for r in ritz[0]], "weights": [float(w) for w in weights[0]]}
        seconds = time.perf_counter() - start
    for p in model.parameters():  # break the graph's reference cycle (param -> grad -> graph -> param)
        p.grad = None
    return {"seconds": seconds, "hvps": count[0], **out}
