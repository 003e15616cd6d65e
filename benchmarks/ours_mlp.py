"""The platform's HPC or BiPC MLP, timed the same way as the other libraries
(``--model hierarchical --width 0.0625``: the convolutional network of Chen
et al. 2025, Table 1, at that width, as ``conf/model/hierarchical.yaml``
declares it).

It runs the platform's own jitted epoch (``trainers.train.compiled_epoch``:
one ``lax.scan`` over the batches of device-resident data) with the energy
of ``conf/energy/hpc.yaml`` (or ``bipc.yaml`` with ``--energy bipc``) and the
settings of ``cli.py``, on the same 55,000 training images:

    .venv/bin/python benchmarks/ours_mlp.py --epochs 2

Inference takes exactly ``--inference-steps`` steps (``lax.scan``), as the
other libraries do; ``--while-loop`` uses the platform's default loop
instead, which stops once the energy's relative change falls under the
convergence threshold (an ``inference`` line then gives the mean number of
steps it took in the last epoch). ``--max-batches`` cuts each epoch to
that many batches, drawn from the whole training set as the other
libraries draw theirs (the epoch is one scan over them). ``--matmul`` then also
times the matrix products of one epoch alone (``work.py``; the MLP only) and
prints a ``work`` line.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
from omegaconf import OmegaConf

from trainers.config import (
    EnergyConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    TrainerConfig,
)
from trainers.energies import make_energy
from trainers.graph import Graph, graph_from_config
from trainers.model import MLP
from trainers.optimizers import make_optimizer
from trainers.train import accuracy, compiled_epoch, hyper_from

import cli
import fashion_mnist
import work

CONF = Path(__file__).resolve().parent.parent / "conf"


def table1_graph(model: str, width: float) -> Graph:
    """The graph ``conf/model/<model>.yaml`` declares, at ``width``, on
    Fashion-MNIST."""
    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig),
        OmegaConf.load(CONF / "model" / f"{model}.yaml"),
        {"width": width},
    )
    return graph_from_config(OmegaConf.to_object(cfg), (28, 28, 1), 10)


def run_config(args, energy: str) -> RunConfig:
    """The platform's settings for the benchmark's options (``cli.py``),
    with the energy of ``conf/energy/<energy>.yaml`` and Adam."""
    conf = OmegaConf.load(CONF / "energy" / f"{energy}.yaml")
    return RunConfig(
        energy=EnergyConfig(**OmegaConf.to_container(conf)),
        optimizer=OptimizerConfig(name="adam", lr=args.lr),
        trainer=TrainerConfig(
            batch_size=args.batch_size,
            inference_steps=args.inference_steps,
            state_lr=args.state_lr,
        ),
    )


def main() -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--while-loop", action="store_true")
    p.add_argument("--energy", choices=["hpc", "bipc"], default="hpc")
    p.add_argument("--model", choices=["mlp", "hierarchical"], default="mlp")
    p.add_argument("--width", type=float, default=0.0625, help="hierarchical only")
    p.add_argument("--matmul", action="store_true", help="time the products alone")
    args = p.parse_args()
    if args.matmul and args.model != "mlp":
        p.error("--matmul counts the MLP's products only")
    data = fashion_mnist.load(args.data_dir)
    n = None if args.max_batches is None else args.max_batches * args.batch_size

    cfg = run_config(args, args.energy)
    if args.model == "mlp":
        net = MLP((784, *args.hidden, 10), "tanh")
    else:
        net = table1_graph(args.model, args.width)
    fixed_steps = None if args.while_loop else args.inference_steps
    epoch_fn = compiled_epoch(
        net, make_energy(cfg.energy, net), "adam", args.batch_size, "sgd", fixed_steps
    )
    tx = make_optimizer(cfg.optimizer)
    key, init_key = jax.random.split(jax.random.key(args.seed))
    state = {"params": net.init(init_key)}
    state["opt"] = tx.init(state["params"])
    train_x, train_y = jax.device_put(data.train_x), jax.device_put(data.train_y)
    batches = (n or len(data.train_x)) // args.batch_size

    def train_epoch(epoch: int) -> int:
        step = jnp.asarray((epoch - 1) * batches, jnp.int32)
        x, y = train_x, train_y
        if n is not None:
            # The images the other libraries' first n batches hold this epoch.
            order = fashion_mnist.epoch_order(data, args.seed + epoch)[:n]
            x, y = x[order], y[order]
        params, opt, stats = epoch_fn(
            state["params"],
            state["opt"],
            x,
            y,
            jax.random.fold_in(key, epoch),
            hyper_from(cfg),
            step,
        )
        jax.block_until_ready((params, stats))
        state.update(params=params, opt=opt, steps=stats.sums.steps)
        return batches

    library = "ebll-studies" + ("" if args.energy == "hpc" else "-bipc")
    if args.model != "mlp":
        library += f"-{args.model}"
    cli.run_epochs(
        library,
        args,
        data,
        train_epoch,
        lambda: accuracy(net, state["params"], data.test_x, data.test_y, 5000),
    )
    cli.emit(
        library=library,
        event="inference",
        mean_steps=round(float(state["steps"]) / batches, 3),
    )
    if args.matmul:
        prods = work.products(net.sizes, args.energy)
        shape = (prods, args.batch_size, args.inference_steps)
        flop = batches * work.flop_per_batch(*shape)
        seconds = work.matmul_program(*shape)
        cli.emit(
            library=library,
            event="work",
            flop_per_epoch=flop,
            matmul_seconds=round(seconds(batches), 4),
        )


if __name__ == "__main__":
    main()
