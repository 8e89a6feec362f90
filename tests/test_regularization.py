"""The regularization study's claims, read from the results.json that a small configuration writes."""
import json

import numpy as np
import pytest

from experiments import regularization
from tests.conftest import optimized

#: 300 digits, the MLP (one program: no batch norm), one seed: every label condition x regularizer it has. Measured:
#: random labels fit by epoch 28 of 60 without a regularizer; under 40% label noise dropout ends at 0.94 training and
#: 0.77 test accuracy, no regularizer at 1.00 and 0.69.
SMALL = ["--preset", "quick", "--model", "mlp", "--n-train", "300", "--seeds", "1", "--epochs", "60", "--lr", "0.006",
         "--eval-every", "4", "--csr-examples", "50", "--quiet"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("regularization")
    with optimized():
        assert regularization.main(SMALL + ["--out", str(out)]) == 0
    assert (out / "regularization.png").stat().st_size > 10_000
    return json.loads((out / "results.json").read_text())


def _row(results, labels, regularizer):
    (row,) = [r for r in results["table"] if r["labels"] == labels and r["regularizer"] == regularizer]
    return row


def test_the_table_has_a_row_per_label_condition_and_regularizer_and_no_batch_norm_for_the_mlp(small):
    rows = [(r["labels"], r["regularizer"]) for r in small["table"]]
    regs = ["none", "weight_decay", "augment", "dropout", "all"]
    assert rows == [(labels, reg) for labels in ("true", "corrupt_0.4", "random") for reg in regs]
    for r in small["table"]:
        assert {"labels", "regularizer", "train_accuracy", "test_accuracy", "seeds", "best_test_accuracy",
                "best_test_epoch", "epochs_to_fit", "train_accuracy_corrupted", "train_accuracy_clean",
                "train_csr", "test_csr"} <= set(r)
        assert r["seeds"] == 1 and "batch_norm" not in r["parts"]
        assert (r["train_accuracy_corrupted"] is None) == (r["labels"] != "corrupt_0.4")
    assert [p["program"] for p in small["programs"]] == ["plain"] and small["programs"][0]["members"] == 15
    assert small["environment"]["jax"] and small["config"]["model"] == "mlp"
    curves = {(c["labels"], c["regularizer"]): c for c in small["curves"]}
    assert list(curves[("random", "none")]["epoch"]) == list(range(0, 61, 4))
    assert len(curves[("true", "none")]["test_csr"]) == 16


def test_random_labels_are_fit_without_a_regularizer_and_true_labels_generalize(small):
    random, true = _row(small, "random", "none"), _row(small, "true", "none")
    assert random["train_accuracy"] >= 0.99 and random["test_accuracy"] <= 0.2
    assert random["epochs_to_fit"] is not None and random["epochs_to_fit"] > true["epochs_to_fit"]
    assert true["test_accuracy"] >= 0.9 and true["best_test_accuracy"] >= true["test_accuracy"]


def test_dropout_under_label_noise_fits_less_of_the_noise_and_generalizes_better(small):
    """Arpit et al. 2017: dropout slows the memorizing of wrong labels more than the learning of the real ones."""
    none, dropout = _row(small, "corrupt_0.4", "none"), _row(small, "corrupt_0.4", "dropout")
    assert dropout["train_accuracy"] < none["train_accuracy"] and dropout["test_accuracy"] > none["test_accuracy"]
    assert dropout["train_accuracy_corrupted"] < none["train_accuracy_corrupted"]
    # train_accuracy is against the trained (corrupted) labels: the two subsets, weighted, give it back
    wrong = next(lab["fraction_wrong"] for lab in small["labels"] if lab["labels"] == "corrupt_0.4")
    assert 0.3 < wrong < 0.42
    for r in (none, dropout):
        whole = wrong * r["train_accuracy_corrupted"] + (1 - wrong) * r["train_accuracy_clean"]
        assert whole == pytest.approx(r["train_accuracy"], abs=1e-3)
    # without label noise, the network that fit noise has the more critical samples around its data
    assert _row(small, "random", "none")["test_csr"] > _row(small, "true", "none")["test_csr"]


def test_the_cnn_has_a_batch_norm_program_and_per_member_regularizers():
    config = regularization.PRESETS["quick"]
    plain, bn = regularization.programs(config)
    assert plain.regularizers == ("none", "weight_decay", "augment", "dropout") and not plain.batch_norm
    assert bn.regularizers == ("batch_norm", "all") and bn.batch_norm
    hp = regularization.member_hyperparams(config, bn)
    per_label = [[0, 0], [config.weight_decay] * 2]  # batch_norm, all (2 seeds each)
    np.testing.assert_allclose(hp["weight_decay"], np.ravel(per_label * 3), rtol=1e-6)
    np.testing.assert_allclose(hp["dropout"], np.ravel([[0, 0], [config.dropout] * 2] * 3), rtol=1e-6)
    assert set(regularization.member_hyperparams(config, plain)) == {"weight_decay", "dropout", "augment"}
    assert regularization.parts("all", "mlp") == ("weight_decay", "augment", "dropout")


def test_bad_options_exit_2_in_one_line(capsys, tmp_path):
    for argv, words in [(["--labels", "true,corrupt_1.5"], "corrupt_1.5"),
                        (["--model", "mlp", "--regularizers", "none,batch_norm"], "batch norm"),
                        (["--regularizers", "none,mixup"], "mixup"),
                        (["--dropout", "1.0"], "dropout")]:
        assert regularization.main(argv + ["--quiet", "--out", str(tmp_path / "never")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "never").exists()
