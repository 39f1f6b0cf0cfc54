"""One epoch of ``tp3nets.fit`` with 1 and 2 intra-op threads, in fresh processes.

    python benchmarks/bench_threads.py --data ../shared/datasets
    python benchmarks/bench_threads.py --quick        # 20 batches: checks that it runs

Intra-op threads are a process setting, and with a small model the second thread's
wake-ups can cost more than the split work saves; how much depends on where the process
lands, so one process says little. Each setting runs in ``--processes`` fresh processes,
alternately, each timing ``--epochs`` epochs (after a warm-up epoch) of the 55,000-image
split at batch 64 with a validation pass; the table gives every process's median and the
spread over processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_DATA,
    MODELS,
    add_memory_option,
    lab_optimizer,
    machine,
    malloc_setting,
    median,
    print_machine,
    report,
    timed,
)


def child(args: argparse.Namespace) -> None:
    """Time the epochs in this process and print them as JSON on the last line."""
    import copy

    import torch

    import tp3nets
    from tp3nets.data import TensorLoader, TensorSubset, load_mnist, train_val_split

    torch.set_num_threads(args.child)
    malloc_setting(args)
    train, val = train_val_split(load_mnist(args.data, train=True), 5000, seed=42)
    if args.limit_batches:
        train = TensorSubset(train, range(min(args.limit_batches * args.batch_size, len(train))))
    torch.manual_seed(0)
    template = MODELS[args.model]()
    conv = args.model != "mlr"
    times = []
    for epoch in range(args.epochs + 1):  # the first epoch warms up
        model = copy.deepcopy(template)
        optimizer = lab_optimizer(args.model, model, None, fused=True)
        seconds, _ = timed(lambda m=model, o=optimizer: tp3nets.fit(
            m, TensorLoader(train, args.batch_size, shuffle=True, seed=0), epochs=1,
            optimizer=o, val_loader=TensorLoader(val, args.batch_size),
            precision="bf16" if conv else "32", channels_last=conv, progress=False,
            device="cpu",
        ))
        if epoch:
            times.append(seconds)
    print(json.dumps(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlr", choices=list(MODELS))
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--processes", type=int, default=4, help="fresh processes per count")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per process")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-batches", type=int, default=None)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST/raw/")
    parser.add_argument("--quick", action="store_true",
                        help="20 batches, 2 processes, 1 epoch: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    add_memory_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.limit_batches, args.processes, args.epochs = 20, 2, 1
    if args.child is not None:
        child(args)
        return 0
    counts = [int(t) for t in args.threads.split(",") if t.strip()]
    if not counts or min(counts) < 1 or args.processes < 1 or args.epochs < 1:
        parser.error("--threads, --processes and --epochs take positive numbers")

    info = machine("cpu", malloc_setting(args))
    print_machine(info)
    per_count: dict[int, list[float]] = {n: [] for n in counts}
    command = [sys.executable, str(Path(__file__).resolve()), "--model", args.model,
               "--data", args.data, "--batch-size", str(args.batch_size),
               "--epochs", str(args.epochs)]
    if args.limit_batches:
        command += ["--limit-batches", str(args.limit_batches)]
    if args.reuse_freed_memory:
        command.append("--reuse-freed-memory")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    for _ in range(args.processes):
        for n in counts:  # alternate, so that the machine's drift falls on every count
            out = subprocess.run([*command, "--child", str(n)], check=True, env=env,
                                 capture_output=True, text=True).stdout
            per_count[n].append(median(json.loads(out.strip().splitlines()[-1])))
    rows: list[dict[str, Any]] = [
        {"model": args.model, "threads": n,
         "s/epoch per process": ", ".join(f"{t:.3f}" for t in sorted(times)),
         "median": median(times), "spread (max/min)": max(times) / min(times),
         "processes": times}
        for n, times in per_count.items()
    ]
    report("threads", info, rows, args,
           f"{args.processes} fresh processes per thread count, each the median of "
           f"{args.epochs} epoch(s) after a warm-up epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
