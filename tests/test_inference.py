"""State relaxation: convergence, the threshold, divergence and the state
update rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainers.energies import HPC
from trainers.inference import EXPLODING_INFERENCE, NOT_DIVERGED, Hyper, relax
from trainers.model import MLP
from trainers.optimizers import layer_norms

KEY = jax.random.key(1)


def _problem():
    net = MLP((5, 8, 6, 3), "tanh")
    k1, k2 = jax.random.split(KEY)
    params = net.init(k1)
    x = jax.random.normal(k2, (4, 5))
    y = jnp.array([0, 1, 2, 0])
    return HPC(net, "mse"), params, net.forward(params, x)[0], x, y


def _hyper(steps=50, state_lr=0.1, threshold=0.0, factor=1e3):
    return Hyper(
        jnp.float32(state_lr),
        jnp.float32(1.0),
        jnp.int32(steps),
        jnp.float32(threshold),
        jnp.float32(factor),
    )


def _energy(energy, params, states, x, y):
    return float(jnp.sum(energy(params, states, x, y, 1.0)))


def test_relaxation_lowers_the_energy_and_counts_its_steps():
    energy, params, states, x, y = _problem()
    r = relax(energy, params, states, x, y, _hyper(steps=50))
    assert int(r.steps) == 50 and int(r.reason) == NOT_DIVERGED
    assert _energy(energy, params, r.states, x, y) < 0.5 * float(r.energy_start)
    assert float(r.energy_start) == pytest.approx(_energy(energy, params, states, x, y))


def test_threshold_stops_inference_once_the_energy_settles():
    energy, params, states, x, y = _problem()
    r = relax(energy, params, states, x, y, _hyper(steps=10_000, threshold=1e-4))
    assert 2 < int(r.steps) < 10_000


def test_sgd_state_update_is_one_gradient_step():
    energy, params, states, x, y = _problem()
    r = relax(energy, params, states, x, y, _hyper(steps=1, state_lr=0.1))
    grads = jax.grad(lambda s: jnp.sum(energy(params, s, x, y, 1.0)))(states)
    for v, v0, g in zip(r.states, states, grads):
        np.testing.assert_allclose(v, v0 - 0.1 * g, rtol=1e-5, atol=1e-7)


def test_lalr_state_update_moves_every_node_equally():
    energy, params, states, x, y = _problem()
    # Away from the forward pass, so that every node has a gradient.
    states = tuple(v + 0.3 for v in states)
    r = relax(energy, params, states, x, y, _hyper(steps=1, state_lr=0.1), "lalr")
    moved = layer_norms(jax.tree.map(lambda a, b: a - b, r.states, states))
    np.testing.assert_allclose(moved[0], moved[1], rtol=1e-5)


def test_lars_state_update_moves_every_node_by_its_own_fraction():
    energy, params, states, x, y = _problem()
    states = tuple(v + 0.3 for v in states)
    r = relax(energy, params, states, x, y, _hyper(steps=1, state_lr=0.1), "lars")
    moved = layer_norms(jax.tree.map(lambda a, b: a - b, r.states, states))
    np.testing.assert_allclose(moved, 0.1 * layer_norms(states), rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "lars", "lalr"])
def test_other_state_optimizers_also_lower_the_energy(optimizer):
    energy, params, states, x, y = _problem()
    r = relax(energy, params, states, x, y, _hyper(steps=100, state_lr=0.01), optimizer)
    assert _energy(energy, params, r.states, x, y) < float(r.energy_start)


def test_huge_state_rate_stops_with_a_reason_and_finite_states():
    energy, params, states, x, y = _problem()
    r = relax(energy, params, states, x, y, _hyper(steps=100, state_lr=1e4))
    assert int(r.reason) == EXPLODING_INFERENCE
    assert int(r.steps) < 100
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in r.states)


def test_fixed_scan_matches_the_while_loop_without_a_threshold():
    energy, params, states, x, y = _problem()
    looped = relax(energy, params, states, x, y, _hyper(steps=30))
    scanned = relax(energy, params, states, x, y, _hyper(steps=999), fixed_steps=30)
    assert int(scanned.steps) == 30
    for a, b in zip(looped.states, scanned.states):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        looped.state_grad_norms, scanned.state_grad_norms, rtol=1e-5
    )
