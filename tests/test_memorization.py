"""The memorization study's claims, read from the results.json that the quick preset writes."""
import json

import pytest

from experiments import memorization
from tests.conftest import write_fake_idx_dir


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("memorization")
    assert memorization.main(["--preset", "quick", "--out", str(out), "--quiet"]) == 0
    assert (out / "memorization.png").stat().st_size > 10_000
    return json.loads((out / "results.json").read_text())


def _by(results):
    rows = {}
    for s in results["summary"]:
        rows[(s["condition"], s["corruption"])] = s
    return rows


def test_results_file_has_the_documented_summary(quick):
    conditions = [s["condition"] for s in quick["summary"]]
    assert conditions == ["true_labels"] + ["corrupt_labels"] * 4 + ["random_labels", "shuffled_pixels",
                                                                     "random_pixels", "gaussian"]
    for s in quick["summary"]:
        assert {"condition", "corruption", "epochs_to_fit", "final_train_accuracy", "final_test_accuracy",
                "gap_closed_at_10pct"} <= set(s)
    assert quick["environment"]["jax"] and quick["config"]["seeds"] >= 3


def test_random_labels_are_memorized_but_do_not_generalize(quick):
    rows = _by(quick)
    random, true = rows[("random_labels", 1.0)], rows[("true_labels", 0.0)]
    assert random["final_train_accuracy"] >= 0.99 and random["final_test_accuracy"] <= 0.2
    assert true["final_test_accuracy"] >= 0.9


def test_time_to_fit_grows_with_label_corruption(quick):
    rows = _by(quick)
    p_rows = [rows[("true_labels", 0.0)]] + [rows[("corrupt_labels", p)] for p in (0.2, 0.4, 0.6, 0.8)] + \
             [rows[("random_labels", 1.0)]]
    times = [r["epochs_to_fit"] for r in p_rows]
    assert all(t is not None for t in times), times
    assert all(a <= b for a, b in zip(times, times[1:])), times
    assert times[-1] >= 3 * times[0]


def test_input_randomizations_are_fit_too(quick):
    for s in quick["summary"]:
        if s["condition"] in ("shuffled_pixels", "random_pixels", "gaussian"):
            assert s["final_train_accuracy"] >= 0.99, s


def test_real_labels_are_learned_fast_first_random_labels_slowly(quick):
    rows = _by(quick)
    assert rows[("true_labels", 0.0)]["gap_closed_at_10pct"] >= 0.8
    assert rows[("random_labels", 1.0)]["gap_closed_at_10pct"] <= 0.4


def test_runs_on_an_idx_directory(tmp_path):
    data_dir = write_fake_idx_dir(tmp_path / "idx", n_train=120, n_test=40)
    out = tmp_path / "out"
    code = memorization.main(["--preset", "quick", "--data-dir", str(data_dir), "--epochs", "3", "--seeds", "1",
                              "--hidden", "32", "--out", str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["input_dim"] == 784 and results["network"]["sizes"] == [784, 32, 10]
    assert len(results["summary"]) == 9


def test_bad_options_exit_2(capsys):
    assert memorization.main(["--preset", "nope"]) == 2
    assert memorization.main(["--corruptions", "0.5,1.5", "--quiet"]) == 2
    assert "1.5" in capsys.readouterr().err
