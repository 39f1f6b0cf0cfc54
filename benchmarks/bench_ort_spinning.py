"""What ONNX Runtime's spinning threads cost the PyTorch work beside them, and what they buy.

    python benchmarks/bench_ort_spinning.py
    python benchmarks/bench_ort_spinning.py --repeats 9 --calls 100
    python benchmarks/bench_ort_spinning.py --quick      # a few calls: checks that it runs

After a run, ONNX Runtime's worker threads keep spinning on the CPU for a while, waiting
for the next run (``session.intra_op.allow_spinning``, on by default). Two measurements,
ConvNet4 DEFAULT at batch 1, torch's thread count for both runtimes:

``after ORT``
    eager PyTorch's single-image latency right after ten ONNX Runtime runs, then after a
    rest of 1 ms to 0.5 s, and with no ONNX Runtime run before it (``idle``): how long the
    spinning slows whatever the process does next. The benchmarks rest
    ``_common.SETTLE_S`` before each timed pass for this reason.
``spinning``
    ONNX Runtime's own single-image latency with spinning allowed (its default, and what
    tp3nets' ``onnxruntime`` backend keeps) and not allowed, interleaved, each pass after
    a rest.

Medians over ``--repeats`` of the mean of ``--calls`` calls, microseconds per image. The
machine line names the CPU and its flags: the figures hold for that kind of CPU only.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, machine, median, ort_session, print_machine, report, settle

import tp3nets
from tp3nets.deploy import export_onnx

PAUSES = (0.0, 0.001, 0.01, 0.1, 0.5)


def per_image(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50, help="images a timed pass")
    parser.add_argument("--data", default=DEFAULT_DATA, help="unused: inputs are random")
    parser.add_argument("--quick", action="store_true", help="2 calls, 1 repeat")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.calls = 1, 2
    info = machine("cpu")
    print_machine(info)
    if importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime is not installed (pip install 'tp3nets[onnx]'): nothing to measure")
        return 0
    model = tp3nets.convnet4(weights="DEFAULT").eval()
    x = torch.rand(1, 1, 28, 28)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "convnet4.onnx"
        export_onnx(model, path)
        spin, still = ort_session(path), ort_session(path, spinning=False)
        eager: Callable[[], Any] = lambda: model(x)  # noqa: E731
        after: dict[str, list[float]] = {"idle": [], **{f"{p:g} s": [] for p in PAUSES}}
        runs: dict[str, list[float]] = {"spinning allowed": [], "not allowed": []}
        with torch.inference_mode():
            for _ in range(3):
                eager(), spin(x), still(x)
            for _ in range(args.repeats):
                settle()
                after["idle"].append(per_image(eager, args.calls))
                for pause in PAUSES:
                    for _ in range(10):
                        spin(x)
                    time.sleep(pause)
                    after[f"{pause:g} s"].append(per_image(eager, args.calls))
                for label, fn in (("spinning allowed", spin), ("not allowed", still)):
                    settle()
                    runs[label].append(per_image(lambda f=fn: f(x), args.calls))
    idle = median(after["idle"])
    rows: list[dict[str, Any]] = [
        {"measure": "eager PyTorch after ORT", "when": k, "us/image": round(median(v), 1),
         "x idle": round(median(v) / idle, 2)} for k, v in after.items()]
    allowed = median(runs["spinning allowed"])
    rows += [{"measure": "ONNX Runtime", "when": k, "us/image": round(median(v), 1),
              "x idle": round(median(v) / allowed, 2)} for k, v in runs.items()]
    report("ort_spinning", info, rows, args,
           f"ConvNet4 DEFAULT, batch 1, {torch.get_num_threads()} thread(s); medians of "
           f"{args.repeats} repeat(s) of {args.calls} calls; 'x idle' is the ratio to eager "
           f"with no ONNX Runtime run before it (ONNX Runtime rows: to spinning allowed). "
           f"CPU: {info['cpu']} [{', '.join(k for k, v in info['cpu_flags'].items() if v)}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
