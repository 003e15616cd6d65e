"""``python -m analysis.depth [analysis.experiment=<name>]``: inference-gradient
norms by depth, in the manner of Chen et al. 2025, Fig 4.

Reads every finished run of an MLflow experiment (by default ``depth-mlp``,
which ``conf/experiment/depth_mlp.yaml`` fills), takes each hidden node's
mean norm of dF/dv during inference (``state_grad_norm/node_<i>``, last
epoch) and plots it against the node's depth, one line per energy. Writes
``depth.png`` and ``depth.csv`` into ``<out_dir>/<experiment>/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from analysis.load import StudyNotFoundError  # noqa: E402
from trainers import metrics as m  # noqa: E402

_PREFIX = m.STATE_GRAD_NORM.split("{")[0]


def energy_label(params: dict[str, str]) -> str:
    name = params.get("energy.name", "?")
    if name == "bipc":
        return f"bipc ({params.get('energy.bipc_form', 'eq10')})"
    return name


def depth_table(client: MlflowClient, experiment: str) -> pd.DataFrame:
    """One row per (run, node): energy, node index and gradient norm."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise StudyNotFoundError(
            f"experiment={experiment!r} is not in the store: run "
            "`python -m trainers -m +experiment=depth_mlp energy=hpc,bipc,bipc_eq9`."
        )
    runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'")
    rows = [
        {
            "run_id": run.info.run_id,
            "energy": energy_label(run.data.params),
            "node": int(key.removeprefix(_PREFIX)),
            "grad_norm": value,
        }
        for run in runs
        for key, value in run.data.metrics.items()
        if key.startswith(_PREFIX)
    ]
    if not rows:
        raise StudyNotFoundError(f"experiment={experiment!r} has no finished runs.")
    return pd.DataFrame(rows).sort_values(["energy", "node"]).reset_index(drop=True)


def plot_depth(table: pd.DataFrame, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for energy, rows in table.groupby("energy"):
        mean = rows.groupby("node")["grad_norm"].mean()
        ax.plot(mean.index, mean.values, marker="o", label=energy)
    ax.set(
        xlabel="hidden node (depth from the input)",
        ylabel="mean norm of dF/dv during inference",
        yscale="log",
        title=title,
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def export(client: MlflowClient, experiment: str, out_dir: Path) -> list[Path]:
    table = depth_table(client, experiment)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "depth.csv"
    table.to_csv(csv_path, index=False)
    title = f"{experiment}: inference-gradient norm by depth"
    return [csv_path, plot_depth(table, title, out_dir / "depth.png")]


@hydra.main(version_base="1.3", config_path="../conf", config_name="analysis")
def main(cfg: DictConfig) -> None:
    experiment = cfg.analysis.experiment or "depth-mlp"
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    try:
        written = export(client, experiment, Path(cfg.analysis.out_dir) / experiment)
    except StudyNotFoundError as err:
        sys.exit(f"error: {err}")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
