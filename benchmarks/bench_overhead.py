"""fit's own overhead: one epoch of ``tp3nets.fit`` against a minimal hand-written loop.

    python benchmarks/bench_overhead.py --data ../shared/datasets
    python benchmarks/bench_overhead.py --quick        # synthetic data, a few batches

Both sides run the same model (same initial weights), optimizer and
:class:`~tp3nets.data.TensorLoader`; the hand loop does only ``zero_grad``, forward, loss,
``backward`` and ``step``. fit is measured as used by default (loss and accuracy tracked, a
NaN check per batch) and with ``metrics={}`` (loss only). Runs alternate hand / fit /
fit(loss only) ``--repeats`` times and the table reports medians. Goal: fit within 3 % of
the hand loop.

With glibc's default settings the page faults of one and the same hand loop over 300
ConvNet2 batches swing between runs from 3,600 to 348,000 (glibc hands freed activation
memory back to the system, or not, depending on the order of allocations), which moves
its time by more than the 3 % being measured. Run it with ``--reuse-freed-memory``
(:func:`tp3nets.engine.reuse_freed_memory`) to keep freed memory and take that noise
out of both sides.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_DATA,
    MODELS,
    add_memory_option,
    check_device,
    machine,
    malloc_setting,
    median,
    print_machine,
    report,
    timed,
)

import tp3nets
from tp3nets.data import TensorLoader, load_mnist

GOAL_PERCENT = 3.0


def hand_loop(model: nn.Module, loader: TensorLoader, opt: torch.optim.Optimizer,
              device: str) -> None:
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()


def make_loader(args: argparse.Namespace) -> TensorLoader:
    n = args.limit_batches * args.batch_size
    if args.synthetic:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (n,), generator=g)
    else:
        images, labels = (t[:n] for t in load_mnist(args.data, train=True).tensors)
    device = args.device if args.device != "cpu" else None
    return TensorLoader((images, labels), args.batch_size, shuffle=True, seed=0, device=device)


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    template = MODELS[name]().to(args.device)
    loader = make_loader(args)
    times: dict[str, list[float]] = {"hand": [], "fit": [], "fit loss only": []}

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = copy.deepcopy(template)
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    kinds = list(times)
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        # Rotate the order each round, so that no kind always runs first or last (the
        # allocator and caches favour some positions on a small machine).
        shift = repeat % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            model, opt = fresh()
            loader.set_epoch(0)
            if kind == "hand":
                seconds, _ = timed(
                    lambda m=model, o=opt: hand_loop(m, loader, o, args.device), args.device
                )
            else:
                metrics = {} if kind == "fit loss only" else None
                seconds, _ = timed(lambda m=model, o=opt, mt=metrics: tp3nets.fit(
                    m, loader, epochs=1, optimizer=o, metrics=mt, progress=False,
                    device=args.device,
                ), args.device)
            if repeat:
                times[kind].append(seconds)
    hand = median(times["hand"])
    fit_s, loss_only = median(times["fit"]), median(times["fit loss only"])
    over, over_loss = 100 * (fit_s / hand - 1), 100 * (loss_only / hand - 1)
    return {
        "model": name,
        "batches": len(loader),
        "hand s": hand,
        "fit s": fit_s,
        "overhead %": over,
        "fit loss-only s": loss_only,
        "loss-only overhead %": over_loss,
        "ms/batch hand": 1000 * hand / len(loader),
        "met (<= 3 %)": "yes" if over <= GOAL_PERCENT else "no",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlr,convnet2",
                        help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-batches", type=int, default=860,
                        help="batches per run (default: an epoch of 55,000 images)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each kind")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST/raw/")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images instead of MNIST (the timing is the same)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true",
                        help="synthetic data, 10 batches, 2 repeats: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    add_memory_option(parser)
    args = parser.parse_args(argv)
    malloc = malloc_setting(args)
    if args.quick:
        args.synthetic, args.limit_batches, args.repeats = True, 10, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")

    check_device(parser, args.device)
    info = machine(args.device, malloc)
    print_machine(info)
    rows = [measure(name, args) for name in names]
    report("overhead", info, rows, args,
           f"medians of {args.repeats} runs in rotating order (after one warm-up round)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
