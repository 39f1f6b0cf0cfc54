"""Throughput of ``tp3nets.evaluate`` on the 10,000 MNIST test images, fp32 and bf16.

    python benchmarks/bench_evaluate.py --data ../shared/datasets
    python benchmarks/bench_evaluate.py --quick        # 200 images: checks that it runs

Each model is evaluated once to warm up, then ``--repeats`` times; the table gives the
median time and images per second. With ``--pretrained`` the bundled weights are loaded
(the accuracy column then means something; the speed does not depend on it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

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

BUILDERS = {
    "mlr": "multinomial_logistic_regression",
    "convnet2": "convnet2",
    "convnet3": "convnet3",
    "convnet4": "convnet4",
}


def measure(name: str, precision: str, loader: TensorLoader, args: argparse.Namespace
            ) -> dict[str, Any]:
    if args.pretrained:
        model = tp3nets.get_model(BUILDERS[name], weights="DEFAULT")
    else:
        torch.manual_seed(0)
        model = MODELS[name]()
    model.to(args.device)

    def run() -> dict[str, float]:
        return tp3nets.evaluate(model, loader, precision=precision,  # type: ignore[arg-type]
                                device=args.device, channels_last=args.channels_last)

    run()  # warm-up
    times, figures = [], {}
    for _ in range(args.repeats):
        seconds, figures = timed(run, args.device)
        times.append(seconds)
    seconds = median(times)
    images = len(loader.dataset)
    return {"model": name, "precision": precision, "images": images,
            "batch": loader.batch_size, "s (median)": seconds, "images/s": images / seconds,
            "acc": figures["acc"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlr,convnet2,convnet3,convnet4",
                        help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--precisions", default="32,bf16", help="comma-separated: 32, bf16")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=None, help="evaluate this many images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST/raw/")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--pretrained", action="store_true", help="load the bundled weights")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true",
                        help="200 images, 1 repeat: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    add_memory_option(parser)
    args = parser.parse_args(argv)
    malloc = malloc_setting(args)
    if args.quick:
        args.limit, args.repeats = args.limit or 200, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if any(p not in ("32", "bf16") for p in precisions):
        parser.error("--precisions takes 32 and/or bf16")

    check_device(parser, args.device)
    images, labels = load_mnist(args.data, train=False).tensors
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    device = args.device if args.device != "cpu" else None
    loader = TensorLoader((images, labels), args.batch_size, device=device)

    info = machine(args.device, malloc)
    print_machine(info)
    rows = [measure(name, p, loader, args) for name in names for p in precisions]
    report("evaluate", info, rows, args, f"median of {args.repeats} run(s) after a warm-up run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
