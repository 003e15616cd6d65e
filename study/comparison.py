"""Comparing optimizers on a fixed budget: settings x energies x optimizers
x seeds, every run tracked in one MLflow experiment.

``python -m study +experiment=optimizer_comparison`` runs the grid that
``conf/experiment/optimizer_comparison.yaml`` declares
(:class:`study.config.ComparisonConfig`), then writes its tables, figures
and HTML report (``analysis.compare``). One run's config is built in this
order, each step over the last:

1. the run options of the composed config (dataset, trainer, tracking);
2. the setting's model (``conf/model/<model>.yaml``), the energy
   (``conf/energy/<energy>.yaml``) and the optimizer's base settings
   (``optimizers.<optimizer>``);
3. the optimizer's hyperparameters: ``comparison.given.<optimizer>``, or,
   for an energy listed in ``comparison.from_study``, the best completed
   trial of that Optuna study that used the optimizer (its eta_theta, and
   eta_v, beta and the inference steps where it searched them);
4. the setting's overrides (a stress setting raises eta_v here);
5. the seed.

Every run of the grid is built and checked before any data is loaded, and
every one against its data before the first is trained. A diverging run is
a result (FINISHED, with a ``divergence`` tag), not an error. A run already
FINISHED in the experiment with the same configuration is skipped, so an
interrupted comparison continues where it stopped when the same command is
run again; a changed configuration runs anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from study.tracking import DIVERGENCE, Tracker, check_sqlite_url
from trainers import data as datasets
from trainers.config import (
    OPTIMIZERS,
    ConfigError,
    EnergyConfig,
    ModelConfig,
    RunConfig,
    validate,
)
from trainers.train import BatchSeries, check_fits, train_and_evaluate

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SETTING = "comparison.setting"
ENERGY = "comparison.energy"
OPTIMIZER = "comparison.optimizer"
SEED = "comparison.seed"
FINGERPRINT = "comparison.fingerprint"
SOURCE = "comparison.hyperparameters"
RUN_SECONDS = "run_seconds"

_RUN_KEYS = ("dataset", "trainer", "tracking")
_TRIAL_KEYS = {
    "state_lr": "trainer.state_lr",
    "beta": "energy.beta",
    "inference_steps": "trainer.inference_steps",
}


class Cell(NamedTuple):
    """One run of the grid; ``source`` says where its hyperparameters came
    from (``given`` or ``<study>#<trial>``)."""

    setting: str
    energy: str
    optimizer: str
    seed: int
    config: RunConfig
    source: str

    @property
    def label(self) -> str:
        return f"{self.setting}-{self.energy}-{self.optimizer}-seed{self.seed}"

    def tags(self) -> dict[str, Any]:
        return {
            SETTING: self.setting,
            ENERGY: self.energy,
            OPTIMIZER: self.optimizer,
            SEED: self.seed,
            FINGERPRINT: fingerprint(self.config),
            SOURCE: self.source,
        }


class Outcome(NamedTuple):
    experiment_id: str
    ran: int
    skipped: int
    diverged: int
    interrupted: bool
    seconds: float
    written: list[Path]


def fingerprint(cfg: RunConfig) -> str:
    """A hash of everything that shapes a run but where it is tracked."""
    content = {k: v for k, v in asdict(cfg).items() if k != "tracking"}
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _group(group: str, name: str, option: str) -> DictConfig:
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        allowed = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ConfigError(
            f"{option}={name!r} is not supported; allowed: {', '.join(allowed)}."
        )
    return OmegaConf.load(path)


def _update(run: DictConfig, key: str, value: Any, option: str) -> None:
    try:
        OmegaConf.update(run, key, value, merge=False)
    except OmegaConfBaseException as err:
        raise ConfigError(
            f"{option}: {key}={value!r} cannot be set: {err.msg}"
        ) from None


def best_hyperparameters(
    storage: str, study: str, optimizers: list[str]
) -> dict[str, tuple[dict[str, Any], str]]:
    """Per optimizer, the dotted run-config values of the best completed
    trial of ``study`` that trained with it, and ``<study>#<trial>``."""
    try:
        found = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise ConfigError(
            f"comparison.from_study names {study!r}, which is not in "
            f"study.storage={storage!r}; it has: {', '.join(names) or 'none'}."
        ) from None
    complete = found.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    best = {}
    for optimizer in optimizers:
        lr = f"lr_{optimizer}"
        trials = [t for t in complete if lr in t.params]
        if not trials:
            raise ConfigError(
                f"comparison.from_study: study {study!r} has no completed trial "
                f"with optimizer={optimizer}."
            )
        top = max(trials, key=lambda t: t.value)
        values = {"optimizer.lr": top.params[lr]}
        for name, key in _TRIAL_KEYS.items():
            if name in top.params:
                values[key] = top.params[name]
        best[optimizer] = (values, f"{study}#{top.number}")
    return best


def _check_lists(c) -> None:
    for option in ("energies", "optimizers"):
        values = list(getattr(c, option))
        if not values or len(set(values)) != len(values):
            raise ConfigError(
                f"comparison.{option}={values!r} is not allowed; give at least one "
                "name, each once."
            )
    if not c.settings:
        raise ConfigError("comparison.settings is empty: there is nothing to run.")
    for name, setting in c.settings.items():
        if not setting.seeds:
            raise ConfigError(f"comparison.settings.{name}.seeds is empty.")
    unknown = set(c.from_study) - set(c.energies)
    if unknown:
        raise ConfigError(
            f"comparison.from_study names {sorted(unknown)}, which are not in "
            f"comparison.energies={list(c.energies)}."
        )
    if c.baseline not in c.optimizers:
        raise ConfigError(
            f"comparison.baseline={c.baseline!r} is not allowed; allowed: "
            f"{', '.join(c.optimizers)}."
        )
    if c.block < 1:
        raise ConfigError(
            f"comparison.block={c.block} is not allowed; it must be >= 1."
        )


def _check_optimizer(cfg: DictConfig, optimizer: str) -> None:
    if optimizer not in OPTIMIZERS or optimizer not in cfg.optimizers:
        allowed = [o for o in OPTIMIZERS if o in cfg.optimizers]
        raise ConfigError(
            f"comparison.optimizers: {optimizer!r} is not supported; "
            f"allowed: {', '.join(allowed)}."
        )


def _cell_config(
    cfg: DictConfig,
    setting: str,
    energy: str,
    optimizer: str,
    seed: int,
    hyper: dict[str, Any],
) -> RunConfig:
    c = cfg.comparison
    spec = c.settings[setting]
    run = OmegaConf.merge(
        OmegaConf.structured(RunConfig), {key: cfg[key] for key in _RUN_KEYS}
    )
    option = f"comparison.settings.{setting}.model"
    run.model = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), _group("model", spec.model, option)
    )
    run.energy = OmegaConf.merge(
        OmegaConf.structured(EnergyConfig),
        _group("energy", energy, "comparison.energies"),
    )
    run.optimizer = OmegaConf.merge(run.optimizer, cfg.optimizers[optimizer])
    for key, value in hyper.items():
        _update(run, key, value, f"comparison.given.{optimizer}")
    for key, value in spec.overrides.items():
        _update(run, key, value, f"comparison.settings.{setting}.overrides")
    run.seed = seed
    run.tracking.experiment = c.experiment
    return OmegaConf.to_object(run)


def _checked(cell: Cell) -> Cell:
    try:
        validate(cell.config)
    except ConfigError as err:
        raise ConfigError(f"comparison run {cell.label}: {err}") from None
    return cell


def grid(cfg: DictConfig) -> list[Cell]:
    """Every run of the comparison, each checked by ``validate``; raises
    :class:`ConfigError` naming the option, before anything runs."""
    c = cfg.comparison
    _check_lists(c)
    for optimizer in c.optimizers:
        _check_optimizer(cfg, optimizer)
    studies = {
        energy: best_hyperparameters(cfg.study.storage, name, list(c.optimizers))
        for energy, name in c.from_study.items()
    }
    cells = []
    for setting, spec in c.settings.items():
        for energy in c.energies:
            for optimizer in c.optimizers:
                if energy in studies:
                    hyper, source = studies[energy][optimizer]
                else:
                    hyper, source = dict(c.given.get(optimizer, {})), "given"
                for seed in map(int, spec.seeds):
                    run = _cell_config(cfg, setting, energy, optimizer, seed, hyper)
                    cells.append(
                        _checked(Cell(setting, energy, optimizer, seed, run, source))
                    )
    return cells


def load_data(cells: list[Cell]) -> dict[str, datasets.Splits]:
    """The data of every distinct dataset config, checked against each run."""
    data = {}
    for cell in cells:
        key = json.dumps(asdict(cell.config.dataset), sort_keys=True)
        if key not in data:
            data[key] = datasets.load(cell.config.dataset)
        try:
            check_fits(cell.config, data[key])
        except ConfigError as err:
            raise ConfigError(f"comparison run {cell.label}: {err}") from None
    return data


def _data_of(cell: Cell, data: dict[str, datasets.Splits]) -> datasets.Splits:
    return data[json.dumps(asdict(cell.config.dataset), sort_keys=True)]


def finished_runs(tracker: Tracker, experiment_id: str) -> set[tuple[str, str]]:
    """(label, fingerprint) of the experiment's FINISHED comparison runs."""
    runs = tracker.client.search_runs(
        [experiment_id],
        f"attributes.status = 'FINISHED' and tags.`{FINGERPRINT}` LIKE '%'",
        max_results=50000,
    )
    return {(r.info.run_name, r.data.tags[FINGERPRINT]) for r in runs}


def run_cell(
    tracker: Tracker, experiment_id: str, cell: Cell, data: datasets.Splits
) -> bool:
    """Trains one run of the grid and tracks it; True if it diverged."""
    run_id = tracker.start_run(experiment_id, cell.label, tags=cell.tags())

    def log_epoch(epoch: int, row: dict[str, float]) -> bool:
        tracker.log_metrics(run_id, row, step=epoch)
        return False

    def log_batches(epoch: int, series: BatchSeries) -> None:
        tracker.log_series(run_id, series.values, series.steps)

    start = time.perf_counter()
    try:
        tracker.log_config(run_id, asdict(cell.config))
        result = train_and_evaluate(cell.config, data, log_epoch, log_batches)
    except BaseException as err:
        interrupted = isinstance(err, KeyboardInterrupt)
        tracker.end_run(run_id, "KILLED" if interrupted else "FAILED")
        raise
    seconds = time.perf_counter() - start
    tracker.log_metrics(run_id, {RUN_SECONDS: seconds}, step=len(result.history))
    if result.divergence is not None:
        tracker.set_tags(run_id, {DIVERGENCE: result.divergence})
    tracker.end_run(run_id, "FINISHED")
    log.info("%s: %.1f s, divergence: %s", cell.label, seconds, result.divergence)
    return result.divergence is not None


def run_comparison(cfg: DictConfig) -> Outcome:
    """Runs the grid of ``cfg.comparison`` (skipping finished runs), then
    writes its tables, figures and report unless ``comparison.analyze`` is
    false."""
    # Setup: every run checked, the data loaded and fitted, before training.
    check_sqlite_url("tracking.uri", cfg.tracking.uri)
    check_sqlite_url("study.storage", cfg.study.storage)
    cells = grid(cfg)
    data = load_data(cells)
    tracker = Tracker(cfg.tracking)
    experiment_id = tracker.experiment(cfg.comparison.experiment)
    done = finished_runs(tracker, experiment_id)
    todo = [c for c in cells if (c.label, fingerprint(c.config)) not in done]
    log.info(
        "Comparison %s: %d runs, %d finished before, %d to run",
        cfg.comparison.experiment,
        len(cells),
        len(cells) - len(todo),
        len(todo),
    )

    # Runs: in grid order, so that seeds of one structure share a compile.
    start, ran, diverged, interrupted = time.perf_counter(), 0, 0, False
    try:
        for i, cell in enumerate(todo, start=1):
            log.info("Run %d of %d: %s", i, len(todo), cell.label)
            diverged += run_cell(tracker, experiment_id, cell, _data_of(cell, data))
            ran += 1
    except KeyboardInterrupt:
        interrupted = True
        log.warning("Interrupted: the running run is marked KILLED.")
    seconds = time.perf_counter() - start

    # Analysis: from what the store holds, as `python -m analysis.compare`.
    written: list[Path] = []
    if cfg.comparison.analyze and not interrupted:
        from analysis import compare

        written = compare.export_comparison(cfg)
    skipped = len(cells) - len(todo)
    return Outcome(experiment_id, ran, skipped, diverged, interrupted, seconds, written)
