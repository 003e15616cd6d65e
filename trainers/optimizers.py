r"""Layer-wise update rules as optax transformations, and the factory that
turns an :class:`~trainers.config.OptimizerConfig` into one.

A *layer* is one top-level entry of the parameter tree (for the MLP, one
edge's weight together with its bias). Its gradient norm is the norm of all
its leaves together:

.. math:: \|g_i\| = \big(\textstyle\sum_{l \in i} \|g_l\|^2\big)^{1/2}.

Every factory is wrapped in :func:`optax.inject_hyperparams`, so the rates
live in the optimizer state: a new learning rate is new data, not a new
program, and the compiled train step is reused.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from trainers.config import OptimizerConfig

_TINY = 1e-12


def _layers(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [tree[k] for k in sorted(tree)]
    if isinstance(tree, (list, tuple)):
        return list(tree)
    raise TypeError(
        f"layer-wise optimizers need a dict, list or tuple of layers, got {type(tree)}"
    )


def _rebuild(tree: Any, layers: list[Any]) -> Any:
    if isinstance(tree, dict):
        return dict(zip(sorted(tree), layers))
    return type(tree)(layers)


def layer_norms(tree: Any) -> jax.Array:
    """The L2 norm of each layer of ``tree``, in sorted key order."""
    return jnp.stack([optax.tree.norm(layer) for layer in _layers(tree)])


def _scale_layers(tree: Any, scales: jax.Array) -> Any:
    scaled = [
        jax.tree.map(lambda u, s=s: (s * u).astype(u.dtype), layer)
        for layer, s in zip(_layers(tree), scales)
    ]
    return _rebuild(tree, scaled)


def scale_by_lalr() -> optax.GradientTransformation:
    r"""Layer-adaptive learning rate (Chen et al. 2025, Eq 13 to 16).

    Each layer's update is rescaled so that its length equals the harmonic
    mean S of the layers' gradient norms:

    .. math::
        S = \frac{n}{\sum_{j} 1/\|g_j\|}, \qquad
        u_i = \frac{S}{\|g_i\|}\, g_i,

    so after ``scale_by_learning_rate(eta)`` layer i moves by eta S, which is
    Eq 15 (Delta theta_i / Delta theta_bar = 1) with the layer rate of Eq 16,
    eta_i = eta S / ||g_i||. The extracted Eq 14 and 16 are garbled; this is
    our reading of them. A layer whose gradient norm is zero is left out of
    S (n counts the others) and is not moved; if every layer is zero, the
    update is zero, never NaN.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        norms = layer_norms(updates)
        live = norms > _TINY
        inverse = jnp.where(live, 1.0 / jnp.where(live, norms, 1.0), 0.0)
        harmonic = jnp.sum(live) / jnp.maximum(jnp.sum(inverse), _TINY)
        return _scale_layers(updates, harmonic * inverse), state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_layer_trust_ratio(trust_coefficient: float = 1.0):
    r"""LARS's trust ratio per layer (You et al. 2017):

    .. math:: u_i = \tau \frac{\|w_i\|}{\|g_i\|}\, g_i,

    with tau the trust coefficient and a layer being a weight with its bias
    (``optax.scale_by_trust_ratio`` works per leaf instead). A zero weight or
    gradient norm gives a ratio of 1, as in optax, so zero-initialised layers
    still move.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_layer_trust_ratio needs the params.")
        g_norms = layer_norms(updates)
        w_norms = layer_norms(params)
        usable = (g_norms > _TINY) & (w_norms > _TINY)
        ratio = jnp.where(usable, w_norms / jnp.where(usable, g_norms, 1.0), 1.0)
        return _scale_layers(updates, trust_coefficient * ratio), state

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(learning_rate, momentum=0.0, weight_decay=0.0):
    """theta <- theta - eta (m), m the momentum trace of (g + lambda theta)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.trace(decay=momentum),
        optax.scale_by_learning_rate(learning_rate),
    )


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    """Adam (Kingma and Ba 2014) on g + lambda theta."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def lars(learning_rate, momentum=0.0, weight_decay=0.0, trust_coefficient=1.0):
    """LARS: the per-layer trust ratio, then momentum, then the rate."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        scale_by_layer_trust_ratio(trust_coefficient),
        optax.trace(decay=momentum),
        optax.scale_by_learning_rate(learning_rate),
    )


def lalr(learning_rate, momentum=0.0, weight_decay=0.0):
    """LALR: momentum first, then the harmonic-mean layer scaling, then eta,
    so every layer's step has length eta S (S of the momentum buffers)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.trace(decay=momentum),
        scale_by_lalr(),
        optax.scale_by_learning_rate(learning_rate),
    )


_FACTORIES = {"sgd": sgd, "adam": adam, "lars": lars, "lalr": lalr}
_ARGS = {
    "sgd": ("momentum", "weight_decay"),
    "adam": ("b1", "b2", "eps", "weight_decay"),
    "lars": ("momentum", "weight_decay", "trust_coefficient"),
    "lalr": ("momentum", "weight_decay"),
}


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """The optimizer ``cfg`` names, with every number injected as state."""
    if cfg.name not in _FACTORIES:
        raise ValueError(
            f"optimizer.name={cfg.name!r} is not supported; "
            f"allowed: {', '.join(_FACTORIES)}."
        )
    kwargs = {name: float(getattr(cfg, name)) for name in _ARGS[cfg.name]}
    return optax.inject_hyperparams(_FACTORIES[cfg.name])(
        learning_rate=float(cfg.lr), **kwargs
    )
