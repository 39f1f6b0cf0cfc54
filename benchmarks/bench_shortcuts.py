"""What each of fit's CPU shortcuts is worth: one epoch with it and without, alternately.

    python benchmarks/bench_shortcuts.py --data ../shared/datasets
    python benchmarks/bench_shortcuts.py --quick        # synthetic data, a few batches

``fit`` and ``TensorLoader`` take three shortcuts past torch's generic paths, each giving
the same values (the test suite checks that):

* ``step``: the optimizer's step function called past torch's profiler wrapper;
* ``zero_grad``: gradients set to ``None`` directly, past the same kind of wrapper;
* ``blocks``: ``TensorLoader`` gathering about ``BLOCK_BYTES`` of consecutive batches at
  once and handing out views, instead of gathering and scaling each batch alone.

For each shortcut, one epoch of ``fit`` (with validation) runs with all shortcuts on and
with that one turned off, alternately ``--repeats`` times in one process (after a warm-up
pair), and the table reports the medians and the median ratio of the pairs. If a torch
release makes a shortcut worthless, this is where it shows.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, MODELS, machine, median, print_machine, report, timed

import tp3nets
import tp3nets.engine._shortcuts as shortcuts
from tp3nets.data import TensorLoader, TensorSubset, load_mnist, train_val_split

SHORTCUTS = ("step", "zero_grad", "blocks")


def without(shortcut: str) -> contextlib.AbstractContextManager[Any]:
    """Turn one shortcut off: torch's own call, or one batch gathered at a time."""
    if shortcut == "step":
        return mock.patch.object(shortcuts, "step", lambda opt: opt.step())
    if shortcut == "zero_grad":
        return mock.patch.object(shortcuts, "zero_grad",
                                 lambda opt: opt.zero_grad(set_to_none=True))
    return mock.patch.object(TensorLoader, "BLOCK_BYTES", 1)


def data(args: argparse.Namespace) -> tuple[Any, Any]:
    if args.synthetic:
        g = torch.Generator().manual_seed(0)
        n = (args.limit_batches or 20) * args.batch_size
        full: Any = (torch.randint(0, 256, (n + 500, 1, 28, 28), dtype=torch.uint8,
                                   generator=g), torch.randint(0, 10, (n + 500,), generator=g))
        return TensorSubset(full, range(n)), TensorSubset(full, range(n, n + 500))
    train, val = train_val_split(load_mnist(args.data, train=True))
    if args.limit_batches:
        train = TensorSubset(train, range(min(len(train), args.limit_batches * args.batch_size)))
    return train, val


def measure(name: str, shortcut: str, args: argparse.Namespace, train: Any,
            val: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    template = MODELS[name]()
    conv = name != "mlr"

    def epoch() -> float:
        model = copy.deepcopy(template)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        seconds, _ = timed(lambda: tp3nets.fit(
            model, TensorLoader(train, args.batch_size, shuffle=True, seed=0), epochs=1,
            optimizer=opt, val_loader=TensorLoader(val, args.batch_size), progress=False,
            precision="bf16" if conv else "32", channels_last=conv, device="cpu",
        ))
        return seconds

    on: list[float] = []
    off: list[float] = []
    for repeat in range(args.repeats + 1):  # the first pair warms up and is not counted
        pair = {}
        for kind in (("on", "off") if repeat % 2 else ("off", "on")):
            if kind == "off":
                with without(shortcut):
                    pair[kind] = epoch()
            else:
                pair[kind] = epoch()
        if repeat:
            on.append(pair["on"])
            off.append(pair["off"])
    ratios = [b / a for a, b in zip(on, off, strict=True)]
    return {
        "model": name,
        "shortcut": shortcut,
        "with s": median(on),
        "without s": median(off),
        "saved %": 100 * (1 - median(on) / median(off)),
        "pair ratio without/with (min, median, max)": (
            f"{min(ratios):.3f}, {statistics.median(ratios):.3f}, {max(ratios):.3f}"
        ),
        "runs": {"with": on, "without": off},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlr",
                        help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--shortcuts", default=",".join(SHORTCUTS),
                        help="comma-separated, from " + ", ".join(SHORTCUTS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-batches", type=int, default=None,
                        help="train on this many batches instead of a full epoch")
    parser.add_argument("--repeats", type=int, default=9, help="timed pairs per shortcut")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST/raw/")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images instead of MNIST")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true",
                        help="synthetic data, 10 batches, 2 pairs: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    args = parser.parse_args(argv)
    if args.quick:
        args.synthetic, args.limit_batches, args.repeats = True, 10, 2
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    shortcuts = [s.strip() for s in args.shortcuts.split(",") if s.strip()]
    if not shortcuts or any(s not in SHORTCUTS for s in shortcuts):
        parser.error(f"--shortcuts takes {', '.join(SHORTCUTS)}, got {args.shortcuts!r}")
    if args.repeats < 1:
        parser.error("--repeats must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine("cpu")
    print_machine(info)
    train, val = data(args)
    rows = [measure(name, s, args, train, val) for name in names for s in shortcuts]
    report("shortcuts", info, rows, args,
           f"medians of {args.repeats} alternating pairs per shortcut (after a warm-up pair)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
