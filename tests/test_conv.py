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
    (9, 9, 2, 3, 2, 2),  # an even kernel with padding
    (7, 7, 2, 2, 4, 1),
    (1, 1, 3, 2, 3, 1),  # 1x1 maps
    (1, 1, 3, 2, 3, 2),
    (3, 3, 2, 2, 5, 2),  # a kernel larger than the image
    (8, 5, 2, 3, 3, 4),  # a stride larger than the kernel
]


@pytest.fixture(autouse=True)
def _full_precision():
    """Full float32 products on every backend (a GPU may default to TF32)."""
    with jax.default_matmul_precision("highest"):
        yield


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


def test_a_non_square_kernel_matches_jax():
    u = jax.random.normal(jax.random.key(8), (2, 7, 6, 3))
    kernel = jax.random.normal(jax.random.key(9), (3, 1, 3, 4))
    out, vjp = jax.vjp(lambda a, b: conv2d(a, b, 2), u, kernel)
    ref, ref_vjp = jax.vjp(lambda a, b: _reference(a, b, 2), u, kernel)
    _close(out, ref)
    g = jax.random.normal(jax.random.key(10), out.shape)
    for ours, theirs in zip(vjp(g), ref_vjp(g)):
        _close(ours, theirs)


def test_the_transpose_refuses_a_cotangent_of_the_wrong_size():
    kernel = jnp.ones((3, 3, 2, 4))
    with pytest.raises(ValueError, match=r"9x9 maps, which is 5x5"):
        conv2d_transpose(jnp.ones((2, 3, 3, 4)), kernel, 2, (9, 9))


def _flax_conv(stride, seed=5):
    u, _ = _inputs(9, 9, 3, 4, 3)
    module = nn.Conv(4, (3, 3), (stride, stride))
    params = module.init(jax.random.key(seed), u)["params"]
    # Flax starts biases at zero: draw one, so that the bias is tested too.
    params = {**params, "bias": jax.random.normal(jax.random.key(6), (4,))}
    return u, module, params


def test_a_conv_op_computes_what_flax_conv_does():
    u, module, params = _flax_conv(stride=2)
    op = Op("conv", features=4, stride=2)
    out, vjp = jax.vjp(op.apply, params, u)
    ref, ref_vjp = jax.vjp(lambda p, a: module.apply({"params": p}, a), params, u)
    _close(out, ref)
    g = jax.random.normal(jax.random.key(7), out.shape)
    (p_grad, u_grad), (p_ref, u_ref) = vjp(g), ref_vjp(g)
    _close(u_grad, u_ref)
    for name in ("kernel", "bias"):
        _close(p_grad[name], p_ref[name])


def test_a_conv_op_promotes_dtypes_as_flax_does():
    u, module, params = _flax_conv(stride=1)
    u = u.astype(jnp.bfloat16)
    op = Op("conv", features=4)
    out, vjp = jax.vjp(op.apply, params, u)
    ref = module.apply({"params": params}, u)
    assert out.dtype == ref.dtype == jnp.float32
    _close(out, ref)
    p_grad, u_grad = vjp(jnp.ones_like(out))
    assert u_grad.dtype == jnp.bfloat16
    assert p_grad["kernel"].dtype == p_grad["bias"].dtype == jnp.float32


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
def test_a_compiled_training_loop_runs_only_canonical_convolutions(energy_name):
    """Inside a loop XLA:CPU ran non-canonical convolutions as slow loop
    nests: every convolution the compiled loop holds must read NHWC inputs
    with HWIO kernels."""
    net = _conv_net()
    params = net.init(jax.random.key(0))
    energy = make_energy(EnergyConfig(name=energy_name, loss="mse"), net)
    x = jax.random.normal(jax.random.key(1), (4, 128))
    y = jnp.arange(4) % 3
    states = net.forward(params, x)[0]

    def train(params, states):
        """Inference steps, each followed by a learning step, in one loop:
        the loop holds the states' and the parameters' gradients."""

        def step(carry, _):
            p, s = carry
            gp, gs = jax.grad(
                lambda p, s: energy(p, s, x, y, 1.0).sum(), argnums=(0, 1)
            )(p, s)
            move = lambda a, d: a - 0.1 * d  # noqa: E731
            return (jax.tree.map(move, p, gp), jax.tree.map(move, s, gs)), None

        return lax.scan(step, (params, states), None, length=3)[0]

    text = jax.jit(train).lower(params, states).compile().as_text()
    labels = re.findall(r" convolution\(.*?dim_labels=([^,\s]+)", text)
    assert labels, "no convolution found in the compiled program"
    assert len(labels) == text.count(" convolution("), "a convolution was missed"
    assert set(labels) == {"b01f_01io->b01f"}, labels
