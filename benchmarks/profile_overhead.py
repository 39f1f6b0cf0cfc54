"""Where fit's per-batch time goes: torch.profiler over a hand loop and fit, op by op.

    python benchmarks/profile_overhead.py --data ../shared/datasets
    python benchmarks/profile_overhead.py --device cuda --models mlr,convnet2
    python benchmarks/profile_overhead.py --quick        # synthetic data, a few batches

The diagnostic behind ``bench_overhead.py``: the same three kinds of run (the minimal hand
loop, ``fit`` with its default accuracy, ``fit`` with ``metrics={}``) on the same
:class:`~tp3nets.data.TensorLoader`, each run twice under ``torch.profiler``, the first
time as a warm-up. For each kind it prints, per batch: the profiled wall time, the
operators called (``aten::`` and others), the kernels launched and the host-device
synchronisations (CUDA only). Then, for ``fit`` against the hand loop and default
accuracy against loss only, the operators whose number of calls differs and those whose
host time differs most: what a difference in ``bench_overhead`` is made of. The profiler
adds its own cost to every operator, so trust the counts first; compare times only
between kinds of the same run.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_DATA,
    MODELS,
    check_device,
    machine,
    print_machine,
    timed,
    write_json,
)
from bench_overhead import hand_loop, make_loader

import tp3nets

LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
KINDS = ("hand", "fit", "fit loss only")


def run_kind(kind: str, model: nn.Module, args: argparse.Namespace,
             loader: Any) -> Callable[[], Any]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if kind == "hand":
        return lambda: hand_loop(model, loader, opt, args.device)
    metrics: dict[str, Any] | None = {} if kind == "fit loss only" else None
    return lambda: tp3nets.fit(model, loader, epochs=1, optimizer=opt, metrics=metrics,
                               progress=False, device=args.device)


def profiled(fn: Callable[[], Any], device: str) -> tuple[dict[str, dict[str, float]], float]:
    """``({op: {"calls", "self_us"}}, wall seconds)`` of ``fn`` under the profiler."""
    activities = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        wall, _ = timed(fn, device)
    ops: dict[str, dict[str, float]] = {}
    for e in prof.key_averages():
        ops[e.key] = {"calls": float(e.count), "self_us": float(e.self_cpu_time_total)}
    return ops, wall


def calls(ops: dict[str, dict[str, float]], names: tuple[str, ...]) -> float:
    return sum(ops[n]["calls"] for n in names if n in ops)


def diff_table(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]],
               batches: int) -> list[tuple[str, float, float, float]]:
    """Every op of either run, the largest difference in host time first:
    ``(name, calls/batch in a, in b, µs/batch a - b)``."""
    rows = []
    for name in set(a) | set(b):
        ca, cb = a.get(name, {}).get("calls", 0.0), b.get(name, {}).get("calls", 0.0)
        ta, tb = a.get(name, {}).get("self_us", 0.0), b.get(name, {}).get("self_us", 0.0)
        rows.append((name, ca / batches, cb / batches, (ta - tb) / batches))
    rows.sort(key=lambda r: -abs(r[3]))
    return rows


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    template = MODELS[name]().to(args.device)
    loader = make_loader(args)
    batches = len(loader)
    results: dict[str, Any] = {"model": name, "batches": batches, "kinds": {}}
    ops_of: dict[str, dict[str, dict[str, float]]] = {}
    for kind in KINDS:
        model = copy.deepcopy(template)
        fn = run_kind(kind, model, args, loader)
        loader.set_epoch(0)
        # Warm-up, profiled and discarded: kernels loaded, allocator filled, and the
        # profiler's own first-session costs (which inflate every op) paid.
        profiled(fn, args.device)
        loader.set_epoch(0)
        ops, wall = profiled(fn, args.device)
        ops_of[kind] = ops
        op_us = sum(v["self_us"] for v in ops.values())
        summary = {
            "wall µs/batch (profiled)": 1e6 * wall / batches,
            "ops' host µs/batch": op_us / batches,
            "ops/batch": sum(v["calls"] for v in ops.values()) / batches,
            "kernel launches/batch": calls(ops, LAUNCHES) / batches,
            "syncs in all": calls(ops, SYNCS),
        }
        results["kinds"][kind] = {"summary": summary, "ops": ops}
    print(f"\n### {name} ({batches} batches of {args.batch_size}, device {args.device})\n")
    print("| kind | " + " | ".join(results["kinds"]["hand"]["summary"]) + " |")
    print("|" + " --- |" * (1 + len(results["kinds"]["hand"]["summary"])))
    for kind in KINDS:
        s = results["kinds"][kind]["summary"]
        print(f"| {kind} | " + " | ".join(f"{v:.4g}" for v in s.values()) + " |")
    for a, b in (("fit", "hand"), ("fit", "fit loss only")):
        rows = diff_table(ops_of[a], ops_of[b], batches)
        by_count = [r for r in rows if abs(r[1] - r[2]) * batches >= 1]
        by_count.sort(key=lambda r: -abs(r[1] - r[2]))
        for title, shown in (("calls differ", by_count), ("host time differs most", rows)):
            print(f"\n{a} against {b}: the ops whose {title} (at most {args.top})\n")
            print(f"| op | calls/batch, {a} | calls/batch, {b} | µs/batch difference |")
            print("| --- | --- | --- | --- |")
            for op, ca, cb, dt in shown[: args.top]:
                print(f"| {op} | {ca:.3g} | {cb:.3g} | {dt:+.2f} |")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlr,convnet2",
                        help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-batches", type=int, default=200, help="batches per run")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST/raw/")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images instead of MNIST (the timing is the same)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--top", type=int, default=12, help="ops shown per comparison")
    parser.add_argument("--quick", action="store_true",
                        help="synthetic data, 10 batches: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write every op's calls and host time per kind")
    args = parser.parse_args(argv)
    if args.quick:
        args.synthetic, args.limit_batches = True, 10
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.limit_batches < 1 or args.top < 1:
        parser.error("--limit-batches and --top must be positive")
    check_device(parser, args.device)
    info = machine(args.device)
    print_machine(info)
    rows = [measure(name, args) for name in names]
    write_json(args.json, {"benchmark": "profile_overhead", "machine": info,
                           "settings": {k: v for k, v in vars(args).items() if k != "json"},
                           "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
