"""The command line and the output shared by the timing scripts.

Every script trains the same HPC MLP with the platform's defaults (batch
128, 20 inference steps at eta_v = 0.1, Adam at eta_theta = 1e-3, beta = 1)
and prints one JSON object per line: a ``setup`` line, then one line per
epoch with its wall-clock seconds and the test accuracy of a forward pass
measured after the clock stopped. The first epoch is marked ``warmup``: it
includes JAX's compilation, or PyTorch's first-call set-up, and is left out
of any comparison of speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np

from fashion_mnist import Data


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--max-batches",
        type=int,
        default=None,
        help="stop each epoch after this many batches (smoke tests)",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 512])
    p.add_argument("--inference-steps", type=int, default=20)
    p.add_argument("--state-lr", type=float, default=0.1, help="eta_v")
    p.add_argument("--lr", type=float, default=1e-3, help="eta_theta (Adam)")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="the Fashion-MNIST IDX files")
    p.add_argument(
        "--check",
        metavar="PATH",
        help="instead of timing, compare one float64 step with ours "
        "(parity.py --save-reference PATH) and exit",
    )
    return p


def reference_layers(reference: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """The saved weights as (kernel, bias) pairs, input layer first."""
    count = sum(key.endswith(".kernel") and " " not in key for key in reference)
    return [
        (reference[f"layer_{i}.kernel"], reference[f"layer_{i}.bias"])
        for i in range(count)
    ]


def check_step(
    library: str, path: str, step: Callable[[dict], dict], tolerance: float = 1e-6
) -> int:
    """Runs ``step(reference) -> arrays`` and compares it with our HPC step.

    ``reference`` holds ``x``, ``y``, ``eta_v``, ``inference_steps`` and
    the weights ``layer_<i>.kernel`` ((in, out), Flax's layout) and
    ``layer_<i>.bias``; ``step`` must return the relaxed states ``state_<i>``
    and dF/dtheta as ``grad layer_<i>.kernel`` and ``grad layer_<i>.bias``
    (the batch mean, in the same layouts), computed in float64. Returns the
    exit status: 1 if any array differs by more than ``tolerance``, relative
    to its largest magnitude.
    """
    with np.load(path) as f:
        reference = dict(f)
    theirs = step(reference)
    worst = {
        key: float(
            np.max(np.abs(np.asarray(theirs[key]) - want)) / np.max(np.abs(want))
        )
        for key, want in reference.items()
        if key.startswith(("state_", "grad "))
    }
    bad = {k: v for k, v in worst.items() if not v <= tolerance}
    emit(
        library=library,
        event="check",
        max_relative_difference=max(worst.values()),
        within=tolerance,
        failed=sorted(bad),
    )
    return 1 if bad else 0


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def emit_setup(library: str, args: argparse.Namespace, data: Data) -> None:
    """The settings, the Python version and the versions of JAX and torch
    where loaded (the same library runs on more than one JAX)."""
    settings = {k: v for k, v in vars(args).items() if k not in ("data_dir", "check")}
    versions = {
        name: sys.modules[name].__version__
        for name in ("jax", "torch")
        if name in sys.modules
    }
    emit(
        library=library,
        event="setup",
        python=sys.version.split()[0],
        **versions,
        train_size=len(data.train_x),
        **settings,
    )


def emit_epoch(library: str, epoch: int, batches: int, seconds: float, accuracy: float):
    emit(
        library=library,
        event="epoch",
        epoch=epoch,
        batches=batches,
        seconds=round(seconds, 4),
        ms_per_batch=round(1e3 * seconds / max(batches, 1), 3),
        warmup=epoch == 1,
        test_accuracy=round(accuracy, 4),
    )


def run_epochs(
    library: str,
    args: argparse.Namespace,
    data: Data,
    train_epoch: Callable[[int], int],
    test_accuracy: Callable[[], float],
) -> None:
    """Times ``train_epoch(epoch) -> batches`` once per epoch and reports.

    ``train_epoch`` must block until its last update is done (JAX
    dispatches asynchronously).
    """
    emit_setup(library, args, data)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        batches = train_epoch(epoch)
        seconds = time.perf_counter() - start
        emit_epoch(library, epoch, batches, seconds, test_accuracy())
