"""``python -m analysis.depth [analysis.experiment=<name>]``: inference-gradient
norms by depth, in the manner of Chen et al. 2025, Fig 4.

Reads every finished run of an MLflow experiment (by default ``depth-mlp``,
which ``conf/experiment/depth_mlp.yaml`` fills; ``depth-recurrent`` is the
skip connection recurrent network of ``conf/experiment/depth_recurrent.yaml``),
takes each hidden node's mean norm of dF/dv during inference
(``state_grad_norm/node_<i>``, last epoch, averaged over the time steps of
an unrolled node) and plots it against the node's depth. As in Fig 4 there
is one panel per energy and one line per connection variant
(``model.connections``: feedforward only, with recurrent connections, with
recurrent and skip connections); runs of the same energy and variant (seeds)
are averaged. Writes ``depth.png`` and ``depth.csv`` (one row per run and
node) into ``<out_dir>/<experiment>/``.
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


# The edge kinds that tell Fig 4's variants apart, in its order.
_VARIANTS = (
    "feedforward only",
    "forward + recurrent",
    "forward + recurrent + skip",
)


def variant_label(params: dict[str, str]) -> str:
    """The connection variant of a run: which of the recurrent, skip and
    internal edges of its model it kept (``model.connections``, logged as
    ``"['forward', 'recurrent']"``). An MLP is feedforward only."""
    if params.get("model.name", "mlp") == "mlp":
        return _VARIANTS[0]
    edges = params.get("model.edges", "")
    kept = params.get("model.connections", "")
    kinds = [
        kind
        for kind in ("recurrent", "skip", "internal")
        if f"'{kind}'" in kept and f"'kind': '{kind}'" in edges
    ]
    return " + ".join(["forward", *kinds]) if kinds else _VARIANTS[0]


def depth_table(client: MlflowClient, experiment: str) -> pd.DataFrame:
    """One row per (run, node): energy, node index and gradient norm."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        conf = experiment.replace("-", "_")
        raise StudyNotFoundError(
            f"experiment={experiment!r} is not in the store: run the sweep that "
            f"conf/experiment/{conf}.yaml describes (`python -m trainers -m "
            f"+experiment={conf} energy=hpc,bipc,bipc_eq9 ...`)."
        )
    runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'")
    rows = [
        {
            "run_id": run.info.run_id,
            "energy": energy_label(run.data.params),
            "variant": variant_label(run.data.params),
            "node": int(key.removeprefix(_PREFIX)),
            "grad_norm": value,
        }
        for run in runs
        for key, value in run.data.metrics.items()
        if key.startswith(_PREFIX)
    ]
    if not rows:
        raise StudyNotFoundError(f"experiment={experiment!r} has no finished runs.")
    table = pd.DataFrame(rows)
    return table.sort_values(["energy", "variant", "node"]).reset_index(drop=True)


def plot_depth(table: pd.DataFrame, title: str, path: Path) -> Path:
    """One panel per energy (Fig 4's top, middle and bottom), one line per
    connection variant, on a shared logarithmic axis."""
    energies = sorted(table["energy"].unique())
    variants = [v for v in _VARIANTS if v in set(table["variant"])]
    variants += sorted(set(table["variant"]) - set(variants))
    fig, axes = plt.subplots(
        len(energies),
        1,
        figsize=(6.5, 2.6 * len(energies) + 0.6),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for ax, energy in zip(axes[:, 0], energies):
        rows = table[table["energy"] == energy]
        for variant in variants:
            mean = rows[rows["variant"] == variant].groupby("node")["grad_norm"].mean()
            if len(mean):
                ax.plot(mean.index, mean.values, marker="o", label=variant)
        ax.set(ylabel="mean |dF/dv|", yscale="log", title=energy)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[-1, 0].set_xlabel("hidden node (depth from the input)")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
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
