"""2-D convolutions whose derivatives are convolutions in the same layout.

A conv edge maps NHWC states through an HWIO kernel with SAME padding.
Differentiated by JAX, ``lax.conv_general_dilated`` turns into convolutions
with permuted dimension labels (the kernel read as HWOI for the input's
gradient, batch and features swapped for the kernel's). XLA's CPU backend
hands a convolution to its fast library kernel only in the canonical
NHWC/HWIO layout. Outside a loop the permuted ones ran about as fast, but
inside a compiled loop, where the relaxation and the epoch run, it emitted
them as generic loop nests: twenty HPC steps on the hierarchical network of
Chen et al. 2025, Table 1 (width 1/16, batch 128) took 2.1 s as a
``lax.scan`` against 0.36 s fully unrolled, and take 0.48 s as a scan with
the derivatives below (``benchmarks/conv_loop.py``).

Here every derivative is written out as a canonical convolution, the
kernel flipped and transposed, or batch and features swapped, by explicit
transposes:

* the input's gradient (the transposed convolution, also the feedback map
  of BiPC, Eq 7) is a convolution of the output's cotangent with the
  spatially flipped kernel, its in and out features swapped;
* the kernel's gradient is a convolution of the input, read with batch and
  features swapped, with the output's cotangent as its kernel.

The transposed convolution has its own derivatives in the same way (its
input's gradient is the forward convolution), so BiPC's second derivatives
stay canonical too. Values agree with JAX's own derivatives to rounding
(``tests/test_conv.py``).

Limits: only reverse mode is defined (``jax.jvp``, ``jax.jacfwd`` and
``jax.hessian`` of a conv edge raise, as for any ``jax.custom_vjp``), and
:func:`kernel_gradient` is plain ``lax``, so a derivative of a parameter
gradient (third order, which nothing here takes) would run in JAX's
permuted layouts again, correctly but slowly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """The (before, after) padding of SAME: ``ceil(size / stride)``
    outputs, the padding split with the extra element after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _padding(spatial, window, stride) -> list[tuple[int, int]]:
    return [same_padding(n, k, stride) for n, k in zip(spatial, window)]


def conv2d(u: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """``u`` (N, H, W, C_in) through ``kernel`` (kh, kw, C_in, C_out),
    SAME padding, no bias: what ``flax.linen.Conv`` computes before its
    bias."""
    return _conv(u, kernel, stride)


def _forward(u, kernel, stride):
    pads = _padding(u.shape[1:3], kernel.shape[:2], stride)
    return lax.conv_general_dilated(
        u, kernel, (stride, stride), pads, dimension_numbers=DIMENSIONS
    )


def conv2d_transpose(
    g: jax.Array, kernel: jax.Array, stride: int, spatial: tuple[int, int]
) -> jax.Array:
    """The transpose of :func:`conv2d` with ``kernel`` for inputs of
    height and width ``spatial``, applied to ``g`` (the shape of its
    output): the gradient of <conv2d(u, kernel), g> with respect to u."""
    spatial = tuple(int(n) for n in spatial)
    expected = tuple(-(-n // stride) for n in spatial)
    if tuple(g.shape[1:3]) != expected:
        raise ValueError(
            f"conv2d_transpose: g of shape {tuple(g.shape)} cannot be the "
            f"output of a stride-{stride} convolution of {spatial[0]}x"
            f"{spatial[1]} maps, which is {expected[0]}x{expected[1]} "
            "(ceil(size / stride))."
        )
    return _transpose(g, kernel, stride, spatial)


def _transposed(g, kernel, stride, spatial):
    pads = []
    for n, k, o in zip(spatial, kernel.shape[:2], g.shape[1:3]):
        before = k - 1 - same_padding(n, k, stride)[0]
        pads.append((before, n + k - 1 - ((o - 1) * stride + 1) - before))
    flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
    return lax.conv_general_dilated(
        g,
        flipped,
        (1, 1),
        pads,
        lhs_dilation=(stride, stride),
        dimension_numbers=DIMENSIONS,
    )


def kernel_gradient(
    u: jax.Array, g: jax.Array, stride: int, window: tuple[int, int]
) -> jax.Array:
    """The gradient of <conv2d(u, kernel), g> with respect to a kernel of
    spatial size ``window``: a convolution over the batch, the input read
    as (C_in, H, W, N) and ``g`` as an (H_out, W_out, N, C_out) kernel
    dilated by the stride."""
    pads = _padding(u.shape[1:3], window, stride)
    out = lax.conv_general_dilated(
        jnp.transpose(u, (3, 1, 2, 0)),
        jnp.transpose(g, (1, 2, 0, 3)),
        (1, 1),
        pads,
        rhs_dilation=(stride, stride),
        dimension_numbers=DIMENSIONS,
    )
    # With a stride larger than the kernel, SAME adds no padding and the
    # last rows fall between windows; the convolution then also covers
    # offsets past the window: drop them.
    return jnp.transpose(out[:, : window[0], : window[1]], (1, 2, 0, 3))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(u, kernel, stride):
    return _forward(u, kernel, stride)


def _conv_fwd(u, kernel, stride):
    return _forward(u, kernel, stride), (u, kernel)


def _conv_bwd(stride, residuals, g):
    u, kernel = residuals
    return (
        _transpose(g, kernel, stride, u.shape[1:3]),
        kernel_gradient(u, g, stride, kernel.shape[:2]),
    )


_conv.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _transpose(g, kernel, stride, spatial):
    return _transposed(g, kernel, stride, spatial)


def _transpose_fwd(g, kernel, stride, spatial):
    return _transposed(g, kernel, stride, spatial), (g, kernel)


def _transpose_bwd(stride, spatial, residuals, c):
    # <conv2d_transpose(g, k), c> = <g, conv2d(c, k)>.
    g, kernel = residuals
    return (
        _conv(c, kernel, stride),
        kernel_gradient(c, g, stride, kernel.shape[:2]),
    )


_transpose.defvjp(_transpose_fwd, _transpose_bwd)
