"""Comparison plots of a study's trials (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from trainers import metrics as m  # noqa: E402


def optimizer_colors(table: pd.DataFrame) -> dict[str, str]:
    names = sorted(str(o) for o in table["optimizer"].dropna().unique())
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _legend_by_optimizer(ax, colors: dict[str, str]) -> None:
    handles = [plt.Line2D([], [], color=c, label=n) for n, c in colors.items()]
    handles.append(plt.Line2D([], [], color="grey", linestyle=":", label="diverged"))
    ax.legend(handles=handles, fontsize="small")


def _trial_lines(ax, table: pd.DataFrame, history: pd.DataFrame, key: str) -> None:
    """One line per trial of metric ``key`` over epochs, coloured by
    optimizer; diverged trials dotted."""
    colors = optimizer_colors(table)
    curves = history[history["key"] == key]
    for row in table.itertuples():
        points = curves[curves["run_id"] == row.run_id].sort_values("step")
        if points.empty:
            continue
        ax.plot(
            points["step"],
            points["value"],
            marker="o",
            markersize=3,
            color=colors.get(str(row.optimizer), "grey"),
            linestyle=":" if row.diverged else "-",
            alpha=0.8,
        )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def validation_curves(
    table: pd.DataFrame, history: pd.DataFrame, study: str, path: Path
) -> Path:
    """Validation accuracy per epoch, one line per trial."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _trial_lines(ax, table, history, m.VAL_ACCURACY)
    ax.set(
        ylabel="validation accuracy (forward pass)",
        title=f"{study}: validation accuracy per trial",
    )
    _legend_by_optimizer(ax, optimizer_colors(table))
    return _save(fig, path)


def gradient_norms(
    table: pd.DataFrame, history: pd.DataFrame, keys: list[str], study: str, path: Path
) -> Path:
    """Each layer's parameter-gradient norm over epochs, one panel per layer."""
    fig, axes = plt.subplots(
        1, len(keys), figsize=(4 * len(keys), 3.8), squeeze=False, sharey=True
    )
    for ax, key in zip(axes[0], keys):
        _trial_lines(ax, table, history, key)
        ax.set(title=key, yscale="log")
    axes[0][0].set_ylabel("mean norm of dF/dtheta")
    _legend_by_optimizer(axes[0][-1], optimizer_colors(table))
    fig.suptitle(f"{study}: per-layer parameter-gradient norms")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
