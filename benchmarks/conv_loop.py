"""Where the hierarchical network's time went: one relaxation step of HPC
(Chen et al. 2025, Eq 2) on Table 1's convolutional network at width 1/16,
batch 128, alone and inside loops, with the conv edges differentiated two
ways: by JAX (``lax.conv_general_dilated`` and its own derivatives) and as
the platform does (``trainers.conv``, every derivative a canonical
NHWC/HWIO convolution).

    .venv/bin/python benchmarks/conv_loop.py [--width 0.0625] [--steps 20]

Prints the milliseconds of: the forward pass; dF/dv once; ``--steps``
plain steps v <- v - eta_v dF/dv as a ``lax.scan`` (a loop in the compiled
program), as a fully unrolled scan (no loop), and as a Python loop of one
jitted step each. The parameters are arguments of every compiled program,
as in training, so that XLA cannot fold the kernels' transposes away.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import jax
import jax.numpy as jnp
from jax import lax

from trainers import graph
from trainers.config import EnergyConfig
from trainers.conv import DIMENSIONS
from trainers.energies import make_energy

import fashion_mnist
from ours_mlp import table1_graph


@contextlib.contextmanager
def jax_derivatives():
    """Conv edges as a plain ``lax.conv_general_dilated``, which JAX
    differentiates into convolutions of permuted layouts."""
    ours = graph.conv2d

    def plain(u, kernel, stride):
        return lax.conv_general_dilated(
            u, kernel, (stride, stride), "SAME", dimension_numbers=DIMENSIONS
        )

    graph.conv2d = plain
    try:
        yield
    finally:
        graph.conv2d = ours


def milliseconds(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / repeats * 1e3


def timings(net, params, x, y, steps: int, state_lr: float) -> dict[str, float]:
    energy = make_energy(EnergyConfig(name="hpc", loss="mse"), net)
    states = net.forward(params, x)[0]

    def grad(p, s):
        return jax.grad(lambda s: energy(p, s, x, y, 1.0).sum())(s)

    def step(p, s):
        return jax.tree.map(lambda v, g: v - state_lr * g, s, grad(p, s))

    def scan(unroll):
        def run(p, s):
            return jax.lax.scan(
                lambda s, _: (step(p, s), None), s, None, steps, unroll=unroll
            )[0]

        return jax.jit(run)

    jitted = jax.jit(step)

    def python_loop(p, s):
        for _ in range(steps):
            s = jitted(p, s)
        return s

    return {
        "forward pass": milliseconds(jax.jit(net.forward), params, x),
        "dF/dv once": milliseconds(jax.jit(grad), params, states),
        f"{steps} steps, lax.scan": milliseconds(scan(1), params, states),
        f"{steps} steps, lax.scan unrolled": milliseconds(scan(steps), params, states),
        f"{steps} steps, Python loop of jitted steps": milliseconds(
            python_loop, params, states
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=0.0625)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--state-lr", type=float, default=0.1)
    args = p.parse_args()

    net = table1_graph("hierarchical", args.width)
    data = fashion_mnist.load(None)
    x, y = jnp.asarray(data.train_x[:128]), jnp.asarray(data.train_y[:128])
    params = net.init(jax.random.key(0))
    with jax_derivatives():
        theirs = timings(net, params, x, y, args.steps, args.state_lr)
    ours = timings(net, params, x, y, args.steps, args.state_lr)
    print(f"{'ms':<44}{'JAX derivatives':>16}{'trainers.conv':>15}")
    for name in ours:
        print(f"{name:<44}{theirs[name]:16.1f}{ours[name]:15.1f}")


if __name__ == "__main__":
    main()
