"""Kill -9 at a random moment, resume, and get byte-for-byte the uninterrupted results; `jaxgd rerun`.

The train command's twenty kills over an older run are in test_rundir.py."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from jaxgd.runs.checkpoint import read
from jaxgd.runs.compare import WALL_CLOCK_FIELDS, compare_runs
from tests.conftest import OPTIMIZED

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONUNBUFFERED": "1", **OPTIMIZED}  # these command lines train for seconds


def _popen(args, **kw):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=dict(os.environ, **ENV),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _kill_during(args, out: Path, epoch: int, pause: float) -> None:
    """Starts ``args`` and SIGKILLs it ``pause`` seconds after ``out`` holds a checkpoint of ``epoch``
    epochs or more (after start-up, for ``epoch`` 0)."""
    proc = _popen(args)
    while epoch and _epochs_checkpointed(out) < epoch and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(pause)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def _epochs_checkpointed(out: Path) -> int:
    files = list(out.glob("checkpoints/*.npz")) + list(out.glob(".pending/checkpoints/*.npz"))
    return max((read(f)[0]["epochs_done"] for f in files), default=0)


def test_memorization_killed_and_resumed_ends_with_the_same_results(tmp_path):
    args = ["experiments/memorization.py", "--preset", "quick", "--quiet", "--epochs", "40", "--seeds", "2",
            "--corruptions", "0.5", "--checkpoint-every", "4"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = _popen([*args, "--out", str(whole)])
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    # SIGKILL at a random moment after a random epoch's checkpoint (the kill must land mid-training)
    rng = np.random.default_rng(7)
    _kill_during([*args, "--out", str(killed)], killed, int(rng.integers(8, 28)), float(rng.uniform(0.0, 0.1)))
    stopped_at = _epochs_checkpointed(killed)
    proc = _popen([*args, "--out", str(killed), "--resume"])
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    assert 0 < stopped_at < 40, stopped_at
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


def test_rerun_of_a_relative_data_dir_works_from_another_directory(tmp_path, monkeypatch):
    from jaxgd.cli import main
    from tests.conftest import write_fake_idx_dir

    write_fake_idx_dir(tmp_path / "idx", n_train=60, n_test=20)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data-dir", "idx", "--hidden", "8", "--epochs", "2", "--quiet", "--out", "run"]) == 0
    options = json.loads((tmp_path / "run" / "config.json").read_text())["options"]
    assert options["data_dir"] == str((tmp_path / "idx").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["rerun", str(tmp_path / "run"), "--out", str(tmp_path / "again")]) == 0


def test_resume_with_different_options_is_refused_naming_the_option(tmp_path, capsys):
    from jaxgd.cli import main

    run = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    assert main(["train", "--epochs", "2", "--quiet", "--out", str(run), "--lr", "1.0", "--resume"]) == 2
    assert "--resume refused: lr=3.0 in the checkpoint but lr=1.0 in this run" in capsys.readouterr().err
