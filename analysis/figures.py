"""Figures of an optimizer comparison, after Chen et al. 2025, Fig 2, 4 and 6.

Each function reads the ``runs`` and ``history`` tables described in
:mod:`analysis.stats` and returns a :class:`Plot`: a matplotlib figure, or
``None`` with a note saying why there is nothing to draw (a metric missing
from the history, say). Figures are made without pyplot, so they need no
closing; :func:`save_figure` writes one as PNG, SVG and PDF.

Panels are laid out with one row per ``setting`` and one column per
``energy``; within a panel each optimizer has one colour, the same in every
figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis import stats
from analysis.plots import optimizer_colors
from trainers import metrics as m

FORMATS = ("png", "svg", "pdf")


class Plot(NamedTuple):
    """A figure, or ``None`` and the reason in ``note``; ``note`` may also
    qualify a figure that was drawn."""

    figure: Figure | None
    note: str = ""


def save_figure(fig: Figure, directory: Path, stem: str, dpi: int = 150) -> list[Path]:
    """Writes ``fig`` to ``directory/stem.{png,svg,pdf}`` (creating
    ``directory``) and returns the three paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.{fmt}" for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return paths


def update_ratio_figure(
    runs: pd.DataFrame, history: pd.DataFrame, over: str = "last"
) -> Plot:
    """The update ratio ||w_i|| / (eta_i ||dw_i||) per layer, as in
    Chen et al. 2025, Fig 2a.

    From ``update_ratio/layer_<i>``: each run's value at its last logged
    epoch (``over="last"``; for a diverged run, the epoch it diverged) or its
    mean over epochs (``over="mean"``), then the median over seeds, one line
    per optimizer on a log axis. A ratio below 1 (the dashed line) means one
    step moves the weights by more than their own norm.
    """
    if over not in ("last", "mean"):
        raise ValueError(f"over={over!r}; expected 'last' or 'mean'.")
    keys = stats.layer_keys(history, stats.UPDATE_RATIO)
    if runs.empty or not keys:
        return Plot(None, _missing(stats.UPDATE_RATIO, "update ratios (Fig 2a)"))

    rows = _labelled(runs, history, keys.values())
    rows["layer"] = rows["key"].map({key: layer for layer, key in keys.items()})
    per_run = rows.sort_values("step").groupby([*stats.GROUP, "run_id", "layer"])
    value = per_run["value"].last() if over == "last" else per_run["value"].mean()
    ratio = value.groupby([*stats.GROUP, "layer"]).median()

    fig, panels = _panels(runs)
    colors = optimizer_colors(runs)
    for (setting, energy, optimizer), line in ratio.groupby(list(stats.GROUP)):
        ax = panels[setting, energy]
        layers = line.index.get_level_values("layer")
        ax.plot(layers, line.values, marker="o", color=colors[optimizer])
    for ax in panels.values():
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set(xlabel="layer", yscale="log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(fig, panels, colors, "||w|| / (eta ||dw||)")
    when = "at the last epoch" if over == "last" else "mean over epochs"
    fig.suptitle(f"Update ratio per layer, {when}, median over seeds")
    return Plot(fig)


def loss_curves_figure(
    runs: pd.DataFrame, history: pd.DataFrame, band: str = "minmax"
) -> Plot:
    """Training loss per epoch, as in Chen et al. 2025, Fig 2b and 2c.

    One line per optimizer (LALR among them when it was run): the mean over
    seeds of ``train_loss`` at each epoch, with a band from the smallest to
    the largest seed (``band="minmax"``) or of one standard deviation either
    side (``band="std"``). A seed whose loss is missing or not finite at an
    epoch (a diverged run) is left out of that epoch's mean and band.
    """
    if band not in ("minmax", "std"):
        raise ValueError(f"band={band!r}; expected 'minmax' or 'std'.")
    rows = _labelled(runs, history, [m.TRAIN_LOSS])
    if rows.empty:  # also when no run is left
        return Plot(None, _missing(m.TRAIN_LOSS, "training-loss curves (Fig 2b, 2c)"))

    fig, panels = _panels(runs)
    colors = optimizer_colors(runs)
    for (setting, energy, optimizer), group in rows.groupby(list(stats.GROUP)):
        curves = _by_step(group)
        mean = curves.mean(axis=1)
        if band == "minmax":
            low, high = curves.min(axis=1), curves.max(axis=1)
        else:
            spread = curves.std(axis=1, ddof=1).fillna(0.0)
            low, high = mean - spread, mean + spread
        ax = panels[setting, energy]
        ax.plot(mean.index, mean.values, marker="o", color=colors[optimizer])
        ax.fill_between(mean.index, low, high, color=colors[optimizer], alpha=0.2)
    for ax in panels.values():
        ax.set(xlabel="epoch", yscale="log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    spread = "smallest to largest seed" if band == "minmax" else "± one std"
    _finish(fig, panels, colors, "training loss")
    fig.suptitle(f"Training loss per epoch, mean over seeds (band: {spread})")
    return Plot(fig)


def gradient_norm_figure(
    runs: pd.DataFrame, history: pd.DataFrame, layer: int = 1
) -> Plot:
    """The weight-gradient norm of one layer over training, as in
    Chen et al. 2025, Fig 6.

    Reads ``batch/param_grad_norm/layer_<layer>`` (x = global batch index)
    when the history has it, else ``param_grad_norm/layer_<layer>``
    (x = epoch); one line per optimizer, the mean over seeds at each step
    (non-finite values left out), on a log axis.
    """
    batch_key = stats.BATCH + m.param_grad_norm(layer)
    epoch_key = m.param_grad_norm(layer)
    present = set(_labelled(runs, history, [batch_key, epoch_key])["key"])
    if batch_key in present:
        key, xlabel = batch_key, "training batch"
    elif epoch_key in present:
        key, xlabel = epoch_key, "epoch"
    else:
        return Plot(
            None,
            f"No gradient norm of layer {layer} (neither {batch_key!r} nor "
            f"{epoch_key!r}) for these runs: the Fig 6 view was skipped.",
        )

    rows = _labelled(runs, history, [key])
    fig, panels = _panels(runs)
    colors = optimizer_colors(runs)
    zero = {}
    for (setting, energy, optimizer), group in rows.groupby(list(stats.GROUP)):
        mean = _by_step(group).mean(axis=1)
        if not (mean > 0).any():
            # A log axis cannot show it: say so in the panel.
            zero.setdefault((setting, energy), []).append(optimizer)
            continue
        panels[setting, energy].plot(
            mean.index, mean.values, color=colors[optimizer], linewidth=1
        )
    for ax in panels.values():
        ax.set(xlabel=xlabel, yscale="log")
    for cell, optimizers in zero.items():
        panels[cell].text(
            0.5,
            0.5,
            f"zero throughout: {', '.join(optimizers)}",
            transform=panels[cell].transAxes,
            ha="center",
            va="center",
        )
    _finish(fig, panels, colors, f"||dF/dtheta||, layer {layer}")
    fig.suptitle(f"Weight-gradient norm of layer {layer}, mean over seeds")
    return Plot(fig)


def state_grad_norm_figure(runs: pd.DataFrame, history: pd.DataFrame) -> Plot:
    """The mean norm of dF/dv during inference per hidden node, in the manner
    of Chen et al. 2025, Fig 4 (which compares HPC and BiPC by depth).

    From ``state_grad_norm/node_<i>``: each run's value at its last logged
    epoch, then the median over seeds, one line per optimizer on a log axis;
    the panels of one setting share the y axis, so energies compare across
    a row.
    """
    keys = _node_keys(history)
    if runs.empty or not keys:
        return Plot(None, _missing(m.STATE_GRAD_NORM, "depth (Fig 4)"))

    rows = _labelled(runs, history, keys.values())
    rows["node"] = rows["key"].map({key: node for node, key in keys.items()})
    last = rows.sort_values("step").groupby([*stats.GROUP, "run_id", "node"])
    norm = last["value"].last().groupby([*stats.GROUP, "node"]).median()

    fig, panels = _panels(runs)
    colors = optimizer_colors(runs)
    for (setting, energy, optimizer), line in norm.groupby(list(stats.GROUP)):
        nodes = line.index.get_level_values("node")
        ax = panels[setting, energy]
        ax.plot(nodes, line.values, marker="o", color=colors[optimizer])
    for ax in panels.values():
        ax.set(xlabel="hidden node (depth from the input)", yscale="log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(fig, panels, colors, "mean ||dF/dv||")
    fig.suptitle("Inference-gradient norm per node, last epoch, median over seeds")
    return Plot(fig)


def _node_keys(history: pd.DataFrame) -> dict[int, str]:
    head = m.STATE_GRAD_NORM.split("{")[0]
    found = {
        int(key[len(head) :]): key
        for key in history["key"].unique()
        if key.startswith(head) and key[len(head) :].isdigit()
    }
    return dict(sorted(found.items()))


def stability_bars(table: pd.DataFrame) -> Plot:
    """Bar charts of :func:`analysis.stats.stability_table`: divergence rate,
    mean coefficient of variation of the gradient norms and spikes per run,
    one bar per optimizer within each (setting, energy) group."""
    if table.empty:
        return Plot(None, "The stability table is empty: no bar charts.")
    frame = table.reset_index()
    frame["spikes_per_run"] = frame["spikes"] / frame["n"]
    groups = sorted({(r.setting, r.energy) for r in frame.itertuples()})
    optimizers = sorted(frame["optimizer"].unique())
    colors = optimizer_colors(frame)
    width = 0.8 / len(optimizers)

    fig = Figure(figsize=(3 * max(4.0, 1.3 * len(groups)), 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = {
        "divergence_rate": "divergence rate",
        "grad_norm_cv": "CV of gradient norms",
        "spikes_per_run": "gradient-norm spikes per run",
    }
    for ax, (column, label) in zip(axes, panels.items()):
        for j, optimizer in enumerate(optimizers):
            rows = frame[frame["optimizer"] == optimizer].set_index(
                ["setting", "energy"]
            )
            heights = [rows[column].get(group, np.nan) for group in groups]
            x = np.arange(len(groups)) + (j - (len(optimizers) - 1) / 2) * width
            ax.bar(x, heights, width, color=colors[optimizer], label=optimizer)
        ax.set_xticks(
            np.arange(len(groups)), [f"{s}\n{e}" for s, e in groups], fontsize="small"
        )
        ax.set(ylabel=label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylim(0, 1)
    axes[-1].legend(fontsize="small")
    fig.suptitle("Training stability per optimizer")
    return Plot(fig)


def _labelled(
    runs: pd.DataFrame, history: pd.DataFrame, keys: Iterable[str]
) -> pd.DataFrame:
    """The rows of ``history`` with those keys, with each run's setting,
    energy and optimizer; non-finite values become NaN."""
    rows = history[history["key"].isin(list(keys))]
    rows = rows.merge(runs[["run_id", *stats.GROUP]], on="run_id")
    return rows.assign(value=rows["value"].where(np.isfinite(rows["value"])))


def _by_step(rows: pd.DataFrame) -> pd.DataFrame:
    """One column per run, one row per step."""
    return rows.pivot_table(index="step", columns="run_id", values="value")


def _panels(runs: pd.DataFrame) -> tuple[Figure, dict[tuple[str, str], Axes]]:
    settings = sorted(runs["setting"].unique())
    energies = sorted(runs["energy"].unique())
    fig = Figure(
        figsize=(4.2 * len(energies), 3.4 * len(settings) + 0.6), layout="constrained"
    )
    grid = fig.subplots(len(settings), len(energies), squeeze=False, sharey=True)
    panels = {}
    for i, setting in enumerate(settings):
        for j, energy in enumerate(energies):
            panels[setting, energy] = grid[i][j]
            grid[i][j].set_title(f"{setting}, {energy}")
            grid[i][j].grid(alpha=0.3)
    return fig, panels


def _finish(
    fig: Figure,
    panels: dict[tuple[str, str], Axes],
    colors: dict[str, str],
    ylabel: str,
) -> None:
    """Labels the first column's y axes and puts one legend of the optimizers
    under the panels."""
    for ax in panels.values():
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=c, marker="o", label=n) for n, c in colors.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=max(1, len(handles)))


def _missing(template: str, what: str) -> str:
    name = template.format("<i>")
    return f"No {name} in the history of these runs: the {what} figure was skipped."
