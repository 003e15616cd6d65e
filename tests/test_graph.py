"""Graphs of nodes and edges: validation, shapes, and energies that agree
with the MLP's on the same network."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainers.energies import HPC, BiPC
from trainers.graph import Edge, GraphError, Node, Op, build
from trainers.graph_energies import GraphBiPC, GraphHPC
from trainers.model import MLP

KEY = jax.random.key(2)


def _dense_chain(sizes):
    names = ["x"] + [f"h{i}" for i in range(1, len(sizes) - 1)] + ["out"]
    nodes = [Node(n) for n in names]
    edges = [
        Edge(f"e{i}", names[i], names[i + 1], (Op("dense", features=d),))
        for i, d in enumerate(sizes[1:])
    ]
    return build(nodes, edges, "x", "out", (sizes[0],))


def _as_graph_params(mlp_params, n):
    return {f"e{i}": {"op_0": mlp_params[f"layer_{i}"]} for i in range(n)}


@pytest.mark.parametrize("form", ["eq10", "eq9"])
@pytest.mark.parametrize("input_feedback", ["none", "reconstruction"])
def test_a_dense_chain_graph_has_the_mlp_energies(form, input_feedback):
    sizes = (5, 7, 6, 4, 3)
    net, graph = MLP(sizes, "tanh"), _dense_chain(sizes)
    k1, k2, k3 = jax.random.split(KEY, 3)
    params = net.init(k1)
    gparams = _as_graph_params(params, 4)
    x = jax.random.normal(k2, (4, 5))
    y = jnp.array([0, 1, 2, 1])
    states = tuple(
        jax.random.normal(k, (4, d))
        for k, d in zip(jax.random.split(k3, 3), sizes[1:-1])
    )
    pairs = [
        (HPC(net, "mse"), GraphHPC(graph, "mse")),
        (
            BiPC(net, "cross_entropy", form, input_feedback),
            GraphBiPC(graph, "cross_entropy", form, input_feedback),
        ),
    ]
    for mlp_energy, graph_energy in pairs:
        np.testing.assert_allclose(
            graph_energy(gparams, states, x, y, 0.7),
            mlp_energy(params, states, x, y, 0.7),
            rtol=1e-5,
        )
    np.testing.assert_allclose(
        graph.logits(gparams, x), net.logits(params, x), rtol=1e-5
    )


def _conv_graph():
    nodes = [Node("x"), Node("a"), Node("b"), Node("c"), Node("out")]
    edges = [
        Edge("xa", "x", "a", (Op("conv", features=4),)),
        Edge("ab", "a", "b", (Op("conv", features=6), Op("maxpool", window=2))),
        Edge("ac", "a", "c", (Op("conv", features=8, stride=2),), kind="skip"),
        Edge("bc", "b", "c", (Op("conv", features=8, kernel=1),)),
        Edge("co", "c", "out", (Op("flatten"), Op("dense", features=3))),
    ]
    return build(nodes, edges, "x", "out", (8, 8, 1))


def test_conv_graph_shapes_parameters_and_tied_feedback():
    graph = _conv_graph()
    assert graph.order == ("a", "b", "c")
    assert graph.shape("b") == (4, 4, 6) and graph.shape("c") == (4, 4, 8)
    params = graph.init(KEY)
    count = sum(p.size for p in jax.tree.leaves(params))
    expected = (9 * 1 * 4 + 4) + (9 * 4 * 6 + 6) + (9 * 4 * 8 + 8) + (6 * 8 + 8)
    expected += 4 * 4 * 8 * 3 + 3
    assert count == expected

    x = jax.random.normal(KEY, (2, 64))
    states, logits = graph.forward(params, x)
    assert [s.shape for s in states] == [(2, 8, 8, 4), (2, 4, 4, 6), (2, 4, 4, 8)]
    assert logits.shape == (2, 3)

    # The feedback through a conv edge is the adjoint of the forward conv:
    # <conv(u), v> = <u, conv^T(v)>, with the forward edge's own kernel.
    edge = next(e for e in graph.edges if e.name == "bc")
    u, v = states[1], jax.random.normal(KEY, states[2].shape)
    lhs = jnp.vdot(edge.apply(params["bc"], u) - edge.apply(params["bc"], 0 * u), v)
    rhs = jnp.vdot(u, edge.transpose(params["bc"], u, v))
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-4)


@pytest.mark.parametrize("size, window", [((8, 8), 2), ((7, 7), 2), ((9, 6), 3)])
def test_max_pooling_matches_reduce_window(size, window):
    # Our pooling (a reshape and a max) against Flax's lax.reduce_window
    # pooling, values and gradient, rows and columns that fill no window
    # dropped as VALID pooling drops them. Random values do not tie.
    import flax.linen as nn

    u = jax.random.normal(KEY, (3, *size, 4))
    w = (window, window)
    ours = Op("maxpool", window=window)
    np.testing.assert_array_equal(ours.apply(None, u), nn.max_pool(u, w, strides=w))
    v = jax.random.normal(jax.random.key(1), ours.apply(None, u).shape)
    grad_ours = jax.grad(lambda u: jnp.vdot(ours.apply(None, u), v))(u)
    grad_flax = jax.grad(lambda u: jnp.vdot(nn.max_pool(u, w, strides=w), v))(u)
    np.testing.assert_array_equal(grad_ours, grad_flax)


def test_max_pooling_splits_the_gradient_between_tied_maxima():
    u = jnp.zeros((1, 2, 2, 1)).at[0, 1, 1, 0].set(-1.0)
    grad = jax.grad(lambda u: Op("maxpool", window=2).apply(None, u).sum())(u)
    np.testing.assert_allclose(grad[0, :, :, 0], [[1 / 3, 1 / 3], [1 / 3, 0]])


def test_graph_energies_relax_and_train_one_step():
    from trainers.inference import Hyper, relax

    graph = _conv_graph()
    params = graph.init(KEY)
    x = jax.random.uniform(KEY, (2, 64))
    y = jnp.array([0, 2])
    hyper = Hyper(
        jnp.float32(0.05),
        jnp.float32(1.0),
        jnp.int32(20),
        jnp.float32(0.0),
        jnp.float32(1e3),
    )
    for energy in (GraphHPC(graph, "mse"), GraphBiPC(graph, "cross_entropy")):
        states = energy.init_states(params, x)
        r = relax(energy, params, states, x, y, hyper)
        assert int(r.reason) == 0
        before = float(jnp.sum(energy(params, states, x, y, 1.0)))
        after = float(jnp.sum(energy(params, r.states, x, y, 1.0)))
        assert after < before
        grads = jax.grad(lambda p, e=energy, s=r.states: jnp.mean(e(p, s, x, y, 1.0)))(
            params
        )
        assert all(float(jnp.linalg.norm(g)) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    "edges, message",
    [
        ([Edge("xa", "x", "z", (Op("dense", features=3),))], "missing node 'z'"),
        (
            [
                Edge("xa", "x", "a", (Op("dense", features=3),)),
                Edge("ab", "a", "b", (Op("dense", features=3),)),
                Edge("ba", "b", "a", (Op("dense", features=3),)),
                Edge("bo", "b", "out", (Op("dense", features=2),)),
            ],
            "form a cycle with no time step",
        ),
        (
            [
                Edge("xa", "x", "a", (Op("dense", features=3),)),
                Edge("xb", "x", "b", (Op("dense", features=4),)),
                Edge("ab", "a", "b", (Op("dense", features=5),)),
                Edge("bo", "b", "out", (Op("dense", features=2),)),
            ],
            "node 'b' receives different shapes",
        ),
        ([Edge("xa", "x", "a", (Op("softmax"),))], "op 'softmax'"),
        (
            [
                Edge("xa", "x", "a", (Op("dense", features=3),)),
                Edge("ab", "a", "b", (Op("dense", features=3),)),
                Edge("aa", "a", "a", (Op("dense", features=3),), kind="recurrent"),
                Edge("bo", "b", "out", (Op("dense", features=2),)),
            ],
            "edge 'aa' is recurrent, which needs time_steps >= 2",
        ),
        (
            [
                Edge("xa", "x", "a", (Op("dense", features=3),)),
                Edge("ab", "a", "b", (Op("dense", features=4),)),
                Edge("ba", "b", "a", (Op("dense", features=4),), kind="recurrent"),
                Edge("bo", "b", "out", (Op("dense", features=2),)),
            ],
            r"edge 'ba' gives shape \(4,\) but node 'a' has shape \(3,\)",
        ),
        (
            [
                Edge("xa", "x", "a", (Op("dense", features=3),)),
                Edge("ab", "a", "b", (Op("dense", features=3),)),
                Edge("bo", "b", "out", (Op("dense", features=2),)),
                Edge("oo", "out", "out", (Op("dense", features=2),), "recurrent"),
            ],
            "edge 'oo': the output is read at the last step only",
        ),
    ],
)
def test_bad_graphs_are_refused_by_name(edges, message):
    nodes = [Node("x"), Node("a"), Node("b"), Node("out")]
    with pytest.raises(GraphError, match=message):
        build(nodes, edges, "x", "out", (6,))


def _recurrent_chain(time_steps=3):
    """x -> a -> b -> out with a recurrent edge on a and a skip x -> b."""
    nodes = [Node("x"), Node("a"), Node("b"), Node("out")]
    edges = [
        Edge("xa", "x", "a", (Op("dense", features=4),)),
        Edge("aa", "a", "a", (Op("dense", features=4),), kind="recurrent"),
        Edge("ab", "a", "b", (Op("dense", features=3),)),
        Edge("xb", "x", "b", (Op("dense", features=3),), kind="skip"),
        Edge("bo", "b", "out", (Op("dense", features=2),)),
    ]
    return build(nodes, edges, "x", "out", (5,), time_steps)


def _dense(p, u):
    return u @ p["op_0"]["kernel"] + p["op_0"]["bias"]


def test_unrolled_forward_pass_is_the_recurrence_written_out():
    graph = _recurrent_chain(time_steps=3)
    assert graph.order == ("a@0", "b@0", "a@1", "b@1", "a@2", "b@2")
    assert graph.state_groups == ((0, 2, 4), (1, 3, 5))
    params = graph.init(KEY)
    assert set(params) == {"xa", "aa", "ab", "xb", "bo"}  # one copy per edge
    assert graph.num_layers == 5

    x = jax.random.normal(KEY, (2, 5))
    states, logits = graph.forward(params, x)
    a_prev, expected = None, []
    for t in range(3):
        pre = _dense(params["xa"], x)
        if t > 0:
            pre = pre + _dense(params["aa"], a_prev)
        a = jnp.tanh(pre)
        b = jnp.tanh(_dense(params["ab"], a) + _dense(params["xb"], x))
        expected += [a, b]
        a_prev = a
    for got, want in zip(states, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, _dense(params["bo"], expected[-1]), rtol=1e-5)


def test_recurrent_bipc_feedback_averages_the_top_down_and_recurrent_branches():
    """Eq 7: a@t is fed back from b@t through the forward weight and from
    a@t+1 through the recurrent weight, the two averaged; the skip edge
    gives no feedback, and the last step has the top-down branch only."""
    graph = _recurrent_chain(time_steps=2)
    params = graph.init(KEY)
    k1, k2 = jax.random.split(KEY)
    x = jax.random.normal(k1, (2, 5))
    y = jnp.array([0, 1])
    states = tuple(
        jax.random.normal(k, (2, 4 if n.startswith("a") else 3))
        for k, n in zip(jax.random.split(k2, 4), graph.order)
    )
    a0, b0, a1, b1 = states
    w_ab, w_aa = params["ab"]["op_0"]["kernel"], params["aa"]["op_0"]["kernel"]
    w_xa, w_xb = params["xa"]["op_0"]["kernel"], params["xb"]["op_0"]["kernel"]

    def half_sq(u):
        return 0.5 * jnp.sum(u**2, axis=-1)

    fa0 = jnp.tanh(_dense(params["xa"], x))
    fa1 = jnp.tanh(_dense(params["xa"], x) + _dense(params["aa"], a0))
    fb0 = jnp.tanh(_dense(params["ab"], a0) + _dense(params["xb"], x))
    fb1 = jnp.tanh(_dense(params["ab"], a1) + _dense(params["xb"], x))
    ba0 = jnp.tanh((b0 @ w_ab.T + a1 @ w_aa.T) / 2)
    ba1 = jnp.tanh(b1 @ w_ab.T)
    expected = (
        half_sq((a0 - fa0) + (a0 - ba0))
        + half_sq((a1 - fa1) + (a1 - ba1))
        + half_sq(b0 - fb0)
        + half_sq(b1 - fb1)
    )
    got = GraphBiPC(graph, "cross_entropy", "eq10", "none")(params, states, x, y, 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    del w_xa, w_xb


def test_a_weight_shared_across_time_sums_the_gradients_of_its_copies():
    graph = _recurrent_chain(time_steps=3)
    params = graph.init(KEY)
    x = jax.random.normal(KEY, (2, 5))
    y = jnp.array([1, 0])
    states = graph.forward(params, x)[0]
    states = tuple(s + 0.1 for s in states)
    energy = GraphHPC(graph, "mse")
    grad = jax.grad(lambda p: jnp.sum(energy(p, states, x, y, 1.0)))(params)

    # The same energy with each time step's copy of the recurrent edge given
    # its own parameters: the shared gradient is the sum over the copies.
    untied = dataclasses.replace(
        graph,
        edges=tuple(
            Edge(e.name, e.source, e.target, e.ops, e.kind) for e in graph.edges
        ),
    )
    untied_params = {e.name: params[e.key] for e in graph.edges if e.has_params}
    untied_grad = jax.grad(
        lambda p: jnp.sum(GraphHPC(untied, "mse")(p, states, x, y, 1.0))
    )(untied_params)
    summed = (
        untied_grad["aa@1"]["op_0"]["kernel"] + untied_grad["aa@2"]["op_0"]["kernel"]
    )
    np.testing.assert_allclose(grad["aa"]["op_0"]["kernel"], summed, rtol=1e-5)


def _model_cfg(model, width, *overrides):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    overrides = [f"model={model}", f"model.width={width}", *overrides]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose("train", overrides=overrides))


TABLE_1 = {
    # model: (state nodes per step, layers, time steps, output shape of the
    # last state node at width 1)
    "hierarchical": (10, 11, 1, (512,)),
    "recurrent_simple": (6, 15, 5, (28, 28, 32)),
    "recurrent_complex": (12, 21, 5, (512,)),
}


@pytest.mark.parametrize("model", sorted(TABLE_1))
def test_table_1_networks_have_the_shapes_and_parameter_counts_their_configs_state(
    model,
):
    from trainers.graph import graph_from_config

    nodes, layers, steps, last_shape = TABLE_1[model]
    stated = _model_cfg(model, 1.0).model.param_counts
    assert "1.0" in stated and len(stated) >= 2
    for width, count in stated.items():
        graph = graph_from_config(_model_cfg(model, width).model, (28, 28, 1), 10)
        shapes = jax.eval_shape(graph.init, KEY)
        assert sum(p.size for p in jax.tree.leaves(shapes)) == count, width
        assert len(graph.order) == nodes * steps
        assert graph.num_layers == layers
        assert graph.time_steps == steps
        x = jax.ShapeDtypeStruct((2, 784), jnp.float32)
        states, logits = jax.eval_shape(graph.forward, shapes, x)
        assert logits.shape == (2, 10)
        if width == "1.0":
            assert states[-1].shape == (2, *last_shape)


ENERGIES = {
    "hierarchical": ["hpc", "bipc", "bipc_eq9", "ep", "backprop"],
    "recurrent_simple": ["hpc", "bipc", "bipc_eq9", "backprop"],
    "recurrent_complex": ["hpc", "bipc", "bipc_eq9", "backprop"],
}


@pytest.mark.parametrize(
    "model, energy", [(m, e) for m, energies in ENERGIES.items() for e in energies]
)
def test_table_1_networks_train_a_step_with_each_energy_defined_for_them(
    small_fashion, model, energy
):
    from tests.conftest import subset
    from trainers import metrics as m
    from trainers.train import train_and_evaluate

    cfg = _model_cfg(model, 0.0625, f"energy={energy}")
    cfg.trainer.epochs, cfg.trainer.batch_size = 1, 16
    cfg.trainer.inference_steps, cfg.trainer.eval_batch_size = 2, 50
    cfg.energy.beta = 0.1 if energy == "ep" else cfg.energy.beta
    result = train_and_evaluate(cfg, subset(small_fashion, 16, val=50, test=50))
    assert result.divergence is None
    row = result.final
    assert np.isfinite(row[m.TRAIN_LOSS])
    assert m.param_grad_norm(TABLE_1[model][1]) in row
    nodes = TABLE_1[model][0]
    assert m.state_grad_norm(nodes) in row and m.state_grad_norm(nodes + 1) not in row
    if energy != "backprop":
        # The node under the output feels the label from the first step on
        # (with two steps HPC's error has not yet reached the shallow nodes).
        assert row[m.state_grad_norm(nodes)] > 0


@pytest.mark.parametrize("model", ["recurrent_simple", "recurrent_complex"])
def test_ep_is_refused_on_the_recurrent_networks_before_anything_runs(model):
    from trainers.config import ConfigError, validate

    cfg = _model_cfg(model, 0.0625, "energy=ep")
    with pytest.raises(
        ConfigError, match=f"energy=ep is not defined on model={model}, whose recurrent"
    ):
        validate(cfg)
    # Without its recurrent edges the network is feedforward, and EP runs.
    cfg.model.connections = ["forward", "skip", "internal"]
    validate(cfg)


def test_graph_ep_is_the_mlp_ep_on_a_dense_chain():
    from trainers.energies import EP
    from trainers.graph_energies import GraphEP

    sizes = (5, 7, 6, 3)
    net, graph = MLP(sizes, "tanh"), _dense_chain(sizes)
    k1, k2, k3 = jax.random.split(KEY, 3)
    params = net.init(k1)
    gparams = _as_graph_params(params, 3)
    x = jax.random.normal(k2, (4, 5))
    y = jnp.array([0, 1, 2, 1])
    mlp_ep, graph_ep = EP(net, "mse"), GraphEP(graph, "mse")
    for a, b in zip(graph_ep.init_states(gparams, x), mlp_ep.init_states(params, x)):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    states = tuple(
        jax.random.normal(k, (4, d)) for k, d in zip(jax.random.split(k3, 3), sizes[1:])
    )
    np.testing.assert_allclose(
        graph_ep(gparams, states, x, y, 0.3),
        mlp_ep(params, states, x, y, 0.3),
        rtol=1e-5,
    )
