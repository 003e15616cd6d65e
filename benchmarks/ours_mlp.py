"""The platform's HPC MLP, timed the same way as the other libraries.

It runs the platform's own jitted epoch (``trainers.train.compiled_epoch``:
one ``lax.scan`` over the batches of device-resident data) with the HPC
energy of ``conf/energy/hpc.yaml`` and the settings of ``cli.py``, on the
same 55,000 training images:

    .venv/bin/python benchmarks/ours_mlp.py --epochs 2

Inference takes exactly ``--inference-steps`` steps (``lax.scan``), as the
other libraries do; ``--while-loop`` uses the platform's default loop
instead, which stops once the energy's relative change falls under the
convergence threshold. ``--max-batches`` cuts the training set to that many
batches (the epoch is one scan over it).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
from omegaconf import OmegaConf

from trainers.config import EnergyConfig, OptimizerConfig, RunConfig, TrainerConfig
from trainers.energies import make_energy
from trainers.model import MLP
from trainers.optimizers import make_optimizer
from trainers.train import accuracy, compiled_epoch, hyper_from

import cli
import fashion_mnist

HPC = Path(__file__).resolve().parent.parent / "conf" / "energy" / "hpc.yaml"


def main() -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--while-loop", action="store_true")
    args = p.parse_args()
    data = fashion_mnist.load(args.data_dir)
    n = None if args.max_batches is None else args.max_batches * args.batch_size

    cfg = RunConfig(
        energy=EnergyConfig(**OmegaConf.to_container(OmegaConf.load(HPC))),
        optimizer=OptimizerConfig(name="adam", lr=args.lr),
        trainer=TrainerConfig(
            batch_size=args.batch_size,
            inference_steps=args.inference_steps,
            state_lr=args.state_lr,
        ),
    )
    net = MLP((784, *args.hidden, 10), "tanh")
    fixed_steps = None if args.while_loop else args.inference_steps
    epoch_fn = compiled_epoch(
        net, make_energy(cfg.energy, net), "adam", args.batch_size, "sgd", fixed_steps
    )
    tx = make_optimizer(cfg.optimizer)
    key, init_key = jax.random.split(jax.random.key(args.seed))
    state = {"params": net.init(init_key)}
    state["opt"] = tx.init(state["params"])
    x, y = jax.device_put(data.train_x[:n]), jax.device_put(data.train_y[:n])
    batches = len(x) // args.batch_size

    def train_epoch(epoch: int) -> int:
        step = jnp.asarray((epoch - 1) * batches, jnp.int32)
        params, opt, sums = epoch_fn(
            state["params"],
            state["opt"],
            x,
            y,
            jax.random.fold_in(key, epoch),
            hyper_from(cfg),
            step,
        )
        jax.block_until_ready((params, sums))
        state.update(params=params, opt=opt)
        return batches

    cli.run_epochs(
        "ebll-studies",
        args,
        data,
        train_epoch,
        lambda: accuracy(net, state["params"], data.test_x, data.test_y, 5000),
    )


if __name__ == "__main__":
    main()
