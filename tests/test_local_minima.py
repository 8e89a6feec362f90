"""The local-minima study's claims, on a smaller configuration of the quick preset, read from results.json."""
import json

import pytest

from experiments import local_minima
from tests.conftest import optimized, write_fake_idx_dir


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("local_minima")
    argv = ["--preset", "quick", "--widths", "25,100,500", "--seeds", "40", "--modes", "init_and_order",
            "--pairs", "6", "--out", str(out), "--quiet"]
    with optimized():
        assert local_minima.main(argv) == 0
    assert (out / "local_minima.png").stat().st_size > 10_000
    return json.loads((out / "results.json").read_text())


def test_summary_has_one_entry_per_width(small):
    assert [s["width"] for s in small["summary"]] == [25, 100, 500]
    for s in small["summary"]:
        assert {"width", "seeds", "test_cost_mean", "test_cost_std", "test_accuracy_mean", "test_accuracy_std",
                "barrier_before", "barrier_after", "sharpness_mean"} <= set(s)
        assert s["seeds"] == 40 and s["test_accuracy_mean"] > 0.9


def test_test_cost_concentrates_as_networks_grow(small):
    stds = [s["test_cost_std"] for s in small["summary"]]
    assert stds[-1] <= 0.5 * stds[0], stds
    assert small["width_std_rank_correlation"]["init_and_order"] <= -0.8


def test_alignment_removes_most_of_the_barrier_and_keeps_the_function(small):
    widest = small["summary"][-1]
    assert widest["barrier_after"] <= 0.3 * widest["barrier_before"]
    assert all(s["aligned_max_output_diff"] <= 1e-5 for s in small["summary"])


def test_runs_on_an_idx_directory(tmp_path):
    data_dir = write_fake_idx_dir(tmp_path / "idx", n_train=100, n_test=30)
    out = tmp_path / "out"
    argv = ["--preset", "quick", "--data-dir", str(data_dir), "--widths", "8", "--seeds", "4", "--epochs", "2",
            "--modes", "init_only", "--pairs", "1", "--out", str(out), "--quiet"]
    assert local_minima.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["input_dim"] == 784 and len(results["summary"]) == 1


def test_bad_options_exit_2(capsys):
    assert local_minima.main(["--widths", "0,5"]) == 2
    assert local_minima.main(["--modes", "sideways", "--quiet", "--seeds", "2", "--widths", "4"]) == 2
    assert "sideways" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cnn():
    """The CNN preset on a small configuration: channel counts 4 and 32, 20 seeds, 8 epochs on 600 digits."""
    import dataclasses

    config = dataclasses.replace(local_minima.PRESETS["quick"], model="cnn", **local_minima.MODEL_OVERRIDES["cnn"])
    config = dataclasses.replace(config, widths=(4, 32), seeds=20, epochs=8, n_train=600, modes=("init_and_order",),
                                 pairs=3, sharpness_iters=5, sharpness_examples=128)
    with optimized():
        return local_minima.run(config)


def test_cnn_minima_concentrate_with_channels_and_alignment_lowers_the_barrier(cnn):
    assert cnn["config"]["model"] == "cnn" and [s["width"] for s in cnn["summary"]] == [4, 32]
    narrow, wide = cnn["summary"]
    assert wide["test_cost_std"] <= 0.5 * narrow["test_cost_std"], (narrow, wide)
    assert wide["barrier_after"] <= 0.7 * wide["barrier_before"], wide
    assert all(s["aligned_max_output_diff"] <= 1e-5 for s in cnn["summary"])
