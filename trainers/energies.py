r"""Energies of the form F = E + beta C (Chen et al. 2025, Eq 17).

Every energy here returns one value per sample, shape ``(batch,)``. Inference
descends the batch *sum*, so each sample's states see their own gradient
whatever the batch size; learning descends the batch *mean*.

Notation, for an :class:`~trainers.model.MLP` with hidden states
v_1..v_L, the input v_0 = x and y the label:

* forward prediction  :math:`\hat v^f_i = g_i(v_{i-1}) = f(v_{i-1} W_i + b_i)`,
  forward error  :math:`\epsilon^f_i = v_i - \hat v^f_i` (Eq 1);
* logits  :math:`\hat y = v_L W_{L+1} + b_{L+1}`, read from the top state;
* feedback prediction from the node above through the transposed forward
  weight (Eq 7 with one branch, an MLP having no recurrence):
  :math:`\hat v^b_i = f(v_{i+1} W_{i+1}^\top)`, feedback error
  :math:`\epsilon^b_i = v_i - \hat v^b_i` (Eq 8).

The factor 1/2 is ours: Eq 2 has none, but the gradients the paper gives in
Eq 3 and Eq 4 are those of the energy with 1/2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from trainers.config import EnergyConfig
from trainers.model import MLP, Params, States

EnergyFn = Callable[[Params, States, jax.Array, jax.Array, jax.Array], jax.Array]


def _half_sq(u: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(jnp.square(u), axis=-1)


def output_loss(kind: str, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """C per sample: cross-entropy on the logits, or 1/2 ||y_onehot - logits||^2."""
    if kind == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return _half_sq(onehot - logits)


def forward_errors(net: MLP, params: Params, states: States, x: jax.Array):
    """eps^f_i = v_i - g_i(v_{i-1}) for i = 1..L."""
    below = (x,) + states[:-1]
    return [
        v - net.predict(params, i, u) for i, (v, u) in enumerate(zip(states, below))
    ]


@dataclass(frozen=True)
class HPC:
    r"""Hierarchical predictive coding (Chen et al. 2025, Eq 2):

    .. math:: F = \tfrac12 \sum_{i=1}^{L} \|\epsilon^f_i\|^2
              + \beta\, C(\hat y, y).

    With C = 1/2 ||y - y_hat||^2 this is Eq 2 with the label clamped at node
    L+1; cross-entropy is also allowed. Its state gradient is Eq 3,
    eps_i - (dg_{i+1}/dv_i)^T eps_{i+1}, and its parameter gradient Eq 4.
    """

    net: MLP
    loss: str = "mse"
    uses_inference = True

    def init_states(self, params: Params, x: jax.Array) -> States:
        return self.net.forward(params, x)[0]

    def __call__(self, params, states, x, y, beta):
        internal = sum(_half_sq(e) for e in forward_errors(self.net, params, states, x))
        logits = self.net.predict(params, self.net.num_layers - 1, states[-1])
        return internal + beta * output_loss(self.loss, logits, y)


@dataclass(frozen=True)
class BiPC:
    r"""Bidirectional predictive coding (Chen et al. 2025, Eq 9 and Eq 10).

    Eq 10 (``form="eq10"``, the paper's choice):

    .. math:: F = \tfrac12 \sum_{i=1}^{L} \|\epsilon^f_i + \epsilon^b_i\|^2
              + \beta\,(C^f + C^b),

    Eq 9 (``form="eq9"``) sums the squares instead,
    :math:`\tfrac12 (\|\epsilon^f_i\|^2 + \|\epsilon^b_i\|^2)`.

    Our readings, where the paper is silent:

    * The top hidden node v_L has no feedback error: the node above it is the
      output, which holds no state in an MLP (its prediction feeds C^f).
      Feeding the label back instead would let y act through E even at
      beta = 0, which Eq 17 rules out.
    * C^f is the cross-entropy of the logits (``loss``).
    * C^b (``input_feedback="reconstruction"``) is the squared error of the
      input's feedback prediction, 1/2 ||x - v_1 W_1^T||^2, identity
      activation, scaled by beta like C^f. ``"none"`` drops it.
    """

    net: MLP
    loss: str = "cross_entropy"
    form: str = "eq10"
    input_feedback: str = "reconstruction"
    uses_inference = True

    def init_states(self, params: Params, x: jax.Array) -> States:
        return self.net.forward(params, x)[0]

    def __call__(self, params, states, x, y, beta):
        net = self.net
        eps_f = forward_errors(net, params, states, x)
        internal = _half_sq(eps_f[-1])
        for i in range(net.num_hidden - 1):
            eps_b = states[i] - net.feedback(params, i + 1, states[i + 1])
            if self.form == "eq10":
                internal += _half_sq(eps_f[i] + eps_b)
            else:
                internal += _half_sq(eps_f[i]) + _half_sq(eps_b)

        logits = net.predict(params, net.num_layers - 1, states[-1])
        external = output_loss(self.loss, logits, y)
        if self.input_feedback == "reconstruction":
            external += _half_sq(x - net.feedback(params, 0, states[0]))
        return internal + beta * external


@dataclass(frozen=True)
class Backprop:
    """The same network trained by backpropagation of C on a forward pass.

    There is no internal energy and no inference; ``states`` and ``beta`` are
    ignored, so the learning rate alone scales the step.
    """

    net: MLP
    loss: str = "cross_entropy"
    uses_inference = False

    def init_states(self, params: Params, x: jax.Array) -> States:
        return ()

    def __call__(self, params, states, x, y, beta):
        return output_loss(self.loss, self.net.logits(params, x), y)


@dataclass(frozen=True)
class EP:
    r"""Equilibrium propagation's Hopfield-like energy on a layered network
    (Scellier and Bengio 2017; Chen et al. 2025, Eq 17):

    .. math::
        E = \tfrac12 \sum_{i=1}^{L+1} \|v_i\|^2
            - \sum_{i=1}^{L+1} \rho(v_{i-1})^\top W_i\, \rho(v_i)
            - \sum_{i=1}^{L+1} b_i^\top \rho(v_i),
        \qquad F = E + \beta\, C(v_{L+1}, y),

    with v_0 = x clamped (rho(x) = x), rho the model's activation, and the
    output node v_{L+1} a free state whose value is read as the logits. The
    pair sum of Eq 17 (1/2 over i != j, every pair counted twice) is the sum
    over edges written here.

    Learning compares two equilibria instead of descending F: the free phase
    (beta = 0) and a nudged phase (beta, or +beta and -beta with symmetric
    nudging, Laborieux et al. 2021), see ``trainers.train``. The states
    start from a forward pass of pre-activations, v_i = rho(v_{i-1}) W_i +
    b_i, whose output equals the MLP's logits.
    """

    net: MLP
    loss: str = "mse"
    symmetric: bool = True
    uses_inference = True
    two_phase = True

    def rho(self, i: int, v: jax.Array) -> jax.Array:
        return v if i == 0 else self.net.act(v)

    def init_states(self, params: Params, x: jax.Array) -> States:
        states, v = [], x
        for i in range(self.net.num_layers):
            v = self.net.edge(params, i, self.rho(i, v))
            states.append(v)
        return tuple(states)

    def __call__(self, params, states, x, y, beta):
        nodes = (x,) + tuple(states)
        rhos = [self.rho(i, v) for i, v in enumerate(nodes)]
        energy = sum(_half_sq(v) for v in states)
        for i in range(self.net.num_layers):
            p = params[f"layer_{i}"]
            coupling = rhos[i] @ p["kernel"] + p["bias"]
            energy -= jnp.sum(coupling * rhos[i + 1], axis=-1)
        return energy + beta * output_loss(self.loss, states[-1], y)


def make_energy(cfg: EnergyConfig, net):
    """The energy ``cfg`` names, on an MLP or a graph."""
    from trainers.graph import Graph
    from trainers.graph_energies import GraphBiPC, GraphEP, GraphHPC

    if isinstance(net, Graph):
        if cfg.name == "hpc":
            return GraphHPC(net, cfg.loss)
        if cfg.name == "bipc":
            return GraphBiPC(net, cfg.loss, cfg.bipc_form, cfg.input_feedback)
        if cfg.name == "ep":
            if net.time_steps > 1:
                raise ValueError(
                    "energy.name='ep' is not defined on a graph unrolled in time."
                )
            return GraphEP(net, cfg.loss, cfg.ep_nudging == "symmetric")
    if cfg.name == "hpc":
        return HPC(net, cfg.loss)
    if cfg.name == "bipc":
        return BiPC(net, cfg.loss, cfg.bipc_form, cfg.input_feedback)
    if cfg.name == "backprop":
        return Backprop(net, cfg.loss)
    if cfg.name == "ep":
        return EP(net, cfg.loss, cfg.ep_nudging == "symmetric")
    raise ValueError(f"energy.name={cfg.name!r} is not supported.")
