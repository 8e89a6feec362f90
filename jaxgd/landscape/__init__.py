"""The cost landscape around trained networks: lines between minima, permutation alignment, curvature.

- :func:`interpolate` / :func:`barrier` (:mod:`~jaxgd.landscape.lines`): the cost along the straight
  line between two parameter sets, and how far it rises above the endpoints (Goodfellow, Vinyals &
  Saxe 2015, arXiv 1412.6544; Frankle et al. 2020, arXiv 1912.05671).
- :func:`align` (:mod:`~jaxgd.landscape.alignment`): hidden units (and a CNN's channels) can be
  permuted without changing the function, so two "different" minima may be one minimum relabelled;
  weight matching finds the permutation (Ainsworth, Hayase & Srinivasa, "Git Re-Basin", ICLR 2023,
  arXiv 2209.04836; Entezari et al. 2022, arXiv 2110.06296).
- :func:`sharpness` (:mod:`~jaxgd.landscape.curvature`): the largest Hessian eigenvalue, by power
  iteration on Hessian-vector products, never forming the Hessian (Keskar et al. 2017, arXiv 1609.04836);
  :func:`sharpness_metric` (:mod:`~jaxgd.landscape.metrics`) measures it inside training, at every
  evaluation (``fit(..., metrics=["sharpness"])``; Cohen et al. 2021, arXiv 2103.00065).
- :func:`hessian_eigenvalues`, :func:`hessian_trace`, :func:`hessian_density` (:mod:`~jaxgd.landscape.spectra`):
  the top eigenvalues by Lanczos, the trace by Hutchinson's estimator or Hutch++ and the spectral density by stochastic
  Lanczos quadrature, whole or per layer, for one network or (``jax.vmap``) a population (PyHessian's three
  measurements, Yao et al. 2020, arXiv 1912.07145; Ghorbani et al. 2019, arXiv 1901.10159).
- :func:`spawn` (:mod:`~jaxgd.landscape.spawning`): children trained from one trunk's state at several
  epochs with their own data orders, as one population: the barrier between them is the trunk's
  instability (Frankle et al. 2020, arXiv 1912.05671).
- :func:`critical_sample_ratio` (:mod:`~jaxgd.landscape.critical`): the fraction of examples with a
  differently classified input within an L-infinity box of radius r, found by projected sign-gradient
  ascent (Arpit et al. 2017, arXiv 1706.05394, Section 4); :func:`critical_sample_metric` measures it
  inside training, for every member of a population.

They work for any model (:mod:`jaxgd.models`); inputs ``x`` are given as the model takes
them, ``(n, *input_shape)`` (an MLP or a CNN also takes flat rows). ``align`` needs the
model's ``permutation_spec()`` (``MLP`` and ``CNN`` have one).
"""
from jaxgd.landscape.alignment import align, permute, permute_hidden
from jaxgd.landscape.critical import critical_sample_metric, critical_sample_ratio, critical_samples
from jaxgd.landscape.curvature import sharpness
from jaxgd.landscape.lines import barrier, interpolate
from jaxgd.landscape.metrics import sharpness_metric
from jaxgd.landscape.spawning import Spawned, spawn
from jaxgd.landscape.spectra import block_names, hessian_density, hessian_eigenvalues, hessian_trace

__all__ = ["interpolate", "barrier", "align", "permute", "permute_hidden", "sharpness", "sharpness_metric", "spawn",
           "Spawned", "critical_samples", "critical_sample_ratio", "critical_sample_metric", "hessian_eigenvalues",
           "hessian_trace", "hessian_density", "block_names"]
