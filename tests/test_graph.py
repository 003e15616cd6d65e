"""Graphs of nodes and edges: validation, shapes, and energies that agree
with the MLP's on the same network."""

from __future__ import annotations

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
                Edge("aa", "a", "a", (Op("dense", features=3),), kind="recurrent"),
            ],
            "edge 'aa' is recurrent",
        ),
    ],
)
def test_bad_graphs_are_refused_by_name(edges, message):
    nodes = [Node("x"), Node("a"), Node("b"), Node("out")]
    with pytest.raises(GraphError, match=message):
        build(nodes, edges, "x", "out", (6,))


def _hierarchical_cfg(width):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    overrides = ["model=hierarchical", f"model.width={width}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose("train", overrides=overrides))


def test_hierarchical_network_has_the_parameter_count_its_config_states():
    from trainers.graph import graph_from_config

    for width, count in ((1.0, 2_261_360), (0.125, 36_149)):
        graph = graph_from_config(_hierarchical_cfg(width).model, (28, 28, 1), 10)
        params = graph.init(KEY)
        assert sum(p.size for p in jax.tree.leaves(params)) == count
        assert len(graph.order) == 10  # Table 1: 11 nodes with the input
        assert graph.num_layers == 11  # nine conv and two fully connected


@pytest.mark.parametrize("energy", ["hpc", "bipc", "backprop"])
def test_hierarchical_network_trains_a_step_with_each_energy(small_fashion, energy):
    from tests.conftest import subset
    from trainers import metrics as m
    from trainers.train import train_and_evaluate

    cfg = _hierarchical_cfg(0.125)
    cfg.energy.name = energy
    cfg.trainer.epochs, cfg.trainer.batch_size = 1, 32
    cfg.trainer.inference_steps, cfg.trainer.eval_batch_size = 2, 100
    result = train_and_evaluate(cfg, subset(small_fashion, 64, val=100, test=100))
    assert result.divergence is None
    assert np.isfinite(result.final[m.TRAIN_LOSS])
    assert m.param_grad_norm(11) in result.final


def test_ep_is_refused_on_a_graph_before_anything_runs():
    from trainers.config import ConfigError, validate

    cfg = _hierarchical_cfg(0.125)
    cfg.energy.name = "ep"
    with pytest.raises(
        ConfigError, match="energy=ep is not defined on model=hierarchical"
    ):
        validate(cfg)
