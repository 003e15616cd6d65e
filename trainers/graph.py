r"""Networks as graphs of nodes and edges (Chen et al. 2025, Section 5, Fig 3).

Nodes hold states (a batch of activations); edges hold parameterised maps
from one node to another. An edge is a short chain of operations, so that a
convolution followed by max-pooling is one edge, as in the paper's Table 1:

* ``dense`` (features), ``conv`` (features, kernel, stride; SAME padding),
  with a bias; parameters ``{"kernel", "bias"}`` from Flax's initialisers;
* ``maxpool`` (window, stride = window) and ``flatten``, without parameters.

A node's prediction is its activation applied to the sum of what its
incoming edges carry,

.. math:: \hat v_j = f_j\Big(\sum_{e: i \to j} g_e(v_i; \theta_e)\Big),

the input node is clamped to the data and the output node holds no state:
its prediction is the logits. Initial states come from one traversal in
topological order (a forward pass).

The feedback map of an edge (BiPC, Eq 7) is its transpose at the source
state, computed as the vector-Jacobian product of the edge: for dense and
conv edges that is exactly the transposed weight (transposed convolution)
with the forward parameters, so one parameter receives the gradients of
both directions; through max-pooling it routes to the maxima.

Only acyclic graphs are built so far (forward, skip and internal edges);
recurrent edges need the unrolled time axis of the skip-connection
recurrent network, which is not implemented yet and is refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import flax.linen as nn
import jax
import jax.numpy as jnp

from trainers.model import ACTIVATIONS, Params, States

OPS = ("dense", "conv", "maxpool", "flatten")
KINDS = ("forward", "skip", "internal", "recurrent")


class GraphError(ValueError):
    """A graph that cannot be built: the message names the node or edge."""


@dataclass(frozen=True)
class Op:
    name: str
    features: int = 0
    kernel: int = 3
    stride: int = 1
    window: int = 2

    @property
    def has_params(self) -> bool:
        return self.name in ("dense", "conv")

    def module(self) -> nn.Module:
        if self.name == "dense":
            return nn.Dense(self.features)
        return nn.Conv(
            self.features, (self.kernel, self.kernel), (self.stride, self.stride)
        )

    def apply(self, params, u: jax.Array) -> jax.Array:
        if self.has_params:
            return self.module().apply({"params": params}, u)
        if self.name == "maxpool":
            w = (self.window, self.window)
            return nn.max_pool(u, w, strides=w)
        return u.reshape(u.shape[0], -1)


@dataclass(frozen=True)
class Edge:
    name: str
    source: str
    target: str
    ops: tuple[Op, ...]
    kind: str = "forward"

    @property
    def has_params(self) -> bool:
        return any(op.has_params for op in self.ops)

    def apply(self, params: dict, u: jax.Array) -> jax.Array:
        for i, op in enumerate(self.ops):
            u = op.apply(params.get(f"op_{i}"), u)
        return u

    def transpose(self, params: dict, u: jax.Array, v: jax.Array) -> jax.Array:
        """The edge's transpose at source state ``u``, applied to ``v``."""
        _, vjp = jax.vjp(lambda s: self.apply(params, s), u)
        return vjp(v)[0]


@dataclass(frozen=True)
class Node:
    name: str
    activation: str = "tanh"


@dataclass(frozen=True)
class Graph:
    """A validated graph; ``order`` lists the state nodes in topological
    order, ``shapes`` every node's per-sample shape."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    input: str
    output: str
    input_shape: tuple[int, ...]
    order: tuple[str, ...] = field(default=())
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())

    # -- the interface the trainers use (shared with trainers.model.MLP) --

    @property
    def num_hidden(self) -> int:
        return len(self.order)

    @property
    def num_layers(self) -> int:
        return sum(e.has_params for e in self.edges)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def shape(self, name: str) -> tuple[int, ...]:
        return dict(self.shapes)[name]

    def incoming(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.target == name]

    def init(self, key: jax.Array) -> Params:
        params, shapes = {}, dict(self.shapes)
        keys = jax.random.split(key, len(self.edges))
        for edge, k in zip(self.edges, keys):
            u = jnp.zeros((1, *shapes[edge.source]))
            edge_params = {}
            for i, (op, k_op) in enumerate(
                zip(edge.ops, jax.random.split(k, len(edge.ops)))
            ):
                if op.has_params:
                    edge_params[f"op_{i}"] = op.module().init(k_op, u)["params"]
                u = op.apply(edge_params.get(f"op_{i}"), u)
            if edge_params:
                params[edge.name] = edge_params
        return params

    def images(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], *self.input_shape)

    def prediction(self, params: Params, values: dict, name: str) -> jax.Array:
        total = sum(
            e.apply(params.get(e.name, {}), values[e.source])
            for e in self.incoming(name)
        )
        if name == self.output:
            return total
        return ACTIVATIONS[self.node(name).activation](total)

    def forward(self, params: Params, x: jax.Array) -> tuple[States, jax.Array]:
        values = {self.input: self.images(x)}
        for name in self.order:
            values[name] = self.prediction(params, values, name)
        return tuple(values[n] for n in self.order), self.prediction(
            params, values, self.output
        )

    def logits(self, params: Params, x: jax.Array) -> jax.Array:
        return self.forward(params, x)[1]

    def values(self, x: jax.Array, states: States) -> dict:
        return {self.input: self.images(x), **dict(zip(self.order, states))}


def build(
    nodes: Sequence[Node],
    edges: Sequence[Edge],
    input: str,
    output: str,
    input_shape: tuple[int, ...],
) -> Graph:
    """Checks the graph and infers every node's shape; raises
    :class:`GraphError` naming the first node or edge at fault."""
    names = [n.name for n in nodes]
    for name in (input, output):
        if name not in names:
            raise GraphError(f"node {name!r} (input or output) is not declared.")
    for edge in edges:
        for end in (edge.source, edge.target):
            if end not in names:
                raise GraphError(
                    f"edge {edge.name!r} connects to missing node {end!r}; "
                    f"nodes: {', '.join(names)}."
                )
        if edge.kind not in KINDS:
            raise GraphError(
                f"edge {edge.name!r} has kind {edge.kind!r}; "
                f"allowed: {', '.join(KINDS)}."
            )
        if edge.kind == "recurrent":
            raise GraphError(
                f"edge {edge.name!r} is recurrent: recurrent networks need the "
                "unrolled time axis, which is not implemented yet."
            )
        for op in edge.ops:
            if op.name not in OPS:
                raise GraphError(
                    f"edge {edge.name!r} has op {op.name!r}; allowed: {', '.join(OPS)}."
                )
        if edge.target == input:
            raise GraphError(f"edge {edge.name!r} points into the clamped input node.")
    order = _topological_order(names, edges, input)
    shapes = _infer_shapes(order, edges, input, input_shape)
    for name in names:
        if name != input and name not in shapes:
            raise GraphError(f"node {name!r} has no incoming edge from the input side.")
    hidden = tuple(n for n in order if n not in (input, output))
    return Graph(
        tuple(nodes),
        tuple(edges),
        input,
        output,
        tuple(input_shape),
        hidden,
        tuple(shapes.items()),
    )


def _topological_order(names, edges, input) -> list[str]:
    pending = {n: {e.source for e in edges if e.target == n} for n in names}
    order: list[str] = []
    while pending:
        ready = [n for n, deps in pending.items() if deps <= set(order)]
        if not ready:
            cycle = ", ".join(sorted(pending))
            raise GraphError(
                f"the edges into nodes {cycle} form a cycle with no time step; "
                "mark the edge that closes it as recurrent."
            )
        for n in ready:
            order.append(n)
            del pending[n]
    return order


def _infer_shapes(order, edges, input, input_shape) -> dict[str, tuple[int, ...]]:
    shapes = {input: tuple(input_shape)}
    for name in order:
        if name == input:
            continue
        found = {}
        for edge in (e for e in edges if e.target == name):
            if edge.source not in shapes:
                continue
            u = jax.ShapeDtypeStruct((1, *shapes[edge.source]), jnp.float32)
            try:
                out = jax.eval_shape(lambda s, e=edge: _apply_fresh(e, s), u)
            except Exception as err:  # noqa: BLE001 - reported with the edge's name
                raise GraphError(
                    f"edge {edge.name!r} cannot take node {edge.source!r} of shape "
                    f"{shapes[edge.source]}: {err}"
                ) from err
            found[edge.name] = out.shape[1:]
        if len(set(found.values())) > 1:
            raise GraphError(
                f"node {name!r} receives different shapes from its edges: {found}."
            )
        if found:
            shapes[name] = next(iter(found.values()))
    return shapes


def _apply_fresh(edge: Edge, u: jax.Array) -> jax.Array:
    for op in edge.ops:
        params = (
            op.module().init(jax.random.key(0), u)["params"] if op.has_params else None
        )
        u = op.apply(params, u)
    return u


def graph_from_config(cfg, image_shape: tuple[int, ...], num_classes: int) -> Graph:
    """Builds the graph a ``ModelConfig`` declares: ``width`` scales every
    ``features`` (at least 1); 0 on the edge into the output means
    ``num_classes``."""

    def op(o, into_output: bool) -> Op:
        features = o.features
        if o.op in ("dense", "conv"):
            if features == 0 and into_output:
                features = num_classes
            elif not into_output:
                features = max(1, round(features * cfg.width))
        return Op(o.op, features, o.kernel, o.stride, o.window)

    edges = [
        Edge(
            e.name,
            e.source,
            e.target,
            tuple(op(o, e.target == cfg.output) for o in e.ops),
            e.kind,
        )
        for e in cfg.edges
    ]
    nodes = [Node(n, cfg.activation) for n in cfg.nodes]
    return build(nodes, edges, cfg.input, cfg.output, tuple(image_shape))
