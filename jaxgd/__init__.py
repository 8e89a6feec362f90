"""jaxgd: how neural networks learn by gradient descent, in JAX.

After 3Blue1Brown's lesson "Gradient descent, how neural networks learn": a
784-16-16-10 sigmoid network, the quadratic cost, hand-written backprop checked
against ``jax.grad``, and training compiled whole so that many seeds train as one
program — for the lesson's network and for any model (:mod:`jaxgd.models`).
"""
from jaxgd import checkpoint, data, landscape, loggers, loop, metrics, models, optim, spec, state, step
from jaxgd import theory
from jaxgd.activations import register_activation
from jaxgd.backprop import backprop
from jaxgd.config import TrainConfig
from jaxgd.costs import cost_fn
from jaxgd.gradcheck import gradcheck
from jaxgd.mlp import MLP
from jaxgd.models import CNN, from_equinox, from_flax
from jaxgd.population import Conditions, grouped_stats, member_stats, sweep
from jaxgd.rundir import load_run
from jaxgd.state import TrainState
from jaxgd.train import FitResult, fit, prepare

__version__ = "0.2.0"

__all__ = ["MLP", "CNN", "from_flax", "from_equinox", "cost_fn", "backprop", "gradcheck", "TrainConfig", "fit", "prepare",
           "FitResult", "TrainState", "Conditions", "member_stats", "grouped_stats", "sweep", "load_run", "register_activation",
           "data", "models", "landscape", "checkpoint", "metrics", "optim", "loop", "spec", "state", "step", "loggers", "theory", "__version__"]
