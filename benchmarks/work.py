r"""The work one epoch of predictive coding needs, counted from the shapes,
and JAX's own rate on exactly those matrix products.

A dense edge from a node of width ``n_in`` to one of width ``n_out`` costs
``2 B n_in n_out`` flops per product on a batch of ``B``. On an MLP of
sizes ``(d_0, ..., d_L, d_out)``:

* the clamped input's prediction, ``f(x W_1 + b_1)``, does not change
  while the states relax: it is made once per batch, in the forward pass
  that also sets the initial states (every edge once);
* every edge whose input is a hidden state is run forward and then
  transposed for dF/dv at each of the ``S`` inference steps (BiPC adds a
  feedback product through each transposed weight, both ways too);
* learning runs those state edges forward once more at the relaxed states
  (the input's prediction is reused) and forms one weight gradient per
  product, ``2 B n_in n_out`` each.

So, with ``P`` the sum of ``n_in n_out`` over all products and ``P_v`` over
those whose input is a state,

.. math:: W_{batch} = 2B\,(P_{fwd} + P_v + P) + 4BS\,P_v ,

and an epoch is that times the number of batches. Element-wise work (the
activations, their derivatives, the errors, the updates) is left out: it is
linear in the widths where the products are quadratic.

``matmul_seconds`` times the same products with no element-wise work
between them, as one compiled JAX program, so that the trainer's rate can
be set against what JAX reaches on those shapes on the same machine.
"""

from __future__ import annotations

import time
from typing import NamedTuple


class Product(NamedTuple):
    """One matrix product with a weight: ``(B, n_in) @ (n_in, n_out)``."""

    n_in: int
    n_out: int
    from_state: bool
    forward: bool


def products(sizes: tuple[int, ...], energy: str = "hpc") -> list[Product]:
    """The products one train step makes on an MLP of ``sizes``: every
    forward edge, and for ``bipc`` (Eq 10, no input feedback) each hidden
    node's feedback from the node above through the transposed weight."""
    edges = [
        Product(a, b, from_state=i > 0, forward=True)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    ]
    if energy == "hpc":
        return edges
    if energy == "bipc":
        hidden = sizes[1:-1]
        feedback = [
            Product(hidden[i + 1], hidden[i], from_state=True, forward=False)
            for i in range(len(hidden) - 1)
        ]
        return edges + feedback
    raise ValueError(f"energy {energy!r}: use hpc or bipc.")


def flop_per_batch(prods: list[Product], batch: int, steps: int) -> int:
    """W_batch of the module docstring."""
    total = sum(p.n_in * p.n_out for p in prods)
    forward = sum(p.n_in * p.n_out for p in prods if p.forward)
    state = sum(p.n_in * p.n_out for p in prods if p.from_state)
    return 2 * batch * (forward + state + total) + 4 * batch * steps * state


def matmul_program(prods: list[Product], batch: int, steps: int):
    """``run(n) -> seconds`` for ``n`` batches of the products alone.

    Each product's input chains through its own forward and transposed
    weights (variances kept near one, so nothing underflows into slow
    denormals), each batch's inputs are a different slice of a pool, so that
    nothing is hoisted out of the loop, and the weight gradients pass an
    optimisation barrier, so that none is cut short. The batch count is a
    traced bound: one compilation.
    """
    import jax
    import jax.numpy as jnp

    keys = iter(jax.random.split(jax.random.key(0), 3 * len(prods) + 1))

    def normal(shape, fan_in):
        return jax.random.normal(next(keys), shape) / jnp.sqrt(fan_in)

    fwd = [normal((p.n_in, p.n_out), p.n_in) for p in prods]
    back = [normal((p.n_out, p.n_in), p.n_out) for p in prods]
    pools = [normal((batch + 8, p.n_in), 1.0) for p in prods]
    state = [i for i, p in enumerate(prods) if p.from_state]

    def one_batch(b, acc):
        inputs = [jax.lax.dynamic_slice_in_dim(u, b % 8, batch) for u in pools]
        first = [u @ w for u, w, p in zip(inputs, fwd, prods) if p.forward]

        def step(vs, _):
            return tuple((v @ fwd[i]) @ back[i] for v, i in zip(vs, state)), None

        start = tuple(inputs[i] for i in state)
        relaxed, _ = jax.lax.scan(step, start, length=steps)
        seeds, outs = list(inputs), [None] * len(prods)
        for v, i in zip(relaxed, state):
            seeds[i] = v
        for i, (u, w) in enumerate(zip(seeds, fwd)):
            outs[i] = first[0] if i == 0 else u @ w
        grads = [u.T @ o for u, o in zip(seeds, outs)]
        kept = jax.lax.optimization_barrier(first + grads)
        return acc + sum(g[0, 0] for g in kept)

    run = jax.jit(lambda n: jax.lax.fori_loop(0, n, one_batch, jnp.zeros(())))

    def seconds(n: int) -> float:
        run(2).block_until_ready()
        start = time.perf_counter()
        run(n).block_until_ready()
        return time.perf_counter() - start

    return seconds
