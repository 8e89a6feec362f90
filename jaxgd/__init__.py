"""jaxgd: how neural networks learn by gradient descent, in JAX.

After 3Blue1Brown's lesson "Gradient descent, how neural networks learn": a
784-16-16-10 sigmoid network, the quadratic cost, hand-written backprop checked
against ``jax.grad``, and training compiled whole so that many seeds train as one
program — for the lesson's network and for any model (:mod:`jaxgd.models`).

The package is layered (see the README's *Layout*): the lesson's mathematics at the top
(``mlp``, ``costs``, ``backprop``, ``activations``, ``gradcheck``) over ``io``; then ``models``
and ``data``; ``parallel``; ``runs``; the training engine ``training``; ``landscape`` and
``analysis``; the ``cli`` on top. This module re-exports the public API.
"""
from jaxgd import data, errors, landscape, models, theory
from jaxgd.activations import register_activation
from jaxgd.analysis.statistics import grouped_stats, member_stats
from jaxgd.backprop import backprop
from jaxgd.costs import cost_fn
from jaxgd.gradcheck import gradcheck
from jaxgd.mlp import MLP
from jaxgd.models import CNN, from_equinox, from_flax
from jaxgd.runs import checkpoint, loggers
from jaxgd.runs.load import load_run
from jaxgd.training import loop, metrics, optim, spec, state, step
from jaxgd.training.config import TrainConfig
from jaxgd.training.fit import fit, prepare
from jaxgd.training.population import Conditions, sweep
from jaxgd.training.result import FitResult
from jaxgd.training.state import TrainState
from jaxgd.version import __version__

__all__ = ["MLP", "CNN", "from_flax", "from_equinox", "cost_fn", "backprop", "gradcheck", "TrainConfig", "fit", "prepare",
           "FitResult", "TrainState", "Conditions", "member_stats", "grouped_stats", "sweep", "load_run", "register_activation",
           "data", "models", "landscape", "checkpoint", "metrics", "optim", "loop", "spec", "state", "step", "loggers",
           "errors", "theory", "__version__"]
