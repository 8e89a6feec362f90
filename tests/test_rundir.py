"""Run directories are units: a run commits its files together, never mixes them with another run's, never
deletes files jaxgd did not write, and tells a finished run from an interrupted one."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxgd.cli import main
from jaxgd.runs.compare import WALL_CLOCK_FIELDS, compare_runs
from jaxgd.runs.rundir import LOCK, PENDING, RunDir, RunDirError, read_manifest, verify
from tests.conftest import OPTIMIZED

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["train", "--epochs", "2", "--quiet"]


def _config(run):
    return json.loads((run / "config.json").read_text())


def test_a_finished_run_is_committed_with_a_manifest_that_verifies(tmp_path):
    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    manifest = read_manifest(run)
    assert set(manifest["files"]) == {"config.json", "metrics.json", "metrics.csv", "params.npz", "learning_curve.png",
                                      "weights.png", "checkpoints/checkpoint.npz"}
    assert verify(run) == [] and not (run / PENDING).exists() and not (run / LOCK).exists()
    (run / "metrics.json").write_text((run / "metrics.json").read_text().replace("0", "1", 1))
    assert verify(run) == ["metrics.json changed since the run was committed"]


def test_a_new_run_refuses_a_directory_that_is_not_empty(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main([*QUICK, "--lr", "1.0", "--out", str(run)]) == 2
    assert "is not empty: it holds a finished jaxgd run. Pass --resume" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing rewritten


def test_files_jaxgd_did_not_write_are_never_deleted(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "resnet_epoch90.pt").write_bytes(b"weights of another project")
    for flag in ([], ["--overwrite"], ["--resume"]):
        assert main([*QUICK, *flag, "--out", str(run)]) == 2
        assert "resnet_epoch90.pt" in capsys.readouterr().err
    assert (run / "checkpoints" / "resnet_epoch90.pt").read_bytes() == b"weights of another project"
    assert not (run / "config.json").exists()


def test_overwrite_replaces_a_jaxgd_run_as_a_whole(tmp_path):
    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    assert main([*QUICK, "--lr", "1.0", "--overwrite", "--out", str(run), "--metrics", "grad_norm"]) == 0
    assert _config(run)["options"]["lr"] == 1.0 and verify(run) == []
    assert "grad_norm" in json.loads((run / "metrics.json").read_text())


def test_a_refused_resume_rewrites_nothing_and_the_right_resume_then_works(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    config = (run / "config.json").read_bytes()
    assert main([*QUICK, "--lr", "1.0", "--resume", "--out", str(run)]) == 2
    assert "--resume refused: lr=3.0 in the checkpoint but lr=1.0 in this run" in capsys.readouterr().err
    assert (run / "config.json").read_bytes() == config and verify(run) == []
    assert main([*QUICK, "--resume", "--out", str(run)]) == 0
    assert "finished and verified" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["empty", "missing", "foreign"])
def test_resume_of_a_directory_without_a_jaxgd_run_is_refused(tmp_path, capsys, where):
    run = tmp_path / "run"
    if where != "missing":
        run.mkdir()
    if where == "foreign":
        (run / "notes.txt").write_text("mine")
    assert main([*QUICK, "--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert ("holds no jaxgd run to continue" in err) if where != "foreign" else ("notes.txt" in err)


def test_orphaned_temporary_files_are_removed_and_a_lock_file_left_behind_is_no_lock(tmp_path, capsys):
    run = tmp_path / "run"
    (run / PENDING / "checkpoints").mkdir(parents=True)
    (run / PENDING / "config.json").write_text("{}")
    (run / PENDING / "checkpoints" / ".checkpoint.npz.abc123.tmp").write_bytes(b"torn")
    (run / ".metrics.json.xyz.tmp").write_bytes(b"torn")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "earlier"}))
    assert main([*QUICK, "--overwrite", "--out", str(run)]) == 0  # the OS lock died with its process
    assert not list(run.rglob("*.tmp")) and verify(run) == [] and not (run / LOCK).exists()


def test_a_live_lock_refuses_a_second_process_at_once(tmp_path):
    run = tmp_path / "run"
    with RunDir(run).open("new", {"options": {}}, section="options"):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "jaxgd", *QUICK, "--resume", "--out", str(run)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 2 and f"{run} is in use by process {os.getpid()}" in proc.stderr
        assert time.perf_counter() - start < 60
    assert not (run / LOCK).exists()


def test_two_concurrent_runs_on_one_out_the_second_is_refused(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "jaxgd", "train", "--epochs", "30", "--batch-size", "1", "--quiet",
            "--out", str(run)]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (run / LOCK).exists() and first.poll() is None:
        time.sleep(0.01)
    second = subprocess.run(args[:-2] + ["--resume", "--out", str(run)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 2 and "is in use by process" in second.stderr, second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert verify(run) == []


def test_an_interrupted_commit_is_finished_by_resume(tmp_path, monkeypatch):
    whole, run = tmp_path / "whole", tmp_path / "run"
    assert main([*QUICK, "--out", str(whole)]) == 0
    assert main([*QUICK, "--lr", "1.0", "--out", str(run)]) == 0  # an older finished run
    moved = []

    def replace(src, dst, real=os.replace):
        if (run / PENDING / "manifest.json").exists():  # the commit is decided: files are moving into place
            if len(moved) == 2:
                raise KeyboardInterrupt  # killed in the middle of moving the new run's files
            moved.append(dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert main([*QUICK, "--overwrite", "--out", str(run)]) == 130
    monkeypatch.undo()
    assert verify(run) == [f"{run} holds a run whose commit was interrupted; --resume finishes it"]
    assert main([*QUICK, "--resume", "--out", str(run)]) == 0
    assert verify(run) == [] and compare_runs(whole, run) == []


# Single-example steps on the digits: a few seconds of training after a few of start-up.
EPOCHS = 100
TRAIN = ["train", "--epochs", str(EPOCHS), "--batch-size", "1", "--lr", "0.1", "--quiet"]


def _popen(args, env):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _epochs_checkpointed(out: Path) -> int:
    from jaxgd.runs.checkpoint import read

    files = list(out.glob(f"{PENDING}/checkpoints/*.npz"))
    return max((read(f)[0]["epochs_done"] for f in files), default=0)


def test_killed_at_12_random_moments_over_an_older_run_never_mixes_runs(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **OPTIMIZED)
    whole, run = tmp_path / "whole", tmp_path / "run"
    assert _popen(["-m", "jaxgd", *TRAIN, "--out", str(whole)], env).wait(timeout=300) == 0
    assert _popen(["-m", "jaxgd", *QUICK, "--out", str(run)], env).wait(timeout=300) == 0  # the older run
    old = read_manifest(run)
    rng = np.random.default_rng(2026)
    states = []
    for epoch in np.sort(rng.integers(0, EPOCHS, size=12)):
        mode = "--resume" if (run / PENDING / "config.json").exists() else "--overwrite"
        proc = _popen(["-m", "jaxgd", *TRAIN, "--out", str(run), mode], env)
        while epoch and _epochs_checkpointed(run) < epoch and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.2, 2.5) if epoch == 0 else rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if read_manifest(run) == old:
            assert verify(run) == [], "the older run must stay verifiable"
            states.append("old" if not (run / PENDING / "config.json").exists() else "old + unfinished new")
        else:
            assert (run / PENDING).exists() or verify(run) == []  # unfinished, or the new run committed
            states.append("new")
    final = _popen(["-m", "jaxgd", *TRAIN, "--out", str(run), "--resume"], env)
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert "old + unfinished new" in states, states  # the kills landed while the older run was still there
    assert verify(run) == [] and compare_runs(whole, run) == [], states
    assert (whole / "params.npz").read_bytes() == (run / "params.npz").read_bytes()
    strip = lambda d: {k: v for k, v in json.loads((d / "metrics.json").read_text()).items()
                       if k not in WALL_CLOCK_FIELDS}
    assert strip(whole) == strip(run)


def test_rerun_writes_into_a_new_directory_and_reports_provenance(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    assert main(["rerun", str(run), "--out", str(run)]) == 2
    assert "rerun never writes into the run it checks" in capsys.readouterr().err
    assert main(["rerun", str(run)]) == 0 and main(["rerun", str(run)]) == 0
    assert (tmp_path / "run-rerun").is_dir() and (tmp_path / "run-rerun-2").is_dir()
    capsys.readouterr()
    with np.load(run / "params.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["0/w"] = arrays["0/w"] * 1.001
    np.savez(run / "params.npz", **arrays)
    assert main(["rerun", str(run)]) == 1
    assert "does not verify: params.npz changed since the run was committed" in capsys.readouterr().err
