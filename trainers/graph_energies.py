r"""HPC and BiPC energies on a :class:`~trainers.graph.Graph`.

The same energies as ``trainers.energies`` (same conventions: 1/2 factor,
per-sample values, C on the output prediction), written over any acyclic
graph: a node's forward error is

.. math:: \epsilon^f_j = v_j - f_j\Big(\sum_{e: i \to j} g_e(v_i)\Big),

and, for BiPC, its feedback prediction averages the transposes of its
outgoing edges into state nodes (the branches of Eq 7),

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


def _half_sq(u: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(jnp.square(u).reshape(u.shape[0], -1), axis=-1)


def _errors(graph: Graph, params: Params, values: dict) -> dict:
    return {n: values[n] - graph.prediction(params, values, n) for n in graph.order}


def _feedback(graph: Graph, params: Params, values: dict, name: str):
    """The feedback prediction of ``name`` before its activation, or None."""
    above = [
        e
        for e in graph.edges
        if e.source == name and e.target in graph.order and e.kind != "internal"
    ]
    if not above:
        return None
    return sum(
        e.transpose(params.get(e.name, {}), values[name], values[e.target])
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
