"""Equilibrium propagation: its energy by hand and its gradient estimate
against the gradient of the loss at the free equilibrium."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from trainers.energies import EP, output_loss
from trainers.inference import Hyper
from trainers.model import MLP
from trainers.train import ep_gradient

KEY = jax.random.key(3)


def _setup(sizes=(4, 6, 5, 3), batch=6):
    net = MLP(sizes, "tanh")
    k1, k2 = jax.random.split(KEY)
    params = net.init(k1)
    x = jax.random.uniform(k2, (batch, sizes[0]))
    y = jnp.arange(batch) % sizes[-1]
    return net, params, x, y


def _hyper(beta, steps=3000, state_lr=0.05):
    return Hyper(
        state_lr=jnp.float32(state_lr),
        beta=jnp.float32(beta),
        inference_steps=jnp.int32(steps),
        convergence_threshold=jnp.float32(0.0),
        divergence_factor=jnp.float32(1e6),
    )


def test_ep_energy_by_hand():
    net, params, x, y = _setup()
    energy = EP(net, "mse")
    states = energy.init_states(params, x)
    p = {
        k: {n: np.asarray(a, np.float64) for n, a in v.items()}
        for k, v in params.items()
    }
    nodes = [np.asarray(x, np.float64)] + [np.asarray(s, np.float64) for s in states]
    rho = [nodes[0]] + [np.tanh(v) for v in nodes[1:]]
    expected = sum(0.5 * (v**2).sum(1) for v in nodes[1:])
    for i in range(3):
        W, b = p[f"layer_{i}"]["kernel"], p[f"layer_{i}"]["bias"]
        expected -= ((rho[i] @ W) * rho[i + 1]).sum(1) + (b * rho[i + 1]).sum(1)
    target = np.eye(3)[np.asarray(y)]
    expected += 0.2 * 0.5 * ((target - nodes[-1]) ** 2).sum(1)
    np.testing.assert_allclose(energy(params, states, x, y, 0.2), expected, rtol=1e-5)


def test_ep_forward_states_end_in_the_mlp_logits():
    net, params, x, _ = _setup()
    states = EP(net).init_states(params, x)
    np.testing.assert_allclose(states[-1], net.logits(params, x), rtol=1e-6)


def _cosine(a, b):
    a, b = jax.flatten_util.ravel_pytree(a)[0], jax.flatten_util.ravel_pytree(b)[0]
    return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def _estimates(energy, params, x, y, betas):
    return [
        ep_gradient(energy, params, energy.init_states(params, x), x, y, _hyper(b), {})
        for b in betas
    ]


@pytest.mark.parametrize("symmetric, floor", [(True, 0.95), (False, 0.95)])
def test_ep_estimate_approaches_the_loss_gradient_as_beta_shrinks(symmetric, floor):
    net, params, x, y = _setup()
    energy = EP(net, "mse", symmetric)
    # relax() runs a while_loop, which reverse-mode autodiff cannot enter;
    # unroll the same updates with fori_loop for the reference gradient.
    true_grad = jax.grad(_unrolled_loss(energy, x, y))(params)
    cosines = []
    for grads, _, r in _estimates(energy, params, x, y, (0.5, 0.05, 0.005)):
        assert int(r.reason) == 0
        cosines.append(_cosine(grads, true_grad))
    assert cosines[-1] > floor
    assert cosines[-1] >= max(cosines[:-1])


def test_symmetric_nudging_is_closer_than_one_sided_at_the_same_beta():
    net, params, x, y = _setup()
    true_grad = jax.grad(_unrolled_loss(EP(net, "mse"), x, y))(params)
    ((sym, _, _),) = _estimates(EP(net, "mse", True), params, x, y, (0.05,))
    ((one, _, _),) = _estimates(EP(net, "mse", False), params, x, y, (0.05,))
    assert _cosine(sym, true_grad) > _cosine(one, true_grad) + 0.05


def _unrolled_loss(energy, x, y, steps=3000, state_lr=0.05):
    def loss(params):
        states = energy.init_states(params, x)
        grad = jax.grad(lambda s: jnp.sum(energy(params, s, x, y, 0.0)))

        def body(_, s):
            return jax.tree.map(lambda v, g: v - state_lr * g, s, grad(s))

        states = jax.lax.fori_loop(0, steps, body, states)
        return jnp.mean(output_loss("mse", states[-1], y))

    return loss
