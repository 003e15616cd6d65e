"""Ours and the PyTorch reference trained side by side from the same
weights on the same batches: Table 1's hierarchical network (Chen et al.
2025) at width 1/16, HPC (Eq 2), 20 inference steps, Adam, float32.

    .venv/bin/python benchmarks/same_start.py [--epochs 3] [--max-batches 40] [--seed 0]

Prints, after some of the first batches and after every epoch, the largest
difference between the two sets of kernels (relative to the largest
kernel entry of each layer) and, per epoch, both test accuracies (forward
pass). ``parity.py`` checks one step in float64; this shows how far
float32 training drifts apart from there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from trainers.energies import make_energy
from trainers.optimizers import make_optimizer
from trainers.train import accuracy, hyper_from, make_train_step

import cli
import fashion_mnist
import parity
import torch_ref
from ours_mlp import run_config, table1_graph

REPORTED_BATCHES = (1, 2, 5, 10, 20)


def kernel_difference(params, net) -> float:
    worst = 0.0
    for _, p, layer in parity.paired_layers(params, net):
        ours = np.asarray(p["kernel"])
        theirs = parity.to_flax_layout(layer.weight.detach().numpy())
        worst = max(worst, float(np.abs(ours - theirs).max() / np.abs(ours).max()))
    return worst


def main() -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=0.0625)
    p.set_defaults(epochs=3, max_batches=40)
    args = p.parse_args()
    data = fashion_mnist.load(args.data_dir)
    shape = (-1, 1, 28, 28)

    net = table1_graph("hierarchical", args.width)
    params = net.init(jax.random.key(args.seed))
    reference = torch_ref.Chain.from_config("hierarchical", args.width)
    parity.to_torch(params, reference)

    cfg = run_config(args, "hpc")
    tx = make_optimizer(cfg.optimizer)
    opt_state = tx.init(params)
    step = jax.jit(
        make_train_step(
            net, make_energy(cfg.energy, net), tx, "sgd", args.inference_steps
        )
    )
    hyper = hyper_from(cfg)
    torch_opt = torch.optim.Adam(reference.parameters(), lr=args.lr)
    torch_energy = torch_ref.make_energy(cfg.energy.name, cfg.energy.loss)
    test_x = torch.from_numpy(data.test_x).reshape(shape)
    test_y = torch.from_numpy(data.test_y).long()

    for epoch in range(1, args.epochs + 1):
        batches = fashion_mnist.batches(
            data, args.batch_size, args.seed + epoch, args.max_batches
        )
        for i, (xb, yb) in enumerate(batches, start=1):
            params, opt_state, _ = step(
                params, opt_state, jnp.asarray(xb), jnp.asarray(yb), hyper
            )
            torch_ref.train_step(
                torch_energy,
                reference,
                torch_opt,
                torch.from_numpy(xb).reshape(shape),
                torch.from_numpy(yb).long(),
                cfg.energy.beta,
                args.inference_steps,
                args.state_lr,
            )
            if epoch == 1 and i in REPORTED_BATCHES:
                diff = kernel_difference(params, reference)
                print(f"batch {i}: kernels differ by {diff:.2e}", flush=True)
        ours = accuracy(net, params, data.test_x, data.test_y, 5000)
        theirs = torch_ref.accuracy(reference, test_x, test_y)
        diff = kernel_difference(params, reference)
        print(
            f"epoch {epoch}: test accuracy ours {ours:.4f}, reference "
            f"{theirs:.4f}; kernels differ by {diff:.2e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
