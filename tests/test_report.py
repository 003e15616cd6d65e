"""Figures, tables and the HTML report of an optimizer comparison: what they
draw, and that every file written is valid."""

from __future__ import annotations

import base64
import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import optuna
import pandas as pd
import pytest

from analysis import figures, optuna_plots, report, stats
from analysis.figures import Plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENERGIES = ("bipc", "hpc")
OPTIMIZERS = ("adam", "lalr")
SEEDS = (0, 1, 2)
LAYERS = (1, 2, 3)
EPOCHS = 4


@pytest.fixture
def runs() -> pd.DataFrame:
    rows = [
        {
            "run_id": f"{energy}-{optimizer}-{seed}",
            "setting": "mlp",
            "energy": energy,
            "optimizer": optimizer,
            "seed": seed,
            "status": "FINISHED",
            "diverged": False,
            "divergence_step": -1,
            "test_accuracy": 0.8 + 0.01 * seed,
            "val_accuracy": 0.8,
            "train_loss": 0.5,
        }
        for energy in ENERGIES
        for optimizer in OPTIMIZERS
        for seed in SEEDS
    ]
    return pd.DataFrame(rows)


def _scale(optimizer: str) -> float:
    return 10.0 if optimizer == "lalr" else 1.0


@pytest.fixture
def history(runs) -> pd.DataFrame:
    """Every key at known values: the update ratio of layer i at epoch e is
    scale * i * (seed + 1) * e, the training loss scale * (seed + 1) / e."""
    rows = []
    for run in runs.itertuples():
        scale = _scale(run.optimizer)
        for epoch in range(1, EPOCHS + 1):
            loss = scale * (run.seed + 1) / epoch
            rows.append((run.run_id, "train_loss", epoch, loss))
            for i in LAYERS:
                ratio = scale * i * (run.seed + 1) * epoch
                rows.append((run.run_id, f"update_ratio/layer_{i}", epoch, ratio))
                rows.append((run.run_id, f"param_grad_norm/layer_{i}", epoch, 1.0))
        for step in range(0, 100, 10):
            norm = scale * (1.0 + step / 100)
            rows.append((run.run_id, "batch/param_grad_norm/layer_1", step, norm))
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def _panel(fig, title: str):
    return next(ax for ax in fig.axes if ax.get_title() == title)


def test_update_ratio_is_the_median_over_seeds_at_the_last_epoch(runs, history):
    plot = figures.update_ratio_figure(runs, history)
    assert plot.note == ""

    lines = _panel(plot.figure, "mlp, hpc").get_lines()
    curves = [line for line in lines if len(line.get_xdata()) == len(LAYERS)]
    assert len(curves) == len(OPTIMIZERS)
    by_height = sorted(curves, key=lambda line: line.get_ydata()[0])
    for line, optimizer in zip(by_height, OPTIMIZERS):
        expected = [_scale(optimizer) * i * 2 * EPOCHS for i in LAYERS]
        np.testing.assert_allclose(line.get_ydata(), expected)

    assert [1.0, 1.0] in [list(line.get_ydata()) for line in lines]

    mean = figures.update_ratio_figure(runs, history, over="mean").figure
    lines = _panel(mean, "mlp, hpc").get_lines()
    heights = sorted(line.get_ydata()[0] for line in lines if len(line.get_xdata()) > 2)
    assert heights == pytest.approx([2 * 2.5, 10 * 2 * 2.5])


def test_loss_curves_are_the_mean_over_seeds(runs, history):
    plot = figures.loss_curves_figure(runs, history, band="std")
    lines = _panel(plot.figure, "mlp, bipc").get_lines()
    assert len(lines) == len(OPTIMIZERS)
    adam = min(lines, key=lambda line: line.get_ydata()[0])
    np.testing.assert_allclose(adam.get_xdata(), range(1, EPOCHS + 1))
    np.testing.assert_allclose(adam.get_ydata(), [2.0 / e for e in range(1, 5)])


def test_gradient_norm_prefers_batch_keys(runs, history):
    batch = figures.gradient_norm_figure(runs, history, layer=1).figure
    ax = _panel(batch, "mlp, hpc")
    assert ax.get_xlabel() == "training batch" and ax.get_yscale() == "log"
    assert len(ax.get_lines()[0].get_xdata()) == 10

    epoch = figures.gradient_norm_figure(runs, history, layer=2).figure
    assert _panel(epoch, "mlp, hpc").get_xlabel() == "epoch"


def test_a_gradient_norm_that_is_zero_throughout_is_named_in_its_panel(runs, history):
    key = stats.BATCH + "param_grad_norm/layer_1"
    zeroed = history.copy()
    hpc_lalr = zeroed["run_id"].str.startswith("hpc-lalr")
    zeroed.loc[hpc_lalr & (zeroed["key"] == key), "value"] = 0.0
    ax = _panel(figures.gradient_norm_figure(runs, zeroed, layer=1).figure, "mlp, hpc")
    assert len(ax.get_lines()) == 1
    assert [t.get_text() for t in ax.texts] == ["zero throughout: lalr"]


def test_missing_keys_give_a_note_not_a_crash(runs, history):
    bare = history[history["key"] == "val_accuracy"]
    for plot in (
        figures.update_ratio_figure(runs, bare),
        figures.loss_curves_figure(runs, bare),
        figures.gradient_norm_figure(runs, history, layer=9),
        figures.stability_bars(stats.stability_table(runs, bare).iloc[:0]),
    ):
        assert plot.figure is None and plot.note
    assert "update_ratio/layer_<i>" in figures.update_ratio_figure(runs, bare).note
    assert figures.loss_curves_figure(runs.iloc[:0], history).figure is None
    assert "layer 9" in figures.gradient_norm_figure(runs, history, layer=9).note


def test_bad_options_are_refused(runs, history):
    with pytest.raises(ValueError, match="over='first'"):
        figures.update_ratio_figure(runs, history, over="first")
    with pytest.raises(ValueError, match="band='iqr'"):
        figures.loss_curves_figure(runs, history, band="iqr")


def _check_figure_files(paths, stem):
    assert sorted(p.name for p in paths) == [
        f"{stem}.{x}" for x in ("pdf", "png", "svg")
    ]
    for path in paths:
        assert path.stat().st_size > 0
    png, svg, pdf = (path.read_bytes() for path in sorted(paths, key=_by_format))
    assert png[:8] == PNG_MAGIC
    assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"
    assert pdf.startswith(b"%PDF")


def _by_format(path):
    return ("png", "svg", "pdf").index(path.suffix[1:])


def test_every_figure_saves_as_png_svg_and_pdf(runs, history, tmp_path):
    drawn = {
        "update_ratio": figures.update_ratio_figure(runs, history),
        "loss": figures.loss_curves_figure(runs, history),
        "grad_norm": figures.gradient_norm_figure(runs, history),
        "stability": figures.stability_bars(stats.stability_table(runs, history)),
    }
    for stem, plot in drawn.items():
        _check_figure_files(
            figures.save_figure(plot.figure, tmp_path / "f", stem), stem
        )


def test_tables_export_and_read_back(runs, history, tmp_path):
    table = stats.mean_std_table(runs)
    md, tex, csv = report.write_tables(table, tmp_path / "t", "accuracy")
    for path in (md, tex, csv):
        assert path.stat().st_size > 0

    flat = report.flat(table)
    assert list(flat.columns[:4]) == ["setting", "energy", "adam mean", "adam std"]
    pd.testing.assert_frame_equal(pd.read_csv(csv), flat)
    assert md.read_text().splitlines()[0].split("|")[1].strip() == "setting"
    assert len(md.read_text().splitlines()) == 2 + len(ENERGIES)
    latex = tex.read_text()
    assert latex.startswith("\\begin{tabular}") and "\\end{tabular}" in latex
    assert "adam mean" in latex

    stability = stats.stability_table(runs, history)
    *_, csv = report.write_tables(stability, tmp_path / "t", "stability")
    pd.testing.assert_frame_equal(pd.read_csv(csv), report.flat(stability))
    assert "grad\\_norm\\_cv" in (tmp_path / "t" / "stability.tex").read_text()


def test_mean_std_text_reads_as_mean_std_n(runs):
    text = report.mean_std_text(stats.mean_std_table(runs))
    assert text.loc[("mlp", "hpc"), "adam"] == "0.810 ± 0.010 (3)"


def test_report_is_one_self_contained_file(runs, history, tmp_path):
    stability = stats.stability_table(runs, history)
    sections = [
        report.Section(
            "Accuracy",
            text="Test accuracy over seeds.",
            tables={"mean ± std": report.mean_std_text(stats.mean_std_table(runs))},
            figures={"loss": figures.loss_curves_figure(runs, history)},
        ),
        report.Section(
            "Stability",
            tables={"stability": stability},
            figures={
                "bars": figures.stability_bars(stability).figure,
                "ratio": figures.update_ratio_figure(runs, history.iloc[:0]),
            },
            notes=["Three seeds per cell."],
        ),
    ]
    setup = "MLP 784-32-10 on 2,048 images, seeds 0 to 2, 4 epochs."
    path = report.write_report(
        tmp_path / "r", "Optimizer <comparison>", sections, setup
    )

    assert path == tmp_path / "r" / "report.html"
    assert list(path.parent.iterdir()) == [path]
    page = path.read_text(encoding="utf-8")
    assert setup in page and "Three seeds per cell." in page
    assert "Optimizer &lt;comparison&gt;" in page
    assert "No update_ratio/layer_&lt;i&gt; in the history" in page
    assert page.count("<table") == 2

    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 2
    for data in images:
        assert base64.b64decode(data)[:8] == PNG_MAGIC
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert len(links) == 2 and all(link.startswith("data:") for link in links)


def _objective(trial: optuna.Trial) -> float:
    optimizer = trial.suggest_categorical("optimizer", ["adam", "lalr"])
    rate = trial.suggest_float(f"lr_{optimizer}", 1e-4, 1e-1, log=True)
    state_lr = trial.suggest_float("state_lr", 1e-3, 1e-1, log=True)
    return -((np.log10(rate) + 2) ** 2) - (np.log10(state_lr) + 2) ** 2


def _study(n_trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(study_name="toy", direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=n_trials)
    return study


def test_optuna_plots_of_a_study(tmp_path):
    study = _study(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        written, notes = optuna_plots.save_study_plots(study, tmp_path / "o")

    stems = ["history", "importances", "contour_state_lr_lr_adam"]
    stems.append("contour_state_lr_lr_lalr")
    for stem in stems:
        _check_figure_files([p for p in written if p.stem == stem], stem)
    assert len(written) == 3 * len(stems)
    assert notes == []


def test_optuna_plots_with_too_few_trials(tmp_path):
    few = _study(3)
    importances = optuna_plots.param_importances(few)
    assert importances.figure is None and "3 completed trials" in importances.note
    assert optuna_plots.optimization_history(few).figure is not None

    empty = optuna.create_study(study_name="empty")
    assert "no completed trial" in optuna_plots.optimization_history(empty).note
    assert optuna_plots.rate_contours(empty) == {}
    written, notes = optuna_plots.save_study_plots(empty, tmp_path)
    assert written == []
    assert [note.split(":")[0] for note in notes] == [
        "history",
        "importances",
        "contour",
    ]


def test_contour_of_a_rate_searched_once_is_a_note():
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"optimizer": "adam", "lr_adam": 1e-3, "state_lr": 1e-2})
    study.enqueue_trial({"optimizer": "lalr", "lr_lalr": 1e-2, "state_lr": 1e-2})
    study.enqueue_trial({"optimizer": "lalr", "lr_lalr": 1e-3, "state_lr": 3e-2})
    study.optimize(_objective, n_trials=3)

    contours = optuna_plots.rate_contours(study)
    assert set(contours) == {"lr_adam", "lr_lalr"}
    assert contours["lr_adam"].figure is None
    assert "1 completed trials" in contours["lr_adam"].note
    assert isinstance(contours["lr_lalr"], Plot)
    assert contours["lr_lalr"].figure is not None
