"""Kill -9 at random moments, resume, and get byte-for-byte the uninterrupted results; `jaxgd rerun`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.checkpoint import read
from jaxgd.cli import WALL_CLOCK_FIELDS, compare_runs

ROOT = Path(__file__).resolve().parent.parent
# Single-example steps on the digits: a few seconds of training after a few of start-up.
EPOCHS = 150
TRAIN = ["train", "--epochs", str(EPOCHS), "--batch-size", "1", "--lr", "0.1", "--quiet"]
ENV = {"PYTHONUNBUFFERED": "1"}


def _popen(args, **kw):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=dict(os.environ, **ENV),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _kill_at(args, delay: float) -> bool:
    """Starts ``args``, sends SIGKILL after ``delay`` seconds; True if the process was still running."""
    proc = _popen(args)
    time.sleep(delay)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return alive


def _epochs_checkpointed(out: Path) -> int:
    files = list((out / "checkpoints").glob("*.npz")) if (out / "checkpoints").exists() else []
    return max((read(f)[0]["epochs_done"] for f in files), default=0)


def test_train_killed_at_ten_random_moments_resumes_to_identical_files(tmp_path, monkeypatch):
    # JAX's persistent compilation cache spares the restarts most of their compile time (not their numbers)
    monkeypatch.setitem(ENV, "JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-cache"))
    monkeypatch.setitem(ENV, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    warm = _popen(["-m", "jaxgd", *TRAIN, "--epochs", "1", "--out", str(tmp_path / "warm-up")])
    assert warm.wait(timeout=300) == 0, warm.stderr.read()
    whole = tmp_path / "whole"
    start = time.perf_counter()
    proc = _popen(["-m", "jaxgd", *TRAIN, "--out", str(whole)])
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    duration = time.perf_counter() - start
    killed = tmp_path / "killed"
    rng = np.random.default_rng(2026)
    progress = []
    for delay in rng.uniform(0.5, duration, size=10):
        _kill_at(["-m", "jaxgd", *TRAIN, "--out", str(killed), "--resume"], delay)
        progress.append(_epochs_checkpointed(killed))
    final = _popen(["-m", "jaxgd", *TRAIN, "--out", str(killed), "--resume"])
    assert final.wait(timeout=300) == 0, final.stderr.read()
    # the kills landed in the middle of training (and also before the first checkpoint)
    assert any(0 < p < EPOCHS for p in progress), progress
    assert progress == sorted(progress)  # a checkpoint is never lost or torn
    assert compare_runs(whole, killed) == [], progress
    assert (whole / "params.npz").read_bytes() == (killed / "params.npz").read_bytes()
    strip = lambda d: {k: v for k, v in json.loads((d / "metrics.json").read_text()).items()
                       if k not in WALL_CLOCK_FIELDS}
    assert strip(whole) == strip(killed)


def test_memorization_killed_and_resumed_ends_with_the_same_results(tmp_path):
    args = ["experiments/memorization.py", "--preset", "quick", "--quiet", "--epochs", "60", "--seeds", "2",
            "--checkpoint-every", "5"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = _popen([*args, "--out", str(whole)])
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    # SIGKILL at a random moment after a random epoch's checkpoint (the kill must land mid-training)
    target = int(np.random.default_rng(7).integers(10, 50))
    proc = _popen([*args, "--out", str(killed)])
    while _epochs_checkpointed(killed) < target and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(float(np.random.default_rng(8).uniform(0.0, 0.2)))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    stopped_at = _epochs_checkpointed(killed)
    proc = _popen([*args, "--out", str(killed), "--resume"])
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    assert 0 < stopped_at < 60, stopped_at
    strip = lambda d: {k: v for k, v in json.loads((d / "results.json").read_text()).items()
                       if k not in WALL_CLOCK_FIELDS}
    assert strip(whole) == strip(killed)


def test_rerun_reproduces_a_finished_run_and_names_a_difference(tmp_path):
    from jaxgd.cli import main

    run = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--quiet", "--out", str(run)]) == 0
    assert main(["rerun", str(run), "--out", str(tmp_path / "again")]) == 0
    assert compare_runs(run, tmp_path / "again") == []
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test_accuracy"] += 0.01  # a tampered result is caught
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["rerun", str(run), "--out", str(tmp_path / "third")]) == 1


def test_resume_with_different_options_is_refused_naming_the_option(tmp_path, capsys):
    from jaxgd.cli import main

    run = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    assert main(["train", "--epochs", "2", "--quiet", "--out", str(run), "--lr", "1.0", "--resume"]) == 2
    assert "--resume refused: lr=3.0 in the checkpoint but lr=1.0 in this run" in capsys.readouterr().err
