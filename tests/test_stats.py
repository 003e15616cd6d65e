"""Statistics of an optimizer comparison against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import stats


def _run(run_id, optimizer, seed, accuracy, diverged=False, energy="hpc"):
    return {
        "run_id": run_id,
        "setting": "mlp",
        "energy": energy,
        "optimizer": optimizer,
        "seed": seed,
        "status": "FINISHED",
        "diverged": diverged,
        "divergence_step": 7 if diverged else -1,
        "test_accuracy": accuracy,
        "val_accuracy": accuracy,
        "train_loss": 0.5,
    }


@pytest.fixture
def runs() -> pd.DataFrame:
    """Adam at 0.80, 0.82, 0.84; LALR at 0.90, 0.70 and one diverged run
    without an accuracy; one BiPC run with Adam alone."""
    return pd.DataFrame(
        [
            _run("a0", "adam", 0, 0.80),
            _run("a1", "adam", 1, 0.82),
            _run("a2", "adam", 2, 0.84),
            _run("l0", "lalr", 0, 0.90),
            _run("l1", "lalr", 1, math.nan, diverged=True),
            _run("l2", "lalr", 2, 0.70),
            _run("b0", "adam", 0, 0.60, energy="bipc"),
        ]
    )


def _history(points: dict[tuple[str, str], list[float]], start: int = 1):
    rows = [
        (run_id, key, start + i, value)
        for (run_id, key), values in points.items()
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def test_mean_std_table_by_hand(runs):
    table = stats.mean_std_table(runs)

    hpc = table.loc[("mlp", "hpc")]
    assert hpc["adam", "mean"] == pytest.approx(0.82)
    assert hpc["adam", "std"] == pytest.approx(0.02)
    assert hpc["adam", "n"] == 3
    assert hpc["lalr", "mean"] == pytest.approx(0.80)
    assert hpc["lalr", "std"] == pytest.approx(math.sqrt(0.02))
    assert hpc["lalr", "n"] == 2
    assert table["adam", "n"].dtype.kind == "i"

    bipc = table.loc[("mlp", "bipc")]
    assert bipc["adam", "mean"] == pytest.approx(0.60)
    assert math.isnan(bipc["adam", "std"])
    assert bipc["lalr", "n"] == 0


def test_coefficient_of_variation_by_hand():
    assert stats.coefficient_of_variation([2.0, 4.0, 6.0]) == pytest.approx(0.5)
    with_gaps = [2.0, math.nan, 4.0, math.inf, 6.0]
    assert stats.coefficient_of_variation(with_gaps) == pytest.approx(0.5)
    assert math.isnan(stats.coefficient_of_variation([3.0]))
    assert math.isnan(stats.coefficient_of_variation([-1.0, 1.0]))


def test_count_spikes_counts_exactly_the_two_spikes():
    norms = [1.0, 1.2, 0.9, 20.0, 1.1, 1.0, 0.8, 1.0, 50.0, 1.0]
    assert stats.count_spikes(norms) == 2
    assert stats.count_spikes(norms, factor=30.0) == 1


def test_count_spikes_edges():
    assert stats.count_spikes([100.0, 1.0, 1.0]) == 0
    assert stats.count_spikes([1.0, 1.0, 10.0]) == 0
    assert stats.count_spikes([1.0, math.nan, 11.0, math.inf]) == 2
    # A lasting jump counts until it holds half the history: before the
    # fourth 100 the median of [1, 1, 1, 100, 100, 100] is 50.5.
    assert stats.count_spikes([1.0, 1.0, 1.0, 100.0, 100.0, 100.0, 100.0]) == 3


def test_epochs_until_loss_stops_rising():
    assert stats.epochs_until_loss_stops_rising([2.0, 1.5, 1.7, 1.2, 1.3, 1.0]) == 5
    assert stats.epochs_until_loss_stops_rising([3.0, 2.0, 2.0, 1.0]) == 0
    assert stats.epochs_until_loss_stops_rising([1.0]) == 0
    assert stats.epochs_until_loss_stops_rising([1.0, 0.5, 0.6]) == 3
    assert stats.epochs_until_loss_stops_rising([1.0, 0.5, math.nan]) == 3
    assert stats.epochs_until_loss_stops_rising([1.0, math.inf, 0.5, 0.4]) == 2


def test_divergence_rate_of_one_in_three(runs):
    table = stats.divergence_rate(runs)
    lalr = table.loc[("mlp", "hpc", "lalr")]
    assert (lalr["n"], lalr["diverged"]) == (3, 1)
    assert lalr["rate"] == pytest.approx(1 / 3)
    assert table.loc[("mlp", "hpc", "adam"), "rate"] == 0.0


def test_bootstrap_ci_holds_a_known_difference():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.01, 40), rng.normal(0.8, 0.01, 40)
    ci = stats.bootstrap_diff_ci(a, b, seed=1)

    assert ci.method == "BCa"
    assert ci.difference == pytest.approx(a.mean() - b.mean())
    assert ci.low < ci.difference < ci.high
    assert ci.low < 0.1 < ci.high
    assert ci.high - ci.low < 0.02
    assert stats.bootstrap_diff_ci(a, b, seed=1) == ci


def test_bootstrap_ci_with_three_seeds():
    ci = stats.bootstrap_diff_ci([0.91, 0.92, 0.93], [0.81, 0.82, 0.83])
    assert ci.method == "BCa"
    assert ci.low < 0.1 < ci.high
    assert ci.low > 0.08 and ci.high < 0.12


def test_bootstrap_ci_on_degenerate_samples():
    same = stats.bootstrap_diff_ci([0.9, 0.9, 0.9], [0.8, 0.8, math.nan, 0.8])
    assert same.method == "percentile"
    assert same.low == pytest.approx(0.1) and same.high == pytest.approx(0.1)

    single = stats.bootstrap_diff_ci([0.9], [0.8, 0.81])
    assert single.method == "none"
    assert single.difference == pytest.approx(0.095)
    assert math.isnan(single.low) and math.isnan(single.high)
    assert math.isnan(stats.bootstrap_diff_ci([], [0.8, 0.81]).difference)


def test_accuracy_differences_against_adam(runs):
    table = stats.accuracy_differences(runs, baseline="adam")

    assert list(table.index) == [("mlp", "hpc", "lalr")]
    row = table.loc[("mlp", "hpc", "lalr")]
    assert row["difference"] == pytest.approx(0.80 - 0.82)
    assert row["low"] < row["difference"] < row["high"]
    assert (row["n"], row["n_baseline"]) == (2, 3)

    with pytest.raises(ValueError, match="sgd"):
        stats.accuracy_differences(runs, baseline="sgd")


def test_accuracy_differences_without_baseline_in_a_group(runs):
    extra = pd.DataFrame([_run("x0", "lalr", 0, 0.5, energy="ep")])
    table = stats.accuracy_differences(pd.concat([runs, extra]))
    row = table.loc[("mlp", "ep", "lalr")]
    assert row["n_baseline"] == 0 and math.isnan(row["difference"])


def test_stability_table_by_hand(runs):
    grad = "param_grad_norm/layer_{}"
    history = _history(
        {
            ("a0", grad.format(1)): [2.0, 4.0, 6.0],
            ("a0", grad.format(2)): [1.0, 1.0, 30.0],
            ("a1", grad.format(1)): [1.0, 1.0, 1.0],
            ("a0", "train_loss"): [2.0, 1.5, 1.7, 1.2],
            ("a1", "train_loss"): [2.0, 1.0, 0.5, 0.4],
        }
    )
    table = stats.stability_table(runs, history)

    adam = table.loc[("mlp", "hpc", "adam")]
    cv_layer_2 = np.std([1.0, 1.0, 30.0], ddof=1) / np.mean([1.0, 1.0, 30.0])
    assert adam["grad_norm_cv"] == pytest.approx(((0.5 + cv_layer_2) / 2 + 0.0) / 2)
    assert adam["spikes"] == 1
    assert adam["loss_stops_rising"] == pytest.approx((3 + 0) / 2)
    assert adam["divergence_rate"] == 0.0 and adam["n"] == 3
    assert adam["grad_norm_source"] == "epoch"

    lalr = table.loc[("mlp", "hpc", "lalr")]
    assert lalr["divergence_rate"] == pytest.approx(1 / 3)
    assert math.isnan(lalr["grad_norm_cv"]) and lalr["spikes"] == 0


def test_stability_table_prefers_batch_level_norms(runs):
    history = _history(
        {
            ("a0", "param_grad_norm/layer_1"): [1.0, 100.0],
            ("a0", "batch/param_grad_norm/layer_1"): [1.0, 1.0, 1.0, 3.0],
        },
        start=0,
    )
    adam = stats.stability_table(runs, history).loc[("mlp", "hpc", "adam")]
    assert adam["grad_norm_source"] == "batch"
    assert adam["spikes"] == 0
    assert adam["grad_norm_cv"] == pytest.approx(1.0 / 1.5)


def test_layer_keys_match_the_template_only():
    history = _history(
        {
            ("r", "batch/param_grad_norm/layer_10"): [1.0],
            ("r", "batch/param_grad_norm/layer_2"): [1.0],
            ("r", "param_grad_norm/layer_1"): [1.0],
            ("r", "update_ratio/layer_1"): [1.0],
        }
    )
    found = stats.layer_keys(history, "batch/param_grad_norm/layer_{}")
    assert found == {
        2: "batch/param_grad_norm/layer_2",
        10: "batch/param_grad_norm/layer_10",
    }
    assert list(found) == [2, 10]
    assert stats.layer_keys(history, "param_grad_norm/layer_{}") == {
        1: "param_grad_norm/layer_1"
    }
