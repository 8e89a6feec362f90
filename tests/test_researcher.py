"""What a researcher expects around the engine: live logs, sweeps from the command line, the compilation
cache, reading a run back."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxgd
from jaxgd.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_logs_a_csv_file_and_tensorboard_events_that_match_metrics_json(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--quiet", "--log", "tensorboard", "--metrics", "grad_norm",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]  # the initial evaluation, then every epoch
    for name in ("train_cost", "test_accuracy", "param_norm", "grad_norm"):
        np.testing.assert_allclose([float(r[name]) for r in rows[1:]], metrics["history"][name], rtol=1e-6)
        assert float(rows[0][name]) == pytest.approx(metrics["initial"][name], rel=1e-6)
    events = EventAccumulator(str(out / "tensorboard" / "run"))
    events.Reload()
    assert {"train_cost", "test_accuracy", "grad_norm"} <= set(events.Tags()["scalars"])
    curve = events.Scalars("test_accuracy")
    assert [e.step for e in curve] == [0, 1, 2, 3]
    np.testing.assert_allclose([e.value for e in curve[1:]], metrics["history"]["test_accuracy"], rtol=1e-6)


def test_a_sweep_from_the_command_line_is_one_population_with_a_grouped_table(tmp_path, capsys):
    from scipy import stats

    out = tmp_path / "sweep"
    assert main(["train", "--seeds", "5", "--lr", "0.3,1,3,10", "--epochs", "3", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "20 members (4 settings x 5 seeds)" in printed and "95% interval of the mean" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["test_accuracy"]) == 20 and metrics["members"]["count"] == 20
    rows = metrics["groups"]["test_accuracy"]
    assert [r["learning_rate"] for r in rows] == [0.3, 1.0, 3.0, 10.0]
    acc = np.asarray(metrics["test_accuracy"]).reshape(4, 5)
    for r, values in zip(rows, acc):
        low, high = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
        assert r["ci_low"] == pytest.approx(low) and r["ci_high"] == pytest.approx(high)
        assert f"| {r['learning_rate']:g} | 5 | {r['mean']:.4f} |" in printed
    assert (out / "sweep.png").stat().st_size > 10_000
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 * 4 and {"member", "learning_rate"} <= set(rows[0])
    run = jaxgd.load_run(out)
    assert run.params[0]["w"].shape == (20, 64, 16) and run.history["test_accuracy"].shape == (20, 3)
    assert run.model == jaxgd.MLP((64, 16, 16, 10))


def test_options_that_change_the_compiled_program_cannot_be_swept(capsys, tmp_path):
    assert main(["train", "--batch-size", "10,20", "--out", str(tmp_path / "o")]) == 2
    assert "--batch-size cannot be swept within one population" in capsys.readouterr().err


def test_the_command_line_fills_a_compilation_cache_that_can_be_turned_off(tmp_path):
    env = dict(os.environ, JAXGD_CACHE_DIR=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    run = lambda *args: subprocess.run([sys.executable, "-m", "jaxgd", "train", "--epochs", "2", "--quiet", *args],
                                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    off = run("--no-compilation-cache", "--out", str(tmp_path / "a"))
    assert off.returncode == 0, off.stderr
    assert not (tmp_path / "cache" / "xla").exists()
    on = run("--out", str(tmp_path / "b"))
    assert on.returncode == 0 and "first epoch after" in on.stdout, on.stderr
    assert len(list((tmp_path / "cache" / "xla").iterdir())) >= 2  # every program, however fast it compiled


def test_a_finished_run_is_read_back_with_its_model_params_and_history(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "cnn", "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    run = jaxgd.load_run(out)
    assert isinstance(run.model, jaxgd.CNN) and run.history["epoch"].tolist() == [1, 2]
    x = jaxgd.data.load("digits").x_test[:5]
    assert run.model.apply(run.params, x).shape == (5, 10)
    (out / "params.npz").write_bytes(b"changed")
    with pytest.raises(ValueError, match="params.npz changed since the run was committed"):
        jaxgd.load_run(out)


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "(mlp: 3.0; cnn: 0.05)" in text and "(default: 0)" in text and "(mlp: 16,16)" in text
