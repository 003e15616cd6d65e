"""The optimizer comparison: its grid and checks, skipping finished runs,
reading runs back from MLflow, and one tiny comparison end to end."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from analysis import compare
from analysis.figures import FORMATS
from study import comparison
from study.tracking import Tracker
from tests.conftest import CONF_DIR
from trainers import metrics as m
from trainers.config import ConfigError, TrackingConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = [
    "dataset.train_size=256",
    "dataset.validation_size=500",
    "trainer.epochs=1",
    "trainer.batch_size=64",
    "trainer.eval_batch_size=500",
    "trainer.inference_steps=3",
    "trainer.log_every=2",
    "comparison.settings.mlp.seeds=[0,1]",
    "comparison.settings.mlp.overrides={model.hidden_sizes:[16]}",
    "~comparison.settings.hierarchical",
    "~comparison.settings.stress",
]


@pytest.fixture
def compose_comparison(tmp_path):
    def make(*overrides):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(
                "study",
                overrides=[
                    "+experiment=optimizer_comparison",
                    f"study.storage=sqlite:///{tmp_path}/optuna.db",
                    f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                    f"tracking.artifact_location={tmp_path}/mlruns",
                    f"comparison.out_dir={tmp_path}/report",
                    *overrides,
                ],
            )

    return make


def test_the_grid_is_every_setting_energy_optimizer_and_seed(compose_comparison):
    cells = comparison.grid(compose_comparison())
    assert len(cells) == 2 * 3 * (5 + 3 + 3)
    assert len({c.label for c in cells}) == len(cells)
    assert cells[0].label == "mlp-hpc-adam-seed0"
    assert [c.seed for c in cells[:5]] == [0, 1, 2, 3, 4]

    by_label = {c.label: c for c in cells}
    lalr = by_label["mlp-bipc-lalr-seed3"].config
    assert (lalr.optimizer.name, lalr.optimizer.lr, lalr.optimizer.momentum) == (
        "lalr",
        0.01,
        0.9,
    )
    assert lalr.energy.bipc_form == "eq10" and lalr.seed == 3
    assert by_label["mlp-hpc-adam-seed0"].config.energy.loss == "mse"
    hier = by_label["hierarchical-hpc-lars-seed2"].config
    assert hier.model.edges and hier.model.width == 0.0625
    stress = by_label["stress-hpc-adam-seed0"].config
    assert stress.trainer.state_lr == 0.1 and len(stress.model.hidden_sizes) == 6
    assert by_label["mlp-hpc-adam-seed0"].config.trainer.state_lr == 0.01
    assert {c.config.tracking.experiment for c in cells} == {"optimizer-comparison"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("comparison.energies=[hpc,pc]", r"comparison.energies='pc'.*allowed:.*bipc"),
        ("comparison.optimizers=[adam,rmsprop]", r"'rmsprop'.*allowed: sgd"),
        ("comparison.baseline=sgd", r"comparison.baseline='sgd'.*adam, lars, lalr"),
        ("comparison.settings.mlp.model=resnet", r"settings.mlp.model='resnet'"),
        ("comparison.settings.mlp.seeds=[]", r"settings.mlp.seeds is empty"),
        (
            "comparison.settings.stress.overrides={trainer.state_lr:-1}",
            r"run stress-hpc-adam-seed0: trainer.state_lr=-1",
        ),
        ("+comparison.from_study.ep=x", r"from_study names \['ep'\]"),
        ("+comparison.from_study.hpc=missing", r"'missing', which is not in"),
    ],
)
def test_bad_options_fail_before_anything_runs(compose_comparison, override, message):
    with pytest.raises(ConfigError, match=message):
        comparison.grid(compose_comparison(override))


def test_an_unknown_override_key_is_named(compose_comparison):
    cfg = compose_comparison()
    with open_dict(cfg):
        cfg.comparison.settings.mlp.overrides["trainer.lr"] = 0.1
    with pytest.raises(ConfigError, match=r"mlp.overrides: trainer.lr=0.1 cannot be"):
        comparison.grid(cfg)


def test_hyperparameters_from_the_best_trial_per_optimizer(
    compose_comparison, tmp_path
):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trials = [
        ({"optimizer": "adam", "lr_adam": 1e-3, "state_lr": 0.02}, 0.7),
        ({"optimizer": "adam", "lr_adam": 3e-3, "state_lr": 0.03}, 0.8),
        ({"optimizer": "lars", "lr_lars": 2e-4, "state_lr": 0.04}, 0.6),
        ({"optimizer": "lalr", "lr_lalr": 5e-3, "state_lr": 0.05}, 0.75),
    ]
    for params, _ in trials:
        study.enqueue_trial(params)
    values = iter(v for _, v in trials)

    def objective(trial):
        optimizer = trial.suggest_categorical("optimizer", ["adam", "lars", "lalr"])
        trial.suggest_float(f"lr_{optimizer}", 1e-5, 1.0, log=True)
        trial.suggest_float("state_lr", 1e-3, 1.0, log=True)
        return next(values)

    study.optimize(objective, n_trials=len(trials))
    cells = comparison.grid(compose_comparison("+comparison.from_study.bipc=s"))
    by_label = {c.label: c for c in cells}

    adam = by_label["mlp-bipc-adam-seed0"]
    assert adam.source == "s#1" and adam.config.optimizer.lr == pytest.approx(3e-3)
    assert adam.config.trainer.state_lr == pytest.approx(0.03)
    assert by_label["mlp-bipc-lars-seed0"].config.optimizer.lr == pytest.approx(2e-4)
    # A setting's overrides still come last; other energies keep the given rates.
    assert by_label["stress-bipc-lalr-seed0"].config.trainer.state_lr == 0.1
    assert by_label["mlp-hpc-adam-seed0"].source == "given"


def _fake_run(tracker, experiment_id, label, tags, rows, status="FINISHED"):
    run_id = tracker.start_run(experiment_id, label, tags=tags)
    for step, row in enumerate(rows, start=1):
        tracker.log_metrics(run_id, row, step=step)
    tracker.end_run(run_id, status)
    return run_id


def test_loader_reads_finished_runs_latest_first(tmp_path):
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/m.db"))
    experiment_id = tracker.experiment("cmp")

    def tags(optimizer, seed):
        return {
            comparison.SETTING: "mlp",
            comparison.ENERGY: "hpc",
            comparison.OPTIMIZER: optimizer,
            comparison.SEED: seed,
            comparison.FINGERPRINT: "f",
        }

    def rows(accuracy, diverged=0.0):
        return [
            {m.TRAIN_LOSS: 1.0, m.TEST_ACCURACY: 0.5, m.DIVERGED: 0.0},
            {m.TRAIN_LOSS: 0.5, m.TEST_ACCURACY: accuracy, m.DIVERGED: diverged},
        ]

    _fake_run(tracker, experiment_id, "a0-old", tags("adam", 0), rows(0.1))
    newest = _fake_run(tracker, experiment_id, "a0", tags("adam", 0), rows(0.8))
    _fake_run(tracker, experiment_id, "l0", tags("lalr", 0), rows(0.7, diverged=1.0))
    _fake_run(tracker, experiment_id, "l1", tags("lalr", 1), rows(0.9), "KILLED")
    tracker.log_series(newest, {"batch/param_grad_norm/layer_1": [3.0, 2.0]}, [0, 5])

    runs, history = compare.load_comparison(tracker.client, "cmp")
    assert list(runs["optimizer"]) == ["adam", "lalr"]
    assert list(runs["run_id"])[0] == newest
    assert list(runs[m.TEST_ACCURACY]) == [0.8, 0.7]
    assert list(runs["diverged"]) == [False, True]
    assert set(history["run_id"]) == set(runs["run_id"])
    mine = history[history["run_id"] == newest]
    loss = mine[mine["key"] == m.TRAIN_LOSS].sort_values("step")
    assert list(loss["value"]) == [1.0, 0.5] and list(loss["step"]) == [1, 2]
    batch = mine[mine["key"] == "batch/param_grad_norm/layer_1"]
    assert sorted(batch["step"]) == [0, 5]

    with pytest.raises(compare.StudyNotFoundError, match="'other'"):
        compare.load_comparison(tracker.client, "other")


def _check_file(path):
    data = path.read_bytes()
    assert data, path
    if path.suffix == ".png":
        assert data[:8] == PNG_MAGIC
    elif path.suffix == ".svg":
        assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"
    elif path.suffix == ".pdf":
        assert data.startswith(b"%PDF")
    elif path.suffix == ".csv":
        assert not pd.read_csv(path).empty
    elif path.suffix == ".tex":
        assert b"\\begin{tabular}" in data


@pytest.mark.data
def test_a_tiny_comparison_end_to_end(compose_comparison, fashion, tmp_path):
    # An earlier study to plot, and one named that does not exist.
    study = optuna.create_study(
        study_name="searched",
        storage=f"sqlite:///{tmp_path}/optuna.db",
        direction="maximize",
    )
    for lr, state_lr in [(1e-3, 0.01), (3e-3, 0.03), (1e-2, 0.02)]:
        study.enqueue_trial({"optimizer": "adam", "lr_adam": lr, "state_lr": state_lr})

    def objective(trial):
        trial.suggest_categorical("optimizer", ["adam"])
        lr = trial.suggest_float("lr_adam", 1e-5, 1.0, log=True)
        return lr * trial.suggest_float("state_lr", 1e-3, 1.0, log=True)

    study.optimize(objective, n_trials=3)
    cfg = compose_comparison(*TINY, "comparison.studies=[searched,absent]")
    outcome = comparison.run_comparison(cfg)
    assert (outcome.ran, outcome.skipped, outcome.interrupted) == (12, 0, False)

    out = tmp_path / "report"
    stems = ["accuracy", "accuracy_differences", "stability"]
    expected = {out / f"{s}.{x}" for s in stems for x in ("md", "tex", "csv")}
    figures = ["update_ratio", "loss", "grad_norm_layer_1", "state_grad_norm"]
    figures.append("stability")
    expected |= {out / "figures" / f"{s}.{x}" for s in figures for x in FORMATS}
    expected.add(out / "report.html")
    assert expected <= set(outcome.written)
    for path in outcome.written:
        _check_file(path)

    page = (out / "report.html").read_text(encoding="utf-8")
    for path in outcome.written:
        assert path.relative_to(out).as_posix() in page
    assert len(re.findall(r"src='data:image/png;base64,", page)) >= len(figures)
    assert "256 training images" in page and "seeds 0, 1" in page
    plotted = [p for p in outcome.written if p.parent == out / "optuna" / "searched"]
    assert {p.suffix for p in plotted} == {f".{x}" for x in FORMATS}
    assert "Optuna study &#x27;absent&#x27; (comparison.studies) is not in" in page

    table = pd.read_csv(out / "accuracy.csv")
    assert list(table["setting"]) == ["mlp", "mlp"]
    assert (table[[f"{o} n" for o in ("adam", "lars", "lalr")]] == 2).all().all()

    again = comparison.run_comparison(cfg)
    assert (again.ran, again.skipped) == (0, 12)
