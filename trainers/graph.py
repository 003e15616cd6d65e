r"""Networks as graphs of nodes and edges (Chen et al. 2025, Section 5, Fig 3).

Nodes hold states (a batch of activations); edges hold parameterised maps
from one node to another. An edge is a short chain of operations, so that a
convolution followed by max-pooling is one edge, as in the paper's Table 1:

* ``dense`` (features), ``conv`` (features, kernel, stride; SAME padding,
  ``trainers.conv``), with a bias; parameters ``{"kernel", "bias"}`` from
  Flax's initialisers;
* ``maxpool`` (window, stride = window; :func:`max_pool`) and ``flatten``,
  without parameters.

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
both directions; through max-pooling it routes to the maxima (shared
evenly where they tie).

Connection kinds (Chen et al. 2025, Section 3 and Table 1): ``forward``
(node m-1 to m), ``skip`` (m-2 to m), ``internal`` (a node's second state,
a 1x1 convolution) and ``recurrent`` (m at t-1 to m at t). A graph with
recurrent edges is unrolled over ``time_steps`` steps T: every state node
gets one state per step (named ``node@t``), forward, skip and internal edges
act within a step, a recurrent edge carries step t-1 into step t, and every
copy of an edge shares that edge's parameters. The input is clamped at every
step and the output is predicted at the last one only. So node m at step t
is predicted as

.. math:: \hat v_{m,t} = f\big(g_{m-1,m}(v_{m-1,t}) + g_{m-2,m}(v_{m-2,t})
          + g_{m,m}(v_{m,t-1})\big),

our reading of the garbled Eq 5: the three inputs the paper's text lists
(forward, skip and the node's own previous state), each through its own
edge, summed. Two departures from the letter of Eq 5, with the reasons:

* the forward and skip inputs come from the same step t, not t-1: with a
  one-step delay on every forward edge, the output read at t = T-1 of a
  7-edge-deep network with T = 5 could not see the input at all in the
  feedforward variant of Fig 4;
* the recurrent map is one more summand rather than a map applied to the
  sum: so Eq 7's two feedback branches, z_{m+1,m} with the forward weights
  and z_{m,m} with the recurrent ones, are exactly the transposes of the two
  edges that predict upwards in time and depth.

Without a recurrent edge there is nothing to unroll, and the graph is its
single step whatever ``time_steps`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from trainers.conv import conv2d
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
        if self.name == "conv":
            # Flax's dtype rule: compute in the promoted type of all three.
            u, kernel, bias = promote_dtype(u, params["kernel"], params["bias"])
            return conv2d(u, kernel, self.stride) + bias
        if self.has_params:
            return self.module().apply({"params": params}, u)
        if self.name == "maxpool":
            return max_pool(u, self.window)
        return u.reshape(u.shape[0], -1)


def max_pool(u: jax.Array, window: int) -> jax.Array:
    """Max-pooling of NHWC maps over non-overlapping ``window`` x ``window``
    squares (stride = window); rows and columns that fill no square are
    dropped, as VALID pooling does.

    Written as a reshape and a max rather than ``lax.reduce_window``: its
    gradient is then a comparison with the maxima (split evenly between
    tied maxima, another valid subgradient) instead of XLA's
    select-and-scatter, which on a CPU made the gradient of a 3x3 conv and
    2x2 pooling edge (batch 128, 28x28, 8 to 16 channels) take 70 ms
    against 32 ms this way and 23 ms for the convolution alone.
    """
    b, h, w, c = u.shape
    h, w = h // window, w // window
    u = u[:, : h * window, : w * window]
    return u.reshape(b, h, window, w, window, c).max(axis=(2, 4))


@dataclass(frozen=True)
class Edge:
    name: str
    source: str
    target: str
    ops: tuple[Op, ...]
    kind: str = "forward"
    param: str = ""  # the parameters' key when copies share them (unrolling)

    @property
    def key(self) -> str:
        return self.param or self.name

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
    time_steps: int = 1
    groups: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())

    # -- the interface the trainers use (shared with trainers.model.MLP) --

    @property
    def num_hidden(self) -> int:
        return len(self.order)

    @property
    def num_layers(self) -> int:
        return len({e.key for e in self.edges if e.has_params})

    @property
    def state_groups(self) -> tuple[tuple[int, ...], ...]:
        """For each node of the declared graph that holds a state, the
        positions in ``order`` of its states (one per time step)."""
        return tuple(indices for _, indices in self.groups)

    def node(self, name: str) -> Node:
        """The declared node behind ``name`` (``node@t`` for its step t)."""
        base = name.split("@")[0]
        return next(n for n in self.nodes if n.name == base)

    def shape(self, name: str) -> tuple[int, ...]:
        return dict(self.shapes)[name]

    def incoming(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.target == name]

    def init(self, key: jax.Array) -> Params:
        params, shapes = {}, dict(self.shapes)
        first = {}
        for edge in self.edges:
            first.setdefault(edge.key, edge)
        keys = jax.random.split(key, len(first))
        for edge, k in zip(first.values(), keys):
            u = jnp.zeros((1, *shapes[edge.source]))
            edge_params = {}
            for i, (op, k_op) in enumerate(
                zip(edge.ops, jax.random.split(k, len(edge.ops)))
            ):
                if op.has_params:
                    edge_params[f"op_{i}"] = op.module().init(k_op, u)["params"]
                u = op.apply(edge_params.get(f"op_{i}"), u)
            if edge_params:
                params[edge.key] = edge_params
        return params

    def images(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], *self.input_shape)

    def prediction(self, params: Params, values: dict, name: str) -> jax.Array:
        total = sum(
            e.apply(params.get(e.key, {}), values[e.source])
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
    time_steps: int = 1,
) -> Graph:
    """Checks the graph and infers every node's shape; raises
    :class:`GraphError` naming the first node or edge at fault. A graph
    with recurrent edges is unrolled over ``time_steps`` steps."""
    names = [n.name for n in nodes]
    for name in (input, output):
        if name not in names:
            raise GraphError(f"node {name!r} (input or output) is not declared.")
    for name in names:
        if "@" in name:
            raise GraphError(f"node {name!r}: '@' is kept for time steps.")
    for edge in edges:
        _check_edge(edge, names, input, output)
    within = [e for e in edges if e.kind != "recurrent"]
    recurrent = [e for e in edges if e.kind == "recurrent"]
    order = _topological_order(names, within, input)
    shapes = _infer_shapes(order, within, input, input_shape)
    for name in names:
        if name != input and name not in shapes:
            raise GraphError(f"node {name!r} has no incoming edge from the input side.")
    for edge in recurrent:
        _check_recurrent(edge, shapes)
    hidden = [n for n in order if n not in (input, output)]
    if recurrent and time_steps < 2:
        raise GraphError(
            f"edge {recurrent[0].name!r} is recurrent, which needs time_steps >= 2 "
            f"to unroll over; got time_steps={time_steps}."
        )
    if not recurrent:
        groups = tuple((n, (i,)) for i, n in enumerate(hidden))
        return Graph(
            tuple(nodes),
            tuple(edges),
            input,
            output,
            tuple(input_shape),
            tuple(hidden),
            tuple(shapes.items()),
            1,
            groups,
        )

    steps = range(time_steps)
    last = time_steps - 1
    at = lambda n, t: n if n in (input, output) else f"{n}@{t}"  # noqa: E731
    unrolled = []
    for t in steps:
        for e in within:
            if e.target != output or t == last:
                unrolled.append(
                    Edge(
                        f"{e.name}@{t}",
                        at(e.source, t),
                        at(e.target, t),
                        e.ops,
                        e.kind,
                        e.key,
                    )
                )
        for e in recurrent:
            if t > 0:
                unrolled.append(
                    Edge(
                        f"{e.name}@{t}",
                        at(e.source, t - 1),
                        at(e.target, t),
                        e.ops,
                        e.kind,
                        e.key,
                    )
                )
    states = [at(n, t) for t in steps for n in hidden]
    groups = tuple((n, tuple(states.index(at(n, t)) for t in steps)) for n in hidden)
    all_shapes = {input: shapes[input], output: shapes[output]}
    all_shapes |= {at(n, t): shapes[n] for t in steps for n in hidden}
    return Graph(
        tuple(nodes),
        tuple(unrolled),
        input,
        output,
        tuple(input_shape),
        tuple(states),
        tuple(all_shapes.items()),
        time_steps,
        groups,
    )


def _check_edge(edge: Edge, names: list[str], input: str, output: str) -> None:
    for end in (edge.source, edge.target):
        if end not in names:
            raise GraphError(
                f"edge {edge.name!r} connects to missing node {end!r}; "
                f"nodes: {', '.join(names)}."
            )
    if edge.kind not in KINDS:
        raise GraphError(
            f"edge {edge.name!r} has kind {edge.kind!r}; allowed: {', '.join(KINDS)}."
        )
    for op in edge.ops:
        if op.name not in OPS:
            raise GraphError(
                f"edge {edge.name!r} has op {op.name!r}; allowed: {', '.join(OPS)}."
            )
    if edge.target == input:
        raise GraphError(f"edge {edge.name!r} points into the clamped input node.")
    if edge.kind == "recurrent" and input in (edge.source, edge.target):
        raise GraphError(f"edge {edge.name!r}: the input node has no recurrence.")
    if edge.kind == "recurrent" and output in (edge.source, edge.target):
        raise GraphError(
            f"edge {edge.name!r}: the output is read at the last step only and "
            "has no recurrence."
        )


def _check_recurrent(edge: Edge, shapes: dict) -> None:
    u = jax.ShapeDtypeStruct((1, *shapes[edge.source]), jnp.float32)
    try:
        out = jax.eval_shape(lambda s: _apply_fresh(edge, s), u).shape[1:]
    except Exception as err:  # noqa: BLE001 - reported with the edge's name
        raise GraphError(
            f"edge {edge.name!r} cannot take node {edge.source!r} of shape "
            f"{shapes[edge.source]}: {err}"
        ) from err
    if out != shapes[edge.target]:
        raise GraphError(
            f"edge {edge.name!r} gives shape {out} but node {edge.target!r} "
            f"has shape {shapes[edge.target]}."
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
    ``num_classes``; only the edge kinds in ``connections`` are kept."""

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
        if e.kind in cfg.connections
    ]
    nodes = [Node(n, cfg.activation) for n in cfg.nodes]
    return build(
        nodes, edges, cfg.input, cfg.output, tuple(image_shape), cfg.time_steps
    )
