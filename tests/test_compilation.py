"""XLA compilations, counted: a run compiles its epoch once, and trials that
change only eta_v, eta_theta, beta or the number of inference steps compile
nothing at all.

The count comes from JAX's own compile event, which names the function
compiled, so every compilation is seen, the small eager ones included.

With ``trainer.inference_loop=scan`` the number of steps is the length of
the scan, a static value, so a new count compiles a new program by design;
the default ``while_loop`` takes it as a traced bound, and that is the loop
the step test runs.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from jax import monitoring

from trainers.config import RunConfig
from trainers.data import Splits
from trainers.train import compiled_epoch, train_and_evaluate

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
EPOCH = "jit(epoch)"

_compiled: list[str] = []


def _on_duration(event: str, seconds: float, **kwargs) -> None:
    if event == BACKEND_COMPILE:
        _compiled.append(str(kwargs.get("fun_name", "?")))


monitoring.register_event_duration_secs_listener(_on_duration)


def _compiles_during(fn) -> Counter:
    """The functions compiled while ``fn()`` ran, with their counts."""
    before = len(_compiled)
    fn()
    return Counter(_compiled[before:])


@pytest.fixture(scope="module")
def tiny() -> Splits:
    """Random 16-pixel images of 4 classes: 256 to train, 64 to score."""
    rng = np.random.default_rng(0)
    x = rng.random((384, 16), dtype=np.float32)
    y = (np.arange(384) % 4).astype(np.int32)
    return Splits(x[:256], y[:256], x[256:320], y[256:320], x[320:], y[320:], (4, 4, 1))


def _cfg(epochs: int = 1, **trainer) -> RunConfig:
    cfg = RunConfig()
    cfg.model.hidden_sizes = [8, 8]
    cfg.energy.name = "hpc"
    cfg.energy.loss = "mse"
    cfg.optimizer.name = "adam"
    cfg.trainer.epochs = epochs
    cfg.trainer.batch_size = 32
    cfg.trainer.eval_batch_size = 64
    for key, value in trainer.items():
        setattr(cfg.trainer, key, value)
    return cfg


def _vary(cfg: RunConfig, what: str) -> RunConfig:
    if what == "eta_v":
        cfg.trainer.state_lr *= 3
    elif what == "eta_theta":
        cfg.optimizer.lr *= 3
    elif what == "beta":
        cfg.energy.beta = 0.25
    elif what == "inference_steps":
        cfg.trainer.inference_steps += 7
    return cfg


@pytest.mark.parametrize("loop", ["while_loop", "scan"])
def test_epochs_after_the_first_compile_nothing(tiny, loop):
    marks: list[int] = []

    def callback(epoch: int, row: dict) -> bool:
        marks.append(len(_compiled))
        return False

    compiled_epoch.cache_clear()
    cfg = _cfg(epochs=4, inference_loop=loop, inference_steps=4)
    compiled = _compiles_during(lambda: train_and_evaluate(cfg, tiny, callback))
    assert compiled[EPOCH] == 1, dict(compiled)
    assert marks[1:] == marks[:1] * 3, (
        "epochs 2 to 4 compiled "
        f"{Counter(_compiled[marks[0] : marks[-1]])} after the first epoch"
    )


@pytest.mark.parametrize("what", ["eta_v", "eta_theta", "beta", "inference_steps"])
def test_a_trial_that_changes_only_one_rate_compiles_nothing(tiny, what):
    train_and_evaluate(_cfg(epochs=2), tiny)
    compiled = _compiles_during(
        lambda: train_and_evaluate(_vary(_cfg(epochs=2), what), tiny)
    )
    assert sum(compiled.values()) == 0, f"changing {what} compiled {dict(compiled)}"


@pytest.mark.parametrize("what", ["eta_v", "eta_theta", "beta"])
def test_scan_inference_reuses_its_program_for_rates(tiny, what):
    train_and_evaluate(_cfg(inference_loop="scan"), tiny)
    compiled = _compiles_during(
        lambda: train_and_evaluate(_vary(_cfg(inference_loop="scan"), what), tiny)
    )
    assert sum(compiled.values()) == 0, f"changing {what} compiled {dict(compiled)}"


def test_scan_inference_compiles_once_per_step_count(tiny):
    """By design: the scan's length is static."""
    train_and_evaluate(_cfg(inference_loop="scan"), tiny)
    compiled = _compiles_during(
        lambda: train_and_evaluate(
            _vary(_cfg(inference_loop="scan"), "inference_steps"), tiny
        )
    )
    assert compiled == Counter({EPOCH: 1}), dict(compiled)
