"""Exports of a study read back from MLflow: plots, tables, and the UI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from analysis import load
from analysis.__main__ import export
from study.runner import run_study
from trainers import metrics as m

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def finished_study(compose_study, small_fashion):
    cfg = compose_study("study.n_trials=3")
    return cfg, run_study(cfg, small_fashion)


def test_export_writes_plots_and_tables(finished_study, tmp_path):
    cfg, summary = finished_study
    client = MlflowClient(cfg.tracking.uri)
    assert load.latest_study(client) == summary.study_name

    written = export(client, summary.study_name, tmp_path / "reports")
    names = {p.name for p in written}
    assert names == {
        "trials.csv",
        "trials.md",
        "val_accuracy.png",
        "param_grad_norms.png",
    }
    for path in written:
        assert path.stat().st_size > 0
    for png in ("val_accuracy.png", "param_grad_norms.png"):
        assert (tmp_path / "reports" / png).read_bytes()[:8] == PNG_MAGIC

    table = pd.read_csv(tmp_path / "reports" / "trials.csv")
    assert sorted(table["trial"]) == [0, 1, 2]
    best = table.loc[table[m.VAL_ACCURACY].idxmax()]
    assert best[m.VAL_ACCURACY] == pytest.approx(summary.best[m.VAL_ACCURACY])
    markdown = (tmp_path / "reports" / "trials.md").read_text()
    assert markdown.split("|")[1].strip() == "trial"
    assert markdown.count("\n") == 2 + 3


def test_unknown_study_names_the_ones_there(finished_study, tmp_path):
    cfg, summary = finished_study
    client = MlflowClient(cfg.tracking.uri)
    with pytest.raises(load.StudyNotFoundError, match=summary.study_name):
        export(client, "no-such-study", tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_store_and_lists_the_study(finished_study, tmp_path):
    cfg, summary = finished_study
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow),
            "ui",
            "--backend-store-uri",
            cfg.tracking.uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=100"
    try:
        deadline, body = time.monotonic() + 90, None
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.load(response)
            except OSError:
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert body is not None, "the MLflow UI did not answer within 90 s"
    assert summary.study_name in {e["name"] for e in body["experiments"]}


def test_depth_export_plots_every_energy_by_node(small_fashion, tmp_path):
    from analysis.depth import export as export_depth
    from study.tracking import Tracker
    from trainers.config import RunConfig, TrackingConfig
    from trainers.train import train_and_evaluate

    tracking = TrackingConfig(
        uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=str(tmp_path / "mlruns"),
        experiment="depth",
    )
    tracker = Tracker(tracking)
    experiment_id = tracker.experiment("depth")
    for name, form in (("hpc", "eq10"), ("bipc", "eq10"), ("bipc", "eq9")):
        cfg = RunConfig()
        cfg.model.hidden_sizes = [16, 16, 16]
        cfg.trainer.epochs, cfg.trainer.inference_steps = 1, 5
        cfg.energy.name, cfg.energy.bipc_form = name, form
        run_id = tracker.start_run(experiment_id, name)
        tracker.log_config(run_id, {"energy": {"name": name, "bipc_form": form}})
        result = train_and_evaluate(cfg, small_fashion)
        tracker.log_metrics(run_id, result.final, step=1)
        tracker.end_run(run_id)

    csv_path, png_path = export_depth(
        MlflowClient(tracking.uri), "depth", tmp_path / "out"
    )
    assert png_path.read_bytes()[:8] == PNG_MAGIC
    table = pd.read_csv(csv_path)
    assert sorted(table["energy"].unique()) == ["bipc (eq10)", "bipc (eq9)", "hpc"]
    assert sorted(table["node"].unique()) == [1, 2, 3]
    assert (table["grad_norm"] > 0).all()


def test_depth_variant_names_the_kept_connections():
    from analysis.depth import variant_label

    edges = str([{"kind": "forward"}, {"kind": "recurrent"}, {"kind": "skip"}])
    graph = {"model.name": "recurrent_simple", "model.edges": edges}
    everything = "['forward', 'skip', 'recurrent', 'internal']"
    assert variant_label({"model.name": "mlp"}) == "feedforward only"
    assert variant_label(graph | {"model.connections": "['forward']"}) == (
        "feedforward only"
    )
    assert variant_label(graph | {"model.connections": "['forward', 'recurrent']"}) == (
        "forward + recurrent"
    )
    # internal is kept but the model has no internal edge: not named
    assert variant_label(graph | {"model.connections": everything}) == (
        "forward + recurrent + skip"
    )


def test_plots_command_exports_a_named_study(finished_study, tmp_path):
    cfg, summary = finished_study
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            f"analysis.study={summary.study_name}",
            f"tracking.uri={cfg.tracking.uri}",
            f"analysis.out_dir={tmp_path}/reports",
            f"hydra.run.dir={tmp_path}/outputs",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    folder = tmp_path / "reports" / summary.study_name
    assert {p.name for p in folder.iterdir()} == {
        "trials.csv",
        "trials.md",
        "val_accuracy.png",
        "param_grad_norms.png",
    }
