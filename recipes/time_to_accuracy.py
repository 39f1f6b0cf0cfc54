"""Wall-clock time for a zoo model to go from scratch to a target MNIST test accuracy.

``python recipes/time_to_accuracy.py --data DIR``

Runs ConvNet4 to >= 99.12 % (the lab report's figure, which took its authors 40 minutes
for 2 epochs) and ConvNet3 to >= 99 %, three seeds each, and writes
``results/time_to_accuracy.json``: every run, the median per model, and the fastest zoo
model to 99 % (ConvNet4's 99.12 % runs count for it at 99 % too; ConvNet2 and the
logistic regression are left out, see SETTINGS).

The clock runs from before the data is read to the end of the evaluation that first
reaches the target: loading, building the model, training and evaluation all count. The
test set is only the stopping rule (as in DAWNBench's time-to-accuracy): it is evaluated
at the end of every epoch and at the end of the schedule, and a run that ends its schedule
under the target has not reached it. The settings below were chosen with
``--select``, which trains on the 55,000-image split and uses the 5,000 validation images
as the stopping rule instead, never looking at the test set (results/SELECTION.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import tp3nets
from tp3nets.data import TensorLoader, load_mnist, mnist_splits
from tp3nets.engine import evaluate, seed_everything, train_one_epoch

HERE = Path(__file__).resolve().parent

# Chosen on the validation split with --select (results/SELECTION.md). ``epochs`` is the
# length of the one-cycle schedule and may be a fraction; ``model`` is what the zoo's
# builder gets: the architecture is the zoo's, dropout is a training setting (eval mode
# has none), switched off here because it slows a one-epoch schedule down.
SETTINGS: dict[str, dict[str, Any]] = {
    "convnet4": dict(target=99.12, epochs=1.0, batch_size=128, lr=4e-3, weight_decay=5e-4,
                     pct_start=0.25, precision="bf16", channels_last=True,
                     model=dict(dropout=0.0, classifier_dropout=0.0)),
    "convnet3": dict(target=99.0, epochs=3.0, batch_size=128, lr=5e-3, weight_decay=1e-4,
                     pct_start=0.25, precision="bf16", channels_last=True,
                     model=dict(dropout=0.0)),
    # ConvNet2 is not measured: on validation one seed of three stayed under 99 % through a
    # 10-epoch schedule (results/SELECTION.md), already slower than ConvNet3's 3 epochs.
    # The logistic regression cannot reach 99 %.
}


def run(model_name: str, settings: dict[str, Any], data: str, seed: int, select: bool,
        target: float | None = None) -> dict[str, Any]:
    """One timed run from scratch; the clock includes loading and every evaluation."""
    target = settings["target"] if target is None else target
    seed_everything(seed)
    start = time.perf_counter()
    if select:
        train, stop_set, _ = mnist_splits(data, val_size=5000, seed=42)
    else:
        train, stop_set = load_mnist(data, train=True), load_mnist(data, train=False)
    loader = TensorLoader(train, int(settings["batch_size"]), shuffle=True, seed=seed)
    stop_loader = TensorLoader(stop_set, 1000)
    model = tp3nets.get_model(model_name, **settings["model"])
    cl = bool(settings["channels_last"])
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=float(settings["lr"]),
                            weight_decay=float(settings["weight_decay"]))
    total = math.ceil(float(settings["epochs"]) * len(loader))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=float(settings["lr"]), total_steps=total,
        pct_start=float(settings["pct_start"]),
    )
    evaluations, reached, done, epoch = [], None, 0, 0
    while done < total and reached is None:
        loader.set_epoch(epoch)
        steps = min(len(loader), total - done)
        train_one_epoch(model, itertools.islice(loader, steps), optimizer=opt,
                        scheduler=sched, precision=settings["precision"], channels_last=cl)
        done, epoch = done + steps, epoch + 1
        # In float32, whatever the training precision: the figure is the model's own.
        acc = 100 * evaluate(model, stop_loader, channels_last=cl)["acc"]
        elapsed = time.perf_counter() - start
        evaluations.append({"epochs": round(done / len(loader), 3), "acc": round(acc, 2),
                            "seconds": round(elapsed, 1)})
        print(f"  {model_name} seed {seed}: {acc:.2f} % after {done / len(loader):.2f} "
              f"epochs, {elapsed:.1f} s", flush=True)
        if acc >= target:
            reached = elapsed
    return {"seed": seed, "reached": reached is not None,
            "seconds": round(reached, 1) if reached is not None else None,
            "evaluations": evaluations}


def summary(model_name: str, target: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["seconds"] for r in runs if r["reached"]]
    return {
        "model": model_name, "target_acc": target, "runs": runs,
        "reached": len(times) == len(runs),
        # A run that missed counts as infinitely slow: the median is that of all runs.
        "median_seconds": statistics.median(
            [r["seconds"] if r["reached"] else math.inf for r in runs]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TP3NETS_DATA", "../shared/datasets"))
    parser.add_argument("--models", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--select", action="store_true",
                        help="selection: train on the 55,000 split, stop on the validation "
                             "images, write nothing")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="with --select: try another setting (epochs=0.8, lr=3e-3, ...)")
    args = parser.parse_args(argv)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.set and not args.select:
        parser.error("--set is for --select runs; the measured settings are the script's")
    results = {}
    for name in args.models:
        settings = dict(SETTINGS[name])
        for item in args.set:
            key, _, value = item.partition("=")
            settings[key] = json.loads(value)
        print(f"{name} to {settings['target']} %: {json.dumps(settings)}", flush=True)
        runs = [run(name, settings, args.data, seed, args.select) for seed in args.seeds]
        results[name] = {**summary(name, settings["target"], runs), "settings": settings}
        print(f"{name}: median {results[name]['median_seconds']} s over seeds "
              f"{args.seeds}: {[r['seconds'] for r in runs]}", flush=True)
    if args.select:
        return 0
    to_99 = {n: r["median_seconds"] for n, r in results.items()
             if r["target_acc"] >= 99.0 and r["reached"]}
    record = {
        "command": "python recipes/time_to_accuracy.py --data DIR",
        "rule": "clock from before loading the data to the end of the first evaluation at "
                "or over the target; the MNIST test set (10,000) is only the stopping rule, "
                "evaluated (in float32) after every epoch and at the end of the schedule",
        "models": results,
        "fastest_to_99": min(to_99, key=to_99.__getitem__) if to_99 else None,
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
                    f"cores, no GPU",
        "torch_version": torch.__version__,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "time_to_accuracy.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({n: {k: r[k] for k in ("target_acc", "median_seconds", "reached")}
                      for n, r in results.items()}, indent=2))
    print(f"fastest zoo model to 99 %: {record['fastest_to_99']}")
    return 0 if all(r["reached"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
