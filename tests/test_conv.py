"""Convolutions with hand-written derivatives (``trainers.conv``) against
JAX's own differentiation of ``lax.conv_general_dilated``, and the layout
of the convolutions a compiled relaxation loop ends up running."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from trainers.config import EnergyConfig
from trainers.conv import DIMENSIONS, conv2d, conv2d_transpose
from trainers.energies import make_energy
from trainers.graph import Edge, Node, Op, build

# (height, width, C_in, C_out, kernel, stride)
SHAPES = [
    (28, 28, 3, 5, 3, 1),
    (7, 9, 4, 6, 3, 2),
    (8, 8, 2, 3, 1, 1),
    (9, 6, 2, 3, 3, 2),
    (10, 10, 2, 2, 2, 2),
    (5, 6, 1, 2, 5, 1),
    (11, 7, 3, 2, 1, 3),
]


def _reference(u, kernel, stride):
    return lax.conv_general_dilated(
        u, kernel, (stride, stride), "SAME", dimension_numbers=DIMENSIONS
    )


def _inputs(h, w, c_in, c_out, k, seed=0):
    ku, kk = jax.random.split(jax.random.key(seed))
    u = jax.random.normal(ku, (3, h, w, c_in))
    kernel = jax.random.normal(kk, (k, k, c_in, c_out))
    return u, kernel


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h, w, c_in, c_out, k, stride", SHAPES)
def test_values_and_gradients_match_jax(h, w, c_in, c_out, k, stride):
    u, kernel = _inputs(h, w, c_in, c_out, k)
    out, vjp = jax.vjp(lambda a, b: conv2d(a, b, stride), u, kernel)
    ref, ref_vjp = jax.vjp(lambda a, b: _reference(a, b, stride), u, kernel)
    assert out.shape == ref.shape
    _close(out, ref)
    g = jax.random.normal(jax.random.key(7), out.shape)
    for ours, theirs in zip(vjp(g), ref_vjp(g)):
        _close(ours, theirs)


@pytest.mark.parametrize("h, w, c_in, c_out, k, stride", SHAPES)
def test_the_transpose_and_its_gradients_match_jax(h, w, c_in, c_out, k, stride):
    u, kernel = _inputs(h, w, c_in, c_out, k, seed=1)
    g = jax.random.normal(jax.random.key(3), _reference(u, kernel, stride).shape)
    c = jax.random.normal(jax.random.key(4), u.shape)

    def ref_transpose(g, kernel):
        _, vjp = jax.vjp(lambda a: _reference(a, kernel, stride), u)
        return vjp(g)[0]

    ours = conv2d_transpose(g, kernel, stride, (h, w))
    _close(ours, ref_transpose(g, kernel))

    # Second derivatives, as BiPC takes them through its feedback (Eq 7).
    def loss(transpose):
        return lambda g, kernel: jnp.sum(jnp.tanh(transpose(g, kernel)) * c)

    grads = jax.grad(
        loss(lambda g, k_: conv2d_transpose(g, k_, stride, (h, w))), (0, 1)
    )(g, kernel)
    ref_grads = jax.grad(loss(ref_transpose), (0, 1))(g, kernel)
    for ours, theirs in zip(grads, ref_grads):
        _close(ours, theirs)


def test_a_conv_op_computes_what_flax_conv_does():
    u, _ = _inputs(9, 9, 3, 4, 3)
    module = nn.Conv(4, (3, 3), (2, 2))
    params = module.init(jax.random.key(5), u)["params"]
    _close(
        Op("conv", features=4, stride=2).apply(params, u),
        module.apply({"params": params}, u),
    )


def _conv_net():
    nodes = [Node("x"), Node("h1"), Node("h2"), Node("out")]
    edges = [
        Edge("c1", "x", "h1", (Op("conv", features=4), Op("maxpool"))),
        Edge("c2", "h1", "h2", (Op("conv", features=6),)),
        Edge("fc", "h2", "out", (Op("flatten"), Op("dense", features=3))),
    ]
    return build(nodes, edges, "x", "out", (8, 8, 2))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU layouts")
@pytest.mark.parametrize("energy_name", ["hpc", "bipc"])
def test_a_compiled_relaxation_loop_runs_only_canonical_convolutions(energy_name):
    """Inside a loop XLA:CPU ran non-canonical convolutions as slow loop
    nests: every convolution the compiled loop holds must read NHWC inputs
    with HWIO kernels."""
    net = _conv_net()
    params = net.init(jax.random.key(0))
    energy = make_energy(EnergyConfig(name=energy_name, loss="mse"), net)
    x = jax.random.normal(jax.random.key(1), (4, 128))
    y = jnp.arange(4) % 3
    states = net.forward(params, x)[0]

    def relax(params, states):
        def step(s, _):
            g = jax.grad(lambda s: energy(params, s, x, y, 1.0).sum())(s)
            return jax.tree.map(lambda v, d: v - 0.1 * d, s, g), None

        return lax.scan(step, states, None, length=3)[0]

    text = jax.jit(relax).lower(params, states).compile().as_text()
    labels = re.findall(r" convolution\(.*?dim_labels=(\S+?),", text)
    assert labels, "no convolution found in the compiled program"
    assert set(labels) == {"b01f_01io->b01f"}, labels
