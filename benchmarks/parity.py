"""Checks that the PyTorch reference computes what the platform computes.

From the same weights (the platform's Flax initialisation copied into
torch) and the same Fashion-MNIST batch, in float64, one train step of each
is compared: F summed over the batch before inference, F averaged over the
batch after it, the relaxed states, dF/dtheta and the SGD update of every
parameter. The platform's side goes through its public functions
(``make_energy``, ``pc_gradient`` with a fixed number of inference steps,
``make_optimizer``); the energies take their settings from
``conf/energy/*.yaml`` and the rates from ``conf/trainer/default.yaml`` and
``conf/optimizer/sgd.yaml``.

A difference is max |ours - torch| / max |torch| over an array. The script
prints one line per case and exits 1 if any difference exceeds the
tolerance:

    python benchmarks/parity.py [--tolerance 1e-6] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
from omegaconf import OmegaConf

from trainers.config import EnergyConfig, OptimizerConfig
from trainers.energies import make_energy
from trainers.inference import Hyper
from trainers.model import MLP, layer_name
from trainers.optimizers import make_optimizer
from trainers.train import pc_gradient

import fashion_mnist
import torch_ref

CONF = Path(__file__).resolve().parent.parent / "conf"
SIZES = (784, 512, 512, 10)


def _conf(group: str, name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / group / f"{name}.yaml"))


def cases() -> dict[str, EnergyConfig]:
    """The default HPC and BiPC Eq 10 energies, and one variant of each."""
    hpc = EnergyConfig(**_conf("energy", "hpc"))
    bipc = EnergyConfig(**_conf("energy", "bipc"))
    return {
        "hpc": hpc,
        "hpc loss=cross_entropy": replace(hpc, loss="cross_entropy"),
        "bipc eq10": bipc,
        "bipc eq10 input_feedback=reconstruction": replace(
            bipc, input_feedback="reconstruction"
        ),
    }


def to_torch(params, net: torch_ref.MLP) -> None:
    """Copies Flax Dense parameters into ``net``: a kernel is (in, out), a
    torch weight (out, in)."""
    with torch.no_grad():
        for i, layer in enumerate(net.layers):
            p = params[layer_name(i)]
            layer.weight.copy_(torch.tensor(np.asarray(p["kernel"]).T))
            layer.bias.copy_(torch.tensor(np.asarray(p["bias"])))


def ours(cfg: EnergyConfig, params, x, y, trainer: dict, lr: float) -> dict:
    net = MLP(SIZES, "tanh")
    energy = make_energy(cfg, net)
    hyper = Hyper(
        state_lr=jnp.asarray(trainer["state_lr"]),
        beta=jnp.asarray(cfg.beta),
        inference_steps=jnp.asarray(trainer["inference_steps"], jnp.int32),
        convergence_threshold=jnp.asarray(trainer["convergence_threshold"]),
        divergence_factor=jnp.asarray(trainer["divergence_factor"]),
    )
    states, _ = net.forward(params, x)
    relax_opts = dict(optimizer="sgd", fixed_steps=trainer["inference_steps"])
    grads, f_end, r = pc_gradient(energy, params, states, x, y, hyper, relax_opts)
    if int(r.steps) != trainer["inference_steps"] or int(r.reason) != 0:
        raise RuntimeError(f"our inference stopped early: {r.steps} steps, {r.reason}")

    tx = make_optimizer(OptimizerConfig(name="sgd", lr=lr))
    updates, _ = tx.update(grads, tx.init(params), params)
    out = {"energy_start": r.energy_start, "energy_end": f_end}
    out |= {f"state_{i + 1}": s for i, s in enumerate(r.states)}
    for name, layer in grads.items():
        out |= {f"grad {name}.{k}": v for k, v in layer.items()}
    for name, layer in updates.items():
        out |= {f"update {name}.{k}": v for k, v in layer.items()}
    return {k: np.asarray(v) for k, v in out.items()}


def reference(cfg: EnergyConfig, params, x, y, trainer: dict, lr: float) -> dict:
    if cfg.name == "bipc" and cfg.bipc_form != "eq10":
        raise ValueError(f"the reference has BiPC Eq 10 only, not {cfg.bipc_form}.")
    net = torch_ref.MLP(SIZES, "tanh").double()
    to_torch(params, net)
    before = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in net.layers]
    energy = torch_ref.make_energy(cfg.name, cfg.loss, cfg.input_feedback)
    step = torch_ref.train_step(
        energy,
        net,
        torch.optim.SGD(net.parameters(), lr=lr),
        torch.tensor(np.asarray(x)),
        torch.tensor(np.asarray(y)).long(),
        cfg.beta,
        trainer["inference_steps"],
        trainer["state_lr"],
    )

    out = {"energy_start": step.energy_start, "energy_end": step.energy_end}
    out |= {f"state_{i + 1}": s for i, s in enumerate(step.states)}
    for i, (layer, (w0, b0)) in enumerate(zip(net.layers, before)):
        name = layer_name(i)
        out[f"grad {name}.kernel"] = layer.weight.grad.T
        out[f"grad {name}.bias"] = layer.bias.grad
        out[f"update {name}.kernel"] = (layer.weight.detach() - w0).T
        out[f"update {name}.bias"] = layer.bias.detach() - b0
    return {k: v.numpy() for k, v in out.items()}


def save_reference(path: str, step: dict, params, x, y, trainer: dict) -> None:
    """Our HPC step as arrays: inputs, weights, rates, relaxed states and
    dF/dtheta (``cli.check_step`` reads it back)."""
    arrays = {k: v for k, v in step.items() if k.startswith(("state_", "grad "))}
    for name, layer in params.items():
        arrays |= {f"{name}.{k}": np.asarray(v) for k, v in layer.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        x=np.asarray(x),
        y=np.asarray(y),
        eta_v=trainer["state_lr"],
        inference_steps=trainer["inference_steps"],
        **arrays,
    )


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tolerance", type=float, default=1e-6)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--save-reference",
        metavar="PATH",
        help="also save our HPC step (.npz) for the other libraries' --check",
    )
    args = p.parse_args()

    jax.config.update("jax_enable_x64", True)
    torch.set_default_dtype(torch.float64)
    data = fashion_mnist.load(args.data_dir)
    x = jnp.asarray(data.train_x[: args.batch_size], jnp.float64)
    y = jnp.asarray(data.train_y[: args.batch_size])
    params = MLP(SIZES, "tanh").init(jax.random.key(args.seed))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    trainer = _conf("trainer", "default")
    lr = _conf("optimizer", "sgd")["lr"]

    failures = []
    for label, cfg in cases().items():
        a = ours(cfg, params, x, y, trainer, lr)
        b = reference(cfg, params, x, y, trainer, lr)
        diffs = {k: relative_difference(a[k], b[k]) for k in b}
        worst = max(diffs, key=diffs.get)
        print(
            f"{label}: max relative difference {diffs[worst]:.2e} ({worst}); "
            f"energy start {diffs['energy_start']:.1e}, end {diffs['energy_end']:.1e}, "
            f"states {max(v for k, v in diffs.items() if k.startswith('state')):.1e}, "
            f"updates {max(v for k, v in diffs.items() if k.startswith('update')):.1e}"
        )
        failures += [
            f"{label}: {k} differs by {v:.2e}"
            for k, v in diffs.items()
            if not v <= args.tolerance
        ]
        if label == "hpc" and args.save_reference:
            save_reference(args.save_reference, a, params, x, y, trainer)

    if failures:
        print(f"PARITY FAILED (tolerance {args.tolerance:g}):", *failures, sep="\n  ")
        return 1
    print(f"parity: the torch reference matches ours within {args.tolerance:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
