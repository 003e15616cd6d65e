"""The schema of a study's configuration: a run config plus the search.

``conf/study.yaml`` composes into :class:`StudyRunConfig`. The search space
lives in ``conf/study/*.yaml`` as :class:`SearchSpace`; the known-good first
trial as :class:`Baseline`. A comparison of optimizers
(``+experiment=optimizer_comparison``) adds a :class:`ComparisonConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainers.config import ConfigError, OptimizerConfig, RunConfig, TrackingConfig


@dataclass
class FloatRange:
    low: float = 0.0
    high: float = 1.0
    log: bool = False


@dataclass
class IntRange:
    low: int = 1
    high: int = 10


@dataclass
class SearchSpace:
    """What a trial samples. A range left null is not searched: the run
    config's value is used. ``optimizer_lr`` maps each optimizer the study
    may choose to its own range for eta_theta."""

    state_lr: FloatRange | None = None
    beta: FloatRange | None = None
    inference_steps: IntRange | None = None
    optimizer_lr: dict[str, FloatRange] = field(default_factory=dict)


@dataclass
class Baseline:
    """The first trial of a new study: a setting known to train."""

    optimizer: str = "adam"
    optimizer_lr: dict[str, float] = field(default_factory=dict)
    state_lr: float = 0.1
    beta: float = 1.0
    inference_steps: int = 20


@dataclass
class StudyConfig:
    """``name`` null derives one from model, energy, optimizer and dataset.
    ``storage`` is any Optuna storage URL (a SQLite file by default)."""

    name: str | None = None
    n_trials: int = 12
    storage: str = "sqlite:///optuna.db"
    n_startup_trials: int = 4
    pruner_warmup_epochs: int = 1
    space: SearchSpace = field(default_factory=SearchSpace)
    baseline: Baseline = field(default_factory=Baseline)


@dataclass
class SettingConfig:
    """One row of a comparison's grid: the model (a file of ``conf/model``),
    the seeds, and run-config overrides in dotted keys (applied last, over
    the optimizers' hyperparameters), with a sentence for the report."""

    model: str = "mlp"
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass
class ComparisonConfig:
    """Energies (files of ``conf/energy``) x optimizers (keys of
    ``optimizers``) x settings x seeds, on a fixed budget; see
    ``study.comparison``.

    ``given`` maps an optimizer to dotted run-config overrides (its
    ``optimizer.lr`` and whatever else it needs); ``from_study`` maps an
    energy to the Optuna study (in ``study.storage``) whose best trial per
    optimizer replaces them; the plots of those studies and of ``studies``
    (names in ``study.storage``; one not there is noted in the report, not
    an error) go into the report. The runs go to the MLflow experiment
    ``experiment``; the tables, figures and report to ``out_dir``. Accuracy
    differences are taken against ``baseline``; the Fig 6 view shows the
    gradient norm of layer ``block``."""

    experiment: str = "optimizer-comparison"
    energies: list[str] = field(default_factory=lambda: ["hpc", "bipc"])
    optimizers: list[str] = field(default_factory=lambda: ["adam", "lars", "lalr"])
    settings: dict[str, SettingConfig] = field(default_factory=dict)
    given: dict[str, dict[str, Any]] = field(default_factory=dict)
    from_study: dict[str, str] = field(default_factory=dict)
    studies: list[str] = field(default_factory=list)
    out_dir: str = "reports/optimizer-comparison"
    baseline: str = "adam"
    block: int = 1
    analyze: bool = True


@dataclass
class StudyRunConfig(RunConfig):
    """``optimizer`` is what ``optimizer=<name>`` fixed, or null when the
    study searches over ``study.space.optimizer_lr``'s optimizers, whose
    base settings ``optimizers`` holds."""

    optimizer: OptimizerConfig | None = None
    optimizers: dict[str, OptimizerConfig] = field(default_factory=dict)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    comparison: ComparisonConfig | None = None


def _check_range(option: str, r, *, positive: bool) -> None:
    if r is None:
        return
    if not r.low <= r.high:
        raise ConfigError(f"{option}: low={r.low} is above high={r.high}.")
    if positive and r.low <= 0:
        raise ConfigError(f"{option}.low={r.low} is not allowed; it must be > 0.")
    if getattr(r, "log", False) and r.low <= 0:
        raise ConfigError(f"{option}.low={r.low}: a log range must start above 0.")


def searched_optimizers(cfg: StudyRunConfig) -> list[str]:
    """The optimizers a trial may pick: the fixed one, or the space's."""
    if cfg.optimizer is not None:
        return [cfg.optimizer.name]
    return list(cfg.study.space.optimizer_lr)


def validate_study(cfg: StudyRunConfig) -> None:
    """Checks the study's own options; trial configs are checked by the
    trainer's ``validate`` before anything runs."""
    s = cfg.study
    if s.n_trials < 1:
        raise ConfigError(
            f"study.n_trials={s.n_trials} is not allowed; it must be >= 1."
        )
    space = s.space
    _check_range("study.space.state_lr", space.state_lr, positive=True)
    _check_range("study.space.beta", space.beta, positive=False)
    _check_range("study.space.inference_steps", space.inference_steps, positive=False)
    if space.beta is not None and space.beta.low < 0:
        raise ConfigError(f"study.space.beta.low={space.beta.low} must be >= 0.")
    if space.beta is not None and cfg.energy.name == "ep" and space.beta.low <= 0:
        raise ConfigError(
            f"study.space.beta.low={space.beta.low} is not allowed with energy=ep: "
            "the nudged phase needs beta > 0 (try study.space.beta.low=0.05)."
        )
    if space.inference_steps is not None and space.inference_steps.low < 0:
        raise ConfigError("study.space.inference_steps.low must be >= 0.")
    for name, r in space.optimizer_lr.items():
        _check_range(f"study.space.optimizer_lr.{name}", r, positive=True)

    choices = searched_optimizers(cfg)
    if not choices:
        raise ConfigError(
            "study.space.optimizer_lr is empty and no optimizer=<name> was given: "
            "there is no optimizer to train with."
        )
    for name in choices:
        if name not in cfg.optimizers and cfg.optimizer is None:
            raise ConfigError(
                f"study.space.optimizer_lr names {name!r}, which has no settings "
                f"under optimizers; allowed: {', '.join(cfg.optimizers)}."
            )


def register_schemas() -> None:
    """Puts the study schema in Hydra's ConfigStore as ``study_schema``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="study_schema", node=StudyRunConfig)
