"""Hessian spectra of the cost, for one network or a whole population: top eigenvalues, trace, density.

- :func:`hessian_eigenvalues`: the ``k`` algebraically largest eigenvalues (and, on request, their
  eigenvectors) by the Lanczos method with full reorthogonalisation (Lanczos 1950; Golub & Van Loan,
  *Matrix Computations*, ch. 10).
- :func:`hessian_trace`: Hutchinson's estimator of the trace with Rademacher probes (Hutchinson
  1990, "A stochastic estimator of the trace of the influence matrix for Laplacian smoothing
  splines"), or Hutch++ (Meyer et al. 2021, arXiv 2010.09649), with its standard error.
- :func:`hessian_density`: the spectral density by stochastic Lanczos quadrature (Ghorbani,
  Krishnan & Xiao 2019, arXiv 1901.10159), as PyHessian computes it (Yao et al. 2020,
  arXiv 1912.07145).

All three work on Hessian-vector products, ``jax.jvp`` of ``jax.grad`` of the cost with respect to the
raveled parameters (forward over reverse), as :func:`~jaxgd.landscape.sharpness` does; ``jax.linearize``
of the gradient, which would keep the forward pass between products, was no faster on a CPU for 100
members of the digits' MLP and gave wrong products inside the Lanczos loop under
``jax_disable_most_optimizations`` (a batch-norm CNN, inputs traced). The Hessian itself is never
formed. They are pure functions of ``params``, ``x``, ``y`` and ``key`` (their integer options are
static), jittable and ``jax.vmap``-able over a population's parameters (a leading member axis) and keys,
in float32 and float64, for any model (:mod:`jaxgd.models`; a stateful model's network is passed as its
``(params, state)`` pair and measured in evaluation mode, a function of the parameters alone, as
:func:`~jaxgd.landscape.sharpness` does). ``x`` is a batch as the model takes it; the cost is the mean
over it (:func:`jaxgd.costs.cost_fn`).

With ``blocks="layers"`` (or a function naming each parameter's block) each function returns a dict
``{block name: result}``, one per diagonal block of the Hessian: the second derivative of the cost
with respect to that block's parameters alone, the other parameters held fixed.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxgd.costs import cost_fn
from jaxgd.errors import InvalidArgument
from jaxgd.landscape.lines import variables

__all__ = ["hessian_eigenvalues", "hessian_trace", "hessian_density", "block_names"]

#: Lanczos iterations of :func:`hessian_eigenvalues` when ``steps`` is not given: ``min(num_params,
#: EIG_STEPS_BASE + EIG_STEPS_PER_K * k)`` (see the function's docstring for how they were chosen).
EIG_STEPS_BASE = 30
EIG_STEPS_PER_K = 4
#: Lanczos iterations per probe of :func:`hessian_density` when ``steps`` is not given (PyHessian's default).
DENSITY_STEPS = 100
#: Probes :func:`hessian_trace` evaluates at once (one ``vmap``) when ``batch_size`` is not given, on an
#: accelerator; on a CPU one at a time (see :func:`hessian_trace`).
TRACE_BATCH = 32
#: What :func:`hessian_eigenvalues` computes: the algebraically largest eigenvalues, or the largest in magnitude.
WHICH = ("largest", "magnitude")
#: How :func:`hessian_trace` estimates: Hutchinson's estimator, or Hutch++ (deflated by a sketch of the range).
TRACE_METHODS = ("hutchinson", "hutch++")
#: A Lanczos residual at most this many machine epsilons of the largest ``|Hv|`` seen is a breakdown.
BREAKDOWN_EPS = 64


# --- blocks of parameters ------------------------------------------------------------------------------

def _key_name(entry) -> str:
    for attr in ("key", "idx", "name"):  # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _path_string(path) -> str:
    return "/".join(_key_name(e) for e in path)


def _layer_of(path) -> str:
    """The block of a leaf under ``blocks="layers"``: its path without its last key (``""`` for a root leaf)."""
    return _path_string(path[:-1])


def _leaf_blocks(params, blocks) -> list[tuple[str | None, list[int]]]:
    """``[(block name, [leaf indices])]`` in the order of the leaves; one unnamed block for ``blocks=None``."""
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if blocks is None:
        return [(None, list(range(len(paths))))]
    if blocks == "layers":
        name_of = _layer_of
    else:
        name_of = lambda path: blocks(_path_string(path))  # noqa: E731
    out: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        name = name_of(path)
        if name is not None:
            out.setdefault(str(name), []).append(i)
    return list(out.items())


def block_names(params, blocks="layers") -> list[str]:
    """The names of the Hessian blocks ``blocks`` makes of ``params``, in the order of the leaves.

    Args:
      params: a parameter pytree (of a stateful model, its params without the state).
      blocks: ``"layers"`` (each leaf's pytree path without its last key: ``"0"``, ``"1"``, ... for an
        MLP's ``[{"w", "b"}, ...]``; ``"conv/0"``, ..., ``"dense/0"`` for a CNN) or a function from a
        leaf's path string (``"0/w"``, ``"conv/1/b"``) to its block's name (``None`` leaves it out).
    """
    _check_blocks(blocks, "block_names")
    return [name for name, _ in _leaf_blocks(params, blocks)]


def _block_sizes(params, blocks) -> list[tuple[str | None, int]]:
    leaves = jax.tree.leaves(params)
    return [(name, sum(int(np.prod(np.shape(leaves[i]))) for i in idx)) for name, idx in _leaf_blocks(params, blocks)]


def _block_hvp(model, cost, params, state, x, y, leaf_idx):
    """``(flat, hvp, unravel_full)`` for the block of leaves ``leaf_idx``: its raveled parameters, the linear
    map ``v -> H_BB v`` (``jax.jvp`` of the block's gradient) and ``v -> params-shaped tree`` (zeros
    outside the block)."""
    leaves, treedef = jax.tree.flatten(params)
    flat, unravel = ravel_pytree([leaves[i] for i in leaf_idx])
    c = cost_fn(model, cost, state=state)

    def with_block(p, others):
        new = list(others)
        for i, leaf in zip(leaf_idx, unravel(p)):
            new[i] = leaf
        return jax.tree.unflatten(treedef, new)

    grad = jax.grad(lambda p: c(with_block(p, leaves), x, y))
    hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]  # noqa: E731
    zeros = [jnp.zeros_like(leaf) for leaf in leaves]
    return flat, hvp, lambda v: with_block(v, zeros)


def _per_block(model, cost, params, x, y, blocks, key, fn):
    """``fn(flat, hvp, embed, key)`` for the whole Hessian (``blocks=None``) or as a dict over its blocks."""
    params, state = variables(model, params)
    parts = _leaf_blocks(params, blocks)
    results = {}
    for b, (name, idx) in enumerate(parts):
        flat, hvp, embed = _block_hvp(model, cost, params, state, x, y, idx)
        results[name] = fn(flat, hvp, embed, key if blocks is None else jax.random.fold_in(key, b))
    return results[None] if blocks is None else results


# --- the Lanczos method --------------------------------------------------------------------------------

def _lanczos(hvp, v0: jax.Array, steps: int, key: jax.Array):
    """``steps`` Lanczos iterations from the unit vector ``v0``, with full reorthogonalisation.

    Each new vector is orthogonalised against all the previous ones twice (classical Gram-Schmidt,
    "twice is enough"). When the residual vanishes (``|w| <= BREAKDOWN_EPS * eps * max |Hv|``: the
    Krylov space is invariant, as it is after ``num_params`` steps) the iteration restarts from a
    random vector orthogonalised against the previous ones and the off-diagonal entry is 0, so that
    the tridiagonal matrix is block diagonal and nothing is divided by zero. The restart vectors are
    rotations (``jnp.roll``) of one random vector drawn from ``key``.

    Returns:
      ``(alpha (steps,), beta (steps - 1,), V (steps, n))``: the tridiagonal matrix's diagonal and
      off-diagonal, and the Lanczos vectors as rows.
    """
    n, dtype = v0.shape[0], v0.dtype
    tol = BREAKDOWN_EPS * jnp.finfo(dtype).eps
    restart = jax.random.normal(key, (n,), dtype)
    V = jnp.zeros((steps + 1, n), dtype).at[0].set(v0)  # row j + 1 is written at step j
    highest = jax.lax.Precision.HIGHEST  # a GPU's default float32 products (TF32) would lose orthogonality

    def project(V, w):  # rows of V not yet written are zero
        return w - jnp.dot(jnp.dot(V, w, precision=highest), V, precision=highest)

    def body(j, carry):  # the current vector is carried apart: reading it from V would make XLA copy V each step
        V, v, alpha, beta, scale = carry
        w = hvp(v)
        scale = jnp.maximum(scale, jnp.linalg.norm(w))
        a = jnp.vdot(v, w)
        w = project(V, w)  # removes a * v and beta_{j-1} * v_{j-1}, and what rounding brought back of the others
        broke = jnp.linalg.norm(w) <= tol * scale
        u = project(V, jnp.where(broke, jnp.roll(restart, j), w))
        norm = jnp.linalg.norm(u)
        nxt = u / jnp.where(norm > 0, norm, 1)
        V = jax.lax.dynamic_update_slice(V, nxt[None], (j + 1, 0))
        return V, nxt, alpha.at[j].set(a), beta.at[j].set(jnp.where(broke, 0, norm)), scale

    # zeros made from v0 vary as it does over a mesh's axes (jax.shard_map checks that a loop's carry keeps its type)
    zeros = jnp.zeros_like(v0, shape=(steps,))
    carry = (V, v0, zeros, zeros, jnp.zeros_like(v0, shape=()))
    V, _, alpha, beta, _ = jax.lax.fori_loop(0, steps, body, carry)
    return alpha, beta[:-1], V[:steps]


def _one_at_a_time_on_cpu(fn):
    """``fn`` (a LAPACK decomposition), whose ``jax.vmap`` on a CPU loops over the batch, one matrix per call.

    jaxlib 0.10.2's CPU LAPACK kernels split a batch of matrices over XLA's intra-op thread pool and wait
    for the pieces. When a population is sharded over several CPU devices (one per core, as
    :func:`jaxgd.parallel.sharding.use_cpu_devices` makes them), each device's kernel can hold one of
    the pool's threads while waiting for pieces queued behind the other's: the process hangs, idle
    (``jax::ParallelBatchMap`` under ``QrFactorization`` or ``EigenvalueDecompositionSymmetric`` in its
    stack; reproduced every time with a batch of 10 100 x 100 ``eigh`` on each of 2 devices). A single
    matrix is never split. The decompositions here are small (a Lanczos tridiagonal matrix, a Hutch++
    sketch): one at a time cost the same as a batch on one device (0.55 ms for a 100 x 100 ``eigh``).
    Other backends keep the batched call.
    """
    sequential = jax.custom_batching.sequential_vmap(fn)
    return lambda *args: jax.lax.platform_dependent(*args, cpu=sequential, default=fn)


@_one_at_a_time_on_cpu
def _eigh(t):
    return jnp.linalg.eigh(t)


@_one_at_a_time_on_cpu
def _orthonormal_basis(a):
    """An orthonormal basis of the columns of ``a`` (reduced QR's ``Q``)."""
    return jnp.linalg.qr(a)[0]


def _ritz(alpha, beta):
    """Eigenvalues (ascending) and eigenvectors of the symmetric tridiagonal matrix ``(alpha, beta)``."""
    t = jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1)
    return _eigh(t)


def _unit(v):
    return v / jnp.linalg.norm(v)


# --- validation ----------------------------------------------------------------------------------------

def _check_int(fn: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise InvalidArgument(f"{fn} needs {what} {name}, got {name}={value!r}.")


def _check_blocks(blocks, fn: str) -> None:
    if blocks is not None and blocks != "layers" and not callable(blocks):
        raise InvalidArgument(f"{fn} takes blocks=None, blocks=\"layers\" or a function from a parameter's path to "
                         f"its block's name, got blocks={blocks!r}.")


def _check_common(fn: str, model, params, key, blocks) -> list[tuple[str | None, int]]:
    params, _ = variables(model, params)
    if key is None:
        raise InvalidArgument(f"{fn} needs a PRNG key (key=jax.random.key(seed)), got key=None.")
    _check_blocks(blocks, fn)
    sizes = _block_sizes(params, blocks)
    if not sizes or any(n == 0 for _, n in sizes):
        empty = next((name for name, n in sizes if n == 0), None) if sizes else None
        raise InvalidArgument(f"{fn} found no parameters" + (f" in block {empty!r}." if empty is not None else "."))
    return sizes


def _check_steps(fn: str, steps, sizes, least: int, least_name: str) -> None:
    """``least <= steps <= num_params`` of every block (``steps=None``: the default, clipped per block)."""
    if steps is None:
        return
    _check_int(fn, "steps", steps)
    if steps < least:
        raise InvalidArgument(f"{fn} needs steps >= {least_name}, got steps={steps} and {least_name}={least}.")
    for name, n in sizes:
        if steps > n:
            where = "the parameters" if name is None else f"block {name!r}"
            raise InvalidArgument(f"{fn} needs steps <= the number of parameters, got steps={steps} for {where}, "
                             f"which has {n}.")


def _default_eig_steps(k: int, n: int) -> int:
    return min(n, EIG_STEPS_BASE + EIG_STEPS_PER_K * k)


# --- top eigenvalues -----------------------------------------------------------------------------------

def hessian_eigenvalues(model, cost, params, x, y, *, k: int = 1, key: jax.Array, steps: int | None = None,
                        vectors: bool = False, blocks=None, which: str = "largest"):
    """The ``k`` algebraically largest eigenvalues of the Hessian of the cost at ``params`` (or, with
    ``which="magnitude"``, the ``k`` largest in absolute value).

    Lanczos iterations on Hessian-vector products with full reorthogonalisation (Lanczos 1950;
    Golub & Van Loan, *Matrix Computations*, 4th ed., sec. 10.1), started from a random unit vector;
    the Ritz values of the tridiagonal matrix approximate the eigenvalues, the extreme ones first. A
    breakdown (an invariant Krylov space, as after ``num_params`` steps) restarts from a random
    vector orthogonal to the previous ones, so ``steps = num_params`` gives the whole spectrum.
    PyHessian computes top eigenvalues by power iteration instead (Yao et al. 2020, arXiv 1912.07145),
    which needs many more products when the top eigenvalues are close together, and which converges to
    the eigenvalue of largest magnitude, negative where the Hessian's most negative eigenvalue outweighs
    its largest (``which="magnitude"`` computes that one; Lanczos reaches both ends of the spectrum with
    the same products).

    Args:
      model: a model (:mod:`jaxgd.models`).
      cost: ``"quadratic"``, ``"cross_entropy"`` or a function ``cost(logits, y) -> (batch,)``
        (:func:`jaxgd.costs.cost_fn`).
      params: the model's parameter pytree (one member; ``jax.vmap`` this function over a population).
      x: inputs ``(batch, ...)`` as the model takes them.
      y: integer labels ``(batch,)``.
      k: how many eigenvalues (static).
      key: a PRNG key (the starting vector, and restarts after a breakdown).
      steps: Lanczos iterations, one Hessian-vector product each (static), ``k <= steps <=
        num_params``. Default ``min(num_params, 30 + 4 k)``. Measured in float64 against the exact
        spectrum: an 8-6-4 MLP (82 parameters, random inputs) had its top five eigenvalues to 6e-7
        relative after 30 steps and to 3e-15 after 40; the digits' 64-16-16-10 tanh MLP (1,482
        parameters; at initialisation and trained) its top eigenvalue to 1e-7 after 10 steps and
        2e-15 after 15, its top five to 2e-10 after 30 and 3e-15 after 40. Top eigenvalues that lie
        close together need more steps.
      vectors: also return the eigenvectors (static).
      blocks: ``None`` (the whole Hessian), ``"layers"`` or a function from a parameter's path string
        to its block's name: one diagonal block of the Hessian per block (see :func:`block_names`).
      which: ``"largest"`` (the algebraically largest) or ``"magnitude"`` (the largest in absolute value,
        with their signs: what power iteration, :func:`~jaxgd.landscape.sharpness` and PyHessian's
        ``eigenvalues`` converge to) (static).

    Returns:
      ``values``: ``(k,)``, in descending order (of absolute value with ``which="magnitude"``), in the
      parameters' dtype; with ``vectors=True`` the
      tuple ``(values, vectors)``, ``vectors`` a pytree shaped like ``params`` with a leading axis of
      ``k`` (unit eigenvectors; with blocks, zero outside the block). With blocks, a dict
      ``{block name: result}``.

    Raises:
      ValueError: ``k`` or ``steps`` not positive integers, ``steps < k``, ``steps`` above a block's number
        of parameters, ``which`` not one of :data:`WHICH`, or no key.
    """
    fn = "hessian_eigenvalues"
    _check_int(fn, "k", k)
    if not isinstance(which, str) or which not in WHICH:
        raise InvalidArgument(f"{fn} takes which=\"largest\" or which=\"magnitude\", got which={which!r}.")
    sizes = _check_common(fn, model, params, key, blocks)
    for name, n in sizes:
        if k > n:
            where = "the parameters" if name is None else f"block {name!r}"
            raise InvalidArgument(f"{fn} needs k <= the number of parameters, got k={k} for {where}, which has {n}.")
    _check_steps(fn, steps, sizes, k, "k")
    return _eigenvalues(model, cost, params, x, y, key, k=k, steps=steps, vectors=bool(vectors), blocks=blocks,
                        which=which)


@functools.partial(jax.jit, static_argnames=("model", "cost", "k", "steps", "vectors", "blocks", "which"))
def _eigenvalues(model, cost, params, x, y, key, *, k, steps, vectors, blocks, which):
    def one(flat, hvp, embed, key):
        n = flat.shape[0]
        s = _default_eig_steps(k, n) if steps is None else steps
        k0, k1 = jax.random.split(key)
        v0 = _unit(jax.random.normal(k0, (n,), flat.dtype))
        alpha, beta, V = _lanczos(hvp, v0, s, k1)
        theta, S = _ritz(alpha, beta)
        # the Ritz values are ascending: the largest last, the largest in magnitude at either end
        order = jnp.arange(s)[::-1][:k] if which == "largest" else jnp.argsort(-jnp.abs(theta), stable=True)[:k]
        values = theta[order]
        if not vectors:
            return values
        ritz = (S[:, order].T @ V)  # (k, n)
        ritz = ritz / jnp.linalg.norm(ritz, axis=1, keepdims=True)
        return values, jax.vmap(embed)(ritz)

    return _per_block(model, cost, params, x, y, blocks, key, one)


# --- trace ---------------------------------------------------------------------------------------------

def hessian_trace(model, cost, params, x, y, *, probes: int = 100, key: jax.Array, blocks=None,
                  batch_size: int | None = None, method: str = "hutchinson"):
    """The trace of the Hessian of the cost at ``params``, by Hutchinson's estimator or by Hutch++.

    ``"hutchinson"``: ``tr H = E[z^T H z]`` for ``z`` of independent Rademacher entries (+-1) (Hutchinson
    1990, "A stochastic estimator of the trace of the influence matrix for Laplacian smoothing splines";
    as PyHessian, Yao et al. 2020, arXiv 1912.07145): the mean over ``probes`` probes, each one
    Hessian-vector product.

    ``"hutch++"`` (Meyer, Musco, Musco & Woodruff 2021, arXiv 2010.09649): a third of the products
    sketch the Hessian's range (``Q``, an orthonormal basis of ``H S`` for ``probes // 3`` Rademacher
    vectors ``S``), a third give the trace of ``Q^T H Q`` exactly, and the rest are Hutchinson's probes
    of what is left, ``(I - Q Q^T) H (I - Q Q^T)``. Unbiased like Hutchinson's; its variance is that of
    the Hessian without its largest eigenvalues, so it needs several times fewer products when a few
    eigenvalues carry most of ``sum_ij H_ij^2``, as they do for trained networks: for 100 of the digits'
    64-16-16-10 tanh MLPs after 50 epochs (``benchmarks/hessian_speed.py``; 86-99% of ``sum_ij H_ij^2``
    in the top 10 eigenvalues of 1,482 in the 10 measured), 18 products gave the median and
    90th-percentile errors Hutchinson's estimator reached with 50 probes.

    Probes are evaluated ``batch_size`` at a time (``jax.lax.map`` over batches, a ``vmap`` inside), so
    memory grows with ``batch_size``, not ``probes``.

    Args:
      model, cost, params, x, y: as :func:`hessian_eigenvalues`.
      probes: Hessian-vector products (static): Rademacher probes, at least 2 (the standard error needs
        two); with ``"hutch++"`` at least 4.
      key: a PRNG key (the probes).
      blocks: as :func:`hessian_eigenvalues`; each block has its own probes.
      batch_size: probes per batch (static). Default: 1 on a CPU, where batches of 2 to 30 probes were 2
        to 3 times slower per probe than one at a time for 100 vmapped members of the digits' MLP;
        ``min(probes, 32)`` on other backends (not measured).
      method: ``"hutchinson"`` or ``"hutch++"`` (static).

    Returns:
      ``(trace, standard_error)``: scalars in the parameters' dtype, the estimate and the standard error
      of the mean over the probes (sample standard deviation / sqrt(probes); with ``"hutch++"``, of its
      Hutchinson part over its own probes, ``Q`` given). With blocks, a dict ``{block name: (trace,
      standard_error)}``.

    Raises:
      ValueError: ``probes`` below 2 (4 for ``"hutch++"``), ``batch_size`` not a positive integer, ``method``
        not one of :data:`TRACE_METHODS`, or no key.
    """
    fn = "hessian_trace"
    if not isinstance(method, str) or method not in TRACE_METHODS:
        raise InvalidArgument(f"{fn} takes method=\"hutchinson\" or method=\"hutch++\", got method={method!r}.")
    _check_int(fn, "probes", probes, minimum=4 if method == "hutch++" else 2)
    if batch_size is not None:
        _check_int(fn, "batch_size", batch_size)
    _check_common(fn, model, params, key, blocks)
    if batch_size is None:
        batch_size = 1 if jax.default_backend() == "cpu" else TRACE_BATCH
    batch = min(probes, batch_size)
    return _trace(model, cost, params, x, y, key, probes=probes, blocks=blocks, batch=batch, method=method)


def _mean_and_error(samples):
    return jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(jnp.asarray(samples.shape[0], samples.dtype))


@functools.partial(jax.jit, static_argnames=("model", "cost", "probes", "blocks", "batch", "method"))
def _trace(model, cost, params, x, y, key, *, probes, blocks, batch, method):
    def one(flat, hvp, embed, key):
        n, dtype = flat.shape[0], flat.dtype

        def quad(k):
            z = jax.random.rademacher(k, (n,), dtype)
            return jnp.vdot(z, hvp(z))

        if method == "hutchinson":
            return _mean_and_error(jax.lax.map(quad, jax.random.split(key, probes), batch_size=batch))
        sketch = probes // 3
        k_sketch, k_rest = jax.random.split(key)
        highest = jax.lax.Precision.HIGHEST  # a GPU's default float32 products (TF32) would lose orthogonality
        S = jax.random.rademacher(k_sketch, (sketch, n), dtype)
        Q = _orthonormal_basis(jax.lax.map(hvp, S, batch_size=batch).T).T  # (sketch, n), orthonormal rows
        low = jnp.sum(Q * jax.lax.map(hvp, Q, batch_size=batch))  # tr(Q^T H Q)

        def rest(k):
            z = jax.random.rademacher(k, (n,), dtype)
            z = z - jnp.dot(jnp.dot(Q, z, precision=highest), Q, precision=highest)
            return jnp.vdot(z, hvp(z))

        mean, error = _mean_and_error(jax.lax.map(rest, jax.random.split(k_rest, probes - 2 * sketch),
                                                  batch_size=batch))
        return low + mean, error

    return _per_block(model, cost, params, x, y, blocks, key, one)


# --- spectral density ----------------------------------------------------------------------------------

def hessian_density(model, cost, params, x, y, *, key: jax.Array, probes: int = 1, steps: int | None = None,
                    num_points: int = 1000, sigma: float | None = None, blocks=None):
    """The spectral density of the Hessian of the cost at ``params``, by stochastic Lanczos quadrature.

    For each of ``probes`` Rademacher probes ``z / |z|``, ``steps`` Lanczos iterations give a tridiagonal
    matrix whose eigenvalues ``theta_i`` and the squared first components ``tau_i`` of its eigenvectors
    are the nodes and weights of a Gauss quadrature of the spectral measure seen from the probe
    (Golub & Meurant). The density is the sum of Gaussians ``tau_i N(t; theta_i, sigma^2)``, averaged
    over the probes (Ghorbani, Krishnan & Xiao 2019, arXiv 1901.10159, sec. 3; PyHessian's
    ``density``, Yao et al. 2020, arXiv 1912.07145) and normalised to integrate to 1 on the grid
    (trapezoid rule).

    The grid spans the Ritz values of every probe (the extreme ones converge to the extreme
    eigenvalues first) with a margin of 5% of their span plus ``4 sigma`` on either side.

    Args:
      model, cost, params, x, y: as :func:`hessian_eigenvalues`.
      key: a PRNG key (the probes, and restarts after a Lanczos breakdown).
      probes: probes (static), PyHessian's ``n_v``.
      steps: Lanczos iterations per probe (static), at most ``num_params``; default
        ``min(num_params, 100)`` (PyHessian's ``iter``).
      num_points: grid points (static), at least 2; a few hundred or more resolve the default ``sigma``.
      sigma: the Gaussians' standard deviation; default half a per cent of the Ritz values' span.
      blocks: as :func:`hessian_eigenvalues`.

    Returns:
      ``(grid, density)``: ``(num_points,)`` each, in the parameters' dtype. With blocks, a dict
      ``{block name: (grid, density)}``.

    Raises:
      ValueError: ``probes``, ``steps`` or ``num_points`` out of range, ``sigma`` not positive, or no key.
    """
    fn = "hessian_density"
    _check_int(fn, "probes", probes)
    _check_int(fn, "num_points", num_points, minimum=2)
    if sigma is not None and (isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating))
                              or not sigma > 0 or not np.isfinite(sigma)):
        raise InvalidArgument(f"{fn} needs a positive finite sigma (or None), got sigma={sigma!r}.")
    sizes = _check_common(fn, model, params, key, blocks)
    _check_steps(fn, steps, sizes, 1, "1")
    return _density(model, cost, params, x, y, key, probes=probes, steps=steps, num_points=num_points,
                    sigma=None if sigma is None else float(sigma), blocks=blocks)


def _slq_nodes(hvp, n, dtype, key, probes, steps):
    """Ritz values ``(probes, steps)`` and their weights (squared first eigenvector components) per probe."""
    def one(k):
        k0, k1 = jax.random.split(k)
        v0 = _unit(jax.random.rademacher(k0, (n,), dtype))
        alpha, beta, _ = _lanczos(hvp, v0, steps, k1)
        theta, S = _ritz(alpha, beta)
        return theta, S[0] ** 2

    return jax.lax.map(one, jax.random.split(key, probes))


@functools.partial(jax.jit, static_argnames=("model", "cost", "probes", "steps", "num_points", "sigma", "blocks"))
def _density(model, cost, params, x, y, key, *, probes, steps, num_points, sigma, blocks):
    def one(flat, hvp, embed, key):
        n, dtype = flat.shape[0], flat.dtype
        theta, tau = _slq_nodes(hvp, n, dtype, key, probes, min(n, DENSITY_STEPS) if steps is None else steps)
        lo, hi = jnp.min(theta), jnp.max(theta)
        span = hi - lo
        span = jnp.where(span > 0, span, jnp.maximum(jnp.maximum(jnp.abs(lo), jnp.abs(hi)) * 1e-3,
                                                     jnp.finfo(dtype).tiny ** 0.5))
        s = 0.005 * span if sigma is None else jnp.asarray(sigma, dtype)
        pad = 0.05 * span + 4 * s
        grid = jnp.linspace(lo - pad, hi + pad, num_points, dtype=dtype)
        z = (grid[:, None, None] - theta[None]) / s  # (points, probes, steps)
        gauss = jnp.exp(-0.5 * z ** 2) / (s * jnp.sqrt(2 * jnp.pi).astype(dtype))
        density = jnp.einsum("gps,ps->g", gauss, tau) / probes
        mass = jnp.trapezoid(density, grid)
        return grid, density / jnp.where(mass > 0, mass, 1)

    return _per_block(model, cost, params, x, y, blocks, key, one)
