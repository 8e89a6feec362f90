import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxgd.cli import main
from tests.conftest import write_fake_idx_dir


def _run(*args, cwd=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "jaxgd", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_default_train_reproduces_the_lesson_on_digits(tmp_path):
    out = tmp_path / "run"
    proc = _run("train", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ("config.json", "metrics.json", "params.npz", "learning_curve.png", "weights.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["sizes"] == [64, 16, 16, 10] and config["activation"] == "sigmoid"
    assert config["train"]["learning_rate"] == 3.0 and config["train"]["batch_size"] == 10
    assert config["train"]["cost"] == "quadratic" and config["train"]["optimizer"] == "sgd"
    assert config["train"]["matmul_precision"] == config["options"]["matmul_precision"] == "float32"
    assert metrics["test_accuracy"] >= 0.95
    assert len(metrics["history"]["test_accuracy"]) == metrics["epochs"]
    assert {"jax", "jaxlib", "backend", "devices"} <= set(metrics["environment"])
    with np.load(out / "params.npz") as f:
        assert f["0/w"].shape == (64, 16) and f["2/b"].shape == (10,)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "test accuracy" in lines[0]
    assert "epoch" in proc.stderr  # the progress bar


def test_train_on_an_idx_directory(tmp_path, capsys):
    data_dir = write_fake_idx_dir(tmp_path / "idx", n_train=200, n_test=50)
    out = tmp_path / "run"
    code = main(["train", "--data-dir", str(data_dir), "--hidden", "16,16", "--epochs", "30", "--quiet",
                 "--out", str(out), "--lr", "1.0"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["sizes"] == [784, 16, 16, 10]
    assert metrics["test_accuracy"] >= 0.6  # the fake images carry a clean class signal


@pytest.mark.parametrize("argv,message", [
    (["train", "--dataset", "nope"], "'nope'"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--hidden", "0"], "--hidden"),
    (["train", "--hidden", ""], "--hidden"),
    (["train", "--hidden", "16,x"], "--hidden"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "-3"], "--batch-size"),
    (["train", "--batch-size", "5000"], "batch_size=5000"),
    (["train", "--n-train", "99999"], "n_train=99999"),
    (["train", "--data-dir", "/no/such/dir"], "/no/such/dir"),
    (["train", "--activation", "swish"], "--activation"),
    (["train", "--cost", "hinge"], "--cost"),
    (["train", "--matmul-precision", "fp32"], "--matmul-precision"),
    (["train", "--bogus"], "--bogus"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_options_exit_2_with_one_line(argv, message, capsys, tmp_path):
    code = main(argv + ["--out", str(tmp_path / "o")] if argv[0] == "train" else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_bad_option_in_a_real_process_prints_no_traceback():
    proc = _run("train", "--hidden", "0")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_gradcheck_command_prints_every_layer_and_passes(capsys):
    assert main(["gradcheck", "--sizes", "20,8,6,4", "--activation", "tanh", "--cost", "cross_entropy"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and out.count(" w ") == 3 and out.count(" b ") == 3
    import jax

    jax.config.update("jax_enable_x64", False)
