"""Several processes of a jax.distributed job train one population: on 127.0.0.1, with real processes."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from jaxgd.runs.compare import WALL_CLOCK_FIELDS, compare_runs

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXGD_COORDINATOR")}
ENV.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")

WORKER = textwrap.dedent("""
    import sys
    pid, n, port, out, lr = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    import jax
    if n > 1:  # as any user's script would: one CPU device per process
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=n, process_id=pid)
    else:
        jax.config.update("jax_num_cpu_devices", 2)
    import numpy as np, jaxgd
    from jaxgd.io.files import flatten_params
    data = jaxgd.data.subset(jaxgd.data.load("digits"), n_train=300)
    keys = jax.random.split(jax.random.key(0), 6)
    for order in ("per_seed", "shared"):
        r = jaxgd.fit(keys, jaxgd.MLP((64, 16, 10)), data, jaxgd.TrainConfig(epochs=2, data_order=order,
                      learning_rate=lr), checkpoint=f"{out}/ckpt-{pid}-{order}")
        arrays = {f"params/{k}": np.asarray(v) for k, v in flatten_params(r.params).items()}
        arrays.update({f"history/{k}": np.asarray(v) for k, v in r.history.items()})
        arrays["initial/test_cost"] = np.asarray(r.initial["test_cost"])
        np.savez(f"{out}/p{pid}-of-{n}-{order}.npz", **arrays)
    print("devices", len(jax.devices()))
""")


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(tmp_path, n, lrs):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _port()
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(n), str(port), str(tmp_path), str(lr)],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, lr in zip(range(n), lrs)]
    return [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]


def test_two_processes_train_a_population_exactly_as_one_process_with_two_devices(tmp_path):
    for code, out, err in _workers(tmp_path, 1, [3.0]) + _workers(tmp_path, 2, [3.0, 3.0]):
        assert code == 0 and "devices 2" in out, err[-2000:]
    for order in ("per_seed", "shared"):
        single = np.load(tmp_path / f"p0-of-1-{order}.npz")
        for pid in (0, 1):
            got = np.load(tmp_path / f"p{pid}-of-2-{order}.npz")  # np.asarray on every process
            assert set(got.files) == set(single.files)
            for k in single.files:
                np.testing.assert_array_equal(got[k], single[k], err_msg=f"{order} process {pid} {k}")
        # the checkpoint is written by process 0 only
        assert (tmp_path / f"ckpt-0-{order}" / "checkpoint.npz").exists()
        assert not (tmp_path / f"ckpt-1-{order}").exists()


def test_processes_that_disagree_fail_with_one_line_on_every_process(tmp_path):
    results = _workers(tmp_path, 2, [3.0, 1.0])
    for code, out, err in results:
        assert code != 0
        lines = [l for l in err.splitlines() if "DisagreementError" in l]
        assert lines and "disagree about the run" in lines[-1], err[-2000:]


def _launch(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "jaxgd.parallel.launch", "-n", "2", "--", sys.executable, "-m", "jaxgd",
                             *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


TRAIN = ["train", "--distributed", "--epochs", "300", "--batch-size", "1", "--lr", "0.1", "--quiet"]


def test_a_killed_process_stops_the_job_and_resume_ends_bit_identical(tmp_path):
    whole, run = tmp_path / "whole", tmp_path / "run"
    single = subprocess.run([sys.executable, "-m", "jaxgd", *TRAIN[:1], *TRAIN[2:], "--out", str(whole)], cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    job = _launch([*TRAIN, "--out", str(run)], start_new_session=False)
    checkpoint = run / ".pending" / "checkpoints" / "checkpoint.npz"
    while not checkpoint.exists() and job.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    victim = None
    for pid in os.listdir("/proc"):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except (OSError, ValueError):
            continue
        if b"JAXGD_PROCESS_ID=1\x00" in environ and f"{run}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            victim = int(pid)
    assert victim is not None and job.poll() is None
    killed_at = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    job.wait(timeout=60)
    stopped_after = time.perf_counter() - killed_at
    err = job.stderr.read()
    assert stopped_after < 10, stopped_after
    assert "jaxgd.parallel.launch: process 1 was killed by SIGKILL; stopping the other processes (0)" in err, err[-2000:]
    assert job.returncode == 137
    resumed = _launch([*TRAIN, "--out", str(run), "--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    assert compare_runs(whole, run) == []
    assert (whole / "params.npz").read_bytes() == (run / "params.npz").read_bytes()


@pytest.mark.parametrize("study,argv", [
    ("memorization", ["--epochs", "4", "--seeds", "2", "--n-train", "200", "--hidden", "16", "--corruptions", "0.5"]),
    ("local_minima", ["--epochs", "2", "--seeds", "4", "--n-train", "200", "--widths", "8,16", "--pairs", "1",
                      "--modes", "init_and_order"]),
])
def test_a_study_across_two_processes_writes_the_results_of_one_process_once(tmp_path, study, argv):
    script = str(ROOT / "experiments" / f"{study}.py")
    # one process with as many devices as the job has: the same partition of the members, the same numbers
    one = subprocess.run([sys.executable, script, *argv, "--quiet", "--cpu-devices", "2", "--out", str(tmp_path / "one")],
                         cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "jaxgd.parallel.launch", "-n", "2", "--", sys.executable, script, *argv,
                          "--quiet", "--distributed", "--out", str(tmp_path / "two")], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("results.json and figures in") == 1  # process 0 reports, once
    strip = lambda d: {k: v for k, v in json.loads((d / "results.json").read_text()).items()
                       if k not in WALL_CLOCK_FIELDS}
    a, b = strip(tmp_path / "one"), strip(tmp_path / "two")
    if study == "local_minima":  # each width's wall-clock time sits in its rows
        for rows in (a, b):
            for mode in rows["summary_by_mode"].values():
                for r in mode:
                    r.pop("wall_seconds", None)
    assert a == b
