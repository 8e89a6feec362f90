"""jaxgd: how neural networks learn by gradient descent, in JAX.

After 3Blue1Brown's lesson "Gradient descent, how neural networks learn": a
784-16-16-10 sigmoid network, the quadratic cost, hand-written backprop checked
against ``jax.grad``, and training compiled whole so that many seeds train as one
program.
"""
from jaxgd import data
from jaxgd.backprop import backprop
from jaxgd.config import TrainConfig
from jaxgd.costs import cost_fn
from jaxgd.gradcheck import gradcheck
from jaxgd.mlp import MLP
from jaxgd.population import Conditions, member_stats
from jaxgd.train import FitResult, TrainState, fit

__version__ = "0.1.0"

__all__ = ["MLP", "cost_fn", "backprop", "gradcheck", "TrainConfig", "fit", "FitResult", "TrainState", "Conditions", "member_stats", "data",
           "__version__"]
