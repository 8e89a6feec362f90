"""Nothing lost, shared or left unfinishable: run directories closed to the outside, one owner per directory,
bounded inputs, a bug shown as a bug (each case of the adversarial trial, as a test)."""
import errno
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxgd
from jaxgd.cli import main
from jaxgd.errors import CheckpointError, DataError, InvalidArgument, RunDirError
from jaxgd.runs.compare import WALL_CLOCK_FIELDS, compare_runs
from jaxgd.runs.rundir import LOCK, MANIFEST, PENDING, RunDir, read_manifest, verify
from tests.conftest import write_fake_idx_dir

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["train", "--epochs", "2", "--quiet"]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- nothing outside OUT -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../victim.txt", "ABSOLUTE"])
def test_a_manifest_naming_a_file_outside_the_run_is_damaged_and_nothing_is_deleted(tmp_path, capsys, name):
    run, victim = tmp_path / "run", tmp_path / "victim.txt"
    victim.write_text("the user's file")
    assert main([*QUICK, "--out", str(run)]) == 0
    manifest = json.loads((run / MANIFEST).read_text())
    manifest["files"][str(victim) if name == "ABSOLUTE" else name] = {"bytes": 15, "blake2b": "0"}
    (run / MANIFEST).write_text(json.dumps(manifest))
    assert main([*QUICK, "--out", str(run), "--overwrite"]) == 2
    assert "manifest.json is damaged" in one_line(capsys.readouterr().err)
    assert victim.read_text() == "the user's file"
    with pytest.raises(RunDirError, match="damaged"):
        verify(run)


def test_symlinks_inside_the_run_are_refused_before_anything_is_written(tmp_path, capsys):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    assert main([*QUICK, "--out", str(run)]) == 0
    elsewhere.mkdir()
    (elsewhere / "checkpoint.npz").write_bytes(b"someone else's")
    for f in (run / "checkpoints").iterdir():
        f.unlink()
    (run / "checkpoints").rmdir()
    (run / "checkpoints").symlink_to(elsewhere)
    assert main([*QUICK, "--out", str(run), "--overwrite"]) == 2
    assert "is a symbolic link" in one_line(capsys.readouterr().err)
    assert (elsewhere / "checkpoint.npz").read_bytes() == b"someone else's"

    other, thesis = tmp_path / "other", tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("chapter 1")
    other.mkdir()
    (other / PENDING).symlink_to(thesis)
    assert main([*QUICK, "--out", str(other)]) == 2
    assert "is a symbolic link" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in thesis.iterdir()) == ["thesis.txt"]


# --- every kill moment finishes ----------------------------------------------------------------------------

#: Where a run is killed: a hook the driver installs, and the call at which it fires.
MOMENTS = {
    "before the first checkpoint": ("jaxgd.training.resume", "save", 1, "before"),
    "between checkpoints": ("jaxgd.training.resume", "save", 2, "after"),
    "after the last checkpoint": ("jaxgd.cli.train", "write_results", 1, "before"),
    "while writing results": ("jaxgd.io.files", "save_npz", 1, "before"),
    "during the commit": ("jaxgd.runs.rundir", "atomic_write_bytes", 1, "before"),
}

#: A study's moments: its results are written by ``write_json`` (``results.json``, then the figures) after training.
STUDY_MOMENTS = {**MOMENTS, "after the last checkpoint": ("jaxgd.io.files", "write_json", 1, "before"),
                 "while writing results": ("jaxgd.io.files", "write_json", 1, "after")}

DRIVER = textwrap.dedent("""
    import errno, importlib, os, signal, sys
    module, name, nth, when, how, study = sys.argv[1:7]
    argv = sys.argv[7:]
    target = importlib.import_module(module)
    real, calls = getattr(target, name), []

    def hooked(*args, **kwargs):
        calls.append(None)
        fire = len(calls) == int(nth)
        if fire and when == "before":
            if how == "disk":
                raise OSError(errno.ENOSPC, "No space left on device")
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kwargs)
        if fire and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(target, name, hooked)
    if study == "-":
        from jaxgd.cli import main
        sys.exit(main(argv))
    from experiments import mnist1d
    sys.exit(mnist1d.main(argv))
""")


def driven(tmp_path, moment, argv, study="-", how="kill"):
    module, name, nth, when = (MOMENTS if study == "-" else STUDY_MOMENTS)[moment]
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # compiled as the in-process runs it is compared with
    return subprocess.run([sys.executable, str(script), module, name, str(nth), when, how, study, *argv],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def same_results(a: Path, b: Path, results=("metrics.json",)) -> bool:
    strip = lambda d, n: {k: v for k, v in json.loads((d / n).read_text()).items()  # noqa: E731
                          if k not in WALL_CLOCK_FIELDS}
    return all(strip(a, n) == strip(b, n) for n in results)


TRAIN = ["train", "--epochs", "3", "--n-train", "300", "--quiet"]
SWEEP = ["train", "--epochs", "3", "--n-train", "300", "--lr", "0.5,1", "--seeds", "2", "--quiet"]
STUDY = ["--preset", "quick", "--models", "mlp", "--conditions", "original", "--seeds", "2", "--epochs", "3",
         "--n-train", "400", "--quiet", "--checkpoint-every", "1"]


def cli(argv) -> int:
    """``jaxgd`` in a new process, as the driver runs it (a population's numbers depend on the device count, which
    a process fixes when JAX starts)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "jaxgd", *argv], cwd=ROOT, env=env, capture_output=True,
                          timeout=300).returncode


@pytest.mark.parametrize("kind", ["train", "sweep"])
def test_a_run_killed_at_every_phase_boundary_finishes_with_resume(tmp_path, kind):
    argv = TRAIN if kind == "train" else SWEEP
    run_cli = main if kind == "train" else cli  # one network does not depend on the device count
    whole = tmp_path / "whole"
    assert run_cli([*argv, "--out", str(whole)]) == 0
    for i, moment in enumerate(MOMENTS):
        run = tmp_path / f"run{i}"
        killed = driven(tmp_path, moment, [*argv, "--out", str(run)])
        assert killed.returncode == -9, (moment, killed.stderr[-2000:])
        mode = ["--resume"] if (run / PENDING).exists() else []  # nothing but the lock: start anew
        assert run_cli([*argv, "--out", str(run), *mode]) == 0, moment
        assert verify(run) == [] and compare_runs(whole, run) == [], moment
        assert (whole / "params.npz").read_bytes() == (run / "params.npz").read_bytes()


def test_a_study_killed_at_every_phase_boundary_finishes_with_resume(tmp_path):
    from experiments import mnist1d

    whole = tmp_path / "whole"
    assert mnist1d.main([*STUDY, "--out", str(whole)]) == 0
    for i, moment in enumerate(STUDY_MOMENTS):
        run = tmp_path / f"run{i}"
        killed = driven(tmp_path, moment, [*STUDY, "--out", str(run)], study="mnist1d")
        assert killed.returncode == -9, (moment, killed.stderr[-2000:])
        if moment in ("after the last checkpoint", "while writing results"):  # killed where the names say
            assert (run / PENDING / "results.json").exists() == (moment == "while writing results"), moment
        mode = ["--resume"] if (run / PENDING).exists() else []  # nothing but the lock: start anew
        assert mnist1d.main([*STUDY, "--out", str(run), *mode]) == 0, moment
        def strip(d):  # wall-clock fields aside
            results = {k: v for k, v in json.loads((d / "results.json").read_text()).items()
                       if k not in ("wall_seconds", "environment", "config")}
            results["summary"] = [{k: v for k, v in r.items() if k != "fit_seconds"} for r in results["summary"]]
            return results
        assert verify(run) == [] and strip(whole) == strip(run), moment


def test_a_full_disk_while_writing_results_ends_in_one_line_and_resume_finishes(tmp_path):
    whole, run = tmp_path / "whole", tmp_path / "run"
    assert main([*TRAIN, "--out", str(whole)]) == 0
    full = driven(tmp_path, "while writing results", [*TRAIN, "--out", str(run)], how="disk")
    assert full.returncode == 2 and "No space left on device" in one_line(full.stderr)
    assert main([*TRAIN, "--out", str(run), "--resume"]) == 0  # every epoch is checkpointed: straight to results
    assert compare_runs(whole, run) == [] and same_results(whole, run)


# --- one owner per directory --------------------------------------------------------------------------------

def _open_and_report(path, stale, barrier, results, release):
    run = RunDir(path)
    barrier.wait()
    try:
        run.open("new", {"options": {}}, section="options")
        results.put("held")
        release.wait()
        run.close()
    except RunDirError as e:
        results.put("refused: " + str(e))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_two_processes_opening_one_directory_exactly_one_holds_it_in_150_trials(tmp_path):
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for trial in range(150):
        path = tmp_path / f"t{trial}"
        stale = trial % 2 == 1
        if stale:  # a lock file left by a process that is gone
            path.mkdir()
            (path / LOCK).write_text(json.dumps({"pid": 999999, "host": os.uname().nodename, "since": "earlier"}))
        barrier, release, results = ctx.Barrier(2), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_and_report, args=(path, stale, barrier, results, release)) for _ in range(2)]
        for p in procs:
            p.start()
        got = sorted(results.get(timeout=60) for _ in procs)
        release.set()
        for p in procs:
            p.join(timeout=60)
        outcomes.append(got)
        assert got[0] == "held" and got[1].startswith("refused: ") and " is in use by " in got[1], (trial, got)
    assert len(outcomes) == 150


@pytest.mark.parametrize("record", ["", "-1", '"12345"', "[1, 2]", '{"pid": "12", "host": 3}'])
def test_a_lock_file_held_by_another_process_with_a_damaged_record_says_how_to_proceed(tmp_path, capsys, record):
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(record)
    assert main([*QUICK, "--out", str(run)]) == 0  # a record alone is no lock: the OS lock decides
    (run / LOCK).write_text(record)
    with open(run / LOCK, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, as by a live process
        assert main([*QUICK, "--out", str(tmp_path / "run"), "--resume"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "is in use by another process, whose record" in line and "choose another --out" in line


@pytest.mark.parametrize("pid", ["live", -1])
def test_a_lock_record_naming_a_live_process_or_an_impossible_pid_locks_nothing(tmp_path, capsys, pid):
    import fcntl

    pid = os.getpid() if pid == "live" else pid  # "live": a PID reused by a running process that is not a run
    record = json.dumps({"pid": pid, "host": os.uname().nodename, "since": "earlier"})
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(record)
    assert main([*QUICK, "--out", str(run)]) == 0  # the record only names an owner; the OS lock decides
    (run / LOCK).write_text(record)
    with open(run / LOCK, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main([*QUICK, "--out", str(run), "--resume"]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"is in use by process {pid} on {os.uname().nodename}" in line and "choose another --out" in line


def test_close_removes_its_own_lock_file_and_leaves_one_that_replaced_it(tmp_path):
    mine = RunDir(tmp_path / "mine").open("new", {"run": 1})
    assert (tmp_path / "mine" / LOCK).exists()
    mine.close()
    assert not (tmp_path / "mine" / LOCK).exists()
    run = RunDir(tmp_path / "run").open("new", {"run": 2})
    other = tmp_path / "other-lock"
    other.write_text('{"pid": 1, "host": "elsewhere"}')
    os.replace(other, tmp_path / "run" / LOCK)  # the lock file is no longer the one this RunDir holds
    run.close()
    assert (tmp_path / "run" / LOCK).read_text() == '{"pid": 1, "host": "elsewhere"}'


def test_a_run_on_a_shared_file_system_says_in_one_line_that_the_lock_may_not_hold_across_hosts(
        tmp_path, capsys, monkeypatch):
    from jaxgd.runs import rundir

    if sys.platform == "linux":
        assert isinstance(rundir.file_system(tmp_path), str)  # read from /proc/self/mountinfo
    monkeypatch.setattr(rundir, "file_system", lambda path: "nfs")
    with RunDir(tmp_path / "shared").open("new", {"run": 1}):
        pass
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is on a nfs file system, where the lock may not exclude a process on another host" \
        in err[0], err
    monkeypatch.setattr(rundir, "file_system", lambda path: "ext4")
    with RunDir(tmp_path / "local").open("new", {"run": 1}):
        pass
    assert capsys.readouterr().err == ""


def test_a_lock_file_jaxgd_cannot_open_is_named_with_how_to_proceed(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    real = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith(LOCK):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    assert main([*QUICK, "--out", str(run)]) == 2
    line = one_line(capsys.readouterr().err)
    assert ".jaxgd.lock cannot be opened" in line and "remove it" in line


def test_a_directory_holding_only_a_lock_file_counts_as_empty(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text("{}")
    assert main([*QUICK, "--out", str(run)]) == 0 and verify(run) == []


# --- bounds before work -------------------------------------------------------------------------------------

PEAK = textwrap.dedent("""
    import sys
    from jaxgd.cli import main
    code = main(sys.argv[1:]) if sys.argv[1] != "study" else __import__("experiments.memorization").memorization.main(sys.argv[2:])
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print("PEAK", peak * 1024, file=sys.stderr)
    sys.exit(code)
""")


def peak_run(tmp_path, argv):
    script = tmp_path / "peak.py"
    script.write_text(PEAK)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, lines[:-1], int(lines[-1].split()[1]), time.perf_counter() - start


@pytest.mark.parametrize("argv", [["train", "--seeds", "100000000"], ["study", "--seeds", "1000000000"],
                                  ["train", "--cpu-devices", "100000"], ["train", "--epochs", "99999999999999999999"],
                                  ["rerun", "EDITED"]])
def test_every_memory_and_time_case_is_refused_in_one_line_below_1_gb_and_within_seconds(tmp_path, argv):
    if argv == ["rerun", "EDITED"]:
        run = tmp_path / "run"
        assert main([*QUICK, "--out", str(run)]) == 0
        config = json.loads((run / "config.json").read_text())
        config["options"]["seeds"] = 1_000_000_000
        (run / "config.json").write_text(json.dumps(config))
        (run / MANIFEST).unlink()  # a run of jaxgd 0.1, whose files nothing verifies
        argv = ["rerun", str(run), "--out", str(tmp_path / "again")]
    else:
        argv = [*argv, "--out", str(tmp_path / "out")]
    code, lines, peak, seconds = peak_run(tmp_path, argv)
    assert code == 2 and len([l for l in lines if "error" in l]) == 1, lines
    assert peak < 1e9 and seconds < 60, (peak, seconds)
    assert not (tmp_path / "out").exists()  # refused before the output directory was touched


def test_rerun_reads_params_through_the_bounded_reader(tmp_path, capsys):
    from tests.measure_readers import write_zip_bomb

    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    (run / MANIFEST).unlink()
    write_zip_bomb(run / "params.npz", run / "bomb.npz", inflated=int(3e9), member="0/w")
    os.replace(run / "bomb.npz", run / "params.npz")
    assert main(["rerun", str(run), "--out", str(tmp_path / "again")]) == 2
    assert "params.npz is damaged or not an array file jaxgd wrote" in capsys.readouterr().err


def test_an_idx_file_larger_than_the_memory_available_is_refused_before_reading(tmp_path, monkeypatch):
    from jaxgd.data import idx

    write_fake_idx_dir(tmp_path / "idx", n_train=60, n_test=20, gz=True)
    images = tmp_path / "idx" / "train-images-idx3-ubyte.gz"
    shape, dtype = idx.idx_header(images)
    assert shape == (60, 28, 28) and idx.loaded_bytes(shape, dtype) == 60 * 28 * 28 * 9
    read = []
    monkeypatch.setattr(idx, "read_exact", lambda *a: read.append(a) or pytest.fail("a body was read"))
    monkeypatch.setattr(idx, "host_available_bytes", lambda: 100_000)  # less than the training images need
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz claims a .* which needs .* GB once loaded"):
        idx.read_idx(images)
    # each file fits alone, the four together do not (the gzip IDX directory of the issue: 4 GB from 6.5 MB)
    together = sum(idx.loaded_bytes(*idx.idx_header(p)) for p in idx.find_idx_files(tmp_path / "idx").values())
    assert together > 500_000 > idx.loaded_bytes(shape, dtype)
    monkeypatch.setattr(idx, "host_available_bytes", lambda: 500_000)
    with pytest.raises(DataError, match=r"The IDX files of .*idx need .* GB together once loaded"):
        jaxgd.data.load("idx", data_dir=tmp_path / "idx")
    assert read == []


# --- validated everywhere -----------------------------------------------------------------------------------

def test_swept_values_one_class_and_empty_splits_are_refused(tmp_path, capsys):
    assert main(["train", "--optimizer", "momentum", "--momentum", "0.5,2", "--out", str(tmp_path / "a")]) == 2
    assert "momentum must lie in [0, 1), got 2.0" in one_line(capsys.readouterr().err)
    with pytest.raises(InvalidArgument, match=r"hyperparams\['momentum'\] must lie in \[0, 1\)"):
        jaxgd.fit(jax.random.split(jax.random.key(0), 2), jaxgd.MLP((64, 10)), jaxgd.data.load("digits"),
                  jaxgd.TrainConfig(optimizer="momentum"), hyperparams={"momentum": [0.5, 2.0]})
    from jaxgd.data import write_idx

    one = tmp_path / "one"
    write_fake_idx_dir(one, n_train=40, n_test=10, num_classes=1)
    assert main(["train", "--data-dir", str(one), "--out", str(tmp_path / "b")]) == 2
    assert "classification needs at least two" in one_line(capsys.readouterr().err)
    empty = tmp_path / "empty"
    write_fake_idx_dir(empty, n_train=40, n_test=10)
    write_idx(empty / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(empty / "t10k-labels-idx1-ubyte", np.zeros((0,), np.uint8))
    assert main(["train", "--data-dir", str(empty), "--num-classes", "10", "--out", str(tmp_path / "c")]) == 2
    assert "the test split is empty" in one_line(capsys.readouterr().err)


@pytest.fixture
def checkpointed(tmp_path, small_digits):
    """A finished run's checkpoint, and what ``save`` needs to forge another."""
    from jaxgd.runs import checkpoint

    config = jaxgd.TrainConfig(epochs=3)
    net = jaxgd.MLP((64, 8, 10))
    jaxgd.fit(0, net, small_digits, config, checkpoint=tmp_path)
    meta, _ = checkpoint.read(tmp_path / "checkpoint.npz")
    return tmp_path, net, config, meta["fingerprint"]


@pytest.mark.parametrize("field, change", [
    ("epochs_done", {"epochs_done": 9}),
    ("finished", {"epochs_done": 1, "finished": True}),
    ("diverged", {"diverged": np.zeros(3, bool)}),
    ("history.train_cost", {"history_cut": "train_cost"}),
])
def test_a_forged_checkpoint_with_a_valid_checksum_is_refused_naming_the_field(checkpointed, small_digits, field,
                                                                               change):
    from jaxgd.runs import checkpoint

    path, net, config, fingerprint = checkpointed
    loaded = checkpoint.load(path / "checkpoint.npz", jaxgd.prepare(0, net, small_digits, config).state,
                             fingerprint=fingerprint)
    history = dict(loaded["history"])
    if "history_cut" in change:
        history[change["history_cut"]] = history[change["history_cut"]][..., :-1]
    if change.get("epochs_done") == 1:
        history = {k: v[..., :1] for k, v in history.items()}
    checkpoint.save(path / "checkpoint.npz", loaded["state"], fingerprint=fingerprint,
                    epochs_done=change.get("epochs_done", loaded["epochs_done"]),
                    finished=change.get("finished", loaded["finished"]), history=history, initial=loaded["initial"],
                    diverged=change.get("diverged", loaded["diverged"]), diverged_epoch=loaded["diverged_epoch"])
    with pytest.raises(CheckpointError, match=f"inconsistent: its {field.replace('.', '[.]')}"):
        jaxgd.fit(0, net, small_digits, config, checkpoint=path)


@pytest.mark.parametrize("option, value, message", [
    ("hidden", ["a"], "argument --hidden"), ("metrics", ["_"], "argument --metrics"), ("lr", "x", "argument --lr"),
    ("cpu_devices", 100000, "'cpu_devices'"), ("quiet", "yes", "'quiet'"), ("seed", [1, 2], "argument --seed"),
    ("metrics", 5, "argument --metrics"), ("hidden", {"a": 1}, "not an option's value"),
])
def test_an_edited_config_is_replayed_through_the_command_lines_own_checks(tmp_path, capsys, option, value, message):
    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    config["options"][option] = value
    (run / "config.json").write_text(json.dumps(config))
    (run / MANIFEST).unlink()
    capsys.readouterr()
    assert main(["rerun", str(run), "--out", str(tmp_path / "again")]) == 2
    assert message in one_line(capsys.readouterr().err)


def test_a_damaged_manifest_is_called_damaged(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*QUICK, "--out", str(run)]) == 0
    (run / MANIFEST).write_text("{not json")
    for argv in ([*QUICK, "--out", str(run), "--resume"], ["rerun", str(run), "--out", str(tmp_path / "x")]):
        assert main(argv) == 2
        assert "manifest.json is damaged" in one_line(capsys.readouterr().err)


# --- a bug is a bug -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [TypeError, ValueError])
def test_an_internal_error_exits_1_with_its_traceback_in_a_file_and_a_bad_option_still_exits_2(
        tmp_path, capsys, monkeypatch, error):
    from jaxgd.training import loop

    def broken(*args, **kwargs):
        raise error("unsupported operand type(s) for +: 'int' and 'NoneType'")

    monkeypatch.setattr(loop, "compiled_chunk", broken)
    assert main([*QUICK, "--out", str(tmp_path / "run")]) == 1
    line = one_line(capsys.readouterr().err)
    assert f"internal error: {error.__name__}" in line and "bug in jaxgd" in line and "report it" in line
    trace = Path(line.split("the full traceback is in ")[1].split(";")[0])
    assert "Traceback" in trace.read_text() and "broken" in trace.read_text()
    assert main(["train", "--lr", "-1", "--out", str(tmp_path / "x")]) == 2


# --- advice that works ----------------------------------------------------------------------------------------

def test_the_adamw_example_the_refusal_suggests_trains(small_digits):
    import optax

    with pytest.raises(TypeError, match=r"optimizer_args=\{'weight_decay': 1e-4\}"):
        jaxgd.TrainConfig(optimizer=optax.adamw(1e-3)).validate()
    config = jaxgd.TrainConfig(optimizer=optax.adamw, learning_rate=1e-3, optimizer_args={"weight_decay": 1e-4},
                               cost="cross_entropy", epochs=2)
    net = jaxgd.MLP((64, 32, 10), activation="relu", output="softmax", initializer="he")
    result = jaxgd.fit(0, net, small_digits, config.replace(epochs=5))
    assert result.final("test_accuracy") > 0.5
    assert config.to_dict()["hyperparameters"]["weight_decay"] == 1e-4
    with pytest.raises(InvalidArgument, match="given twice"):
        config.replace(weight_decay=0.1).validate()
