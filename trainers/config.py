"""The schema of a training run's configuration.

Hydra composes the YAML files under ``conf/`` into these dataclasses, so a
misspelt key or a wrong type fails when the config is composed. What the
types cannot say (allowed names, ranges) is checked by :func:`validate`,
before any data is loaded or any function is traced. Every number lives in
``conf/``; the defaults here only mirror them for use from Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
ENERGIES = ("hpc", "bipc", "ep", "backprop")
EP_NUDGING = ("symmetric", "one_sided")
STATE_OPTIMIZERS = ("sgd", "adam", "lars", "lalr")
INFERENCE_LOOPS = ("while_loop", "scan")
BIPC_FORMS = ("eq10", "eq9")
LOSSES = ("cross_entropy", "mse")
INPUT_FEEDBACK = ("reconstruction", "none")
OPTIMIZERS = ("sgd", "adam", "lars", "lalr")
CONNECTIONS = ("forward", "skip", "recurrent", "internal")
DATASETS = (
    "fashion_mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "tiny_imagenet",
    "image_folder",
)


@dataclass
class OpConfig:
    """One operation of an edge: ``dense`` or ``conv`` (``features``; 0 on the
    edge into the output means the number of classes), ``maxpool``
    (``window``) or ``flatten``."""

    op: str = "dense"
    features: int = 0
    kernel: int = 3
    stride: int = 1
    window: int = 2


@dataclass
class EdgeConfig:
    name: str = ""
    source: str = ""
    target: str = ""
    ops: list[OpConfig] = field(default_factory=list)
    kind: str = "forward"


@dataclass
class ModelConfig:
    """A multilayer perceptron (``hidden_sizes``), or, when ``edges`` is
    given, a graph of nodes and edges (``trainers.graph``) whose channel and
    unit counts ``width`` scales, all but the classes. A graph keeps the
    edges whose kind is in ``connections`` and unrolls its recurrent edges
    over ``time_steps``; ``param_counts`` records, per width, the parameter
    count on Fashion-MNIST (a statement the tests check, not a setting)."""

    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 512])
    activation: str = "tanh"
    nodes: list[str] = field(default_factory=list)
    edges: list[EdgeConfig] = field(default_factory=list)
    input: str = "x"
    output: str = "out"
    width: float = 1.0
    time_steps: int = 1
    connections: list[str] = field(
        default_factory=lambda: ["forward", "skip", "recurrent", "internal"]
    )
    param_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class EnergyConfig:
    """F = E + beta C (Chen et al. 2025, Eq 17); see ``trainers.energies``."""

    name: str = "bipc"
    beta: float = 1.0
    loss: str = "cross_entropy"
    bipc_form: str = "eq10"
    input_feedback: str = "none"
    ep_nudging: str = "symmetric"


@dataclass
class OptimizerConfig:
    """The parameter optimizer; ``lr`` is eta_theta."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    trust_coefficient: float = 1.0


@dataclass
class DatasetConfig:
    name: str = "fashion_mnist"
    manual_dir: str = "/usr/share/datasets/fashion-mnist"
    data_dir: str | None = None
    train_size: int | None = None
    validation_size: int = 5000
    split_seed: int = 0
    normalize: bool = False
    augment: bool = False
    augment_padding: int = 4


@dataclass
class TrainerConfig:
    """Inference runs at most ``inference_steps`` steps of rate ``state_lr``
    (eta_v) and stops early once the relative change of the energy between
    two steps falls under ``convergence_threshold``; ``inference_loop=scan``
    runs exactly ``inference_steps`` instead (compiled per count). A batch diverges when
    its energy turns non-finite or grows past ``divergence_factor`` times its
    value at the start of inference. Every ``log_every`` training batches
    (0: never) the per-batch gradient norms and update ratios are reported
    (``trainers.metrics``)."""

    epochs: int = 3
    batch_size: int = 128
    inference_steps: int = 20
    state_lr: float = 0.1
    state_optimizer: str = "sgd"
    inference_loop: str = "while_loop"
    convergence_threshold: float = 1e-4
    divergence_factor: float = 1e3
    eval_batch_size: int = 5000
    log_every: int = 0


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlruns"
    experiment: str = "single-runs"


@dataclass
class RunConfig:
    """One training run: what ``python -m trainers`` composes."""

    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


class ConfigError(ValueError):
    """An option holds a value the platform cannot run."""


def _choice(option: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{option}={value!r} is not supported; allowed: {', '.join(allowed)}."
        )


def _positive(option: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value is not None and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{option}={value!r} is not allowed; it must be {bound}.")


def validate(cfg: RunConfig) -> None:
    """Raises :class:`ConfigError` naming the first option that cannot run."""
    _choice("model.activation", cfg.model.activation, ACTIVATIONS)
    if not cfg.model.edges and (
        not cfg.model.hidden_sizes or min(cfg.model.hidden_sizes) < 1
    ):
        raise ConfigError(
            f"model.hidden_sizes={list(cfg.model.hidden_sizes)!r} is not allowed; "
            "give at least one hidden layer, each of width >= 1."
        )
    _positive("model.width", cfg.model.width)
    if not isinstance(cfg.model.time_steps, int) or cfg.model.time_steps < 1:
        raise ConfigError(
            f"model.time_steps={cfg.model.time_steps!r} is not allowed; "
            "it must be an integer >= 1."
        )
    for kind in cfg.model.connections:
        _choice("model.connections", kind, CONNECTIONS)
    if "forward" not in cfg.model.connections:
        raise ConfigError(
            f"model.connections={list(cfg.model.connections)!r} is not allowed; "
            "it must keep the forward connections."
        )
    _choice("energy.name", cfg.energy.name, ENERGIES)
    recurrent = [
        e.name
        for e in cfg.model.edges
        if e.kind == "recurrent" and "recurrent" in cfg.model.connections
    ]
    if recurrent and cfg.energy.name == "ep":
        raise ConfigError(
            f"energy=ep is not defined on model={cfg.model.name}, whose recurrent "
            f"edges ({', '.join(recurrent)}) unroll in time: equilibrium "
            "propagation is implemented on networks without recurrence (the MLP "
            "and the hierarchical network, as in Chen et al. 2025); drop them "
            "with model.connections=[forward,skip,internal]."
        )
    _choice("energy.loss", cfg.energy.loss, LOSSES)
    _choice("energy.bipc_form", cfg.energy.bipc_form, BIPC_FORMS)
    _choice("energy.input_feedback", cfg.energy.input_feedback, INPUT_FEEDBACK)
    _choice("energy.ep_nudging", cfg.energy.ep_nudging, EP_NUDGING)
    _positive("energy.beta", cfg.energy.beta, allow_zero=True)
    if cfg.energy.name == "ep" and cfg.energy.beta == 0:
        raise ConfigError(
            "energy.beta=0.0 is not allowed with energy=ep: equilibrium "
            "propagation learns from the nudged phase, which needs beta > 0."
        )

    _choice("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    _positive("optimizer.lr", cfg.optimizer.lr)
    _positive("optimizer.weight_decay", cfg.optimizer.weight_decay, allow_zero=True)
    _positive("optimizer.trust_coefficient", cfg.optimizer.trust_coefficient)
    for option in ("momentum", "b1", "b2"):
        value = getattr(cfg.optimizer, option)
        if not 0 <= value < 1:
            raise ConfigError(
                f"optimizer.{option}={value!r} is not allowed; it must be in [0, 1)."
            )

    _choice("dataset.name", cfg.dataset.name, DATASETS)
    if cfg.dataset.train_size is not None:
        _positive("dataset.train_size", cfg.dataset.train_size)
    _positive("dataset.validation_size", cfg.dataset.validation_size)
    _positive("dataset.augment_padding", cfg.dataset.augment_padding, allow_zero=True)

    t = cfg.trainer
    _positive("trainer.epochs", t.epochs)
    _positive("trainer.batch_size", t.batch_size)
    _positive("trainer.eval_batch_size", t.eval_batch_size)
    _positive("trainer.inference_steps", t.inference_steps, allow_zero=True)
    _positive("trainer.log_every", t.log_every, allow_zero=True)
    _positive("trainer.state_lr", t.state_lr)
    _choice("trainer.state_optimizer", t.state_optimizer, STATE_OPTIMIZERS)
    _choice("trainer.inference_loop", t.inference_loop, INFERENCE_LOOPS)
    _positive("trainer.convergence_threshold", t.convergence_threshold, allow_zero=True)
    if not t.divergence_factor > 1:
        raise ConfigError(
            f"trainer.divergence_factor={t.divergence_factor!r} is not allowed; "
            "it must be > 1."
        )


def register_schemas() -> None:
    """Puts the run schema in Hydra's ConfigStore as ``run_schema``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="run_schema", node=RunConfig)
