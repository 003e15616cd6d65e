"""The per-layer update ratio and effective rate, and the per-batch series,
against what they must be on small hand-checkable runs."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from trainers import metrics as m
from trainers.config import RunConfig
from trainers.data import Splits
from trainers.optimizers import layer_norms
from trainers.train import build_network, train_and_evaluate

FEATURES, CLASSES = 12, 3


def _data(train: int) -> Splits:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(train + 16, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=train + 16).astype(np.int32)
    y[:CLASSES] = np.arange(CLASSES)
    return Splits(x[:train], y[:train], x[train:], y[train:], x[train:], y[train:])


def _cfg(optimizer: str = "sgd", epochs: int = 1, batch: int = 8) -> RunConfig:
    cfg = RunConfig()
    cfg.model.hidden_sizes = [6, 5]
    cfg.energy.name, cfg.energy.loss = "hpc", "mse"
    cfg.optimizer.name, cfg.optimizer.lr = optimizer, 0.1
    cfg.trainer.epochs, cfg.trainer.batch_size = epochs, batch
    cfg.trainer.inference_steps, cfg.trainer.state_lr = 3, 0.05
    cfg.trainer.eval_batch_size = 16
    return cfg


def _run(cfg: RunConfig, data: Splits):
    rows, series = [], []
    result = train_and_evaluate(
        cfg, data, lambda e, r: rows.append(r), lambda e, s: series.append(s)
    )
    return result, rows, series


def test_sgd_moves_each_layer_at_exactly_its_rate():
    cfg, data = _cfg(), _data(train=8)  # one batch: epoch means are that batch
    _, rows, _ = _run(cfg, data)
    row = rows[0]

    key, init_key = jax.random.split(jax.random.key(cfg.seed))
    del key
    weights = np.asarray(layer_norms(build_network(cfg, data).init(init_key)))
    for i, w in enumerate(weights, start=1):
        g = row[m.param_grad_norm(i)]
        assert row[m.effective_lr(i)] == pytest.approx(0.1, rel=1e-5)
        assert row[m.update_ratio(i)] == pytest.approx(w / (0.1 * g), rel=1e-5)


def test_lalr_rates_make_every_layer_step_alike():
    cfg = _cfg("lalr")
    cfg.optimizer.momentum = 0.0
    _, rows, _ = _run(cfg, _data(train=8))
    row = rows[0]
    layers = range(1, 4)
    grads = np.array([row[m.param_grad_norm(i)] for i in layers])
    steps = np.array([row[m.effective_lr(i)] for i in layers]) * grads
    harmonic = len(grads) / np.sum(1.0 / grads)
    np.testing.assert_allclose(steps, 0.1 * harmonic, rtol=1e-5)


def test_batch_series_every_k_batches_with_global_steps():
    cfg = _cfg("adam", epochs=2)
    cfg.trainer.log_every = 3
    _, rows, series = _run(cfg, _data(train=64))  # 8 batches per epoch

    assert [list(s.steps) for s in series] == [[0, 3, 6], [9, 12, 15]]
    names = {m.batch(m.param_grad_norm(i)) for i in range(1, 4)}
    names |= {m.batch(m.update_ratio(i)) for i in range(1, 4)}
    for s in series:
        assert set(s.values) == names
        assert all(len(v) == len(s.steps) for v in s.values.values())
        assert all(np.all(np.isfinite(v)) for v in s.values.values())


def test_every_batch_averages_to_the_epoch_value():
    cfg = _cfg("lars")
    cfg.trainer.log_every = 1
    _, rows, series = _run(cfg, _data(train=64))
    assert list(series[0].steps) == list(range(8))
    for i in range(1, 4):
        batches = series[0].values[m.batch(m.param_grad_norm(i))]
        assert np.mean(batches) == pytest.approx(rows[0][m.param_grad_norm(i)])


def test_no_series_without_log_every():
    _, rows, series = _run(_cfg(), _data(train=16))
    assert series == [] and len(rows) == 1
