"""Inference speed of each backend of :func:`tp3nets.deploy.optimize` against eager
PyTorch, side by side, at batch 1 (latency) and at larger batches (throughput).

    python benchmarks/bench_backends.py
    python benchmarks/bench_backends.py --models convnet4 --batch-sizes 1,64 --repeats 9
    python benchmarks/bench_backends.py --quick        # a few images: checks that it runs

Each backend is made once per model (checked against eager when made: the time that takes
is in the ``setup s`` column). Each repeat then times every backend once, in turn (so a busy
neighbour slows them alike), on the same random inputs; the table gives per backend the
median images/s and the median (and range) of its per-repeat speed-up over eager. Two
more rows give what a user compares: ``predict`` (:func:`tp3nets.predict` with
``backend="auto"``, called on each batch: the library's own API, its input checks and mode
switching included) and ``ort-session`` (a bare ``onnxruntime.InferenceSession`` on the
model's ONNX export, fed NumPy: what one would run without tp3nets). The
machine line names the CPU and its AVX2 / AVX-512 / VNNI / AMX / bf16 flags: the figures
hold for that kind of CPU only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BUILDERS,
    DEFAULT_DATA,
    MODELS,
    machine,
    median,
    ort_session,
    print_machine,
    report,
    settle,
)

import tp3nets
from tp3nets.deploy import available_backends, export_onnx, optimize

Forward = Callable[[Tensor], Any]


def build(name: str, backends: list[str], folder: str) -> tuple[dict[str, Forward],
                                                                 dict[str, float]]:
    """Each path's forward for ``name`` (DEFAULT weights), and the seconds it took to make:
    every backend's module; ``predict``, :func:`tp3nets.predict` with ``backend="auto"``
    called on each batch (the API a user calls, its backend made at the first call); and
    ``ort-session``, a bare ONNX Runtime session where onnxruntime is installed."""
    model = tp3nets.get_model(BUILDERS[name], weights="DEFAULT").eval()
    modules: dict[str, Forward] = {}
    setup: dict[str, float] = {}
    for backend in backends:
        start = time.perf_counter()
        modules[backend] = model if backend == "eager" else optimize(model, backend)
        setup[backend] = time.perf_counter() - start
    start = time.perf_counter()
    tp3nets.predict(model, torch.zeros(1, *model.input_shape), backend="auto")
    setup["predict"] = time.perf_counter() - start

    def predict(x: Tensor) -> Tensor:
        return tp3nets.predict(model, x, batch_size=len(x), backend="auto")
    modules["predict"] = predict
    if "onnxruntime" in available_backends():
        start = time.perf_counter()
        path = Path(folder) / f"{name}.onnx"
        export_onnx(model, path)
        modules["ort-session"] = ort_session(path)
        setup["ort-session"] = time.perf_counter() - start
    return modules, setup


def measure(name: str, batch: int, images: Tensor, built: tuple[dict[str, Forward],
            dict[str, float]], args: argparse.Namespace) -> list[dict[str, Any]]:
    modules, setup = built
    batches = list(images.split(batch))

    def timed_pass(module: Forward) -> float:
        settle()  # ONNX Runtime's threads stop spinning first
        start = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                module(x)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {b: [] for b in modules}
    for module in modules.values():
        timed_pass(module)  # warm-up: oneDNN primitives, ONNX Runtime's first run
    for _ in range(args.repeats):
        for backend, module in modules.items():
            times[backend].append(timed_pass(module))
    rows = []
    for backend, module in modules.items():
        chosen = getattr(module, "backend", backend)
        ratios = sorted(e / t for e, t in zip(times["eager"], times[backend], strict=True))
        rows.append({
            "model": name, "backend": backend if chosen == backend else f"{backend} ({chosen})",
            "batch": batch, "images": len(images),
            "images/s": round(len(images) / median(times[backend]), 1),
            "x eager (median)": round(median(ratios), 2),
            "x eager (range)": f"{ratios[0]:.2f}-{ratios[-1]:.2f}",
            "setup s": round(setup[backend], 2), "runs": times[backend],
        })
    return rows


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlr,convnet2,convnet3,convnet4",
                        help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--backends", default=",".join(available_backends()),
                        help="comma-separated, from eager, torch, onnxruntime, auto "
                        "(default: those installed here); eager is always measured")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--limit", type=int, default=2048, help="images per pass at batch > 1")
    parser.add_argument("--latency-images", type=int, default=300,
                        help="single-image forwards per pass at batch 1")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", default=DEFAULT_DATA, help="unused: inputs are random")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true",
                        help="a few images, 1 repeat: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    args = parser.parse_args(argv)
    args.models = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in args.models if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if any(b not in ("eager", "torch", "onnxruntime", "auto") for b in backends):
        parser.error(f"--backends takes eager, torch, onnxruntime, auto; got {args.backends!r}")
    args.backends = ["eager", *(b for b in dict.fromkeys(backends) if b != "eager")]
    try:
        args.sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batch-sizes takes comma-separated ints, got {args.batch_sizes!r}")
    if not args.sizes or min(args.sizes) < 1:
        parser.error(f"--batch-sizes takes positive ints, got {args.batch_sizes!r}")
    if args.quick:
        args.limit, args.latency_images, args.repeats = 64, 8, 1
        args.sizes = [b for b in args.sizes if b <= 64] or [1]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine("cpu")
    print_machine(info)
    images = torch.rand(max(args.limit, args.latency_images), 1, 28, 28,
                        generator=torch.Generator().manual_seed(0))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            built = build(name, args.backends, folder)
            for batch in args.sizes:
                count = args.latency_images if batch == 1 else args.limit
                rows += measure(name, batch, images[:count], built, args)
    report("backends", info, rows, args,
           f"median of {args.repeats} interleaved run(s) after a warm-up run, "
           f"{torch.get_num_threads()} thread(s); CPU: {info['cpu']} "
           f"[{', '.join(k for k, v in info['cpu_flags'].items() if v)}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
