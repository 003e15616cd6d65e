r"""State relaxation: the inference phase (Chen et al. 2025, Eq 3 and Eq 18).

Starting from a forward pass, the hidden states descend the batch sum of the
energy,

.. math:: v \leftarrow v - \eta_v \, \partial F / \partial v,

(or another optax rule, ``trainer.state_optimizer``),
for at most N steps, stopping early once the relative change of the energy
between two steps falls under the convergence threshold (the paper's Table 2
threshold, 1e-7, only makes sense relative to the energy: float32 cannot
resolve it in absolute terms). The loop is a ``jax.lax.while_loop`` whose
bound and rates are traced values, so changing them reuses the compiled
program, and nothing leaves the device inside it.

A batch diverges when its energy becomes non-finite or grows past
``divergence_factor`` times its value at the first step; the loop stops
there and keeps the last states it had.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from trainers.model import Params, States
from trainers.optimizers import scale_by_lalr, scale_by_layer_trust_ratio

_TINY = 1e-30

NOT_DIVERGED = 0
NONFINITE_INFERENCE = 1
EXPLODING_INFERENCE = 2
NONFINITE_LEARNING = 3
DIVERGENCE_REASONS = {
    NONFINITE_INFERENCE: "non-finite energy during inference",
    EXPLODING_INFERENCE: "energy exploded during inference "
    "(above divergence_factor times its start value)",
    NONFINITE_LEARNING: "non-finite energy, gradient or parameters in learning",
}


class Hyper(NamedTuple):
    """The run's traced scalars: changing them never recompiles."""

    state_lr: jax.Array
    beta: jax.Array
    inference_steps: jax.Array
    convergence_threshold: jax.Array
    divergence_factor: jax.Array


class Relaxed(NamedTuple):
    """Result of inference on one batch.

    ``energy_start`` is the batch-summed energy at the forward-pass states
    (NaN if no step ran); ``state_grad_norms`` has one entry per hidden node:
    the per-sample norm of dF/dv_i, averaged over the batch and the steps.
    """

    states: States
    energy_start: jax.Array
    steps: jax.Array
    state_grad_norms: jax.Array
    reason: jax.Array


def state_optimizer(name: str, state_lr: jax.Array) -> optax.GradientTransformation:
    """The state update as an optax transformation, built while tracing so
    that ``state_lr`` stays a traced value.

    ``sgd`` is the paper's v <- v - eta_v dF/dv (Eq 3 and 11); ``adam``
    rescales each state coordinate; ``lars`` moves node i by
    eta_v ||v_i|| / ||dF/dv_i|| times its gradient (You et al. 2017 with nodes
    for layers, trust coefficient 1); ``lalr`` moves every node by eta_v times
    the harmonic mean of the nodes' gradient norms (Eq 13 to 16 with nodes
    for layers). The norms of ``lars`` and ``lalr`` span the whole batch, so
    they couple the samples.
    """
    if name == "sgd":
        return optax.sgd(state_lr)
    if name == "adam":
        return optax.adam(state_lr)
    if name == "lars":
        return optax.chain(
            scale_by_layer_trust_ratio(), optax.scale_by_learning_rate(state_lr)
        )
    if name == "lalr":
        return optax.chain(scale_by_lalr(), optax.scale_by_learning_rate(state_lr))
    raise ValueError(f"trainer.state_optimizer={name!r} is not supported.")


class _Carry(NamedTuple):
    step: jax.Array
    states: States
    opt_state: optax.OptState
    energy_prev: jax.Array
    energy_start: jax.Array
    grad_norm_sum: jax.Array
    converged: jax.Array
    reason: jax.Array


def relax(
    energy,
    params: Params,
    states: States,
    x,
    y,
    hyper: Hyper,
    optimizer: str = "sgd",
    fixed_steps: int | None = None,
) -> Relaxed:
    """Runs inference on one batch; ``energy`` returns per-sample values and
    ``optimizer`` names the state update (:func:`state_optimizer`).

    With ``fixed_steps`` the loop is a ``lax.scan`` of exactly that many
    steps (a static count, so a new count compiles anew; the threshold and
    ``hyper.inference_steps`` are ignored, divergence still freezes the
    states); otherwise a ``lax.while_loop`` bounded by the traced
    ``hyper.inference_steps``.
    """
    tx = state_optimizer(optimizer, hyper.state_lr)
    total = jax.value_and_grad(lambda s: jnp.sum(energy(params, s, x, y, hyper.beta)))

    def cond(c: _Carry):
        running = (c.step < hyper.inference_steps) & ~c.converged
        return running & (c.reason == NOT_DIVERGED)

    def body(c: _Carry) -> _Carry:
        f, grads = total(c.states)
        f_start = jnp.where(c.step == 0, f, c.energy_start)
        change = jnp.abs(f - c.energy_prev) / jnp.maximum(jnp.abs(c.energy_prev), _TINY)
        reason = jnp.where(
            ~jnp.isfinite(f),
            NONFINITE_INFERENCE,
            jnp.where(
                f > hyper.divergence_factor * jnp.abs(f_start),
                EXPLODING_INFERENCE,
                NOT_DIVERGED,
            ),
        )
        norms = jnp.stack(
            [
                jnp.mean(jnp.linalg.norm(g.reshape(g.shape[0], -1), axis=-1))
                for g in grads
            ]
        )
        ok = reason == NOT_DIVERGED
        updates, opt_state = tx.update(grads, c.opt_state, c.states)
        moved = optax.apply_updates(c.states, updates)
        keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
        return _Carry(
            step=c.step + ok.astype(c.step.dtype),
            states=jax.tree.map(keep, moved, c.states),
            opt_state=jax.tree.map(keep, opt_state, c.opt_state),
            energy_prev=f,
            energy_start=f_start,
            grad_norm_sum=c.grad_norm_sum + jnp.where(ok, norms, 0.0),
            converged=change < hyper.convergence_threshold,
            reason=reason.astype(c.reason.dtype),
        )

    dtype = states[0].dtype
    init = _Carry(
        step=jnp.zeros((), jnp.int32),
        states=states,
        opt_state=tx.init(states),
        energy_prev=jnp.array(jnp.inf, dtype),
        energy_start=jnp.array(jnp.nan, dtype),
        grad_norm_sum=jnp.zeros((len(states),), dtype),
        converged=jnp.array(False),
        reason=jnp.array(NOT_DIVERGED, jnp.int32),
    )
    if fixed_steps is None:
        out = jax.lax.while_loop(cond, body, init)
    else:
        out, _ = jax.lax.scan(lambda c, _: (body(c), None), init, length=fixed_steps)
    return Relaxed(
        states=out.states,
        energy_start=out.energy_start,
        steps=out.step,
        state_grad_norms=out.grad_norm_sum / jnp.maximum(out.step, 1),
        reason=out.reason,
    )
