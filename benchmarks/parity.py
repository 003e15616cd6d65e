"""Checks that the PyTorch reference computes what the platform computes.

From the same weights (the platform's Flax initialisation copied into
torch) and the same Fashion-MNIST batch, in float64, one train step of each
is compared, on the MLP 784-512-512-10 and on the hierarchical convolutional
network of Chen et al. 2025, Table 1, at width 1/16 (``conf/model/
hierarchical.yaml``, a graph of nodes and edges on our side, ``torch_ref.
Chain`` on the other; its images carry a little noise, see
``HIERARCHICAL_NOISE``): F summed over the batch before inference, F averaged over the
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
from torch import nn

from trainers.config import EnergyConfig, OptimizerConfig
from trainers.energies import make_energy
from trainers.graph import Graph
from trainers.inference import Hyper
from trainers.model import MLP, layer_name
from trainers.optimizers import make_optimizer
from trainers.train import pc_gradient

import fashion_mnist
import torch_ref
from ours_mlp import table1_graph

CONF = Path(__file__).resolve().parent.parent / "conf"
SIZES = (784, 512, 512, 10)
HIERARCHICAL_WIDTH = 0.0625
# The convolutional cases run on fewer images: float64 convolutions are slow.
HIERARCHICAL_BATCH = 32
# ... and on images with a little Gaussian noise, so that no max-pooling
# window holds equal values. Fashion-MNIST's flat background makes whole
# windows equal; where values tie, which one receives the gradient is each
# framework's own choice (any is a valid subgradient; JAX's follows the
# reduction order of its reduce-window), and HPC's tiny lower-layer errors
# (around 1e-7 after 20 steps) make that choice visible at about 1e-3.
HIERARCHICAL_NOISE = 0.01


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


def hierarchical() -> Graph:
    return table1_graph("hierarchical", HIERARCHICAL_WIDTH)


def paired_layers(params, net) -> list[tuple[str, dict, nn.Module]]:
    """(our name, our kernel and bias, the torch layer) for every layer."""
    if isinstance(net, torch_ref.MLP):
        return [
            (layer_name(i), params[layer_name(i)], m) for i, m in enumerate(net.layers)
        ]
    pairs = []
    for name, ops in zip(net.names, net.edges):
        for k, module in enumerate(ops):
            if isinstance(module, nn.Conv2d | nn.Linear):
                pairs.append((f"{name}.op_{k}", params[name][f"op_{k}"], module))
    return pairs


def _to_torch_layout(kernel: np.ndarray) -> np.ndarray:
    """Flax (in, out) or (kh, kw, in, out) to torch (out, in[, kh, kw])."""
    return kernel.T if kernel.ndim == 2 else kernel.transpose(3, 2, 0, 1)


def to_flax_layout(weight: np.ndarray) -> np.ndarray:
    return weight.T if weight.ndim == 2 else weight.transpose(2, 3, 1, 0)


def to_torch(params, net) -> None:
    """Copies our parameters into ``net`` (an ``MLP`` or a ``Chain``)."""
    with torch.no_grad():
        for _, p, layer in paired_layers(params, net):
            layer.weight.copy_(torch.tensor(_to_torch_layout(np.asarray(p["kernel"]))))
            layer.bias.copy_(torch.tensor(np.asarray(p["bias"])))


def _flat(tree, prefix: str) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {f"{prefix} " + ".".join(k.key for k in path): leaf for path, leaf in leaves}


def ours(cfg: EnergyConfig, net, params, x, y, trainer: dict, lr: float) -> dict:
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
    out |= _flat(grads, "grad") | _flat(updates, "update")
    return {k: np.asarray(v) for k, v in out.items()}


def reference(cfg: EnergyConfig, params, x, y, trainer: dict, lr: float, model: str):
    if cfg.name == "bipc" and cfg.bipc_form != "eq10":
        raise ValueError(f"the reference has BiPC Eq 10 only, not {cfg.bipc_form}.")
    if model == "mlp":
        net, shape = torch_ref.MLP(SIZES, "tanh").double(), (-1, 784)
    else:
        net = torch_ref.Chain.from_config(model, HIERARCHICAL_WIDTH).double()
        shape = (-1, 1, 28, 28)
    to_torch(params, net)
    layers = paired_layers(params, net)
    before = [
        (m.weight.detach().clone(), m.bias.detach().clone()) for _, _, m in layers
    ]
    energy = torch_ref.make_energy(cfg.name, cfg.loss, cfg.input_feedback)
    step = torch_ref.train_step(
        energy,
        net,
        torch.optim.SGD(net.parameters(), lr=lr),
        torch.tensor(np.asarray(x)).reshape(shape),
        torch.tensor(np.asarray(y)).long(),
        cfg.beta,
        trainer["inference_steps"],
        trainer["state_lr"],
    )

    out = {"energy_start": step.energy_start, "energy_end": step.energy_end}
    for i, s in enumerate(step.states):
        # Our images are NHWC.
        out[f"state_{i + 1}"] = s.permute(0, 2, 3, 1) if s.ndim == 4 else s
    out = {k: v.numpy() for k, v in out.items()}
    for (name, _, layer), (w0, b0) in zip(layers, before):
        out[f"grad {name}.kernel"] = to_flax_layout(layer.weight.grad.numpy())
        out[f"grad {name}.bias"] = layer.bias.grad.numpy()
        w, b = layer.weight.detach(), layer.bias.detach()
        out[f"update {name}.kernel"] = to_flax_layout((w - w0).numpy())
        out[f"update {name}.bias"] = (b - b0).numpy()
    return out


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


def _compare(label: str, a: dict, b: dict, tolerance: float) -> list[str]:
    """Prints the differences of one case; returns those past ``tolerance``."""
    missing = sorted(set(a) ^ set(b))
    if missing:
        return [f"{label}: arrays on one side only: {missing}"]
    diffs = {k: relative_difference(a[k], b[k]) for k in b}
    worst = max(diffs, key=diffs.get)
    print(
        f"{label}: max relative difference {diffs[worst]:.2e} ({worst}); "
        f"energy start {diffs['energy_start']:.1e}, end {diffs['energy_end']:.1e}, "
        f"states {max(v for k, v in diffs.items() if k.startswith('state')):.1e}, "
        f"updates {max(v for k, v in diffs.items() if k.startswith('update')):.1e}"
    )
    return [
        f"{label}: {k} differs by {v:.2e}"
        for k, v in diffs.items()
        if not v <= tolerance
    ]


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
    trainer = _conf("trainer", "default")
    lr = _conf("optimizer", "sgd")["lr"]
    networks = {
        "mlp": (MLP(SIZES, "tanh"), args.batch_size),
        "hierarchical": (hierarchical(), min(args.batch_size, HIERARCHICAL_BATCH)),
    }

    failures = []
    for model, (net, batch) in networks.items():
        x = jnp.asarray(data.train_x[:batch], jnp.float64)
        if model != "mlp":
            noise = np.random.default_rng(args.seed).normal(size=x.shape)
            x = x + HIERARCHICAL_NOISE * noise
        y = jnp.asarray(data.train_y[:batch])
        params = net.init(jax.random.key(args.seed))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        for case, cfg in cases().items():
            if model != "mlp" and case not in ("hpc", "bipc eq10"):
                continue
            label = case if model == "mlp" else f"{model} {case} (batch {batch})"
            a = ours(cfg, net, params, x, y, trainer, lr)
            b = reference(cfg, params, x, y, trainer, lr, model)
            failures += _compare(label, a, b, args.tolerance)
            if label == "hpc" and args.save_reference:
                save_reference(args.save_reference, a, params, x, y, trainer)

    if failures:
        print(f"PARITY FAILED (tolerance {args.tolerance:g}):", *failures, sep="\n  ")
        return 1
    print(f"parity: the torch reference matches ours within {args.tolerance:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
