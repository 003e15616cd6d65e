"""The table of a study's trials, as CSV and Markdown."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trainers import metrics as m

COLUMNS = [
    "trial",
    "state",
    "optimizer",
    "lr",
    "state_lr",
    "beta",
    "inference_steps",
    m.VAL_ACCURACY,
    m.TEST_ACCURACY,
    "diverged",
    "divergence",
]


def write_tables(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``trials.csv`` (every column) and ``trials.md`` (the readable ones),
    best validation accuracy first."""
    ranked = table.sort_values(m.VAL_ACCURACY, ascending=False, na_position="last")
    csv_path, md_path = out_dir / "trials.csv", out_dir / "trials.md"
    ranked.to_csv(csv_path, index=False)
    md_path.write_text(ranked[COLUMNS].to_markdown(index=False, floatfmt=".4g") + "\n")
    return [csv_path, md_path]
