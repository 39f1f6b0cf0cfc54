"""What each of ConvNet4's convolutions costs in eager PyTorch, per path, at batch 1 and 64.

    python benchmarks/bench_conv_layers.py
    python benchmarks/bench_conv_layers.py --batch-sizes 1 --repeats 9
    python benchmarks/bench_conv_layers.py --quick        # a few calls: checks that it runs

For each convolution of ConvNet4 at 28x28 (its input shape, channels and 3x3 kernel), three
ways to run it on the same random tensors, interleaved in each repeat:

``default``
    ``F.conv2d`` on NCHW tensors, as an eager model runs it: PyTorch picks the kernel. For
    float32 3x3 convolutions of a single image whose input holds at most 20,480 values it
    picks its native im2col + GEMM kernel (``aten::_slow_conv2d_forward``), else oneDNN.
``onednn``
    ``aten::mkldnn_convolution`` called directly on the same NCHW tensors.
``channels_last``
    ``F.conv2d`` on channels_last input and weight: oneDNN in its native layout.

Each cell is the median over ``--repeats`` of the mean time of ``--calls`` calls, in
microseconds per call, and the last row sums the six layers. It isolates why eager fp32 at
batch 1 costs more per image than at batch 64 (``docs/benchmarks.rst``); ``--data`` is
accepted for the benchmarks' common command line and not read.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, machine, median, print_machine, report

#: ConvNet4's convolutions at 28x28 (width 64): in channels, out channels, side.
LAYERS = ((1, 64, 28), (64, 64, 28), (64, 128, 14), (128, 128, 14), (128, 256, 7),
          (256, 256, 7))
PATHS = ("default", "onednn", "channels_last")


def runner(path: str, x: Tensor, w: Tensor, b: Tensor) -> Callable[[], Tensor]:
    if path == "default":
        return lambda: F.conv2d(x, w, b, padding=1)
    if path == "onednn":
        conv: Any = torch.ops.aten.mkldnn_convolution
        return lambda: conv(x, w, b, [1, 1], [1, 1], [1, 1], 1)
    xc = x.contiguous(memory_format=torch.channels_last)
    wc = w.contiguous(memory_format=torch.channels_last)
    return lambda: F.conv2d(xc, wc, b, padding=1)


def per_call(fn: Callable[[], Tensor], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def measure(batch: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    totals = dict.fromkeys(PATHS, 0.0)
    generator = torch.Generator().manual_seed(0)
    for cin, cout, side in LAYERS:
        x = torch.rand(batch, cin, side, side, generator=generator)
        w = torch.randn(cout, cin, 3, 3, generator=generator) * 0.1
        b = torch.zeros(cout)
        fns = {p: runner(p, x, w, b) for p in PATHS}
        times: dict[str, list[float]] = {p: [] for p in PATHS}
        with torch.inference_mode():
            for fn in fns.values():
                per_call(fn, 3)  # warm-up: oneDNN primitives
            for _ in range(args.repeats):
                for p, fn in fns.items():
                    times[p].append(per_call(fn, args.calls))
        row: dict[str, Any] = {"batch": batch, "layer": f"{cin}->{cout} @{side}x{side}",
                               "input values": batch * cin * side * side}
        for p in PATHS:
            row[f"{p} us"] = round(median(times[p]), 1)
            totals[p] += median(times[p])
        row["default / onednn"] = round(median(times["default"]) / median(times["onednn"]), 2)
        row["runs"] = times
        rows.append(row)
    total: dict[str, Any] = {"batch": batch, "layer": "all six", "input values": ""}
    for p in PATHS:
        total[f"{p} us"] = round(totals[p], 1)
    total["default / onednn"] = round(totals["default"] / totals["onednn"], 2)
    rows.append(total)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="accepted, not read")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="few calls: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    try:
        batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batch-sizes takes comma-separated integers, got {args.batch_sizes!r}")
    if not batches or min(batches) < 1 or args.repeats < 1 or args.calls < 1:
        parser.error("--batch-sizes, --repeats and --calls must be positive")
    if args.quick:
        args.repeats, args.calls, batches = 1, 2, [1, 2]
    info = machine()
    print_machine(info)
    rows = [row for batch in batches for row in measure(batch, args)]
    report("conv_layers", info, rows, args,
           footer=f"median of {args.repeats} repeat(s) of {args.calls} call(s) per path, "
                  "interleaved; microseconds per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
