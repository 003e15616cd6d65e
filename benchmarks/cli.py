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
    return p


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


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
    emit(
        library=library,
        event="setup",
        python=sys.version.split()[0],
        train_size=len(data.train_x),
        **{k: v for k, v in vars(args).items() if k != "data_dir"},
    )
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        batches = train_epoch(epoch)
        seconds = time.perf_counter() - start
        emit(
            library=library,
            event="epoch",
            epoch=epoch,
            batches=batches,
            seconds=round(seconds, 4),
            ms_per_batch=round(1e3 * seconds / max(batches, 1), 3),
            warmup=epoch == 1,
            test_accuracy=round(test_accuracy(), 4),
        )
