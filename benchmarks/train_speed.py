"""Time per seed-epoch of the lesson's 784-16-16-10 network and of a CNN: jaxgd against the tools researchers use.

    python -m benchmarks.train_speed            # the full table (a few minutes on 2 CPU cores)
    python -m benchmarks.train_speed --quick    # a smoke run
    python -m benchmarks.hessian_speed          # its sibling: Hessian spectra of 100 networks against PyHessian

Every contender of a table trains the same network on the same 50,000 MNIST-shaped inputs,
training alone (no evaluation), after a warm-up: the lesson's 784-16-16-10 sigmoid MLP with
the quadratic cost and plain SGD (learning rate 3.0), or ``jaxgd.models.CNN``'s default for
28x28 images with cross-entropy and plain SGD (learning rate 0.05). The peers are timed over
a fixed number of optimizer steps and scaled to one epoch of 50,000 examples; jaxgd over
whole epochs, or for the largest populations and the CNN over part of one, scaled. Every timing is the fastest of its calls
(:func:`benchmarks.common.best_time`); jaxgd's configurations are timed in turns, in rounds
(:func:`benchmarks.common.interleaved_best_times`). Speed-ups are ratios from this
one run on this one machine. A peer that is not installed (torch) is reported as skipped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common


def jaxgd_model(model: str):
    """The benchmarked network and its training config: the lesson's MLP (quadratic cost, SGD at 3.0) or
    ``jaxgd.models.CNN``'s default for 28x28 images (cross-entropy, SGD at 0.05)."""
    import jaxgd

    if model == "mlp":
        return jaxgd.MLP(common.SIZES), jaxgd.TrainConfig(learning_rate=common.LEARNING_RATE)
    regularized = {"batch_norm": True, "dropout": common.CNN_DROPOUT} if model == "cnn_bn" else {}
    return (jaxgd.CNN((28, 28, 1), 10, channels=common.CNN_CHANNELS, **regularized),
            jaxgd.TrainConfig(cost="cross_entropy", learning_rate=common.CNN_LEARNING_RATE))


def jaxgd_timers(data: dict, seeds: int, order: str, batch_size: int, steps: int | None,
                 devices=None, matmul_precision: str | None = None, model: str = "mlp"):
    """jaxgd's compiled training program (:func:`jaxgd.training.loop.train_epochs`) for one configuration, compiled and
    warmed up, ready to be timed.

    The run is built by :func:`jaxgd.prepare` as :func:`jaxgd.fit` builds it (a population's members
    spread over ``devices``, default every device; the kernel :func:`jaxgd.training.spec.choose_kernel` picks), on
    a small dataset of the same shape; it then trains on ``data`` (``{"x_train", "y_train"}``, placed
    already). With ``steps=None`` the program trains whole epochs. Otherwise there are two programs, with
    ``steps`` and ``2 * steps`` optimizer steps per epoch: the difference of their times is the cost of
    ``steps`` steps, the rest the once-per-epoch cost (drawing each member's permutation of the 50,000
    examples), and one epoch is ``fixed + (50,000 / batch) x per-step``. ``matmul_precision`` is the
    run's ``TrainConfig.matmul_precision`` (default: its default).

    Returns ``(calls, seconds_per_epoch)``: functions that each run one program once and block
    until it is done, and the function that turns their fastest times into seconds per epoch.
    """
    import jax

    import jaxgd
    from jaxgd.training.loop import train_epochs

    net, config = jaxgd_model(model)
    config = config.replace(batch_size=batch_size, epochs=1, data_order=order)
    if matmul_precision is not None:
        config = config.replace(matmul_precision=matmul_precision)
    n = int(data["y_train"].shape[0])
    x, y = (np.asarray(a[:1000]) for a in (data["x_train"], data["y_train"]))
    shape = (784,) if model == "mlp" else (28, 28, 1)
    small = jaxgd.data.Dataset(x, y, x[:10], y[:10], num_classes=10, input_shape=shape)
    key = jax.random.split(jax.random.key(0), seeds) if seeds > 1 else jax.random.key(0)
    run = jaxgd.prepare(key, net, small, config, devices=devices if seeds > 1 else None)
    spec = dataclasses.replace(run.spec, steps_per_epoch=n // batch_size)

    def program(k):
        short = dataclasses.replace(spec, steps_per_epoch=k)  # the same program, k steps per epoch
        step = jax.jit(lambda s: train_epochs(s, run.member, data, spec=short, num_epochs=1))
        current = [jax.block_until_ready(step(run.state))]  # compile, warm up

        def once():
            current[0] = jax.block_until_ready(step(current[0]))

        return once

    if steps is None:
        return [program(spec.steps_per_epoch)], lambda times: times[0]

    def seconds_per_epoch(times):
        per_step = max(times[1] - times[0], 0.0) / steps
        fixed = max(times[0] - steps * per_step, 0.0)
        return fixed + per_step * (n // batch_size)

    return [program(steps), program(2 * steps)], seconds_per_epoch


def jaxgd_seconds_per_epoch(data: dict, seeds: int, order: str, batch_size: int, steps: int | None,
                            devices=None, matmul_precision: str | None = None, model: str = "mlp") -> float:
    """Seconds per epoch of one configuration timed alone (see :func:`jaxgd_timers` for the arguments);
    every timing the fastest call (:func:`benchmarks.common.best_time`)."""
    calls, seconds_per_epoch = jaxgd_timers(data, seeds, order, batch_size, steps, devices, matmul_precision, model)
    return seconds_per_epoch([common.best_time(once, 3) for once in calls])


#: Populations up to this many examples x seeds per epoch are timed over whole epochs (a few
#: seconds each); larger ones over a part of an epoch, scaled.
WHOLE_EPOCH_WORK = 5_000_000
#: Examples x seeds a CNN's partial-epoch timing trains (a CNN's epoch is a hundred times an MLP's work).
CNN_WORK = 32_000


def steps_for(seeds: int, batch_size: int, quick: bool, model: str = "mlp") -> int | None:
    """Steps per timed run (``None``: whole epochs); partial runs do about the same work whatever the population."""
    if model != "mlp":
        return max(2, min(400, CNN_WORK // (seeds * batch_size) // (8 if quick else 1)))
    if not quick and seeds * common.N_TRAIN <= WHOLE_EPOCH_WORK:
        return None
    work = 1_000_000 if not quick else 50_000  # examples x seeds
    return max(4, min(common.N_TRAIN // batch_size // 2, work // (seeds * batch_size)))


def peak_resident_bytes() -> int:
    """This process's peak resident memory: VmHWM (reset at exec, unlike ru_maxrss, which a child
    started by a large parent inherits across fork and exec); ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_probe(seeds: int, order: str) -> dict:
    """Runs (in this process) the real training program — 1,000 networks, 50,000 examples, evaluation
    included — for a few steps, and reports the process's peak resident memory and XLA's own accounting."""
    import jax

    import jaxgd
    from jaxgd.training.loop import compiled_chunk

    x, y = common.mnist_shaped()
    x_test, y_test = common.mnist_shaped(10_000, seed=1)
    data = jaxgd.data.Dataset(x, y, x_test, y_test, num_classes=10)
    del x, y, x_test, y_test
    net = jaxgd.MLP(common.SIZES)
    config = jaxgd.TrainConfig(batch_size=10, epochs=1, data_order=order)
    state, member, arrays, full = jaxgd.prepare(jax.random.split(jax.random.key(0), seeds), net, data, config)
    del data
    short, devices = dataclasses.replace(full, steps_per_epoch=20), full.member_shards
    temp = {}
    for name, spec in (("short", short), ("full", full)):
        compiled = compiled_chunk.lower(state, member, arrays, spec=spec, num_epochs=1).compile()
        temp[name] = compiled.memory_analysis().temp_size_in_bytes
    state, metrics = compiled_chunk(state, member, arrays, spec=short, num_epochs=1)
    jax.block_until_ready(metrics)
    peak = peak_resident_bytes()
    # The run covers 20 steps; a whole epoch's program needs (temp_full - temp_short) more
    # temporaries (each member's epoch order), which XLA's own accounting gives exactly.
    return {"seeds": seeds, "order": order, "devices": devices, "peak_rss_20_steps_bytes": peak,
            "xla_temp_bytes_20_steps": temp["short"], "xla_temp_bytes_epoch": temp["full"],
            "peak_bytes": peak + max(0, temp["full"] - temp["short"])}


def probe_in_subprocess(seeds: int, order: str, cpu_devices: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", "--memory-probe", str(seeds), order,
                           "--cpu-devices", str(cpu_devices)],
                          capture_output=True, text=True, timeout=1200,
                          cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        return {"seeds": seeds, "order": order, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peer(fn, *args, **kwargs):
    """``(seconds, None)``, or ``(None, "skipped (torch not installed)")`` when the peer's library is missing."""
    try:
        return fn(*args, **kwargs), None
    except ImportError as e:
        return None, f"skipped ({e.name or e} not installed)"


#: The contender name of the populations kept on one device when there are several.
ONE_DEVICE = "jaxgd, 1 device"
#: The thirty-line JAX population (benchmarks.peers.jax_population).
THIRTY_LINES = "jax, thirty lines"


def jaxgd_configs(quick: bool) -> list[tuple[str, int, str, int]]:
    """``(model, seeds, order, batch)`` of every jaxgd row."""
    configs = [("mlp", 1, "per_seed", 10), ("mlp", 1, "per_seed", 100)]
    for s in ((10, 100) if quick else (10, 100, 1000)):
        for order in ("shared", "per_seed"):
            configs.append(("mlp", s, order, 10))
    configs += [("mlp", 100, "shared", 100), ("mlp", 100, "per_seed", 100)]
    if not quick:
        configs.append(("mlp", 1000, "shared", 100))
    configs += [("cnn", 1, "per_seed", 32), ("cnn", 100, "shared", 32), ("cnn", 100, "shared", 10)]
    configs += [("cnn_bn", 1, "per_seed", 32), ("cnn_bn", 100, "shared", 32)]
    return configs


def run(quick: bool = False, memory: bool = True) -> dict:
    """The whole table. Populations spread their members over every device, as :func:`jaxgd.fit` does
    (on a CPU, one device per core when the caller ran :func:`jaxgd.parallel.sharding.use_cpu_devices` first)."""
    import jax

    from benchmarks.peers import jax_naive, jax_population, numpy_textbook, torch_eager, torch_func

    x, y = common.mnist_shaped()
    data = jax.device_put({"x_train": x, "y_train": y})
    rows = []

    def add(contender, model, seeds, order, batch, seconds, note=None):
        rows.append({"contender": contender, "model": model, "seeds": seeds, "order": order, "batch": batch,
                     "seconds_per_epoch": seconds, "seconds_per_seed_epoch": None if seconds is None else seconds / seeds,
                     "note": note})
        if seconds is None:
            print(f"  {contender:<22} {model} seeds={seeds:<5} batch={batch:<4} {note}", flush=True)
        else:
            print(f"  {contender:<22} {model} seeds={seeds:<5} {order or '':<8} batch={batch:<4} "
                  f"{seconds / seeds * 1e3:10.2f} ms/seed-epoch", flush=True)

    print("matrix-multiply ceiling ...", flush=True)
    rate = common.matmul_rate(1024 if quick else 2048)
    print(f"  float32 matmul: jax {rate['jax'] / 1e9:.1f} GFLOP/s, numpy {rate['numpy'] / 1e9:.1f} GFLOP/s", flush=True)

    devices = jax.devices()
    timed = [("jaxgd", model, seeds, order, batch, None) for model, seeds, order, batch in jaxgd_configs(quick)]
    if len(devices) > 1:  # the same populations kept on one device, for comparison
        timed += [(ONE_DEVICE, "mlp", 100, order, 10, devices[:1]) for order in ("shared", "per_seed")]
    print(f"jaxgd (populations over {len(devices)} {devices[0].platform} device(s)): compiling "
          f"{len(timed)} configurations ...", flush=True)
    from jaxgd.parallel import sharding

    replicated = {}  # one copy of the data per set of devices, shared by the populations placed there

    def data_for(seeds, on):
        if seeds == 1:
            return data
        key = tuple(devices if on is None else on)
        if key not in replicated:
            replicated[key] = sharding.replicate(data, sharding.member_mesh(key))
        return replicated[key]

    timers = [jaxgd_timers(data_for(seeds, on), seeds, order, batch, steps_for(seeds, batch, quick, model),
                           devices=on, model=model)
              for _, model, seeds, order, batch, on in timed]
    calls = [once for programs, _ in timers for once in programs]
    # Every configuration is timed in each of the rounds, so that they share the machine's noisy moments.
    best = common.interleaved_best_times(
        calls, progress=lambda r: print(f"  timing round {r + 1} of {common.ROUNDS} ...", flush=True))
    for (contender, model, seeds, order, batch, _), (programs, seconds_per_epoch) in zip(timed, timers):
        times, best = best[:len(programs)], best[len(programs):]
        add(contender, model, seeds, order if seeds > 1 else None, batch, seconds_per_epoch(times))

    print("peers ...", flush=True)
    steps = 50 if quick else 300
    for batch in (10, 100):
        t, note = peer(torch_eager.seconds_per_epoch, x, y, batch, steps=steps)
        add("pytorch eager", "mlp", 1, None, batch, t, note)
    for seeds, batch in ((100, 10),) if quick else ((10, 10), (100, 10), (100, 100)):
        t, note = peer(torch_func.seconds_per_epoch, x, y, batch, seeds, steps=10 if quick else 50)
        add("pytorch torch.func", "mlp", seeds, "shared", batch, t, note)
    t, _ = peer(numpy_textbook.seconds_per_epoch, x, y, 10, steps=20 if quick else 100)
    add("numpy textbook", "mlp", 1, None, 10, t)
    for batch in (10, 100):
        t, _ = peer(jax_naive.seconds_per_epoch, x, y, batch, steps=steps)
        add("naive jax", "mlp", 1, None, batch, t)
    t, _ = peer(jax_population.seconds_per_epoch, x, y, 10, 100, "mlp", steps=50 if quick else 500)
    add(THIRTY_LINES, "mlp", 100, "shared", 10, t)
    t, note = peer(torch_eager.seconds_per_epoch, x, y, 32, steps=20 if quick else 200, model="cnn")
    add("pytorch eager", "cnn", 1, None, 32, t, note)
    for batch in (32, 10):
        t, note = peer(torch_func.seconds_per_epoch, x, y, batch, 100, steps=2 if quick else 10, model="cnn")
        add("pytorch torch.func", "cnn", 100, "shared", batch, t, note)
    t, note = peer(torch_eager.seconds_per_epoch, x, y, 32, steps=20 if quick else 200, model="cnn_bn")
    add("pytorch eager", "cnn_bn", 1, None, 32, t, note)
    t, note = peer(torch_func.seconds_per_epoch, x, y, 32, 100, steps=2 if quick else 10, model="cnn_bn")
    add("pytorch torch.func", "cnn_bn", 100, "shared", 32, t, note)
    # XLA's CPU convolutions under vmap take tens of seconds per step for 100 members: a few steps suffice
    t, _ = peer(jax_population.seconds_per_epoch, x, y, 32, 10 if quick else 100, "cnn", steps=1)
    add(THIRTY_LINES, "cnn", 10 if quick else 100, "shared", 32, t)

    for r in rows:
        s = r["seconds_per_epoch"]
        flops = common.epoch_flops(r["seeds"], model=r["model"])
        r["gflops"] = None if s is None else flops / s / 1e9
        r["fraction_of_matmul"] = None if s is None else flops / s / rate["ceiling"]

    memory_rows = []
    if memory and not quick:
        print("memory of 1,000 seeds on 50,000 examples ...", flush=True)
        cpu_devices = len(jax.devices("cpu"))
        memory_rows = [probe_in_subprocess(1000, order, cpu_devices) for order in ("shared", "per_seed")]

    return {"rows": rows, "matmul": rate, "memory": memory_rows, "checks": checks(rows, memory_rows),
            "machine": machine(), "devices": [str(d) for d in devices], "quick": quick}


def find(rows, contender, seeds, order, batch, model="mlp"):
    for r in rows:
        if (r["contender"], r.get("model", "mlp"), r["seeds"], r["order"], r["batch"]) == \
                (contender, model, seeds, order, batch):
            return r
    return None


def checks(rows, memory_rows) -> list[dict]:
    """The issues' targets, as ratios read off this run (None where a contender was skipped)."""
    def per_seed(c, s, o, b, model="mlp"):
        r = find(rows, c, s, o, b, model)
        return None if r is None else r["seconds_per_seed_epoch"]

    def ratio(a, b):
        return None if a is None or b is None else a / b

    eager = per_seed("pytorch eager", 1, None, 10)
    one = per_seed("jaxgd", 1, None, 10)
    shared100 = per_seed("jaxgd", 100, "shared", 10)
    cnn100 = per_seed("jaxgd", 100, "shared", 32, "cnn")
    bn100 = per_seed("jaxgd", 100, "shared", 32, "cnn_bn")
    out = [
        {"check": "1 seed, batch 10: x faster than pytorch eager", "value": ratio(eager, one), "target": 10},
        {"check": "100 seeds shared, batch 10: x faster than pytorch eager", "value": ratio(eager, shared100),
         "target": 50},
        {"check": "100 seeds shared, batch 10: x faster than torch.func ensemble",
         "value": ratio(per_seed("pytorch torch.func", 100, "shared", 10), shared100), "target": 4},
        {"check": "100 seeds per-seed, batch 10: x faster than jaxgd 1 seed",
         "value": ratio(one, per_seed("jaxgd", 100, "per_seed", 10)), "target": 2},
    ]
    r = find(rows, "jaxgd", 100, "shared", 100)
    out.append({"check": "100 seeds shared, batch 100: fraction of the matmul rate",
                "value": None if r is None else r["fraction_of_matmul"], "target": 0.70})
    for m in memory_rows:
        if "peak_bytes" in m:
            out.append({"check": f"1000 seeds ({m['order']}) on 50,000 examples: peak GB", "value": m["peak_bytes"] / 1e9,
                        "target": 1.5, "lower_is_better": True})
    out += [
        {"check": "MLP 100 seeds shared, batch 10: x faster than the thirty-line JAX population",
         "value": ratio(per_seed(THIRTY_LINES, 100, "shared", 10), shared100), "target": 2},
        {"check": "CNN 100 seeds shared, batch 32: x faster than torch.func ensemble",
         "value": ratio(per_seed("pytorch torch.func", 100, "shared", 32, "cnn"), cnn100), "target": 3},
        {"check": "CNN 100 seeds shared, batch 32: x faster than the thirty-line JAX population",
         "value": ratio(per_seed(THIRTY_LINES, 100, "shared", 32, "cnn"), cnn100), "target": 2},
        {"check": "batch-norm + dropout CNN 100 seeds shared, batch 32: x faster than torch.func ensemble",
         "value": ratio(per_seed("pytorch torch.func", 100, "shared", 32, "cnn_bn"), bn100), "target": 3},
        {"check": "batch-norm + dropout CNN 100 seeds shared, batch 32: cost per seed-epoch / plain CNN's",
         "value": ratio(bn100, cnn100), "target": 1.5, "lower_is_better": True},
    ]
    for c in out:
        v = c["value"]
        c["met"] = None if v is None else (v <= c["target"] if c.get("lower_is_better") else v >= c["target"])
    return out


def machine() -> dict:
    from jaxgd.io.environment import environment

    env = environment()
    env.update(cpu_count=os.cpu_count(), processor=platform.processor() or platform.machine())
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    return env


def format_table(result: dict) -> str:
    lines = []
    for model, title in (("mlp", "The lesson's MLP, 784-16-16-10 sigmoid, quadratic cost, SGD"),
                         ("cnn", f"The CNN, jaxgd.models.CNN((28, 28, 1), 10) (channels {common.CNN_CHANNELS}), "
                                 "cross-entropy, SGD"),
                         ("cnn_bn", f"The batch-norm + dropout CNN, jaxgd.models.CNN((28, 28, 1), 10, batch_norm=True, "
                                    f"dropout={common.CNN_DROPOUT}), cross-entropy, SGD, training mode")):
        eager = find(result["rows"], "pytorch eager", 1, None, 10 if model == "mlp" else 32, model)
        base = eager["seconds_per_seed_epoch"] if eager and eager["seconds_per_seed_epoch"] else None
        lines += [title, "",
                  f"| contender | seeds | data order | batch | ms per seed-epoch | GFLOP/s | % of matmul | "
                  f"vs pytorch eager (batch {eager['batch'] if eager else '-'}) |",
                  "|---|---:|---|---:|---:|---:|---:|---:|"]
        for r in result["rows"]:
            if r.get("model", "mlp") != model:
                continue
            if r["seconds_per_epoch"] is None:
                lines.append(f"| {r['contender']} | {r['seeds']} | {r['order'] or '-'} | {r['batch']} | {r['note']} | | | |")
                continue
            ms = r["seconds_per_seed_epoch"] * 1e3
            speed = f"{base / r['seconds_per_seed_epoch']:.1f}x" if base else "-"
            lines.append(f"| {r['contender']} | {r['seeds']} | {r['order'] or '-'} | {r['batch']} | {ms:,.2f} | "
                         f"{r['gflops']:.1f} | {100 * r['fraction_of_matmul']:.1f}% | {speed} |")
        lines.append("")
    m = result["matmul"]
    lines.append(f"float32 matmul ceiling: {m['ceiling'] / 1e9:.1f} GFLOP/s (jax {m['jax'] / 1e9:.1f}, numpy "
                 f"{m['numpy'] / 1e9:.1f}); FLOPs counted as 6 x multiply-adds x 50,000 examples per seed-epoch "
                 f"(the MLP's multiply-adds are its 12,960 weights, the CNN's {common.cnn_macs():,}).")
    for mem in result["memory"]:
        if "peak_bytes" in mem:
            lines.append(f"1,000 seeds ({mem['order']} order), 50,000 x 784 examples, evaluation included: peak "
                         f"{mem['peak_bytes'] / 1e9:.2f} GB (resident {mem['peak_rss_20_steps_bytes'] / 1e9:.2f} GB over 20 steps, "
                         f"plus XLA temporaries of a whole epoch {mem['xla_temp_bytes_epoch'] / 1e6:.0f} MB "
                         f"vs {mem['xla_temp_bytes_20_steps'] / 1e6:.0f} MB)")
        else:
            lines.append(f"memory probe ({mem['order']}) failed: {mem.get('error')}")
    lines.append("")
    for c in result["checks"]:
        v = "skipped" if c["value"] is None else f"{c['value']:.2f}"
        verdict = "n/a" if c["met"] is None else ("met" if c["met"] else "NOT met")
        lines.append(f"- {c['check']}: {v} (target {'<=' if c.get('lower_is_better') else '>='} {c['target']}): {verdict}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--no-memory", action="store_true", help="skip the 1,000-seed memory probe")
    parser.add_argument("--out", default="runs/bench/train_speed.json", help="where to write the JSON results")
    parser.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                        help="JAX devices to make of the CPU, over which populations spread their members "
                             "(default: one per core; 1 keeps JAX's single CPU device)")
    parser.add_argument("--memory-probe", nargs=2, metavar=("SEEDS", "ORDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from jaxgd.parallel.sharding import use_cpu_devices

    try:
        use_cpu_devices(args.cpu_devices)
    except ValueError as e:
        parser.error(str(e))
    if args.memory_probe:
        print(json.dumps(memory_probe(int(args.memory_probe[0]), args.memory_probe[1])))
        return 0
    start = time.perf_counter()
    result = run(quick=args.quick, memory=not args.no_memory)
    result["wall_seconds"] = time.perf_counter() - start
    from jaxgd.io.files import write_json

    write_json(args.out, result)
    m = result["machine"]
    print(f"\n{m.get('cpu_model')} ({m['cpu_count']} cores), {m['backend']} backend, jax {m['jax']}, torch {m['torch']}; "
          f"jaxgd populations over {len(result['devices'])} device(s)\n")
    print(format_table(result))
    print(f"\nwrote {args.out} in {result['wall_seconds']:.0f} s")
    print("Hessian spectra of 100 networks against PyHessian: python -m benchmarks.hessian_speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
