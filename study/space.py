"""The search space: from a study config to Optuna suggestions and back.

Optuna parameter names: ``optimizer`` (categorical, only when the study
searches it), ``lr_<optimizer>`` (eta_theta, one log-uniform range per
optimizer, so each keeps its own scale), ``state_lr`` (eta_v, log-uniform),
``beta`` (uniform) and ``inference_steps`` (integer). The last three are
not searched for an energy without inference (backprop).
"""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from study.config import StudyRunConfig, searched_optimizers
from trainers.config import ConfigError, RunConfig

_RUN_KEYS = ("seed", "model", "energy", "dataset", "trainer", "tracking")


def uses_inference(cfg: StudyRunConfig) -> bool:
    return cfg.energy.name != "backprop"


def lr_param(optimizer: str) -> str:
    return f"lr_{optimizer}"


def _lr_range(cfg: StudyRunConfig, optimizer: str):
    space = cfg.study.space.optimizer_lr
    if optimizer not in space:
        raise ConfigError(
            f"optimizer={optimizer} has no range under study.space.optimizer_lr; "
            f"ranges exist for: {', '.join(space) or 'none'}."
        )
    return space[optimizer]


def suggest(trial: optuna.Trial, cfg: StudyRunConfig) -> dict[str, Any]:
    """Samples one trial's parameters."""
    choices = searched_optimizers(cfg)
    if len(choices) > 1:
        optimizer = trial.suggest_categorical("optimizer", choices)
    else:
        optimizer = choices[0]
    r = _lr_range(cfg, optimizer)
    params = {
        "optimizer": optimizer,
        lr_param(optimizer): trial.suggest_float(
            lr_param(optimizer), r.low, r.high, log=r.log
        ),
    }
    space = cfg.study.space
    if uses_inference(cfg):
        if space.state_lr is not None:
            r = space.state_lr
            params["state_lr"] = trial.suggest_float(
                "state_lr", r.low, r.high, log=r.log
            )
        if space.beta is not None:
            r = space.beta
            params["beta"] = trial.suggest_float("beta", r.low, r.high, log=r.log)
        if space.inference_steps is not None:
            r = space.inference_steps
            params["inference_steps"] = trial.suggest_int(
                "inference_steps", r.low, r.high
            )
    return params


def baseline(cfg: StudyRunConfig) -> dict[str, Any]:
    """The known-good first trial, in Optuna parameter names, restricted to
    what :func:`suggest` samples for this config."""
    b = cfg.study.baseline
    choices = searched_optimizers(cfg)
    optimizer = b.optimizer if b.optimizer in choices else choices[0]
    if optimizer not in b.optimizer_lr:
        raise ConfigError(
            f"study.baseline.optimizer_lr has no rate for {optimizer!r}; "
            f"it has: {', '.join(b.optimizer_lr) or 'none'}."
        )
    params: dict[str, Any] = {lr_param(optimizer): b.optimizer_lr[optimizer]}
    if len(choices) > 1:
        params["optimizer"] = optimizer
    space = cfg.study.space
    if uses_inference(cfg):
        for name in ("state_lr", "beta", "inference_steps"):
            if getattr(space, name) is not None:
                params[name] = getattr(b, name)
    for name, value in params.items():
        r = (
            _lr_range(cfg, optimizer)
            if name.startswith("lr_")
            else getattr(space, name, None)
        )
        if r is not None and not r.low <= value <= r.high:
            raise ConfigError(
                f"study.baseline: {name}={value} lies outside its search range "
                f"[{r.low}, {r.high}]."
            )
    return params


def trial_config(cfg: DictConfig, params: dict[str, Any]) -> RunConfig:
    """The run config of one trial: the study's settings with ``params``."""
    optimizer = params["optimizer"]
    base = cfg.optimizer if cfg.optimizer is not None else cfg.optimizers[optimizer]
    run = OmegaConf.merge(
        OmegaConf.structured(RunConfig),
        {key: cfg[key] for key in _RUN_KEYS},
        {"optimizer": base},
    )
    run.optimizer.lr = params[lr_param(optimizer)]
    for name, key in (
        ("state_lr", "trainer.state_lr"),
        ("beta", "energy.beta"),
        ("inference_steps", "trainer.inference_steps"),
    ):
        if name in params:
            OmegaConf.update(run, key, params[name])
    return OmegaConf.to_object(run)
