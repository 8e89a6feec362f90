"""Hessian spectra of a population of 100 networks: jaxgd.landscape against PyHessian, at equal accuracy.

    python -m benchmarks.hessian_speed            # the full run (about 10 minutes on 2 CPU cores)
    python -m benchmarks.hessian_speed --quick    # a smoke run (3 networks, 100 digits)

The population: 100 members of ``jaxgd.MLP((64, 16, 16, 10), activation="tanh")`` (sigmoid outputs,
1,482 parameters each), trained together for 50 epochs of SGD (learning rate 1.0, minibatch 10, each
member its own order) on the first 1,000 training images of ``jaxgd.data.load("digits")``; the cost
is the lesson's quadratic cost over those 1,000 images. For every member, three quantities of the
Hessian of that cost: its top eigenvalue, its trace and its spectral density.

- **jaxgd**: :func:`jaxgd.landscape.hessian_eigenvalues` (Lanczos, ``which="magnitude"``),
  :func:`~jaxgd.landscape.hessian_trace` (Hutch++, ``method="hutch++"``, and Hutchinson's estimator,
  PyHessian's) and :func:`~jaxgd.landscape.hessian_density` (stochastic Lanczos quadrature), each
  ``jax.vmap``-ed over the members and compiled as one program for the 100. What the checks read: the
  members spread over the CPU's devices, one per core as ``benchmarks.train_speed`` and :func:`jaxgd.fit`
  spread a population (``--cpu-devices N`` to change), in contiguous blocks with ``jax.shard_map``,
  each device vmapping over 5 of its members at a time, the chunks in turn (``jax.lax.map`` with
  ``batch_size``: their arrays stay in the caches). For comparison, the same chunks on one device, the
  plain ``jax.jit(jax.vmap(f))`` over all 100 on one device; and :func:`jaxgd.landscape.sharpness`
  (power iteration, 100 iterations, plain), the way to the top eigenvalue before them.
- **PyHessian 0.1** (``benchmarks/peers/pyhessian_peer.py``): the same 100 networks one by one as torch
  ``nn.Sequential`` models with the same weights and cost: ``eigenvalues(top_n=1, maxIter=100,
  tol=1e-3)`` (power iteration), ``trace(maxIter=100, tol=1e-3)`` and ``density(iter=100, n_v=1)``,
  with torch's faster thread count (1, or the cores; timed on the first 5 networks).

Power iteration converges to the eigenvalue of largest magnitude, which for some trained members is
negative; jaxgd is asked for the same one (``which="magnitude"``).

Equal accuracy: the references are exact, from each member's whole Hessian in float64 (formed here
only, column by column from Hessian-vector products): its eigenvalues, its trace and its density.
PyHessian stops at its tolerances; the benchmark counts the Hessian-vector products each of its calls
made, measures its errors, and gives jaxgd the fewest iterations that are at least as accurate over the
population, chosen with one set of random keys and then run, reported and timed with another: the
Lanczos steps whose median and 90th-percentile relative errors of the top eigenvalue are at most
PyHessian's, with no more wrong answers (off by over 10%); the products (probes) whose median and
90th-percentile absolute errors of the trace are at most PyHessian's. The density uses PyHessian's own
iterations, 100 Lanczos steps from one probe, on both sides; both are compared with the exact density
smoothed alike (the L1 distance of the densities). A speed-up counts only where jaxgd's accuracy,
measured with the timing keys, is PyHessian's or better.

Timings are in milliseconds per network: jaxgd's the fastest call of the whole population's program
divided by the members (:func:`benchmarks.common.best_time`), its compilation timed apart;
PyHessian's each network's fastest call, averaged over the networks. PyHessian's passes over the
networks and jaxgd's timing rounds alternate, so that a noisy minute of a shared machine does not fall
on one side only. A peer that is not installed (torch, pyhessian) is reported as skipped.
"""
from __future__ import annotations

import os

# The Lanczos methods' small tridiagonal eigenproblems go to LAPACK (OpenBLAS): on a loaded machine with
# 2 cores its threads waiting on each other made a 100 x 100 eigh take 20 ms instead of 0.3 ms. One
# thread, set before OpenBLAS is loaded (a value already set is kept).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

SIZES = (64, 16, 16, 10)
ACTIVATION = "tanh"
OUTPUT = "sigmoid"  # jaxgd.MLP's default, which the quadratic cost compares with the one-hot label
COST = "quadratic"
MEMBERS = 100
EXAMPLES = 1000
TRAIN_EPOCHS = 50
LEARNING_RATE = 1.0
BATCH = 10
#: PyHessian's settings: its defaults (tol 1e-3, 100 iterations at most, density with 100 steps and 1 probe).
TOL = 1e-3
MAX_ITER = 100
DENSITY_ITER = 100
SHARPNESS_ITERS = 100
EIG_CANDIDATES = (3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 25, 30, 40, 50)
PROBE_CANDIDATES = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200)
PLUS_CANDIDATES = (4, 6, 8, 10, 12, 15, 18, 21, 24, 27, 30, 36, 42, 48, 60, 75, 90, 120, 150, 200)
#: jaxgd's programs vmap over this many members of a device at a time, the chunks one after another
#: (``jax.lax.map`` with ``batch_size``): their arrays stay in the CPU's caches (100 members' Lanczos
#: vectors, 100 x 101 x 1,482 floats, are 60 MB). One plain vmap over all 100 is timed too. On 2 devices
#: Hessian-vector products of chunks of 1 to 5 members took 0.11-0.13 ms per network, of 10 0.13 ms.
CHUNK = 5
#: A relative error above this is a wrong answer (power iteration stopped on another eigenvalue, or the
#: other end of the spectrum).
WRONG = 0.1
#: Target: jaxgd's time per network at least this many times shorter than PyHessian's, for each quantity.
TARGET = 10.0
QUANTITIES = ("eigenvalue", "trace", "density")
#: The result keys' suffixes of jaxgd's layouts: every device in chunks (the checked one), one vmap over every member on
#: one device, chunks on one device.
SUFFIX = {"spread": "", "plain": "_one_vmap", "one_device": "_one_device"}
#: jaxgd's contenders: (kind, the quantity it measures).
KINDS = {"eigenvalue": "eigenvalue", "sharpness": "eigenvalue", "trace": "trace", "trace_plus": "trace",
         "density": "density"}
#: The default density's Gaussians and grid (:func:`jaxgd.landscape.hessian_density`): sigma is this share of
#: the Ritz values' span, and the grid reaches 5% of the span plus 4 sigma beyond them on either side.
SIGMA_SHARE = 0.005
GRID_MARGIN = 0.05 + 4 * SIGMA_SHARE


def population(members: int, examples: int, epochs: int):
    """``(net, x, y, params)``: the MLP, the first ``examples`` digits (float32 rows, int32 labels) and ``members``
    networks trained together for ``epochs`` epochs (at initialisation for 0), as NumPy float32 arrays with a
    leading member axis."""
    import jax

    import jaxgd

    net = jaxgd.MLP(SIZES, activation=ACTIVATION, output=OUTPUT)
    data = jaxgd.data.subset(jaxgd.data.load("digits"), n_train=examples)
    keys = jax.random.split(jax.random.key(0), members)
    if epochs:
        config = jaxgd.TrainConfig(cost=COST, learning_rate=LEARNING_RATE, batch_size=BATCH, epochs=epochs,
                                   data_order="per_seed")
        fitted = jaxgd.fit(keys, net, data, config)
        params = fitted.params
        accuracy = np.asarray(fitted.history["train_accuracy"])[:, -1]
    else:
        params, accuracy = jax.vmap(net.init)(keys), None
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    x = np.asarray(data.x_train, np.float32).reshape(examples, -1)
    return net, x, np.asarray(data.y_train, np.int32), params, accuracy


def member(params, i: int):
    return [{k: np.asarray(v[i]) for k, v in layer.items()} for layer in params]


def exact_spectra(net, params, x, y, columns: int = 128) -> np.ndarray:
    """Every member's Hessian eigenvalues ``(members, num_params)``, ascending, in float64: each member's whole
    Hessian, formed column by column (``columns`` Hessian-vector products at a time) and diagonalised by NumPy."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from jaxgd.costs import cost_fn

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        x64, y64 = jnp.asarray(x, jnp.float64), jnp.asarray(y)
        _, unravel = ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), member(params, 0)))
        c = cost_fn(net, COST)

        @jax.jit
        def hessian(flat):
            grad = jax.grad(lambda q: c(unravel(q), x64, y64))
            hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]  # noqa: E731
            return jax.lax.map(hvp, jnp.eye(flat.shape[0], dtype=flat.dtype), batch_size=columns)

        out = []
        for i in range(jax.tree.leaves(params)[0].shape[0]):
            flat = ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), member(params, i)))[0]
            h = np.asarray(hessian(flat))
            out.append(np.linalg.eigvalsh((h + h.T) / 2))
        return np.stack(out)
    finally:
        jax.config.update("jax_enable_x64", previous)


def largest_in_magnitude(spectra: np.ndarray) -> np.ndarray:
    """Each row's eigenvalue of largest absolute value, with its sign."""
    return spectra[np.arange(len(spectra)), np.argmax(np.abs(spectra), axis=1)]


def gaussians(grid: np.ndarray, nodes, weights, sigma: float) -> np.ndarray:
    """``sum_i weights_i N(grid; nodes_i, sigma^2)``, normalised to integrate to 1 on the grid (as jaxgd's)."""
    z = (grid[:, None] - np.asarray(nodes, np.float64)[None]) / sigma
    d = np.exp(-0.5 * z ** 2) @ np.asarray(weights, np.float64) / (sigma * np.sqrt(2 * np.pi))
    return d / np.trapezoid(d, grid)


def density_grid_sigma(grid: np.ndarray) -> tuple[float, float]:
    """``(sigma, largest Ritz value)`` of a density jaxgd computed with the default sigma, read off its grid."""
    span = (grid[-1] - grid[0]) / (1 + 2 * GRID_MARGIN)
    return SIGMA_SHARE * span, grid[-1] - GRID_MARGIN * span


def jaxgd_program(kind: str, net, chunk: int | None = None, mesh=None, **options):
    """The jitted program of one jaxgd contender, ``f(params, keys, x, y)`` for the whole population.

    On each device, one ``vmap`` over its members (``chunk=None``) or a ``vmap`` over ``chunk`` members at a
    time, the chunks in turn (``jax.lax.map`` with ``batch_size``). With a ``mesh`` (:func:`layout`), the
    members are spread over its devices in contiguous blocks (``jax.shard_map``), as :func:`jaxgd.fit` spreads
    a population; ``params`` and ``keys`` must then be laid out by :func:`place`.
    """
    import jax
    from jax.sharding import PartitionSpec as P

    from jaxgd.landscape import hessian_density, hessian_eigenvalues, hessian_trace, sharpness
    from jaxgd.parallel.sharding import AXIS

    def one(p, k, x, y):
        if kind == "eigenvalue":
            return hessian_eigenvalues(net, COST, p, x, y, key=k, steps=options["steps"], which="magnitude")[0]
        if kind == "trace":
            return hessian_trace(net, COST, p, x, y, key=k, probes=options["probes"])
        if kind == "trace_plus":
            return hessian_trace(net, COST, p, x, y, key=k, probes=options["probes"], method="hutch++")
        if kind == "density":
            return hessian_density(net, COST, p, x, y, key=k, steps=options["steps"], probes=1)
        if kind == "sharpness":
            return sharpness(net, COST, p, x, y, key=k, iters=options["iters"])
        raise ValueError(kind)

    def local(p, k, x, y):  # the members on one device
        if chunk is None or chunk >= k.shape[0]:
            return jax.vmap(one, in_axes=(0, 0, None, None))(p, k, x, y)
        return jax.lax.map(lambda pk: one(pk[0], pk[1], x, y), (p, k), batch_size=chunk)

    if mesh is None:
        return jax.jit(local)
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P(), P()), out_specs=P(AXIS)))


def layout(devices):
    """The mesh spreading the members over ``devices`` (``None`` for one device)."""
    from jaxgd.parallel.sharding import member_mesh

    return member_mesh(devices) if len(devices) > 1 else None


def place(params, keys, x, y, mesh, device=None):
    """The population's arrays on their devices: members padded to a multiple of the mesh's devices (copies of
    the first ones) and laid over them, the data replicated; or all on ``device`` without a mesh."""
    import jax

    from jaxgd.parallel import sharding

    if mesh is None:
        return jax.device_put((params, keys, x, y), device)
    members = int(keys.shape[0])
    size = sharding.padded_size(members, mesh)
    params, keys = sharding.shard_members(sharding.pad_members((params, keys), members, size), mesh)
    return (params, keys, *sharding.replicate((x, y), mesh))


def gather(tree, members: int):
    """NumPy values of the first ``members`` members (the padding dropped)."""
    import jax

    return jax.tree.map(lambda a: np.asarray(a)[:members], tree)


class Compiled:
    """A jaxgd program compiled ahead of time (its compilation timed) for the population's arrays; calls block
    until the results are ready."""

    def __init__(self, program, *args):
        start = time.perf_counter()
        self.compiled = program.lower(*args).compile()
        self.compile_seconds = time.perf_counter() - start
        self.args = args

    def __call__(self):
        import jax

        return jax.block_until_ready(self.compiled(*self.args))


def relative_errors(values, reference) -> np.ndarray:
    return np.abs(np.asarray(values, np.float64) - reference) / np.abs(reference)


def eig_errors(values, reference) -> dict:
    """Relative errors of top eigenvalues: median, 90th percentile, largest, and how many are wrong (above WRONG)."""
    e = relative_errors(values, reference)
    return {"median": float(np.median(e)), "p90": float(np.percentile(e, 90)), "max": float(np.max(e)),
            "wrong": int(np.sum(e > WRONG))}


def trace_errors(values, exact) -> dict:
    """Absolute errors of traces (a trace can be near 0): median, 90th percentile, root mean square; and the
    median relative error."""
    e = np.abs(np.asarray(values, np.float64) - exact)
    return {"median": float(np.median(e)), "p90": float(np.percentile(e, 90)), "rms": float(np.sqrt(np.mean(e ** 2))),
            "median_rel": float(np.median(e / np.abs(exact)))}


def as_accurate(errors: dict, target: dict | None) -> bool:
    """At least as accurate as ``target`` (None: no target to match): median and 90th percentile no larger, and
    (top eigenvalues) no more wrong answers."""
    if target is None:
        return True
    return (errors["median"] <= target["median"] and errors["p90"] <= target["p90"]
            and errors.get("wrong", 0) <= target.get("wrong", 0))


def choose(run_with, errors_of, target: dict | None, candidates) -> tuple[int, list[dict]]:
    """The first of ``candidates`` (iterations, ascending) whose errors are :func:`as_accurate` as ``target``'s
    (the last when none is; the first when there is no target). ``run_with(c)`` returns the population's values,
    ``errors_of(values)`` their errors."""
    tried = []
    for c in candidates:
        errors = errors_of(run_with(c))
        tried.append({"iterations": c, **errors})
        if as_accurate(errors, target):
            break
    return c, tried


def peer_available() -> str | None:
    """``None`` when PyHessian can run, else why not (``"skipped (pyhessian not installed)"``)."""
    from benchmarks.peers import pyhessian_peer

    try:
        pyhessian_peer.available()
    except ImportError as e:
        return f"skipped ({e.name or e} not installed)"
    return None


def peer_run(params, x, y, quantity: str, i: int, density_iter: int) -> dict:
    from benchmarks.peers import pyhessian_peer

    return pyhessian_peer.run(member(params, i), x, y, quantity, seed=i, activation=ACTIVATION, output=OUTPUT,
                              tol=TOL, max_iter=MAX_ITER, density_iter=density_iter)


def choose_torch_threads(params, x, y, networks: int = 5) -> dict:
    """Sets torch's intra-op threads to the faster, for PyHessian, of 1 and torch's default (the cores): one
    small network's products gain little from a second thread, and on a loaded 2-core machine two OpenMP
    threads waiting on each other made PyHessian's products 10 to 100 times slower. Each setting is timed on
    PyHessian's top eigenvalue of the first ``networks`` networks (the faster of two calls each)."""
    import torch

    default = torch.get_num_threads()
    networks = min(networks, int(np.shape(params[0]["w"])[0]))
    ms = {}
    for threads in sorted({1, default}):
        torch.set_num_threads(threads)
        total = sum(min(peer_run(params, x, y, "eigenvalue", i, DENSITY_ITER)["seconds"] for _ in range(2))
                    for i in range(networks))
        ms[threads] = 1e3 * total / networks
    chosen = min(ms, key=ms.get)
    torch.set_num_threads(chosen)
    return {"default": default, "chosen": chosen, "ms_per_network_top_eigenvalue": ms}


def pyhessian_pass(params, x, y, quantity: str, members: int, density_iter: int, previous=None) -> list[dict]:
    """PyHessian's ``quantity`` for every network, one by one; with ``previous`` (an earlier pass), each
    network's time becomes the faster of its two calls (the two calls draw the same vectors)."""
    out = []
    for i in range(members):
        r = peer_run(params, x, y, quantity, i, density_iter)
        if previous is not None:
            r = {**previous[i], "seconds": min(previous[i]["seconds"], r["seconds"])}
        out.append(r)
    return out


def run(quick: bool = False, members: int | None = None, chunk: int | None = CHUNK, peer_passes: int | None = None,
        rounds: int | None = None) -> dict:
    """The whole comparison (see the module's docstring). ``quick``: 3 members trained for 2 epochs on 100
    images, 20 density steps, few candidate iterations, PyHessian once per network, one timing round."""
    import jax

    start, load_start = time.perf_counter(), os.getloadavg()
    members = (3 if quick else MEMBERS) if members is None else members
    examples = 100 if quick else EXAMPLES
    epochs = 2 if quick else TRAIN_EPOCHS
    density_iter = 20 if quick else DENSITY_ITER
    peer_passes = (1 if quick else 2) if peer_passes is None else peer_passes
    rounds = (1 if quick else common.ROUNDS) if rounds is None else rounds
    print(f"population: {members} x MLP{SIZES} {ACTIVATION}, {COST} cost, {examples} digits, trained {epochs} "
          "epochs ...", flush=True)
    net, x, y, params, accuracy = population(members, examples, epochs)
    n = net.num_params()
    print("exact spectra (float64, whole Hessians) ...", flush=True)
    spectra = exact_spectra(net, params, x, y)
    ref_top = largest_in_magnitude(spectra)
    ref_trace = spectra.sum(axis=1)

    skipped = peer_available()
    peer, threads = {}, None
    if skipped is None:
        for q in QUANTITIES:  # PyTorch's first calls are slow: one untimed call of each first
            peer_run(params, x, y, q, 0, density_iter)
        threads = choose_torch_threads(params, x, y, 2 if quick else 5)
        print(f"PyHessian with {threads['chosen']} torch thread(s): top eigenvalue " + ", ".join(
            f"{ms:.1f} ms per network with {t}" for t, ms in threads["ms_per_network_top_eigenvalue"].items()),
            flush=True)
        for q in QUANTITIES:
            print(f"PyHessian {q}, {members} networks one by one, pass 1 of {peer_passes} ...", flush=True)
            peer[q] = pyhessian_pass(params, x, y, q, members, density_iter)
    else:
        print(f"PyHessian {skipped}", flush=True)

    devices = jax.devices()
    mesh = layout(devices)
    select_keys = jax.random.split(jax.random.key(1), members)  # to choose jaxgd's iterations
    keys = jax.random.split(jax.random.key(2), members)  # to run, report and time them
    spread_select = place(params, select_keys, x, y, mesh, devices[0])
    # the checked layout: every device, chunks; "plain": one vmap over every member on one device, jit(vmap(f));
    # "one_device": chunks on one device (what the second core adds, where there are several devices)
    placed = {"spread": place(params, keys, x, y, mesh, devices[0]), "plain": place(params, keys, x, y, None, devices[0])}
    placed["one_device"] = placed["plain"]

    print(f"jaxgd's iterations at PyHessian's accuracy ({len(devices)} {devices[0].platform} device(s)) ...",
          flush=True)
    peer_eig = eig_errors([r["value"] for r in peer["eigenvalue"]], ref_top) if peer else None
    peer_trace_values = np.array([r["trace"] for r in peer["trace"]]) if peer else None
    peer_trace = trace_errors(peer_trace_values, ref_trace) if peer else None

    def values(kind, **options):  # the population's values with the selection keys (a trace without its error)
        out = gather(jaxgd_program(kind, net, chunk, mesh, **options)(*spread_select), members)
        return out[0] if kind.startswith("trace") else out

    eig_candidates = [s for s in ((5, 10) if quick else EIG_CANDIDATES) if s <= n]
    steps, eig_tried = choose(lambda s: values("eigenvalue", steps=s), lambda v: eig_errors(v, ref_top), peer_eig,
                              eig_candidates)
    probes, trace_tried = choose(lambda k: values("trace", probes=k), lambda v: trace_errors(v, ref_trace),
                                 peer_trace, (5, 10) if quick else PROBE_CANDIDATES)
    plus, plus_tried = choose(lambda k: values("trace_plus", probes=k), lambda v: trace_errors(v, ref_trace),
                              peer_trace, (6, 12) if quick else PLUS_CANDIDATES)
    density_steps = min(n, density_iter)
    options = {"eigenvalue": {"steps": steps}, "sharpness": {"iters": SHARPNESS_ITERS}, "trace": {"probes": probes},
               "trace_plus": {"probes": plus}, "density": {"steps": density_steps}}
    hvps_of = {"eigenvalue": steps, "sharpness": SHARPNESS_ITERS + 1, "trace": probes, "trace_plus": plus,
               "density": density_steps}
    # every contender in the checked layout and, for comparison, as one plain vmap on one device; sharpness as one
    # plain vmap only, as it was measured before; Hutchinson's trace in the checked layout only
    configs = [(kind, lay) for kind in KINDS for lay in ("spread", "one_device", "plain")
               if not (kind == "sharpness" and lay != "plain") and not (kind == "trace" and lay != "spread")
               and not (lay == "one_device" and (mesh is None or chunk is None))]

    print(f"jaxgd: compiling {len(configs)} programs ...", flush=True)
    programs = {(kind, lay): Compiled(jaxgd_program(kind, net, None if lay == "plain" else chunk,
                                                    mesh if lay == "spread" else None, **options[kind]), *placed[lay])
                for kind, lay in configs}
    outputs = {key: gather(prog(), members) for key, prog in programs.items()}  # warmed up
    best = {key: float("inf") for key in programs}
    min_seconds = 0.0 if quick else common.MIN_SECONDS
    for r in range(max(rounds, peer_passes)):
        if peer and 0 < r < peer_passes:  # PyHessian's next pass between jaxgd's rounds
            for q in QUANTITIES:
                print(f"PyHessian {q}, pass {r + 1} of {peer_passes} ...", flush=True)
                peer[q] = pyhessian_pass(params, x, y, q, members, density_iter, previous=peer[q])
        if r < rounds:
            print(f"jaxgd timing round {r + 1} of {rounds} ...", flush=True)
            for key, prog in programs.items():
                best[key] = min(best[key], common.best_time(prog, 1, min_seconds / rounds))
    jaxgd_ms = {key: 1e3 * b / members for key, b in best.items()}

    # --- accuracy (of the checked configuration's outputs) ---------------------------------------------------
    out = {kind: outputs[(kind, "spread" if (kind, "spread") in outputs else "plain")] for kind in KINDS}
    eig_values = np.asarray(out["eigenvalue"], np.float64)
    grid, jax_density = (np.asarray(a, np.float64) for a in out["density"])
    jax_l1, peer_l1, jax_top_ritz = [], [], []
    for i in range(members):
        sigma, top_ritz = density_grid_sigma(grid[i])
        jax_top_ritz.append(top_ritz)
        exact = gaussians(grid[i], spectra[i], np.full(n, 1.0 / n), sigma)
        jax_l1.append(float(np.trapezoid(np.abs(jax_density[i] - exact), grid[i])))
        if peer:
            d = gaussians(grid[i], peer["density"][i]["ritz"], peer["density"][i]["weights"], sigma)
            peer_l1.append(float(np.trapezoid(np.abs(d - exact), grid[i])))
    ref_max = spectra[:, -1]

    def l1_and_ritz(l1, ritz):
        return {"l1": {"median": float(np.median(l1)), "p90": float(np.percentile(l1, 90)), "max": float(np.max(l1))},
                "top_ritz_median": float(np.median(relative_errors(ritz, ref_max)))}

    accuracy_out = {
        "eigenvalue": {"jaxgd": eig_errors(eig_values, ref_top), "pyhessian": peer_eig,
                       "sharpness": eig_errors(np.asarray(out["sharpness"]), ref_top)},
        "trace": {"jaxgd": trace_errors(np.asarray(out["trace"][0]), ref_trace),
                  "jaxgd_plus": trace_errors(np.asarray(out["trace_plus"][0]), ref_trace), "pyhessian": peer_trace},
        "density": {"jaxgd": l1_and_ritz(jax_l1, jax_top_ritz),
                    "pyhessian": None if not peer else l1_and_ritz(peer_l1, [max(r["ritz"]) for r in peer["density"]])},
    }

    # --- rows -----------------------------------------------------------------------------------------------
    def how(lay):
        if lay == "plain":
            return f"{members} in one vmap, 1 device"
        if lay == "one_device":
            return f"{members} vmapped in chunks of {chunk}, 1 device"
        return (f"{members} vmapped" + (f" in chunks of {chunk}" if chunk is not None else "")
                + (f", over {len(devices)} devices" if mesh is not None else ", 1 device"))

    names = {"eigenvalue": "hessian_eigenvalues (Lanczos, which=\"magnitude\")",
             "sharpness": f"sharpness (power iteration, {SHARPNESS_ITERS} iterations)",
             "trace": "hessian_trace (Hutchinson)", "trace_plus": "hessian_trace (method=\"hutch++\")",
             "density": "hessian_density (SLQ, 1 probe)"}
    theirs = {"eigenvalue": f"eigenvalues(top_n=1, maxIter={MAX_ITER}, tol={TOL:g})",
              "trace": f"trace(maxIter={MAX_ITER}, tol={TOL:g})", "density": f"density(iter={density_iter}, n_v=1)"}
    quantity_name = {"eigenvalue": "top eigenvalue", "trace": "trace", "density": "density"}
    rows = []
    for q in QUANTITIES:
        if peer:
            hvps = np.array([r["hvps"] for r in peer[q]])
            ms = 1e3 * float(np.mean([r["seconds"] for r in peer[q]]))
            rows.append({"quantity": quantity_name[q], "contender": f"PyHessian {theirs[q]}, one by one",
                         "key": f"pyhessian_{q}", "hvps_mean": float(hvps.mean()), "hvps_min": int(hvps.min()),
                         "hvps_max": int(hvps.max()), "ms_per_network": ms, "ms_per_hvp": ms / hvps.mean(), "note": None})
        else:
            rows.append({"quantity": quantity_name[q], "contender": "PyHessian", "key": f"pyhessian_{q}",
                         "note": skipped, "ms_per_network": None})
        for kind, lay in configs:
            if KINDS[kind] != q:
                continue
            rows.append({"quantity": quantity_name[q], "contender": f"jaxgd {names[kind]}, {how(lay)}",
                         "key": f"jaxgd_{kind}" + SUFFIX[lay], "vs_key": f"pyhessian_{q}",
                         "hvps_mean": float(hvps_of[kind]), "hvps_min": hvps_of[kind], "hvps_max": hvps_of[kind],
                         "ms_per_network": jaxgd_ms[(kind, lay)], "ms_per_hvp": jaxgd_ms[(kind, lay)] / hvps_of[kind],
                         "compile_seconds": programs[(kind, lay)].compile_seconds, "note": None})
    for r in rows:
        base = next((b for b in rows if b["key"] == r.get("vs_key", r["key"])), None)
        r["vs_pyhessian"] = (base["ms_per_network"] / r["ms_per_network"]
                             if base and base["ms_per_network"] and r["ms_per_network"] else None)

    # --- checks ---------------------------------------------------------------------------------------------
    sanity = []
    if peer:
        acc = accuracy_out
        sanity += [
            {"check": "top eigenvalue: jaxgd as accurate as PyHessian (median, 90th percentile, wrong answers)",
             "value": float(as_accurate(acc["eigenvalue"]["jaxgd"], peer_eig)), "target": 1},
            {"check": "trace (Hutch++): jaxgd as accurate as PyHessian (median and 90th percentile absolute error)",
             "value": float(as_accurate(acc["trace"]["jaxgd_plus"], peer_trace)), "target": 1},
            {"check": "trace (Hutchinson): jaxgd as accurate as PyHessian (median and 90th percentile absolute error)",
             "value": float(as_accurate(acc["trace"]["jaxgd"], peer_trace)), "target": 1},
            {"check": "density: jaxgd's median L1 distance to the exact density / PyHessian's",
             "value": acc["density"]["jaxgd"]["l1"]["median"] / acc["density"]["pyhessian"]["l1"]["median"],
             "target": 1.25, "lower_is_better": True},
        ]
    for c in sanity:
        v = c["value"]
        c["met"] = None if v is None else (v <= c["target"] if c.get("lower_is_better") else v >= c["target"])
    # each speed-up counts only at equal accuracy: the check of its accuracy above must hold too
    checked = [("eigenvalue", "jaxgd_eigenvalue", 0), ("trace", "jaxgd_trace_plus", 1), ("density", "jaxgd_density", 3),
               ("trace", "jaxgd_trace", 2)]
    out_checks = []
    for q, key, accuracy_check in checked:
        r = next(r for r in rows if r["key"] == key)
        v = r["vs_pyhessian"]
        accurate = sanity[accuracy_check]["met"] if sanity else None
        out_checks.append({"check": f"{quantity_name[q]}: x faster per network than PyHessian at equal accuracy "
                                    f"({r['contender'].removeprefix('jaxgd ')})", "value": v, "target": TARGET,
                           "accurate": accurate,
                           "met": None if v is None else bool(v >= TARGET and accurate is not False)})

    pyhessian_iterations = None if not peer else {
        q: {"hvps_median": float(np.median([r["hvps"] for r in peer[q]])),
            "hvps_mean": float(np.mean([r["hvps"] for r in peer[q]])),
            "hit_max_iter": int(sum(r["hvps"] >= MAX_ITER for r in peer[q]))} for q in ("eigenvalue", "trace")}
    iterations = {"chunk": chunk, "devices": len(devices), "eigenvalue": {"jaxgd_steps": steps, "tried": eig_tried},
                  "trace": {"jaxgd_probes": probes, "tried": trace_tried},
                  "trace_plus": {"jaxgd_probes": plus, "tried": plus_tried},
                  "density": {"jaxgd_steps": density_steps, "pyhessian_iter": density_iter},
                  "pyhessian": pyhessian_iterations,
                  "negative_top_eigenvalues": {"exact": int(np.sum(ref_top < 0)), "pyhessian": None if not peer else
                                               int(sum(r["value"] < 0 for r in peer["eigenvalue"]))},
                  "pyhessian_trace_stopped_at_2": None if not peer else int(sum(r["hvps"] <= 2 for r in peer["trace"]))}
    return {"rows": rows, "accuracy": accuracy_out, "iterations": iterations, "sanity": sanity, "checks": out_checks,
            "members": members, "examples": examples, "epochs": epochs, "num_params": n, "quick": quick,
            "train_accuracy": None if accuracy is None else {"median": float(np.median(accuracy)),
                                                              "min": float(np.min(accuracy))},
            "reference_top": {"median": float(np.median(np.abs(ref_top))), "min": float(np.min(np.abs(ref_top))),
                              "max": float(np.max(np.abs(ref_top)))},
            "torch_threads": threads, "machine": machine(), "devices": [str(d) for d in devices],
            "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
            "wall_seconds": time.perf_counter() - start}


def machine() -> dict:
    """train_speed's description of the machine, with PyHessian's version."""
    from benchmarks.train_speed import machine as described

    env = described()
    try:
        from importlib.metadata import version

        env["pyhessian"] = version("pyhessian")
    except Exception:  # noqa: BLE001 -- not installed, or installed without metadata
        env["pyhessian"] = None
    return env


def _hvps(r) -> str:
    if r.get("hvps_mean") is None:
        return "-"
    if r["hvps_min"] == r["hvps_max"]:
        return f"{r['hvps_min']}"
    return f"{r['hvps_mean']:.1f} ({r['hvps_min']}-{r['hvps_max']})"


def format_table(result: dict) -> str:
    trained = ("" if result["train_accuracy"] is None else
               f", trained {result['epochs']} epochs to {100 * result['train_accuracy']['median']:.1f}% training "
               f"accuracy (median; lowest {100 * result['train_accuracy']['min']:.1f}%)")
    lines = [f"Hessian spectra of {result['members']} networks MLP{SIZES} {ACTIVATION}, {OUTPUT} outputs "
             f"({result['num_params']:,} parameters), {COST} cost on {result['examples']:,} digits{trained}", "",
             "| quantity | contender | Hessian-vector products per network | ms per network | ms per product "
             "| vs PyHessian | compile s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        if r["ms_per_network"] is None:
            lines.append(f"| {r['quantity']} | {r['contender']} | - | {r['note']} | | | |")
            continue
        vs = f"{r['vs_pyhessian']:.1f}x" if r["vs_pyhessian"] else "-"
        comp = f"{r['compile_seconds']:.1f}" if r.get("compile_seconds") is not None else "-"
        lines.append(f"| {r['quantity']} | {r['contender']} | {_hvps(r)} | {r['ms_per_network']:,.2f} | "
                     f"{r['ms_per_hvp']:.3f} | {vs} | {comp} |")

    def fmt(d, key):
        if not d:
            return "-"
        return str(d[key]) if isinstance(d[key], int) else f"{d[key]:.2e}"

    acc = result["accuracy"]
    eig, tr, den = acc["eigenvalue"], acc["trace"], acc["density"]
    lines += ["", "Accuracy against the exact float64 spectra (each member's whole Hessian)", "",
              "| quantity | error | PyHessian | jaxgd |", "|---|---|---:|---:|"]
    for m, what in (("median", "relative, median"), ("p90", "relative, 90th percentile"), ("max", "relative, largest"),
                    ("wrong", f"networks off by more than {WRONG:.0%}")):
        lines.append(f"| top eigenvalue (largest magnitude) | {what} | {fmt(eig['pyhessian'], m)} | "
                     f"{fmt(eig['jaxgd'], m)} (sharpness: {fmt(eig['sharpness'], m)}) |")
    for m, what in (("median", "absolute, median"), ("p90", "absolute, 90th percentile"),
                    ("rms", "absolute, root mean square"), ("median_rel", "relative, median")):
        lines.append(f"| trace | {what} | {fmt(tr['pyhessian'], m)} | Hutch++ {fmt(tr['jaxgd_plus'], m)}, "
                     f"Hutchinson {fmt(tr['jaxgd'], m)} |")
    for m, what in (("median", "median"), ("p90", "90th percentile")):
        lines.append(f"| density | L1 distance to the exact density, {what} | "
                     f"{fmt(den['pyhessian'] and den['pyhessian']['l1'], m)} | {fmt(den['jaxgd']['l1'], m)} |")
    lines.append(f"| density | largest Ritz value vs largest eigenvalue, relative, median | "
                 f"{fmt(den['pyhessian'], 'top_ritz_median')} | {fmt(den['jaxgd'], 'top_ritz_median')} |")
    it = result["iterations"]
    lines += [""]
    th = result.get("torch_threads")
    if th:
        lines.append(f"PyHessian ran with {th['chosen']} torch thread(s), the faster for its top eigenvalue on the "
                     "first networks (" + ", ".join(f"{t} thread(s): {ms:.1f} ms per network" for t, ms in
                                                  th["ms_per_network_top_eigenvalue"].items()) + ").")
    ph = it["pyhessian"]
    if ph:
        lines.append(f"PyHessian's iterations at tol {TOL:g}: power iteration {ph['eigenvalue']['hvps_median']:.0f} "
                     f"products (median; {ph['eigenvalue']['hit_max_iter']} networks reached maxIter={MAX_ITER}); "
                     f"Hutchinson {ph['trace']['hvps_median']:.0f} probes (median; {ph['trace']['hit_max_iter']} "
                     f"reached maxIter; {it['pyhessian_trace_stopped_at_2']} stopped after 2, where a running mean "
                     f"was negative); density {it['density']['pyhessian_iter']} Lanczos steps, 1 probe.")
    neg = it["negative_top_eigenvalues"]
    lines.append(f"The largest-magnitude eigenvalue is negative for {neg['exact']} of {result['members']} networks"
                 + ("" if neg["pyhessian"] is None else f" (PyHessian returned a negative one for {neg['pyhessian']})")
                 + f"; |eigenvalue| from {result['reference_top']['min']:.3g} to {result['reference_top']['max']:.3g}.")

    def tried(entries, keys):
        return ", ".join(f"{t['iterations']} -> " + " ".join(f"{k} {t[k]:.2g}" for k in keys) for t in entries)

    lines.append(f"jaxgd's iterations, the fewest as accurate as PyHessian's with other keys: "
                 f"{it['eigenvalue']['jaxgd_steps']} Lanczos steps for the top eigenvalue (tried: "
                 f"{tried(it['eigenvalue']['tried'], ('median', 'p90', 'wrong'))}); "
                 f"{it['trace_plus']['jaxgd_probes']} products for the trace by Hutch++ (tried: "
                 f"{tried(it['trace_plus']['tried'], ('median', 'p90'))}); "
                 f"{it['trace']['jaxgd_probes']} probes by Hutchinson (tried: "
                 f"{tried(it['trace']['tried'], ('median', 'p90'))}); "
                 f"{it['density']['jaxgd_steps']} Lanczos steps and 1 probe for the density, as PyHessian.")
    lines.append("")
    for c in result["sanity"] + result["checks"]:
        if c["target"] == 1 and not c.get("lower_is_better"):
            v = "skipped" if c["value"] is None else ("yes" if c["value"] else "no")
            lines.append(f"- {c['check']}: {v}")
            continue
        v = "skipped" if c["value"] is None else f"{c['value']:.2f}"
        verdict = "n/a" if c["met"] is None else ("met" if c["met"] else "NOT met")
        if c.get("accurate") is False:
            verdict += " (jaxgd less accurate than PyHessian here)"
        lines.append(f"- {c['check']}: {v} (target {'<=' if c.get('lower_is_better') else '>='} {c['target']:g}): "
                     f"{verdict}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (3 networks, 100 digits)")
    parser.add_argument("--members", type=int, default=None, help=f"networks in the population (default {MEMBERS})")
    parser.add_argument("--chunk", type=int, default=CHUNK,
                        help=f"vmap jaxgd's programs over this many members at a time, the chunks in turn (default "
                             f"{CHUNK}; 0: one vmap over every member only)")
    parser.add_argument("--peer-passes", type=int, default=None,
                        help="PyHessian's timed passes over the networks (default 2; 1 with --quick)")
    parser.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                        help="JAX devices to make of the CPU, over which jaxgd spreads the members (default: one "
                             "per core, as benchmarks.train_speed; 1 keeps JAX's single CPU device)")
    parser.add_argument("--out", default="runs/bench/hessian_speed.json", help="where to write the JSON results")
    args = parser.parse_args(argv)
    from jaxgd.parallel.sharding import use_cpu_devices

    try:
        use_cpu_devices(args.cpu_devices)
    except ValueError as e:
        parser.error(str(e))
    for name in ("members", "peer_passes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
    if args.chunk < 0:
        parser.error(f"--chunk must be a non-negative integer, got {args.chunk}.")
    result = run(quick=args.quick, members=args.members, chunk=args.chunk or None, peer_passes=args.peer_passes)
    from jaxgd.io.files import write_json

    write_json(args.out, result)
    m = result["machine"]
    print(f"\n{m.get('cpu_model')} ({m['cpu_count']} cores), {m['backend']} backend, jax {m['jax']}, torch {m['torch']}"
          f" ({m.get('torch_threads')} threads), pyhessian {m.get('pyhessian')}; jaxgd's members over "
          f"{len(result['devices'])} device(s)\n")
    print(format_table(result))
    load = result["load_average"]
    print(f"\nload average (1, 5, 15 min) at the start {', '.join(f'{v:.2f}' for v in load['start'])}, at the end "
          f"{', '.join(f'{v:.2f}' for v in load['end'])}; wrote {args.out} in {result['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
