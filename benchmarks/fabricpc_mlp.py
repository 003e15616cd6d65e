"""The HPC MLP in FabricPC 0.6.0, timed on Fashion-MNIST.

Written the way FabricPC's own examples train a classifier: ``Linear`` nodes
joined by ``Edge``s into a ``graph`` with ``InferenceSGD``, trained by
``fabricpc.train`` and scored by ``fabricpc.evaluate``. ``train`` runs all
epochs in one call (one compilation); its epoch callback stops the clock,
scores the test split and starts the clock again. The settings are the
platform's HPC defaults (``cli.py``); run it in the env ``envs.sh`` makes:

    benchmarks/.envs/fabricpc/bin/python benchmarks/fabricpc_mlp.py --epochs 2

How it matches ours, and where it does not:

* energy: every node's default ``GaussianEnergy`` is 1/2 ||z - mu||^2 and the
  output node (identity activation) is clamped to the one-hot label, so F is
  Eq 2 with C = 1/2 ||y - logits||^2 and beta = 1, as our HPC default;
  ``--beta`` is not used;
* inference: ``InferenceSGD`` moves each sample's states by eta_v times its
  own gradient (the gradient of the batch sum), ``inference_steps`` times,
  from a feedforward pass (FabricPC's default state initialiser), as ours;
* learning: FabricPC's local weight gradients divided by the batch size,
  the batch mean as ours, then Adam;
* initialisation differs: FabricPC's default weights are Kaiming normal,
  std sqrt(2 / fan_in) (its ReLU gain, whatever the activation); ours are
  Flax's LeCun normal, std about sqrt(1 / fan_in); biases are zero in both;
* its ``evaluate`` runs inference with the label free, which leaves a
  feedforward graph at its forward pass, so the accuracy is a forward
  pass's as everywhere else.
"""

from __future__ import annotations

import sys
import time

import fabricpc
import jax
import jax.numpy as jnp
import numpy as np
import optax
from fabricpc.core.activations import TanhActivation
from fabricpc.core.inference import InferenceSGD
from fabricpc.core.topology import Edge
from fabricpc.graph_assembly import TaskMap, graph
from fabricpc.nodes import Linear

import cli
import fashion_mnist


class Batches:
    """A reshuffling loader of ``(x, y)`` batches with ``len()``, as
    ``fabricpc.train`` expects."""

    def __init__(self, data: fashion_mnist.Data, batch_size: int, seed: int, limit):
        self.data, self.batch_size, self.seed, self.limit = (
            data,
            batch_size,
            seed,
            limit,
        )
        self.epoch = 0

    def __len__(self) -> int:
        count = len(self.data.train_x) // self.batch_size
        return count if self.limit is None else min(count, self.limit)

    def __iter__(self):
        self.epoch += 1
        seed = self.seed + self.epoch
        return fashion_mnist.batches(self.data, self.batch_size, seed, self.limit)


def node_names(sizes: tuple[int, ...]) -> list[str]:
    hidden = [f"hidden{i}" for i in range(1, len(sizes) - 1)]
    return ["pixels", *hidden, "logits"]


def build(sizes: tuple[int, ...], state_lr: float, steps: int):
    names = node_names(sizes)
    pixels = Linear(shape=(sizes[0],), name=names[0])
    hidden = [
        Linear(shape=(d,), activation=TanhActivation(), name=name)
        for d, name in zip(sizes[1:-1], names[1:-1])
    ]
    logits = Linear(shape=(sizes[-1],), name=names[-1])
    chain = [pixels, *hidden, logits]
    return graph(
        nodes=chain,
        edges=[Edge(source=a, target=b.slot("in")) for a, b in zip(chain, chain[1:])],
        task_map=TaskMap(x=pixels, y=logits),
        inference=InferenceSGD(eta_infer=state_lr, infer_steps=steps),
    )


def _layers(params, sizes):
    """(kernel, bias) of each layer, input layer first, in Flax's layout."""
    names = node_names(sizes)
    return [
        (p.weights[f"{a}->{b}:in"], p.biases["b"].reshape(-1))
        for a, b, p in ((a, b, params.nodes[b]) for a, b in zip(names, names[1:]))
    ]


def reference_step(reference: dict) -> dict:
    """One step from the saved weights, learning by SGD at rate 1, so that
    the change of each weight is dF/dtheta (``cli.check_step``)."""
    layers = cli.reference_layers(reference)
    sizes = (layers[0][0].shape[0], *(k.shape[1] for k, _ in layers))
    steps = int(reference["inference_steps"])
    structure = build(sizes, float(reference["eta_v"]), steps)
    params = fabricpc.initialize_params(structure, jax.random.key(0))
    names = node_names(sizes)
    nodes = dict(params.nodes)
    for a, b, (kernel, bias) in zip(names, names[1:], layers):
        weights = {f"{a}->{b}:in": jnp.asarray(kernel)}
        bias = jnp.asarray(bias).reshape(nodes[b].biases["b"].shape)
        nodes[b] = nodes[b]._replace(weights=weights, biases={"b": bias})
    params = params._replace(nodes=nodes)

    sgd = optax.sgd(1.0)
    step = fabricpc.training.make_train_step(structure, sgd)
    batch = {"x": jnp.asarray(reference["x"]), "y": jnp.asarray(reference["y"])}
    new, _, _, state = step(params, sgd.init(params), batch, jax.random.key(0))
    out = {f"state_{i}": state.nodes[n].z_latent for i, n in enumerate(names[1:-1], 1)}
    for i, (old, now) in enumerate(zip(layers, _layers(new, sizes))):
        out[f"grad layer_{i}.kernel"] = old[0] - np.asarray(now[0])
        out[f"grad layer_{i}.bias"] = old[1] - np.asarray(now[1])
    return out


def main() -> None:
    args = cli.parser(__doc__.splitlines()[0]).parse_args()
    if args.check:
        jax.config.update("jax_enable_x64", True)
        library = f"fabricpc-{fabricpc.__version__}"
        sys.exit(cli.check_step(library, args.check, reference_step))
    data = fashion_mnist.load(args.data_dir)
    structure = build((784, *args.hidden, 10), args.state_lr, args.inference_steps)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(args.seed), 3)
    params = fabricpc.initialize_params(structure, init_key)
    loader = Batches(data, args.batch_size, args.seed, args.max_batches)
    test = [
        (data.test_x[i : i + 1000], data.test_y[i : i + 1000])
        for i in range(0, len(data.test_x), 1000)
    ]
    config = {"num_epochs": args.epochs}

    cli.emit_setup(f"fabricpc-{fabricpc.__version__}", args, data)
    clock = [time.perf_counter()]

    def on_epoch(ctx) -> None:
        jax.block_until_ready(ctx.params)
        seconds = time.perf_counter() - clock[0]
        accuracy = fabricpc.evaluate(ctx.params, structure, test, config, eval_key)[
            "accuracy"
        ]
        cli.emit_epoch(
            f"fabricpc-{fabricpc.__version__}",
            ctx.epoch_idx + 1,
            len(loader),
            seconds,
            accuracy,
        )
        clock[0] = time.perf_counter()

    fabricpc.train(
        params,
        structure,
        loader,
        optax.adam(args.lr),
        config,
        train_key,
        verbose=False,
        epoch_callback=on_epoch,
    )


if __name__ == "__main__":
    main()
