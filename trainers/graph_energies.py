r"""HPC, BiPC and EP energies on a :class:`~trainers.graph.Graph`.

The same energies as ``trainers.energies`` (same conventions: 1/2 factor,
per-sample values, C on the output prediction), written over any acyclic
graph, which includes a recurrent network unrolled in time: a node's forward
error is

.. math:: \epsilon^f_j = v_j - f_j\Big(\sum_{e: i \to j} g_e(v_i)\Big),

and, for BiPC, its feedback prediction averages the transposes of its
outgoing forward and recurrent edges into state nodes, B_j (the branches
of Eq 7: the node above, and the node itself at the next time step),

.. math:: \hat v^b_j = f_j\Big(\tfrac{1}{|B_j|} \sum_{e: j \to k \in B_j}
          g_e^\top(v_k)\Big), \qquad \epsilon^b_j = v_j - \hat v^b_j;

a node with no state node above it has no feedback error. Norms run over
every axis but the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from trainers.energies import output_loss
from trainers.graph import Graph
from trainers.model import ACTIVATIONS, Params, States

# Eq 7's branches: top-down through the forward edges and, in a recurrent
# network, back in time through the recurrent ones. The paper leaves out
# feedback through skip connections (too much is lost to recover the lower
# node from them) and through internal 1x1 maps.
FEEDBACK_KINDS = ("forward", "recurrent")


def _half_sq(u: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(jnp.square(u).reshape(u.shape[0], -1), axis=-1)


def _errors(graph: Graph, params: Params, values: dict) -> dict:
    return {n: values[n] - graph.prediction(params, values, n) for n in graph.order}


def _feedback(graph: Graph, params: Params, values: dict, name: str):
    """The feedback prediction of ``name`` before its activation, or None."""
    above = [
        e
        for e in graph.edges
        if e.source == name and e.target in graph.order and e.kind in FEEDBACK_KINDS
    ]
    if not above:
        return None
    return sum(
        e.transpose(params.get(e.key, {}), values[name], values[e.target])
        for e in above
    ) / len(above)


@dataclass(frozen=True)
class GraphHPC:
    """HPC (Eq 2) on a graph; ``loss`` is C on the output prediction."""

    net: Graph
    loss: str = "mse"
    uses_inference = True

    def init_states(self, params: Params, x: jax.Array) -> States:
        return self.net.forward(params, x)[0]

    def __call__(self, params, states, x, y, beta):
        values = self.net.values(x, states)
        internal = sum(_half_sq(e) for e in _errors(self.net, params, values).values())
        logits = self.net.prediction(params, values, self.net.output)
        return internal + beta * output_loss(self.loss, logits, y)


@dataclass(frozen=True)
class GraphBiPC:
    """BiPC (Eq 9 or Eq 10) on a graph, readings as in
    :class:`trainers.energies.BiPC`; C^b reconstructs the input from the
    transposes of its outgoing edges (identity activation)."""

    net: Graph
    loss: str = "cross_entropy"
    form: str = "eq10"
    input_feedback: str = "none"
    uses_inference = True

    def init_states(self, params: Params, x: jax.Array) -> States:
        return self.net.forward(params, x)[0]

    def __call__(self, params, states, x, y, beta):
        graph = self.net
        values = graph.values(x, states)
        internal = 0.0
        for name, eps_f in _errors(graph, params, values).items():
            fb = _feedback(graph, params, values, name)
            if fb is None:
                internal += _half_sq(eps_f)
                continue
            act = ACTIVATIONS[graph.node(name).activation]
            eps_b = values[name] - act(fb)
            if self.form == "eq10":
                internal += _half_sq(eps_f + eps_b)
            else:
                internal += _half_sq(eps_f) + _half_sq(eps_b)

        logits = graph.prediction(params, values, graph.output)
        external = output_loss(self.loss, logits, y)
        if self.input_feedback == "reconstruction":
            fb = _feedback(graph, params, values, graph.input)
            if fb is not None:
                external += _half_sq(values[graph.input] - fb)
        return internal + beta * external


@dataclass(frozen=True)
class GraphEP:
    r"""Equilibrium propagation's Hopfield-like energy (Eq 17) on a graph
    without recurrence, as :class:`trainers.energies.EP` on the MLP:

    .. math::
        E = \tfrac12 \sum_{j} \|v_j\|^2
            - \sum_{e: i \to j} \rho(v_j) \cdot g_e(\rho(v_i)),
        \qquad F = E + \beta\, C(v_{\mathrm{out}}, y),

    over the state nodes and the output node, which is a free state read
    as the logits; rho is the node's activation and the identity on the
    clamped input. For a dense or conv edge g_e(u) = u W + b, so each
    coupling is Eq 17's rho(v_i) w_ij rho(v_j) plus the bias term; an edge
    that ends in max-pooling couples the pooled map (as Laborieux et al.
    2021 do for convolutional EP). The states start from a forward pass of
    pre-activations, whose output equals the graph's logits.
    """

    net: Graph
    loss: str = "mse"
    symmetric: bool = True
    uses_inference = True
    two_phase = True

    def _rho(self, name: str, v: jax.Array) -> jax.Array:
        if name == self.net.input:
            return v
        return ACTIVATIONS[self.net.node(name).activation](v)

    def _names(self) -> tuple[str, ...]:
        return (*self.net.order, self.net.output)

    def init_states(self, params: Params, x: jax.Array) -> States:
        graph = self.net
        rhos = {graph.input: graph.images(x)}
        states = []
        for name in self._names():
            u = sum(
                e.apply(params.get(e.key, {}), rhos[e.source])
                for e in graph.incoming(name)
            )
            rhos[name] = self._rho(name, u)
            states.append(u)
        return tuple(states)

    def __call__(self, params, states, x, y, beta):
        graph = self.net
        values = {graph.input: graph.images(x), **dict(zip(self._names(), states))}
        rhos = {n: self._rho(n, v) for n, v in values.items()}
        energy = sum(_half_sq(v) for v in states)
        for e in graph.edges:
            coupling = e.apply(params.get(e.key, {}), rhos[e.source]) * rhos[e.target]
            energy -= jnp.sum(coupling.reshape(coupling.shape[0], -1), axis=-1)
        return energy + beta * output_loss(self.loss, states[-1], y)
