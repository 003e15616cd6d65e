"""LALR and per-layer LARS against their formulas on hand-made pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from trainers.config import OptimizerConfig
from trainers.optimizers import (
    layer_norms,
    make_optimizer,
    scale_by_lalr,
    scale_by_layer_trust_ratio,
)


def _grads():
    # Three layers with very different gradient norms: 5, 0.5 and 13.
    return {
        "layer_0": {"kernel": jnp.array([[3.0, 4.0]]), "bias": jnp.array([0.0])},
        "layer_1": {"kernel": jnp.array([[0.3], [0.4]]), "bias": jnp.array([0.0])},
        "layer_2": {"kernel": jnp.array([[5.0]]), "bias": jnp.array([12.0])},
    }


def _step_lengths(updates):
    return np.asarray(layer_norms(updates))


def test_layer_norms_group_weight_with_bias():
    np.testing.assert_allclose(_step_lengths(_grads()), [5.0, 0.5, 13.0], rtol=1e-6)


def test_lalr_moves_every_layer_by_eta_times_harmonic_mean():
    eta = 0.1
    norms = np.array([5.0, 0.5, 13.0])
    harmonic = len(norms) / np.sum(1.0 / norms)
    tx = optax.chain(scale_by_lalr(), optax.scale_by_learning_rate(eta))
    params = jax.tree.map(jnp.ones_like, _grads())
    updates, _ = tx.update(_grads(), tx.init(params), params)
    np.testing.assert_allclose(_step_lengths(updates), eta * harmonic, rtol=1e-6)
    # The direction within each layer is the gradient's, reversed.
    g, u = _grads()["layer_0"]["kernel"], updates["layer_0"]["kernel"]
    cosine = jnp.vdot(g, u) / (jnp.linalg.norm(g) * jnp.linalg.norm(u))
    assert float(cosine) == pytest.approx(-1.0, abs=1e-6)


def test_lalr_leaves_a_zero_gradient_layer_out_and_finite():
    grads = _grads()
    grads["layer_1"] = jax.tree.map(jnp.zeros_like, grads["layer_1"])
    harmonic = 2 / (1 / 5.0 + 1 / 13.0)
    updates, _ = scale_by_lalr().update(grads, optax.EmptyState())
    lengths = _step_lengths(updates)
    assert np.all(np.isfinite(lengths))
    np.testing.assert_allclose(lengths, [harmonic, 0.0, harmonic], rtol=1e-6)


def test_lalr_with_every_gradient_zero_gives_a_zero_update():
    grads = jax.tree.map(jnp.zeros_like, _grads())
    updates, _ = scale_by_lalr().update(grads, optax.EmptyState())
    assert np.all(_step_lengths(updates) == 0.0)


def test_layer_trust_ratio_moves_each_layer_by_a_fraction_of_its_norm():
    params = {
        "layer_0": {"kernel": jnp.array([[6.0, 8.0]]), "bias": jnp.array([0.0])},
        "layer_1": {"kernel": jnp.array([[1.0], [0.0]]), "bias": jnp.array([0.0])},
        "layer_2": {"kernel": jnp.zeros((1, 1)), "bias": jnp.zeros((1,))},
    }
    tx = scale_by_layer_trust_ratio(trust_coefficient=0.5)
    updates, _ = tx.update(_grads(), tx.init(params), params)
    # ||u_i|| = 0.5 ||w_i|| where the weight is non-zero; ratio 1 otherwise.
    np.testing.assert_allclose(_step_lengths(updates), [5.0, 0.5, 6.5], rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam", "lars", "lalr"])
def test_learning_rate_is_state_not_program(name):
    grads, params = _grads(), jax.tree.map(jnp.ones_like, _grads())
    slow = make_optimizer(OptimizerConfig(name=name, lr=0.01))
    fast = make_optimizer(OptimizerConfig(name=name, lr=0.02))
    u_slow, _ = slow.update(grads, slow.init(params), params)
    # The update function of one instance honours the rate in another's state.
    u_fast, _ = slow.update(grads, fast.init(params), params)
    np.testing.assert_allclose(
        _step_lengths(u_fast), 2 * _step_lengths(u_slow), rtol=1e-5
    )
