"""Energies against by-hand computations and the paper's closed forms."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from trainers.energies import HPC, Backprop, BiPC
from trainers.inference import Hyper, relax
from trainers.model import MLP

KEY = jax.random.key(0)


def _setup(sizes=(3, 4, 3, 2), activation="tanh", batch=5):
    net = MLP(sizes, activation)
    k1, k2, k3 = jax.random.split(KEY, 3)
    params = net.init(k1)
    x = jax.random.normal(k2, (batch, sizes[0]))
    states = tuple(
        jax.random.normal(k, (batch, d))
        for k, d in zip(jax.random.split(k3, len(sizes) - 2), sizes[1:-1])
    )
    y = jnp.arange(batch) % sizes[-1]
    return net, params, x, states, y


def _np(params):
    return {
        k: {n: np.asarray(a, np.float64) for n, a in v.items()}
        for k, v in params.items()
    }


def test_hpc_energy_by_hand():
    net, params, x, (v1, v2), y = _setup()
    p = _np(params)
    x, v1, v2 = (np.asarray(a, np.float64) for a in (x, v1, v2))
    e1 = v1 - np.tanh(x @ p["layer_0"]["kernel"] + p["layer_0"]["bias"])
    e2 = v2 - np.tanh(v1 @ p["layer_1"]["kernel"] + p["layer_1"]["bias"])
    logits = v2 @ p["layer_2"]["kernel"] + p["layer_2"]["bias"]
    target = np.eye(2)[np.asarray(y)]
    beta = 0.7
    expected = 0.5 * (e1**2).sum(1) + 0.5 * (e2**2).sum(1)
    expected += beta * 0.5 * ((target - logits) ** 2).sum(1)
    got = HPC(net, "mse")(params, (jnp.asarray(v1), jnp.asarray(v2)), x, y, beta)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("form", ["eq10", "eq9"])
@pytest.mark.parametrize("input_feedback", ["none", "reconstruction"])
def test_bipc_energy_by_hand(form, input_feedback):
    net, params, x, (v1, v2), y = _setup()
    p = _np(params)
    x, v1, v2 = (np.asarray(a, np.float64) for a in (x, v1, v2))
    W1, W2 = p["layer_0"]["kernel"], p["layer_1"]["kernel"]
    ef1 = v1 - np.tanh(x @ W1 + p["layer_0"]["bias"])
    ef2 = v2 - np.tanh(v1 @ W2 + p["layer_1"]["bias"])
    eb1 = v1 - np.tanh(v2 @ W2.T)  # feedback from node 2, transposed W2
    logits = v2 @ p["layer_2"]["kernel"] + p["layer_2"]["bias"]
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -log_softmax[np.arange(len(y)), np.asarray(y)]
    beta = 0.3
    if form == "eq10":
        internal = 0.5 * ((ef1 + eb1) ** 2).sum(1)
    else:
        internal = 0.5 * (ef1**2).sum(1) + 0.5 * (eb1**2).sum(1)
    internal += 0.5 * (ef2**2).sum(1)  # the top node has no state above it
    external = ce
    if input_feedback == "reconstruction":
        external = external + 0.5 * ((x - v1 @ W1.T) ** 2).sum(1)
    energy = BiPC(net, "cross_entropy", form, input_feedback)
    got = energy(params, (jnp.asarray(v1), jnp.asarray(v2)), x, y, beta)
    np.testing.assert_allclose(got, internal + beta * external, rtol=1e-5)


def test_hpc_state_gradient_is_eq3():
    """dF/dv_i = eps_i - (dg_{i+1}/dv_i)^T eps_{i+1} (Chen et al. 2025, Eq 3),
    with eps_{L+1} = beta (y - y_hat) for the squared-error C."""
    net, params, x, states, y = _setup(sizes=(3, 5, 4, 3, 2))
    beta = 0.5
    energy = HPC(net, "mse")
    grads = jax.grad(lambda s: jnp.sum(energy(params, s, x, y, beta)))(states)

    below = (x,) + states[:-1]
    pre = [net.edge(params, i, u) for i, u in enumerate(below)]
    eps = [v - jnp.tanh(u) for v, u in zip(states, pre)]
    logits = net.predict(params, 3, states[-1])
    eps.append(beta * (jax.nn.one_hot(y, 2) - logits))
    slopes = [1 - jnp.tanh(u) ** 2 for u in pre] + [jnp.ones_like(logits)]
    for i, g in enumerate(grads):
        kernel = params[f"layer_{i + 1}"]["kernel"]
        expected = eps[i] - (eps[i + 1] * slopes[i + 1]) @ kernel.T
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)


def test_hpc_parameter_gradient_is_eq4():
    """dF/dW_i = -mean_batch v_{i-1}^T (eps_i f'(u_i)) (Chen et al. 2025, Eq 4)."""
    net, params, x, states, y = _setup()
    energy = HPC(net, "mse")
    grads = jax.grad(lambda p: jnp.mean(energy(p, states, x, y, 1.0)))(params)
    below = (x,) + states[:-1]
    for i, (v, u) in enumerate(zip(states, below)):
        pre = net.edge(params, i, u)
        delta = (v - jnp.tanh(pre)) * (1 - jnp.tanh(pre) ** 2)
        expected = -(u.T @ delta) / x.shape[0]
        np.testing.assert_allclose(
            grads[f"layer_{i}"]["kernel"], expected, rtol=1e-5, atol=1e-7
        )


def _cosine(a, b):
    a, b = jax.flatten_util.ravel_pytree(a)[0], jax.flatten_util.ravel_pytree(b)[0]
    return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def _relaxed_grads(energy, net, params, x, y, beta, steps=2000, state_lr=0.1):
    states, _ = net.forward(params, x)
    hyper = Hyper(
        state_lr=jnp.float32(state_lr),
        beta=jnp.float32(beta),
        inference_steps=jnp.int32(steps),
        convergence_threshold=jnp.float32(0.0),
        divergence_factor=jnp.float32(1e6),
    )
    relaxed = relax(energy, params, states, x, y, hyper)
    grads = jax.grad(lambda p: jnp.mean(energy(p, relaxed.states, x, y, beta)))(params)
    return relaxed, grads


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_pc_gradients_approach_backprop_as_the_output_error_shrinks(loss):
    """With beta -> 0 the errors at equilibrium shrink and dF/dtheta / beta
    approaches the gradient of C (Whittington and Bogacz 2017)."""
    net, params, x, _, y = _setup(sizes=(6, 10, 8, 4), batch=8)
    backprop = jax.grad(lambda p: jnp.mean(Backprop(net, loss)(p, (), x, y, 1.0)))(
        params
    )
    cosines, ratios = [], []
    for beta in (1.0, 0.01):
        _, grads = _relaxed_grads(HPC(net, loss), net, params, x, y, beta)
        scaled = jax.tree.map(lambda g, b=beta: g / b, grads)
        cosines.append(_cosine(scaled, backprop))
        ratios.append(_norm(scaled) / _norm(backprop))
    assert cosines[1] > 0.99
    assert cosines[1] >= cosines[0] - 1e-6
    assert ratios[1] == pytest.approx(1.0, abs=0.05)


def _norm(tree):
    return float(jnp.linalg.norm(jax.flatten_util.ravel_pytree(tree)[0]))


def test_bipc_linear_nodes_settle_at_the_mean_of_their_predictions():
    """Eq 10, linear, beta = 0: the minimum sets every combined error to zero,
    so each node sits at the mean of its forward and feedback predictions,
    the top one (no feedback) at its forward prediction. Solved directly."""
    net, params, x, _, y = _setup(sizes=(3, 4, 4, 2), activation="identity", batch=3)
    # A small W2 keeps 2I - W2 W2^T well conditioned, so descent converges.
    params["layer_1"]["kernel"] = 0.5 * params["layer_1"]["kernel"]
    energy = BiPC(net, "cross_entropy", "eq10", "none")
    relaxed, _ = _relaxed_grads(
        energy, net, params, x, y, beta=0.0, steps=5000, state_lr=0.05
    )
    W1, b1 = params["layer_0"]["kernel"], params["layer_0"]["bias"]
    W2, b2 = params["layer_1"]["kernel"], params["layer_1"]["bias"]
    # v2 = v1 W2 + b2 and v1 = (x W1 + b1 + v2 W2^T) / 2, eliminated for v1.
    eye = jnp.eye(W2.shape[0])
    v1 = jnp.linalg.solve((2 * eye - W2 @ W2.T).T, (x @ W1 + b1 + b2 @ W2.T).T).T
    v2 = v1 @ W2 + b2
    np.testing.assert_allclose(relaxed.states[0], v1, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(relaxed.states[1], v2, rtol=1e-3, atol=1e-4)


def test_bipc_feedback_uses_the_forward_weight_and_sums_both_gradients():
    """One parameter W_2 serves the forward prediction of node 2 and the
    feedback prediction of node 1; its gradient is the sum of the two."""
    net, params, x, states, y = _setup()
    energy = BiPC(net, "cross_entropy", "eq10", "none")
    tied = jax.grad(lambda p: jnp.sum(energy(p, states, x, y, 1.0)))(params)

    class Untied(MLP):
        """The same network with a separate copy of W_2 for the feedback."""

        def feedback(self, params, i, v_above):
            if i == 1:
                return self.act(v_above @ params["feedback_1"].T)
            return super().feedback(params, i, v_above)

    untied_net = Untied(net.sizes, net.activation)
    untied = dict(params, feedback_1=params["layer_1"]["kernel"])
    energy_untied = BiPC(untied_net, "cross_entropy", "eq10", "none")
    parts = jax.grad(lambda p: jnp.sum(energy_untied(p, states, x, y, 1.0)))(untied)
    np.testing.assert_allclose(
        tied["layer_1"]["kernel"],
        parts["layer_1"]["kernel"] + parts["feedback_1"],
        rtol=1e-5,
        atol=1e-6,
    )
    assert float(jnp.linalg.norm(parts["feedback_1"])) > 0
