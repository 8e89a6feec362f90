"""Peer: NumPy backprop one example at a time, in the style of the classic textbook code
(Nielsen, *Neural Networks and Deep Learning*, network.py): column vectors, a Python loop
over the examples of each minibatch, the gradients summed, then one SGD step."""
from __future__ import annotations

import numpy as np

from benchmarks.common import LEARNING_RATE, SIZES, best_time


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class Network:
    def __init__(self, sizes, rng):
        self.biases = [rng.standard_normal((b, 1)).astype(np.float32) for b in sizes[1:]]
        self.weights = [rng.standard_normal((b, a)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]

    def backprop(self, x, y):
        nabla_b = [np.zeros_like(b) for b in self.biases]
        nabla_w = [np.zeros_like(w) for w in self.weights]
        activation, activations, zs = x, [x], []
        for b, w in zip(self.biases, self.weights):
            z = w @ activation + b
            zs.append(z)
            activation = _sigmoid(z)
            activations.append(activation)
        s = activations[-1]
        delta = 2.0 * (s - y) * s * (1 - s)
        nabla_b[-1], nabla_w[-1] = delta, delta @ activations[-2].T
        for l in range(2, len(self.weights) + 1):
            sp = _sigmoid(zs[-l]) * (1 - _sigmoid(zs[-l]))
            delta = (self.weights[-l + 1].T @ delta) * sp
            nabla_b[-l], nabla_w[-l] = delta, delta @ activations[-l - 1].T
        return nabla_b, nabla_w

    def update_mini_batch(self, xs, ys, eta):
        nabla_b = [np.zeros_like(b) for b in self.biases]
        nabla_w = [np.zeros_like(w) for w in self.weights]
        for x, y in zip(xs, ys):
            db, dw = self.backprop(x, y)
            nabla_b = [nb + d for nb, d in zip(nabla_b, db)]
            nabla_w = [nw + d for nw, d in zip(nabla_w, dw)]
        self.weights = [w - (eta / len(xs)) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / len(xs)) * nb for b, nb in zip(self.biases, nabla_b)]


def seconds_per_epoch(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int = 100) -> float:
    rng = np.random.default_rng(0)
    net = Network(SIZES, rng)
    eye = np.eye(SIZES[-1], dtype=np.float32)

    def run(k):
        perm = rng.permutation(len(x))
        for s in range(k):
            i = perm[s * batch_size:(s + 1) * batch_size]
            net.update_mini_batch([x[j][:, None] for j in i], [eye[y[j]][:, None] for j in i], LEARNING_RATE)

    run(5)
    t = best_time(lambda: run(steps), 2)
    return t / steps * (len(x) // batch_size)
