"""``make bench``: the parity checks, then every system timed side by side,
interleaved, and one table of medians.

    .venv/bin/python benchmarks/run.py                    # the full comparison
    .venv/bin/python benchmarks/run.py --rounds 2 --epochs 2 --max-batches 20

First the checks: ``parity.py`` compares the PyTorch reference with ours in
float64 and saves our HPC step, against which pcx and FabricPC check theirs
(``--check``); any failure stops the run. Then ``--rounds`` rounds, each
running every system once as its own process of ``--epochs`` epochs (the
order turns by one system each round, so that none always runs first or
after the same neighbour). A run's time per epoch is the median of its
epochs after the first (the first compiles); its compile time is the first
epoch less that. The table gives the median over the rounds of each figure;
the raw JSON lines go to ``--out``. Peak memory is each process's maximum
resident set (``wait4``). The work of an epoch is counted from the shapes
(``work.py``); our runs with ``--matmul`` also time those products alone in
JAX, in the same process, for the rate JAX reaches on them.

The last five lines are ``key=value`` for scripts: ``speedup_vs_pytorch``
(BiPC Eq 10 MLP, the reference's time over ours; the hierarchical network's
ratio is in the table, ``torch-hier``), ``speedup_vs_pcx`` and
``speedup_vs_fabricpc`` (HPC MLP), ``fraction_of_matmul_peak`` (HPC MLP at
width 1024: the time of its products alone over the time of our epoch) and
``study_speedup_vs_fabricpc`` (trials per hour).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import work

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ENVS = HERE / ".envs"
OURS = str(ROOT / ".venv" / "bin" / "python")
FULL_EPOCH_BATCHES = 55_000 // 128
# PyTorch runs with its default threads (one per core) unless --torch-threads
# says otherwise. On a quiet machine that was the faster setting (BiPC, 60
# batches: 78 ms a batch on two threads, 149 on one); on a machine shared
# with other jobs its threads stalled at every operation (2.8 s a batch on
# two threads, 50 ms on one), and --torch-threads 1 is the fairer run there.
# The convolutional rows take about 0.4 s (ours) and 0.6 s (PyTorch) a batch
# on 2 cores, so their epochs are cut to this many batches by default: full ones
# would make a round of `make bench` half an hour longer.
CNN_BATCHES = 40


class System(NamedTuple):
    name: str
    python: str
    script: str
    args: tuple[str, ...]
    kind: str  # "mlp", "cnn" (no work count) or "study"
    energy: str = "hpc"
    width: int = 512
    compare_with: str | None = None  # our system its time is set against


def env_python(name: str) -> str:
    return str(ENVS / name / "bin" / "python")


SYSTEMS = [
    System("ours", OURS, "ours_mlp.py", ("--matmul",), "mlp"),
    System(
        "ours-while", OURS, "ours_mlp.py", ("--while-loop",), "mlp", compare_with="ours"
    ),
    System("pcx", env_python("pcx"), "pcx_mlp.py", (), "mlp", compare_with="ours"),
    System(
        "fabricpc",
        env_python("fabricpc"),
        "fabricpc_mlp.py",
        (),
        "mlp",
        compare_with="ours",
    ),
    System("torch", OURS, "torch_ref.py", (), "mlp", compare_with="ours"),
    System(
        "ours-bipc",
        OURS,
        "ours_mlp.py",
        ("--energy", "bipc", "--matmul"),
        "mlp",
        "bipc",
    ),
    System(
        "torch-bipc",
        OURS,
        "torch_ref.py",
        ("--energy", "bipc"),
        "mlp",
        "bipc",
        compare_with="ours-bipc",
    ),
    System(
        "ours-1024",
        OURS,
        "ours_mlp.py",
        ("--hidden", "1024", "1024", "--matmul"),
        "mlp",
        width=1024,
    ),
    # Table 1's hierarchical convolutional network at width 1/16, HPC.
    System(
        "ours-hier",
        OURS,
        "ours_mlp.py",
        ("--model", "hierarchical", "--width", "0.0625"),
        "cnn",
    ),
    System(
        "torch-hier",
        OURS,
        "torch_ref.py",
        ("--model", "hierarchical", "--width", "0.0625"),
        "cnn",
        compare_with="ours-hier",
    ),
    System("ours-study", OURS, "ours_study.py", (), "study"),
    System(
        "fabricpc-tuner",
        env_python("fabricpc"),
        "fabricpc_tuner.py",
        (),
        "study",
        compare_with="ours-study",
    ),
]


def run_process(cmd: list[str]) -> tuple[int, list[dict], float]:
    """Runs ``cmd``; returns its exit status, its JSON lines and its peak
    resident memory in MiB."""
    proc = subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = []
    for line in out.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return proc.returncode, lines, usage.ru_maxrss / 1024


def checks(reference: Path) -> None:
    """The float64 parity checks; exits on the first failure."""
    commands = [[OURS, "parity.py", "--save-reference", str(reference)]]
    for lib in ("pcx", "fabricpc"):
        if Path(env_python(lib)).exists():
            commands.append(
                [env_python(lib), f"{lib}_mlp.py", "--check", str(reference)]
            )
    for cmd in commands:
        print("$", " ".join(Path(c).name if c.startswith("/") else c for c in cmd))
        if subprocess.call(cmd, cwd=HERE) != 0:
            sys.exit(f"check failed: {' '.join(cmd)}; nothing timed.")


def summarize_run(system: System, lines: list[dict], peak_mib: float) -> dict:
    """One process's figures: seconds per epoch, compile, accuracy, work."""
    row: dict = {"system": system.name, "peak_mib": peak_mib}
    epochs = [x for x in lines if x.get("event") == "epoch"]
    if epochs:
        steady = [x["seconds"] for x in epochs[1:]] or [epochs[0]["seconds"]]
        row["seconds"] = statistics.median(steady)
        row["compile"] = epochs[0]["seconds"] - row["seconds"]
        row["accuracy"] = epochs[-1]["test_accuracy"]
        row["batches"] = epochs[-1]["batches"]
        row["epochs"] = len(epochs)
        setup = next(x for x in lines if x.get("event") == "setup")
        steps = setup["inference_steps"]
        for x in lines:
            if x.get("event") == "inference":
                steps = x["mean_steps"]
        row["inference_steps"] = steps
        if system.kind == "mlp":
            sizes = (784, system.width, system.width, 10)
            per_batch = work.flop_per_batch(
                work.products(sizes, system.energy), setup["batch_size"], steps
            )
            row["flop"] = per_batch * row["batches"]
    for x in lines:
        if x.get("event") == "work":
            row["matmul_seconds"] = x["matmul_seconds"]
            row["fraction"] = x["matmul_seconds"] / row["seconds"]
        if x.get("event") == "study":
            row.update(
                trials=x["trials"],
                trials_per_hour=x["trials_per_hour"],
                logging_share=x.get("logging_share"),
            )
    return row


def median_of(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Prints the table of medians; returns the medians by system."""
    keys = (
        "seconds",
        "accuracy",
        "compile",
        "flop",
        "matmul_seconds",
        "fraction",
        "peak_mib",
        "trials_per_hour",
        "logging_share",
        "batches",
        "inference_steps",
    )
    med = {
        name: {k: median_of(rows, k) for k in keys} | {"runs": len(rows)}
        for name, rows in results.items()
    }
    by_name = {s.name: s for s in SYSTEMS}
    head = (
        f"{'system':<15}{'runs':>5}{'steps':>6}{'batches':>8}{'s/epoch':>9}"
        f"{'test acc':>9}{'ours/it':>8}{'compile s':>10}{'GFLOP/s':>9}"
        f"{'JAX mm GFLOP/s':>15}{'of mm':>7}{'peak MiB':>9}{'trials/h':>9}"
        f"{'MLflow':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, m in med.items():
        s = by_name[name]
        ours = med.get(s.compare_with or "", {}).get("seconds")
        ratio = None
        if s.kind == "study":
            mine = med.get(s.compare_with or "", {}).get("trials_per_hour")
            if mine and m["trials_per_hour"]:
                ratio = m["trials_per_hour"] / mine
        elif ours and m["seconds"]:
            ratio = ours / m["seconds"]
        rate = m["flop"] / m["seconds"] / 1e9 if m["flop"] and m["seconds"] else None
        mm = (
            m["flop"] / m["matmul_seconds"] / 1e9
            if m["flop"] and m["matmul_seconds"]
            else None
        )
        share = m["logging_share"] and 100 * m["logging_share"]
        print(
            f"{name:<15}{m['runs']:>5}{fmt(m['inference_steps'], '.4g'):>6}"
            f"{fmt(m['batches'], '.0f'):>8}{fmt(m['seconds'], '.2f'):>9}"
            f"{fmt(m['accuracy'], '.4f'):>9}{fmt(ratio, '.2f'):>8}"
            f"{fmt(m['compile'], '.2f'):>10}{fmt(rate, '.1f'):>9}{fmt(mm, '.1f'):>15}"
            f"{fmt(m['fraction'], '.2f'):>7}{fmt(m['peak_mib'], '.0f'):>9}"
            f"{fmt(m['trials_per_hour'], '.0f'):>9}"
            f"{fmt(share, '.2f'):>7}%"
        )
    return med


def ratio(med: dict, slow: str, fast: str, key: str = "seconds"):
    a, b = med.get(slow, {}).get(key), med.get(fast, {}).get(key)
    return None if not a or not b else a / b


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-batches", type=int, default=None)
    p.add_argument("--trials", type=int, default=6, help="trials per study")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="threads of the PyTorch rows (default: PyTorch's own)",
    )
    p.add_argument(
        "--cnn-batches",
        type=int,
        default=CNN_BATCHES,
        help="at most this many batches an epoch for the convolutional rows",
    )
    p.add_argument(
        "--only", nargs="+", choices=[s.name for s in SYSTEMS], help="these systems"
    )
    p.add_argument("--skip-checks", action="store_true")
    p.add_argument("--out", default=str(ENVS / "bench.jsonl"), help="raw JSON lines")
    args = p.parse_args()

    ENVS.mkdir(exist_ok=True)
    if not args.skip_checks:
        checks(ENVS / "reference.npz")
    systems = [s for s in SYSTEMS if not args.only or s.name in args.only]
    missing = [s.name for s in systems if not Path(s.python).exists()]
    if missing:
        print(f"skipping {', '.join(missing)}: no env (make bench-envs)")
    systems = [s for s in systems if s.name not in missing]

    common = ["--epochs", str(args.epochs)]
    if args.max_batches is not None:
        common += ["--max-batches", str(args.max_batches)]
    results: dict[str, list[dict]] = {s.name: [] for s in systems}
    start = time.perf_counter()
    with open(args.out, "w") as raw:
        for r in range(args.rounds):
            turn = r % len(systems)
            for s in systems[turn:] + systems[:turn]:
                extra = ["--trials", str(args.trials)] if s.kind == "study" else common
                if s.kind == "cnn":
                    cap = min(args.max_batches or args.cnn_batches, args.cnn_batches)
                    extra = ["--epochs", str(args.epochs), "--max-batches", str(cap)]
                if s.kind == "study" and args.max_batches is not None:
                    extra += ["--max-batches", str(args.max_batches)]
                if s.script == "torch_ref.py" and args.torch_threads:
                    extra = [*extra, "--threads", str(args.torch_threads)]
                cmd = [s.python, s.script, *s.args, *extra]
                status, lines, peak = run_process(cmd)
                if status != 0:
                    sys.exit(f"{s.name} failed (exit {status}): {' '.join(cmd)}")
                row = summarize_run(s, lines, peak)
                results[s.name].append(row)
                raw.write(json.dumps({"round": r + 1, **row, "lines": lines}) + "\n")
                print(
                    f"round {r + 1}/{args.rounds} {s.name}: "
                    + ", ".join(
                        f"{k} {v:.4g}"
                        for k, v in row.items()
                        if isinstance(v, float) and k != "flop"
                    ),
                    flush=True,
                )

    print(
        f"\n{args.rounds} rounds in {(time.perf_counter() - start) / 60:.1f} min; "
        f"epochs of {args.max_batches or FULL_EPOCH_BATCHES} batches of 128 "
        f"(at most {args.cnn_batches} for the convolutional rows), "
        f"{args.epochs} epochs a run, the first left out of s/epoch; "
        f"raw lines in {args.out}\n"
        "ours/it: our time over its time for the same network and energy "
        "(its trials/h over ours for the tuner); GFLOP/s: the work counted "
        "from the shapes over the time; JAX mm: the same products alone in JAX; "
        "of mm: the time of the products alone over the epoch's; MLflow: "
        "logging time as a share of train time.\n"
    )
    med = table(results)
    print()
    finals = {
        "speedup_vs_pytorch": ratio(med, "torch-bipc", "ours-bipc"),
        "speedup_vs_pcx": ratio(med, "pcx", "ours"),
        "speedup_vs_fabricpc": ratio(med, "fabricpc", "ours"),
        "fraction_of_matmul_peak": med.get("ours-1024", {}).get("fraction"),
        "study_speedup_vs_fabricpc": ratio(
            med, "ours-study", "fabricpc-tuner", "trials_per_hour"
        ),
    }
    for key, value in finals.items():
        print(f"{key}={fmt(value, '.3f') if value is not None else 'nan'}")


if __name__ == "__main__":
    main()
