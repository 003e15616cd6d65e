"""Where the hierarchical network's time goes: one relaxation step of HPC
(Chen et al. 2025, Eq 2) on Table 1's convolutional network at width 1/16,
batch 128, alone and inside loops.

    .venv/bin/python benchmarks/conv_loop.py [--width 0.0625] [--steps 20]

Prints the milliseconds of: the forward pass; dF/dv once; ``--steps``
plain steps v <- v - eta_v dF/dv as a ``lax.scan`` (a loop in the compiled
program), as a fully unrolled scan (no loop), and as a Python loop of one
jitted step each.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from trainers.config import EnergyConfig
from trainers.energies import make_energy

import fashion_mnist
from ours_mlp import table1_graph


def milliseconds(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / repeats * 1e3


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
    energy = make_energy(EnergyConfig(name="hpc", loss="mse"), net)
    states = net.forward(params, x)[0]
    grad = jax.grad(lambda s: energy(params, s, x, y, 1.0).sum())

    def step(s):
        return jax.tree.map(lambda v, g: v - args.state_lr * g, s, grad(s))

    def scan(unroll):
        def run(s):
            return jax.lax.scan(
                lambda s, _: (step(s), None), s, None, args.steps, unroll=unroll
            )[0]

        return jax.jit(run)

    jitted = jax.jit(step)

    def python_loop(s):
        for _ in range(args.steps):
            s = jitted(s)
        return s

    n = args.steps
    rows = {
        "forward pass": milliseconds(jax.jit(net.forward), params, x),
        "dF/dv once": milliseconds(jax.jit(grad), states),
        f"{n} steps, lax.scan": milliseconds(scan(1), states),
        f"{n} steps, lax.scan unrolled": milliseconds(scan(n), states),
        f"{n} steps, Python loop of jitted steps": milliseconds(python_loop, states),
    }
    for name, ms in rows.items():
        print(f"{name:<42}{ms:9.1f} ms")


if __name__ == "__main__":
    main()
