"""The training loop on real data: it learns, it detects divergence, and it
reuses its compiled program across rate and step changes."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax import monitoring

from trainers import metrics as m
from trainers.config import ConfigError, RunConfig
from trainers.inference import (
    DIVERGENCE_REASONS,
    EXPLODING_INFERENCE,
    NONFINITE_INFERENCE,
)
from trainers.train import train_and_evaluate

_compiles: list[str] = []
monitoring.register_event_duration_secs_listener(
    lambda name, *args, **kwargs: (
        _compiles.append(name)
        if name == "/jax/core/compile/backend_compile_duration"
        else None
    )
)


def _cfg(**trainer) -> RunConfig:
    cfg = RunConfig()
    cfg.model.hidden_sizes = [64, 64]
    cfg.trainer.epochs = 1
    cfg.trainer.batch_size = 64
    cfg.trainer.eval_batch_size = 500
    for key, value in trainer.items():
        setattr(cfg.trainer, key, value)
    return cfg


@pytest.mark.parametrize(
    "energy, width, floor",
    # BiPC (Eq 10) starts slowly on an MLP: its tied feedback weights first
    # learn to reconstruct; 0.35 after 128 updates is still far from chance.
    [("hpc", 64, 0.6), ("backprop", 64, 0.6), ("bipc", 256, 0.35), ("ep", 64, 0.6)],
)
def test_short_run_beats_chance_by_a_wide_margin(small_fashion, energy, width, floor):
    cfg = _cfg(epochs=2, inference_steps=5, state_lr=0.01, batch_size=32)
    cfg.model.hidden_sizes = [width, width]
    cfg.energy.name = energy
    cfg.energy.loss = "mse" if energy in ("hpc", "ep") else "cross_entropy"
    result = train_and_evaluate(cfg, small_fashion)
    assert result.divergence is None
    assert len(result.history) == 2
    # Ten classes: chance is 0.10.
    assert result.final[m.TEST_ACCURACY] > floor
    assert result.final[m.ENERGY_END] <= result.final[m.ENERGY_START]


def test_every_documented_metric_is_reported(small_fashion):
    rows = []
    train_and_evaluate(_cfg(), small_fashion, callback=lambda e, r: rows.append(r))
    names = {
        m.TRAIN_LOSS,
        m.TRAIN_ACCURACY,
        m.VAL_ACCURACY,
        m.TEST_ACCURACY,
        m.ENERGY_START,
        m.ENERGY_END,
        m.INFERENCE_STEPS,
        m.DIVERGED,
        m.DIVERGENCE_STEP,
        m.state_grad_norm(1),
        m.state_grad_norm(2),
        m.param_grad_norm(1),
        m.param_grad_norm(2),
        m.param_grad_norm(3),
    }
    names |= {m.update_ratio(i) for i in (1, 2, 3)}
    names |= {m.effective_lr(i) for i in (1, 2, 3)}
    assert set(rows[0]) == names
    assert all(np.isfinite(v) for v in rows[0].values())


def test_callback_can_stop_the_run(small_fashion):
    cfg = _cfg(epochs=3)
    result = train_and_evaluate(cfg, small_fashion, callback=lambda e, r: True)
    assert result.stopped_by_callback and len(result.history) == 1


def test_huge_state_rate_is_reported_as_divergence_not_raised(small_fashion):
    cfg = _cfg(state_lr=1e4, epochs=2)
    result = train_and_evaluate(cfg, small_fashion)
    assert result.divergence is not None
    assert any(
        DIVERGENCE_REASONS[r] in result.divergence
        for r in (EXPLODING_INFERENCE, NONFINITE_INFERENCE)
    )
    assert result.final[m.DIVERGED] == 1.0
    assert result.final[m.DIVERGENCE_STEP] == 0
    assert len(result.history) == 1  # the run stopped after that epoch
    # The parameters returned are the last finite ones.
    leaves = jax.tree.leaves(result.params)
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)


def test_a_second_trial_with_other_rates_and_steps_does_not_recompile(small_fashion):
    first = _cfg(inference_steps=5, state_lr=0.02)
    first.optimizer.name = "lalr"
    train_and_evaluate(first, small_fashion)

    second = _cfg(inference_steps=12, state_lr=0.05, convergence_threshold=1e-6)
    second.optimizer.name = "lalr"
    second.optimizer.lr = 0.003
    second.energy.beta = 0.4
    second.seed = 1
    before = len(_compiles)
    result = train_and_evaluate(second, small_fashion)
    assert len(_compiles) == before, "the second trial compiled again"
    assert result.final[m.INFERENCE_STEPS] > 5  # the new bound took effect


def test_bad_option_fails_before_any_compute(small_fashion):
    cfg = _cfg()
    cfg.optimizer.name = "rmsprop"
    before = len(_compiles)
    with pytest.raises(ConfigError, match=r"optimizer.name='rmsprop'.*lalr"):
        train_and_evaluate(cfg, small_fashion)
    assert len(_compiles) == before


@pytest.mark.parametrize("state_optimizer", ["sgd", "adam", "lars", "lalr"])
def test_fixed_scan_inference_and_every_state_optimizer_train(
    small_fashion, state_optimizer
):
    cfg = _cfg(
        inference_steps=4,
        state_lr=0.01,
        inference_loop="scan",
        state_optimizer=state_optimizer,
    )
    cfg.energy.name, cfg.energy.loss = "hpc", "mse"
    result = train_and_evaluate(cfg, small_fashion)
    assert result.divergence is None
    assert result.final[m.INFERENCE_STEPS] == 4.0
    assert result.final[m.TEST_ACCURACY] > 0.5


def test_augmented_training_runs_and_learns(small_fashion):
    cfg = _cfg(epochs=2, inference_steps=5, state_lr=0.01, batch_size=32)
    cfg.energy.name, cfg.energy.loss = "hpc", "mse"
    cfg.dataset.augment = True
    result = train_and_evaluate(cfg, small_fashion)
    assert result.divergence is None
    assert result.final[m.TEST_ACCURACY] > 0.5
