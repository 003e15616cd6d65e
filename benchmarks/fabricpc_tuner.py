"""FabricPC 0.6.0's own Optuna tuner on the space ``ours_study.py`` searches,
timed in trials per hour.

``fabricpc.tuning.BayesianTuner`` scores a trial by validation perplexity,
which FabricPC reports only for an output node with ``CrossEntropyEnergy``,
so the MLP here (784-512-512-10, tanh) ends in a softmax node with that
energy, as ours ends in the cross-entropy loss. Its second phase, the
continuous fine-tuning of the learning rates, is the one that matches our
search: eta_v (``eta_infer``) log-uniform in [0.003, 0.05], eta_theta
(Adam's ``lr``) log-uniform in [3e-4, 2e-3], 20 inference steps, one epoch
per trial, batch 128, in an in-memory Optuna store. Training uses the first
55,000 images and validation the last 5,000, as ours does. Run it in the env
``envs.sh`` makes:

    benchmarks/.envs/fabricpc/bin/python benchmarks/fabricpc_tuner.py --trials 6

The clock starts before the data is loaded and stops after the last trial.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import fabricpc
import jax
from fabricpc.core.activations import SoftmaxActivation, TanhActivation
from fabricpc.core.energy import CrossEntropyEnergy
from fabricpc.core.inference import InferenceSGD
from fabricpc.core.topology import Edge
from fabricpc.graph_assembly import TaskMap, graph
from fabricpc.nodes import Linear
from fabricpc.tuning import BayesianTuner

import cli
import fashion_mnist
from fabricpc_mlp import Batches, node_names

SPACE = {"eta_infer": (0.003, 0.05), "lr": (3e-4, 2e-3)}


def build(sizes: tuple[int, ...], eta_infer: float, steps: int):
    names = node_names(sizes)
    pixels = Linear(shape=(sizes[0],), name=names[0])
    hidden = [
        Linear(shape=(d,), activation=TanhActivation(), name=name)
        for d, name in zip(sizes[1:-1], names[1:-1])
    ]
    output = Linear(
        shape=(sizes[-1],),
        activation=SoftmaxActivation(),
        energy=CrossEntropyEnergy(),
        name=names[-1],
    )
    chain = [pixels, *hidden, output]
    return graph(
        nodes=chain,
        edges=[Edge(source=a, target=b.slot("in")) for a, b in zip(chain, chain[1:])],
        task_map=TaskMap(x=pixels, y=output),
        inference=InferenceSGD(eta_infer=eta_infer, infer_steps=steps),
    )


def search_space(trial, best: dict) -> dict:
    return {
        name: trial.suggest_float(name, low, high, log=True)
        for name, (low, high) in SPACE.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--max-batches", type=int, default=None, help="smoke tests")
    p.add_argument("--inference-steps", type=int, default=20)
    args = p.parse_args()

    start = time.perf_counter()
    data = fashion_mnist.load(train_size=60_000)
    train = fashion_mnist.Data(
        data.train_x[:55_000], data.train_y[:55_000], data.test_x, data.test_y
    )
    val = [
        (data.train_x[i : i + 1000], data.train_y[i : i + 1000])
        for i in range(55_000, 60_000, 1000)
    ]
    loader = Batches(train, 128, 0, args.max_batches)

    def trial_model(config: dict, key: jax.Array):
        steps = args.inference_steps
        structure = build((784, 512, 512, 10), config["eta_infer"], steps)
        return fabricpc.initialize_params(structure, key), structure

    tuner = BayesianTuner(
        loader,
        val,
        trial_model,
        {"num_epochs": 1, "infer_steps": args.inference_steps},
        log_file=None,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        study = tuner.tune_phase2(args.trials, {}, search_space)
    seconds = time.perf_counter() - start
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    cli.emit(
        library=f"fabricpc-{fabricpc.__version__}",
        event="study",
        trials=len(study.trials),
        states=states,
        seconds=round(seconds, 3),
        trials_per_hour=round(3600 * len(study.trials) / seconds, 2),
    )


if __name__ == "__main__":
    main()
