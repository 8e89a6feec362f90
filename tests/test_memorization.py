"""The memorization study's claims, read from the results.json that the quick preset writes."""
import json

import pytest

from experiments import memorization
from tests.conftest import optimized, write_fake_idx_dir


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("memorization")
    with optimized():
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


def test_real_examples_are_learned_early_and_consistently_noise_is_not(quick):
    """Arpit et al. 2017: on real data many examples are learned at once by every seed; on random labels
    which examples a seed gets right early is chance. Measured with per-seed data orders."""
    rows = _by(quick)
    true, random = rows[("true_labels", 0.0)], rows[("random_labels", 1.0)]
    assert quick["config"]["data_order"] == "per_seed"
    assert true["example_consistency"] >= random["example_consistency"] + 0.1
    assert true["learned_early"] >= 2 * random["learned_early"]
    assert true["learned_early"] >= 0.9  # nearly every real example within the first 10% of training
    for s in quick["summary"]:
        assert {"learned_at_spearman", "forgetting_events_mean", "unforgettable", "learned_at_quartiles"} <= set(s)
    assert random["forgetting_events_mean"] > true["forgetting_events_mean"]
    curves = {e["condition"]: e["learned_by_epoch"] for e in quick["examples"]}
    assert curves["true_labels"][-1] == 1.0 and len(curves["true_labels"]) == quick["epochs_run"] + 1


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """The CNN preset on a small configuration: 500 digits, true, half-corrupted and random labels."""
    import dataclasses

    config = dataclasses.replace(memorization.PRESETS["quick"], model="cnn", **memorization.MODEL_OVERRIDES["cnn"])
    config = dataclasses.replace(config, n_train=500, seeds=2, corruptions=(0.5,), input_randomizations=(),
                                 epochs=200)
    with optimized():
        return memorization.run(config)


def test_a_cnn_memorizes_random_labels_more_slowly(cnn):
    rows = _by(cnn)
    true, half, random = rows[("true_labels", 0.0)], rows[("corrupt_labels", 0.5)], rows[("random_labels", 1.0)]
    assert cnn["network"]["model"] == "cnn"
    assert random["final_train_accuracy"] == 1.0 and random["final_test_accuracy"] <= 0.2
    assert true["epochs_to_fit"] <= half["epochs_to_fit"] <= random["epochs_to_fit"]
    assert random["epochs_to_fit"] >= 2 * true["epochs_to_fit"]


def test_a_study_takes_a_dataset_and_a_model_object_from_any_directory(tmp_path):
    """After pip install, the studies import from outside the repository and run on arrays and models of
    one's own."""
    import subprocess
    import sys

    script = """
import dataclasses, numpy as np, jax.numpy as jnp, jaxgd
from experiments import local_minima, memorization

rng = np.random.default_rng(0)
x = rng.random((120, 4, 4), dtype=np.float32)
y = (x[:, 0, 0] > 0.5).astype(np.int32)
data = jaxgd.data.Dataset(x[:100], y[:100], x[100:], y[100:], num_classes=2, name="mine")

@dataclasses.dataclass(frozen=True)
class Linear:
    def init(self, key):
        return {"w": jnp.zeros((16, 2)), "b": jnp.zeros(2)}
    def apply(self, params, x):
        return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]

config = dataclasses.replace(memorization.PRESETS["quick"], dataset=data, model=Linear(), epochs=3, seeds=1,
                             corruptions=(0.5,), input_randomizations=("gaussian",))
results = memorization.run(config)
print("memorization", results["dataset"]["name"], len(results["summary"]), results["config"]["dataset"]["n_train"])
lm = dataclasses.replace(local_minima.PRESETS["quick"], dataset=data, widths=(3, 5), seeds=4, epochs=2, pairs=1,
                         modes=("init_only",), model=lambda d, w: jaxgd.MLP((16, w, 2), activation="relu",
                                                                            output="softmax"))
print("local_minima", [r["width"] for r in local_minima.run(lm)["summary"]])
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "memorization mine 4 100" in proc.stdout and "local_minima [3, 5]" in proc.stdout


def test_runs_on_an_idx_directory(tmp_path):
    data_dir = write_fake_idx_dir(tmp_path / "idx", n_train=120, n_test=40)
    out = tmp_path / "out"
    code = memorization.main(["--preset", "quick", "--data-dir", str(data_dir), "--epochs", "3", "--seeds", "1",
                              "--hidden", "32", "--out", str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["input_dim"] == 784 and results["network"]["sizes"] == [784, 32, 10]
    assert results["dataset"]["input_shape"] == [28, 28, 1]
    assert len(results["summary"]) == 9


def test_bad_options_exit_2(capsys):
    assert memorization.main(["--preset", "nope"]) == 2
    assert memorization.main(["--corruptions", "0.5,1.5", "--quiet"]) == 2
    assert "1.5" in capsys.readouterr().err
