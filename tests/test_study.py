"""Studies end to end on a small Fashion-MNIST subset: Optuna trials,
MLflow parent and child runs, divergence, continuation and Ctrl-C."""

from __future__ import annotations

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from study.runner import run_study
from study.tracking import DIVERGENCE, TRIAL_NUMBER, TRIAL_STATE
from trainers import metrics as m
from trainers.config import ConfigError


def _child_runs(cfg, summary):
    client = MlflowClient(cfg.tracking.uri)
    runs = client.search_runs([summary.experiment_id])
    return client, [r for r in runs if MLFLOW_PARENT_RUN_ID in r.data.tags]


def test_study_tracks_every_trial_and_continues(compose_study, small_fashion):
    cfg = compose_study("study.n_trials=3")
    summary = run_study(cfg, small_fashion)
    study = optuna.load_study(study_name=summary.study_name, storage=cfg.study.storage)
    assert len(study.trials) == 3
    # The first trial is the enqueued baseline.
    assert study.trials[0].params == {
        "optimizer": "adam",
        "lr_adam": 0.001,
        "state_lr": 0.01,
        "beta": 1.0,
        "inference_steps": 5,
    }
    client, children = _child_runs(cfg, summary)
    assert len(children) == 3
    assert {r.data.tags[MLFLOW_PARENT_RUN_ID] for r in children} == {
        summary.parent_run_id
    }
    (run,) = [r for r in children if r.data.tags[TRIAL_NUMBER] == "0"]
    assert run.info.status == "FINISHED"
    assert "trainer.state_lr" in run.data.params
    assert m.param_grad_norm(3) in run.data.metrics
    history = client.get_metric_history(run.info.run_id, m.VAL_ACCURACY)
    assert [p.step for p in history] == [1, 2]
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "config.yaml" in artifacts

    again = run_study(compose_study("study.n_trials=2"), small_fashion)
    assert again.study_name == summary.study_name
    study = optuna.load_study(study_name=summary.study_name, storage=cfg.study.storage)
    assert len(study.trials) == 5
    # Only one baseline: the continued study did not enqueue it again.
    baselines = [t for t in study.trials if t.params.get("lr_adam") == 0.001]
    assert len(baselines) == 1
    assert again.parent_run_id != summary.parent_run_id


def test_diverging_trial_ends_pruned_with_its_reason(compose_study, small_fashion):
    cfg = compose_study(
        "study.n_trials=1",
        "optimizer=adam",
        "study.baseline.state_lr=10000",
        "study.space.state_lr.high=10000",
    )
    summary = run_study(cfg, small_fashion)
    study = optuna.load_study(study_name=summary.study_name, storage=cfg.study.storage)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert "during inference" in trial.user_attrs[DIVERGENCE]
    _, (run,) = _child_runs(cfg, summary)
    assert run.data.tags[TRIAL_STATE] == "PRUNED"
    assert run.data.tags[DIVERGENCE] == trial.user_attrs[DIVERGENCE]
    assert run.data.metrics[m.DIVERGED] == 1.0


def test_fixed_optimizer_names_its_own_study(compose_study, small_fashion):
    cfg = compose_study("study.n_trials=1", "optimizer=lalr", "energy=hpc")
    summary = run_study(cfg, small_fashion)
    assert summary.study_name == "mlp-hpc-lalr-fashion_mnist"
    study = optuna.load_study(study_name=summary.study_name, storage=cfg.study.storage)
    assert "optimizer" not in study.trials[0].params
    assert study.trials[0].params["lr_lalr"] == 0.01


def test_ctrl_c_marks_the_running_trial_failed_everywhere(
    compose_study, small_fashion, monkeypatch
):
    import study.objective as objective

    real = objective.train_and_evaluate

    def interrupted(cfg, data, callback=None, on_batches=None):
        def press_ctrl_c(epoch, row):
            callback(epoch, row)
            raise KeyboardInterrupt

        return real(cfg, data, callback=press_ctrl_c)

    monkeypatch.setattr(objective, "train_and_evaluate", interrupted)
    cfg = compose_study("study.n_trials=3")
    summary = run_study(cfg, small_fashion)
    assert summary.interrupted
    study = optuna.load_study(study_name=summary.study_name, storage=cfg.study.storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
    client, (run,) = _child_runs(cfg, summary)
    assert run.info.status == "FAILED"
    assert client.get_run(summary.parent_run_id).info.status == "KILLED"

    monkeypatch.setattr(objective, "train_and_evaluate", real)
    again = run_study(compose_study("study.n_trials=1"), small_fashion)
    assert again.counts == {"FAIL": 1, "COMPLETE": 1}
    # The interrupted trial was the baseline: the continued study runs it.
    study = optuna.load_study(study_name=summary.study_name, storage=cfg.study.storage)
    assert study.trials[1].params == study.trials[0].params


@pytest.mark.parametrize(
    "override, message",
    [
        ("study.n_trials=0", r"study.n_trials=0"),
        ("study.space.state_lr.low=-1", r"study.space.state_lr.low=-1"),
        ("trainer.batch_size=0", r"trainer.batch_size=0"),
        ("study.baseline.inference_steps=99", r"inference_steps=99 lies outside"),
        ("optimizer=sgd", r"optimizer=sgd has no range"),
        ("energy=ep", r"study.space.beta.low=0.0 is not allowed with energy=ep"),
        (
            "study.storage=sqlite:////no/such/dir/optuna.db",
            r"study.storage=.*not writable",
        ),
        ("tracking.uri=sqlite:////proc/mlflow.db", r"tracking.uri=.*not writable"),
    ],
)
def test_bad_options_fail_before_anything_is_written(
    compose_study, tmp_path, override, message
):
    cfg = compose_study(override)
    with pytest.raises(ConfigError, match=message):
        run_study(cfg, data=None)
    assert not (tmp_path / "optuna.db").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_unusable_storage_is_named(compose_study, small_fashion):
    cfg = compose_study("study.storage=foo://nowhere")
    with pytest.raises(ConfigError, match=r"study.storage='foo://nowhere' cannot be"):
        run_study(cfg, small_fashion)


def test_batch_larger_than_the_data_is_refused_before_any_trial(
    compose_study, small_fashion, tmp_path
):
    cfg = compose_study("trainer.batch_size=100000")
    with pytest.raises(ConfigError, match=r"trainer.batch_size=100000 exceeds"):
        run_study(cfg, small_fashion)
    assert not (tmp_path / "optuna.db").exists()
