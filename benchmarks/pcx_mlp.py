r"""The HPC MLP in pcx 0.6.3, timed on Fashion-MNIST.

Written the way pcx's own examples train a classifier: an ``EnergyModule``
with one ``Vode`` per layer, a vmapped energy, ``pxu.Optim`` for states and
weights and one jitted ``train_on_batch`` called per batch. The settings are
the platform's HPC defaults (``cli.py``); run it in the env that
``envs.sh`` makes:

    benchmarks/.envs/pcx/bin/python benchmarks/pcx_mlp.py --epochs 2

How it matches ours, and where it does not:

* energy: every Vode's ``se_energy`` is 1/2 ||h - u||^2, and the output Vode
  holds the one-hot label (frozen), so F is Eq 2 with C = 1/2 ||y - logits||^2
  and beta = 1, as our HPC default; ``--beta`` is not used;
* inference: F summed over the batch (``psum``), ``inference_steps`` plain
  SGD steps at eta_v, from a forward pass, as ours;
* learning: the weight gradient of the same sum, scaled by 1 / batch in
  ``Optim.step`` to make it the batch mean, as ours, then Adam;
* initialisation differs: pcx's ``Linear`` is equinox's, uniform in
  +-1/sqrt(fan_in) for weights and biases; ours is Flax's LeCun normal with
  zero biases.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pcx as px
import pcx.functional as pxf
import pcx.nn as pxnn
import pcx.predictive_coding as pxc
import pcx.utils as pxu

import cli
import fashion_mnist

STATES = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))


class MLP(pxc.EnergyModule):
    """Hidden Vodes hold post-activation states; the last Vode the logits'
    target."""

    def __init__(self, sizes: tuple[int, ...], act: Callable[[jax.Array], jax.Array]):
        super().__init__()
        self.act = px.static(act)
        self.layers = [pxnn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.vodes = [pxc.Vode() for _ in sizes[1:-1]] + [pxc.Vode(pxc.se_energy)]
        self.vodes[-1].h.frozen = True

    def __call__(self, x, y=None):
        for vode, layer in zip(self.vodes[:-1], self.layers[:-1]):
            x = vode(self.act(layer(x)))
        self.vodes[-1](self.layers[-1](x))
        if y is not None:
            self.vodes[-1].set("h", y)
        return self.vodes[-1].get("u")


@pxf.vmap(STATES, in_axes=(0, 0), out_axes=0)
def forward(x, y, *, model: MLP):
    return model(x, y)


@pxf.vmap(STATES, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
def energy(x, *, model: MLP):
    logits = model(x)
    return jax.lax.psum(model.energy(), "batch"), logits


@pxf.jit(static_argnums=0)
def train_on_batch(steps: int, x, y, *, model: MLP, optim_w, optim_h):
    model.train()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(x, y, model=model)
    optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))

    for _ in range(steps):
        free = pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True])
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(free, has_aux=True)(energy)(x, model=model)
        optim_h.step(model, g["model"])
    optim_h.clear()

    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        weights = pxu.M(pxnn.LayerParam).to([False, True])
        _, g = pxf.value_and_grad(weights, has_aux=True)(energy)(x, model=model)
    optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])


@pxf.jit()
def correct_on_batch(x, y, *, model: MLP):
    model.eval()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        logits = forward(x, None, model=model)
    return jnp.argmax(logits, -1) == y


def test_accuracy(model: MLP, data: fashion_mnist.Data, batch_size: int) -> float:
    """Forward-pass accuracy on the whole test split, in batches of the
    training size (the last one padded) so that no shape recompiles."""
    n = len(data.test_x)
    pad = -n % batch_size
    x = np.concatenate([data.test_x, np.zeros((pad, data.test_x.shape[1]), "f4")])
    y = np.concatenate([data.test_y, np.zeros(pad, "i4")])
    hits = [
        np.asarray(
            correct_on_batch(x[i : i + batch_size], y[i : i + batch_size], model=model)
        )
        for i in range(0, len(x), batch_size)
    ]
    return float(np.concatenate(hits)[:n].mean())


def reference_step(reference: dict) -> dict:
    """One step from the saved weights, learning by SGD at rate 1, so that
    the change of each weight is dF/dtheta (``cli.check_step``)."""
    layers = cli.reference_layers(reference)
    sizes = (layers[0][0].shape[0], *(k.shape[1] for k, _ in layers))
    model = MLP(sizes, jnp.tanh)
    x = jnp.asarray(reference["x"])
    y = jax.nn.one_hot(reference["y"], sizes[-1], dtype=x.dtype)
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(x, None, model=model)
        optim_h = pxu.Optim(lambda: optax.sgd(float(reference["eta_v"])))
        optim_w = pxu.Optim(lambda: optax.sgd(1.0), pxu.M(pxnn.LayerParam)(model))
    for layer, (kernel, bias) in zip(model.layers, layers):
        layer.nn.weight.set(jnp.asarray(kernel.T))
        layer.nn.bias.set(jnp.asarray(bias))

    steps = int(reference["inference_steps"])
    train_on_batch(steps, x, y, model=model, optim_w=optim_w, optim_h=optim_h)
    out = {f"state_{i}": v.get("h") for i, v in enumerate(model.vodes[:-1], start=1)}
    for i, (layer, (kernel, bias)) in enumerate(zip(model.layers, layers)):
        out[f"grad layer_{i}.kernel"] = kernel - np.asarray(layer.nn.weight.get()).T
        out[f"grad layer_{i}.bias"] = bias - np.asarray(layer.nn.bias.get())
    return out


def main() -> None:
    args = cli.parser(__doc__.splitlines()[0]).parse_args()
    if args.check:
        jax.config.update("jax_enable_x64", True)
        sys.exit(cli.check_step(f"pcx-{version('pcx')}", args.check, reference_step))
    px.RKG.seed(args.seed)
    data = fashion_mnist.load(args.data_dir)
    model = MLP((784, *args.hidden, 10), jnp.tanh)

    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jnp.zeros((args.batch_size, 784)), None, model=model)
        optim_h = pxu.Optim(lambda: optax.sgd(args.state_lr))
        optim_w = pxu.Optim(lambda: optax.adam(args.lr), pxu.M(pxnn.LayerParam)(model))

    def train_epoch(epoch: int) -> int:
        count = 0
        for x, y in fashion_mnist.batches(
            data, args.batch_size, args.seed + epoch, args.max_batches
        ):
            y = jax.nn.one_hot(y, 10)
            train_on_batch(
                args.inference_steps,
                x,
                y,
                model=model,
                optim_w=optim_w,
                optim_h=optim_h,
            )
            count += 1
        jax.block_until_ready(jax.tree_util.tree_leaves(model))
        return count

    cli.run_epochs(
        f"pcx-{version('pcx')}",
        args,
        data,
        train_epoch,
        lambda: test_accuracy(model, data, args.batch_size),
    )


if __name__ == "__main__":
    main()
