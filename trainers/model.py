"""A multilayer perceptron seen as a chain of nodes with states.

Node 0 holds the input x (clamped), nodes 1..L hold the hidden states
v_1..v_L, and the output layer reads the label prediction from v_L. Edge i
(``layer_{i-1}`` in the parameters, a Flax ``Dense``) maps node i-1 to
node i:

    g_i(v_{i-1}) = f(v_{i-1} W_i + b_i),

with ``f`` the model's activation on hidden nodes and the identity on the
output, whose prediction is the logits. States are post-activation values,
so a forward pass sets every state to its prediction.

Parameters are ``{"layer_0": {"kernel", "bias"}, ..., "layer_L": ...}``: one
entry per layer, a layer being a weight with its bias, which is the grouping
the layer-wise optimizers use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = dict[str, dict[str, jax.Array]]
States = tuple[jax.Array, ...]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda u: u,
}


@dataclass(frozen=True)
class MLP:
    """Layer sizes ``(d_0, d_1, ..., d_L, d_out)`` and the hidden activation."""

    sizes: tuple[int, ...]
    activation: str = "tanh"

    @property
    def num_hidden(self) -> int:
        return len(self.sizes) - 2

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def state_groups(self) -> tuple[tuple[int, ...], ...]:
        """Each hidden node's position among the states (one state each)."""
        return tuple((i,) for i in range(self.num_hidden))

    def act(self, u: jax.Array) -> jax.Array:
        return ACTIVATIONS[self.activation](u)

    def init(self, key: jax.Array) -> Params:
        keys = jax.random.split(key, self.num_layers)
        params = {}
        for i, (d_in, d_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            dense = nn.Dense(d_out)
            params[layer_name(i)] = dense.init(keys[i], jnp.zeros((1, d_in)))["params"]
        return params

    def edge(self, params: Params, i: int, v: jax.Array) -> jax.Array:
        """Pre-activation of edge ``i`` (0-based) applied to node ``i``."""
        p = params[layer_name(i)]
        return v @ p["kernel"] + p["bias"]

    def predict(self, params: Params, i: int, v: jax.Array) -> jax.Array:
        """g_{i+1}(v_i): the prediction of node i+1 from node i."""
        u = self.edge(params, i, v)
        return u if i == self.num_layers - 1 else self.act(u)

    def feedback(self, params: Params, i: int, v_above: jax.Array) -> jax.Array:
        """Prediction of node ``i`` from node ``i+1`` through the transposed
        forward weight of edge ``i``, with node i's forward activation (the
        identity for the input node). No bias: the forward bias lives in the
        space of node i+1."""
        u = v_above @ params[layer_name(i)]["kernel"].T
        return u if i == 0 else self.act(u)

    def forward(self, params: Params, x: jax.Array) -> tuple[States, jax.Array]:
        """One forward pass: the hidden states at their predictions and the
        logits."""
        states = []
        v = x
        for i in range(self.num_hidden):
            v = self.predict(params, i, v)
            states.append(v)
        return tuple(states), self.predict(params, self.num_layers - 1, v)

    def logits(self, params: Params, x: jax.Array) -> jax.Array:
        return self.forward(params, x)[1]


def layer_name(i: int) -> str:
    return f"layer_{i}"
