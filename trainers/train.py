"""Training: the jitted epoch, evaluation and the run loop.

One train step is inference on the states (``trainers.inference``) followed
by learning: the optimizer applied to dF/dtheta at the relaxed states, with
F averaged over the batch (Chen et al. 2025, Eq 4 and Eq 19). An epoch is a
``lax.scan`` over batches of device-resident data, compiled once per model,
energy, optimizer kind, batch size and data shape: rates, beta and the
number of inference steps are traced inputs, so trials that change only
those reuse the compiled program.

The run loop reports each epoch's metrics (names in ``trainers.metrics``)
to a callback, which may ask it to stop. It knows nothing of trackers or
hyperparameter searches.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trainers import metrics as m
from trainers.config import ConfigError, OptimizerConfig, RunConfig, validate
from trainers.data import Splits
from trainers.data.augment import crop_and_flip
from trainers.energies import make_energy, output_loss
from trainers.graph import Graph, graph_from_config
from trainers.inference import (
    DIVERGENCE_REASONS,
    NONFINITE_LEARNING,
    NOT_DIVERGED,
    Hyper,
    relax,
)
from trainers.model import MLP
from trainers.optimizers import layer_norms, make_optimizer

log = logging.getLogger(__name__)

Callback = Callable[[int, dict[str, float]], bool]
"""Called after each epoch with (epoch, metrics); returning True stops."""


class EpochSums(NamedTuple):
    """Per-epoch accumulators, summed over the batches that ran."""

    batches: jax.Array
    loss: jax.Array
    correct: jax.Array
    energy_start: jax.Array
    energy_end: jax.Array
    steps: jax.Array
    state_grad_norms: jax.Array
    param_grad_norms: jax.Array
    weight_norms: jax.Array
    update_norms: jax.Array
    reason: jax.Array
    divergence_step: jax.Array


class EpochStats(NamedTuple):
    """What the jitted epoch returns besides the parameters: the sums, and
    each batch's parameter-gradient norms and update ratios
    ||w|| / ||Delta w||, arrays of shape (batches, layers) (NaN for batches
    skipped after a divergence). All of it stays on the device."""

    sums: EpochSums
    grad_norms: jax.Array
    update_ratios: jax.Array


class BatchSeries(NamedTuple):
    """Per-batch values, every ``trainer.log_every`` batches of an epoch.

    ``steps`` holds the global batch indices, shape (n,); ``values`` maps
    each metric name (``batch/...``, see ``trainers.metrics``) to an array of
    shape (n,). Batches skipped after a divergence are left out.
    """

    steps: np.ndarray
    values: dict[str, np.ndarray]


BatchCallback = Callable[[int, BatchSeries], None]
"""Called after each epoch, before ``Callback``, with (epoch, series)."""


class RunResult(NamedTuple):
    history: list[dict[str, float]]
    params: dict
    divergence: str | None
    stopped_by_callback: bool

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _zero_sums(net: MLP, dtype) -> EpochSums:
    zero = jnp.zeros((), dtype)
    return EpochSums(
        batches=jnp.zeros((), jnp.int32),
        loss=zero,
        correct=jnp.zeros((), jnp.int32),
        energy_start=zero,
        energy_end=zero,
        steps=jnp.zeros((), jnp.int32),
        state_grad_norms=jnp.zeros((len(net.state_groups),), dtype),
        param_grad_norms=jnp.zeros((net.num_layers,), dtype),
        weight_norms=jnp.zeros((net.num_layers,), dtype),
        update_norms=jnp.zeros((net.num_layers,), dtype),
        reason=jnp.array(NOT_DIVERGED, jnp.int32),
        divergence_step=jnp.array(-1, jnp.int32),
    )


def _mean_energy_grad(energy, states, x, y, beta):
    return lambda p: jnp.mean(energy(p, states, x, y, beta))


def pc_gradient(energy, params, states, x, y, hyper: Hyper, relax_opts: dict):
    """Predictive coding: dF/dtheta at the end of inference (Eq 4, Eq 19)."""
    r = relax(energy, params, states, x, y, hyper, **relax_opts)
    f_end, grads = jax.value_and_grad(
        _mean_energy_grad(energy, r.states, x, y, hyper.beta)
    )(params)
    return grads, f_end, r


def ep_gradient(energy, params, states, x, y, hyper: Hyper, relax_opts: dict):
    r"""Equilibrium propagation (Scellier and Bengio 2017): relax freely
    (beta = 0), then nudged from the free equilibrium, and estimate

    .. math:: \frac{1}{\beta}\Big(\frac{\partial F}{\partial\theta}(s^\beta)
              - \frac{\partial F}{\partial\theta}(s^0)\Big),

    or with symmetric nudging the difference between +beta and -beta over
    2 beta (Laborieux et al. 2021). C does not depend on theta, so these are
    differences of dE/dtheta. The metrics describe the free phase; a
    divergence in any phase counts.
    """
    free_hyper = hyper._replace(beta=0.0 * hyper.beta)
    free = relax(energy, params, states, x, y, free_hyper, **relax_opts)
    plus = relax(energy, params, free.states, x, y, hyper, **relax_opts)
    grad = lambda s: jax.grad(_mean_energy_grad(energy, s, x, y, 0.0))(params)  # noqa: E731
    if energy.symmetric:
        minus_hyper = hyper._replace(beta=-hyper.beta)
        minus = relax(energy, params, free.states, x, y, minus_hyper, **relax_opts)
        reference, scale, reason = minus.states, 2 * hyper.beta, minus.reason
    else:
        reference, scale, reason = free.states, hyper.beta, NOT_DIVERGED
    grads = jax.tree.map(
        lambda a, b: (a - b) / scale, grad(plus.states), grad(reference)
    )
    reason = jnp.maximum(jnp.maximum(free.reason, plus.reason), reason)
    f_end = jnp.mean(energy(params, free.states, x, y, 0.0))
    return grads, f_end, free._replace(reason=reason.astype(jnp.int32))


def _two_phase(energy) -> bool:
    """Whether the energy learns by equilibrium propagation's two phases."""
    return getattr(energy, "two_phase", False)


def _forward_pass(net, energy, params, x):
    """The energy's initial states and the logits, from one forward pass."""
    if _two_phase(energy):
        states = energy.init_states(params, x)
        return states, states[-1]
    if not energy.uses_inference:
        return (), net.logits(params, x)
    return net.forward(params, x)


def make_train_step(
    net: MLP,
    energy,
    tx: optax.GradientTransformation,
    state_optimizer: str = "sgd",
    fixed_steps: int | None = None,
):
    """``(params, opt_state, x, y, hyper) -> (params, opt_state, stats)``;
    the state update and the loop (``fixed_steps``) as in ``relax``."""
    relax_opts = dict(optimizer=state_optimizer, fixed_steps=fixed_steps)

    def step(params, opt_state, x, y, hyper: Hyper):
        batch = x.shape[0]
        states, logits = _forward_pass(net, energy, params, x)
        loss = jnp.mean(output_loss(energy.loss, logits, y))
        correct = jnp.sum(jnp.argmax(logits, -1) == y)

        if not energy.uses_inference:
            f_end, grads = jax.value_and_grad(
                _mean_energy_grad(energy, states, x, y, hyper.beta)
            )(params)
            steps, reason = jnp.zeros((), jnp.int32), jnp.array(NOT_DIVERGED)
            f_start = f_end
            state_norms = jnp.zeros((len(net.state_groups),), x.dtype)
        else:
            gradient = ep_gradient if _two_phase(energy) else pc_gradient
            grads, f_end, r = gradient(energy, params, states, x, y, hyper, relax_opts)
            steps, reason = r.steps, r.reason
            f_start = r.energy_start / batch
            f_start = jnp.where(jnp.isnan(f_start), f_end, f_start)
            state_norms = jnp.stack(
                [jnp.mean(r.state_grad_norms[np.asarray(g)]) for g in net.state_groups]
            )

        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)

        finite = jnp.isfinite(f_end) & jnp.isfinite(optax.tree.norm(new_params))
        reason = jnp.where(
            (reason == NOT_DIVERGED) & ~finite, NONFINITE_LEARNING, reason
        ).astype(jnp.int32)
        ok = reason == NOT_DIVERGED
        keep = lambda new, old: jax.tree.map(  # noqa: E731
            lambda a, b: jnp.where(ok, a, b), new, old
        )
        stats = dict(
            loss=loss,
            correct=correct,
            energy_start=f_start,
            energy_end=f_end,
            steps=steps,
            state_grad_norms=state_norms,
            param_grad_norms=layer_norms(grads),
            weight_norms=layer_norms(params),
            update_norms=layer_norms(updates),
            reason=reason,
        )
        return keep(new_params, params), keep(new_opt_state, opt_state), stats

    return step


@functools.lru_cache(maxsize=32)
def compiled_epoch(
    net: MLP,
    energy,
    optimizer_name: str,
    batch_size: int,
    state_optimizer: str = "sgd",
    fixed_steps: int | None = None,
    augment: tuple[tuple[int, ...], int] | None = None,
):
    """The jitted epoch for one program structure; ``augment`` (the image
    shape and the crop padding) turns on crop-and-flip augmentation of
    training batches.

    The optimizer is rebuilt from its name alone: its numbers live in the
    optimizer state (``optax.inject_hyperparams``), which is an input.

    Returns ``(params, opt_state, stats)``, ``stats`` an :class:`EpochStats`.
    """
    tx = make_optimizer(OptimizerConfig(name=optimizer_name))
    step = make_train_step(net, energy, tx, state_optimizer, fixed_steps)

    def accumulate(sums: EpochSums, s: dict, index) -> EpochSums:
        diverged = s["reason"] != NOT_DIVERGED
        return EpochSums(
            batches=sums.batches + 1,
            loss=sums.loss + s["loss"],
            correct=sums.correct + s["correct"],
            energy_start=sums.energy_start + s["energy_start"],
            energy_end=sums.energy_end + s["energy_end"],
            steps=sums.steps + s["steps"],
            state_grad_norms=sums.state_grad_norms + s["state_grad_norms"],
            param_grad_norms=sums.param_grad_norms + s["param_grad_norms"],
            weight_norms=sums.weight_norms + s["weight_norms"],
            update_norms=sums.update_norms + s["update_norms"],
            reason=s["reason"],
            divergence_step=jnp.where(diverged, index, -1).astype(jnp.int32),
        )

    def epoch(params, opt_state, x, y, key, hyper: Hyper, first_step):
        num_batches = x.shape[0] // batch_size
        order_key, augment_key = jax.random.split(key)
        order = jax.random.permutation(order_key, x.shape[0])
        order = order[: num_batches * batch_size].reshape(num_batches, batch_size)

        def run(carry, idx, index):
            params, opt_state, sums = carry
            batch = x[idx]
            if augment is not None:
                batch_key = jax.random.fold_in(augment_key, index)
                batch = crop_and_flip(batch_key, batch, *augment)
            params, opt_state, s = step(params, opt_state, batch, y[idx], hyper)
            ratio = s["weight_norms"] / s["update_norms"]
            series = (s["param_grad_norms"], ratio)
            return (params, opt_state, accumulate(sums, s, index)), series

        def skip(carry, *_):
            blank = jnp.full((net.num_layers,), jnp.nan, x.dtype)
            return carry, (blank, blank)

        def body(carry, inputs):
            idx, i = inputs
            return jax.lax.cond(
                carry[2].reason != NOT_DIVERGED, skip, run, carry, idx, first_step + i
            )

        init = (params, opt_state, _zero_sums(net, x.dtype))
        indices = jnp.arange(num_batches, dtype=jnp.int32)
        (params, opt_state, sums), series = jax.lax.scan(body, init, (order, indices))
        return params, opt_state, EpochStats(sums, *series)

    return jax.jit(epoch, donate_argnums=(0, 1))


@functools.lru_cache(maxsize=8)
def _compiled_correct(net: MLP):
    return jax.jit(lambda p, x, y: jnp.sum(jnp.argmax(net.logits(p, x), -1) == y))


def accuracy(net: MLP, params, x, y, batch_size: int) -> float:
    """Accuracy of a forward pass (no inference), in chunks of ``batch_size``."""
    count = _compiled_correct(net)
    correct = sum(
        int(count(params, x[i : i + batch_size], y[i : i + batch_size]))
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def _epoch_metrics(sums: EpochSums, batch_size: int) -> dict[str, float]:
    s = jax.device_get(sums)
    n = max(int(s.batches), 1)
    out = {
        m.TRAIN_LOSS: float(s.loss) / n,
        m.TRAIN_ACCURACY: float(s.correct) / (n * batch_size),
        m.ENERGY_START: float(s.energy_start) / n,
        m.ENERGY_END: float(s.energy_end) / n,
        m.INFERENCE_STEPS: float(s.steps) / n,
        m.DIVERGED: float(int(s.reason) != NOT_DIVERGED),
        m.DIVERGENCE_STEP: float(s.divergence_step),
    }
    for i, v in enumerate(np.asarray(s.state_grad_norms) / n, start=1):
        out[m.state_grad_norm(i)] = float(v)
    for i, v in enumerate(np.asarray(s.param_grad_norms) / n, start=1):
        out[m.param_grad_norm(i)] = float(v)
    grads, weights = np.asarray(s.param_grad_norms), np.asarray(s.weight_norms)
    moves = np.asarray(s.update_norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios, rates = weights / moves, moves / grads
    for i, (ratio, rate) in enumerate(zip(ratios, rates), start=1):
        out[m.update_ratio(i)] = float(ratio)
        out[m.effective_lr(i)] = float(rate)
    return out


def batch_series(stats: EpochStats, first_step: int, every: int) -> BatchSeries:
    """The batches of one epoch whose global index is a multiple of
    ``every``, as a :class:`BatchSeries` (one host transfer per epoch)."""
    grads, ratios = jax.device_get((stats.grad_norms, stats.update_ratios))
    grads, ratios = np.asarray(grads), np.asarray(ratios)
    steps = first_step + np.arange(len(grads))
    keep = (steps % every == 0) & np.all(np.isfinite(grads), axis=1)
    values = {}
    for i in range(grads.shape[1]):
        values[m.batch(m.param_grad_norm(i + 1))] = grads[keep, i]
        values[m.batch(m.update_ratio(i + 1))] = ratios[keep, i]
    return BatchSeries(steps[keep], values)


def hyper_from(cfg: RunConfig) -> Hyper:
    t = cfg.trainer
    return Hyper(
        state_lr=jnp.asarray(t.state_lr, jnp.float32),
        beta=jnp.asarray(cfg.energy.beta, jnp.float32),
        inference_steps=jnp.asarray(t.inference_steps, jnp.int32),
        convergence_threshold=jnp.asarray(t.convergence_threshold, jnp.float32),
        divergence_factor=jnp.asarray(t.divergence_factor, jnp.float32),
    )


def build_network(cfg: RunConfig, data: Splits) -> MLP | Graph:
    """The MLP, or the graph ``cfg.model.edges`` declares, for ``data``."""
    if cfg.model.edges:
        return graph_from_config(cfg.model, data.image_shape, data.num_classes)
    sizes = (data.num_features, *cfg.model.hidden_sizes, data.num_classes)
    return MLP(tuple(int(s) for s in sizes), cfg.model.activation)


def check_fits(cfg: RunConfig, data: Splits) -> None:
    """The options that depend on the data, checked once it is loaded."""
    if cfg.trainer.batch_size > len(data.train_x):
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size} exceeds the "
            f"{len(data.train_x)} training images (dataset.train_size)."
        )


def train_and_evaluate(
    cfg: RunConfig,
    data: Splits,
    callback: Callback | None = None,
    on_batches: BatchCallback | None = None,
) -> RunResult:
    """Trains for ``cfg.trainer.epochs`` epochs, reporting to ``callback``,
    and, when ``cfg.trainer.log_every`` > 0, every that many batches to
    ``on_batches``.

    A diverged batch ends the run after its epoch (the metrics say where);
    the returned parameters are the last finite ones.
    """
    # Setup: everything that can fail on bad input fails here.
    validate(cfg)
    check_fits(cfg, data)
    t = cfg.trainer
    net = build_network(cfg, data)
    energy = make_energy(cfg.energy, net)
    tx = make_optimizer(cfg.optimizer)
    fixed_steps = t.inference_steps if t.inference_loop == "scan" else None
    epoch_fn = compiled_epoch(
        net,
        energy,
        cfg.optimizer.name,
        t.batch_size,
        t.state_optimizer,
        fixed_steps,
        (tuple(data.image_shape), cfg.dataset.augment_padding)
        if cfg.dataset.augment
        else None,
    )
    hyper = hyper_from(cfg)

    key = jax.random.key(cfg.seed)
    key, init_key = jax.random.split(key)
    params = net.init(init_key)
    opt_state = tx.init(params)
    train_x, train_y = jax.device_put(data.train_x), jax.device_put(data.train_y)
    batches_per_epoch = len(data.train_x) // t.batch_size

    # Epochs: one device call each, metrics fetched once at the end of it.
    history: list[dict[str, float]] = []
    divergence, stopped = None, False
    for epoch in range(t.epochs):
        start = time.perf_counter()
        key, epoch_key = jax.random.split(key)
        first_step = epoch * batches_per_epoch
        params, opt_state, stats = epoch_fn(
            params,
            opt_state,
            train_x,
            train_y,
            epoch_key,
            hyper,
            jnp.asarray(first_step, jnp.int32),
        )
        row = _epoch_metrics(stats.sums, t.batch_size)
        row[m.VAL_ACCURACY] = accuracy(
            net, params, data.val_x, data.val_y, t.eval_batch_size
        )
        row[m.TEST_ACCURACY] = accuracy(
            net, params, data.test_x, data.test_y, t.eval_batch_size
        )
        history.append(row)
        log.info(
            "epoch %d: loss %.4f, val %.4f, test %.4f, %.1f s",
            epoch + 1,
            row[m.TRAIN_LOSS],
            row[m.VAL_ACCURACY],
            row[m.TEST_ACCURACY],
            time.perf_counter() - start,
        )

        # Reporting: divergence ends the run; the callback may end it too.
        reason = int(stats.sums.reason)
        if reason != NOT_DIVERGED:
            divergence = (
                f"{DIVERGENCE_REASONS[reason]} at step "
                f"{int(row[m.DIVERGENCE_STEP])} (epoch {epoch + 1})"
            )
            log.warning("Run diverged: %s", divergence)
        if on_batches is not None and t.log_every > 0:
            on_batches(epoch + 1, batch_series(stats, first_step, t.log_every))
        if callback is not None and callback(epoch + 1, row):
            stopped = True
        if divergence or stopped:
            break
    return RunResult(history, params, divergence, stopped)
