"""Plots of an Optuna study: its optimization history, the importances of the
searched parameters, and the objective over the state rate and the
parameter rate.

Drawn with ``optuna.visualization.matplotlib``, whose functions return
matplotlib Axes; each function here returns an
:class:`analysis.figures.Plot` of the Axes' figure, or a note when the study
has too few completed trials for the plot to mean anything.
:func:`save_study_plots` writes them all with
:func:`analysis.figures.save_figure`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from optuna.visualization import matplotlib as ovm  # noqa: E402

from analysis.figures import Plot, save_figure  # noqa: E402

STATE_LR = "state_lr"
_PARAMETER_RATE = re.compile(r"lr_\w+")


def optimization_history(study: optuna.Study) -> Plot:
    """The objective of each completed trial and the best so far."""
    if not _completed(study):
        return Plot(None, f"Study {study.study_name!r} has no completed trial yet.")
    with _quiet() as caught:
        ax = ovm.plot_optimization_history(study, target_name=_target_name(study))
    return _plot(ax, caught)


def param_importances(study: optuna.Study, min_trials: int = 11) -> Plot:
    """The importance of each searched parameter for the objective.

    Uses Optuna's default evaluator (PED-ANOVA in Optuna 5), which compares
    the best 10% of the completed trials, ceil(n / 10) of n, with all of
    them. Up to 10 trials that best set is a single trial and the
    importances say little, so with fewer than ``min_trials`` completed
    trials the plot is skipped with a note. Warnings raised while computing
    (e.g. importances reported as all equal) are kept in the note.
    """
    done = len(_completed(study))
    if done < min_trials:
        return Plot(
            None,
            f"Study {study.study_name!r} has {done} completed trials; parameter "
            f"importances need at least {min_trials}, so they were not computed.",
        )
    with _quiet() as caught:
        ax = ovm.plot_param_importances(study, target_name=_target_name(study))
    return _plot(ax, caught)


def rate_contours(study: optuna.Study) -> dict[str, Plot]:
    """The objective over ``state_lr`` (eta_v) and each parameter rate
    ``lr_<optimizer>`` (eta_theta) found in the study, by that name.

    A parameter rate is searched only in the trials of its optimizer, so each
    contour uses those trials alone; it needs two of them with two distinct
    values of each rate, else it is a note. An empty dict means the study
    searched no ``lr_<optimizer>``.
    """
    trials = _completed(study)
    names = sorted(
        {p for t in trials for p in t.params if _PARAMETER_RATE.fullmatch(p)}
    )
    return {name: _contour(study, trials, name) for name in names}


def save_study_plots(
    study: optuna.Study, directory: Path
) -> tuple[list[Path], list[str]]:
    """Writes every plot of the study as PNG, SVG and PDF into ``directory``
    (``history``, ``importances``, ``contour_state_lr_<rate>``); returns the
    paths written and the notes of the plots that were skipped or qualified."""
    contours = {f"contour_{STATE_LR}_{k}": v for k, v in rate_contours(study).items()}
    plots = {
        "history": optimization_history(study),
        "importances": param_importances(study),
        **(
            contours or {"contour": Plot(None, "The study searched no lr_<optimizer>.")}
        ),
    }
    written, notes = [], []
    for stem, plot in plots.items():
        if plot.figure is not None:
            written += save_figure(plot.figure, directory, stem)
        if plot.note:
            notes.append(f"{stem}: {plot.note}")
    return written, notes


def _contour(study: optuna.Study, trials: list[FrozenTrial], rate: str) -> Plot:
    both = [t for t in trials if STATE_LR in t.params and rate in t.params]
    distinct = min(len({t.params[p] for t in both}) for p in (STATE_LR, rate))
    if len(both) < 2 or distinct < 2:
        return Plot(
            None,
            f"{len(both)} completed trials searched both {STATE_LR} and {rate}, with "
            f"{distinct} distinct values: a contour needs two of each.",
        )
    with _quiet() as caught:
        ax = ovm.plot_contour(
            study, params=[STATE_LR, rate], target_name=_target_name(study)
        )
    return _plot(ax, caught)


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _target_name(study: optuna.Study) -> str:
    names = study.metric_names
    return names[0] if names else "objective value"


def _plot(ax, caught: list[warnings.WarningMessage]) -> Plot:
    """The Plot of ``ax``'s figure, released from pyplot (it stays usable and
    is freed with its last reference), with the warnings raised while it was
    drawn as its note."""
    fig = ax.figure
    plt.close(fig)
    return Plot(fig, " ".join(f"Warning while drawing: {w.message}" for w in caught))


@contextmanager
def _quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Records the warnings raised inside, dropping Optuna's notice that its
    matplotlib plots are experimental."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield caught
