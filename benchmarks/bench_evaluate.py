"""Inference speed of the bundled models: fp32, fp32 with BatchNorm folded, bf16, int8, and
ONNX Runtime on tp3nets' own exports (fp32 and int8 QDQ), side by side, at batch 1
(latency) and at larger batches (throughput).

    python benchmarks/bench_evaluate.py --data ../shared/datasets
    python benchmarks/bench_evaluate.py --models convnet4 --batch-sizes 1,64 --repeats 7
    python benchmarks/bench_evaluate.py --quick        # a few images: checks that it runs

Each repeat times every variant once, in turn (so a busy neighbour slows them alike), on
the same MNIST test images; the table gives per variant the median time, images/s, and the
median (and range) of its per-repeat speed-up over fp32. Batch 1 runs ``--latency-images``
single-image forwards; larger batches run ``--limit`` images. int8 is the bundled
``*_QuantizedWeights`` model (``tp3nets.models.quantization``) on its default kernel
(oneDNN's int8 operators on plain tensors where PyTorch has them); ``int8-ref`` the same
model on the float reference kernel. The logistic regression has no int8 weights, so its
int8 row is torch.ao's dynamic quantization of its one Linear layer, to show whether it
pays. ``ort32`` and ``ort-int8`` run the file ``tp3nets.deploy.export_onnx`` (fp32) and
``export_quantized_onnx`` (int8, QDQ) write, in an ONNX Runtime session on the CPU with as
many intra-op threads as torch uses: the engine a user would otherwise deploy the model
with (left out when onnxruntime is not installed). ``32+fold`` is fp32 with BatchNorm
folded into the convolutions (:func:`tp3nets.deploy.fold_batchnorm`); ``32+fold+cl`` the same
in channels_last (model and inputs), oneDNN's native layout; ``compile`` that folded
channels_last model given to ``torch.compile`` (inductor, weights frozen, one graph per
batch shape, compiled during the warm-up; left out without a C++ compiler): what PyTorch's
own compiler buys, measured here rather than shipped as a backend. The footer compares
fp32 with this CPU's FLOP floor: the images/s a model would reach if every multiply-add ran
at the speed of a large fp32 matrix product measured here.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BUILDERS,
    DEFAULT_DATA,
    MODELS,
    add_memory_option,
    check_device,
    machine,
    malloc_setting,
    median,
    ort_session,
    print_machine,
    report,
    settle,
)

import tp3nets
from tp3nets.data import load_mnist
from tp3nets.deploy import fold_batchnorm
from tp3nets.models import quantization

VARIANTS = ("32", "32+fold", "32+fold+cl", "compile", "bf16", "int8", "int8-ref", "ort32",
            "ort-int8")


def multiply_adds(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one image's forward pass through the Conv2d and Linear layers."""
    total = 0

    def hook(module: nn.Module, args: Any, out: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += out[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


def matmul_floor(repeats: int = 5, n: int = 1024) -> float:
    """Multiply-adds per second of a large fp32 matrix product on this CPU (the best of a
    few runs: an upper bound that eager convolutions can approach, not exceed much)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / 4)
    return n**3 / best


def export(model: nn.Module, int8: bool, folder: str) -> Callable[[Tensor], Tensor]:
    """``model`` exported to ONNX and run by a bare ONNX Runtime session."""
    from tp3nets.deploy import export_onnx

    path = Path(folder) / ("int8.onnx" if int8 else "fp32.onnx")
    if int8:
        quantization.export_quantized_onnx(model, path)
    else:
        export_onnx(model, path)
    return ort_session(path)


def build(name: str, variant: str, folder: str) -> Callable[[Tensor], Tensor] | None:
    """The forward function of ``name`` in ``variant`` (``None``: not available here)."""
    builder = BUILDERS[name]
    fp32 = tp3nets.get_model(builder, weights="DEFAULT").eval()
    if variant.startswith("ort"):
        if importlib.util.find_spec("onnxruntime") is None or (
            name == "mlr" and variant == "ort-int8"
        ):
            return None
        int8 = variant == "ort-int8"
        model = getattr(quantization, builder)(weights="DEFAULT", quantize=True) if int8 else fp32
        return export(model, int8, folder)
    if variant == "32":
        return fp32
    if variant == "32+fold":
        return fold_batchnorm(fp32)
    if variant in ("32+fold+cl", "compile"):
        folded = fold_batchnorm(fp32).to(memory_format=torch.channels_last)
        if variant == "compile":
            if shutil.which(os.environ.get("CXX", "c++")) is None:
                return None
            folded = torch.compile(folded, options={"freezing": True}, dynamic=False)

        def channels_last(x: Tensor) -> Tensor:
            out: Tensor = folded(x.contiguous(memory_format=torch.channels_last)
                                 if x.dim() == 4 else x)
            return out
        return channels_last
    if variant == "bf16":
        def bf16(x: Tensor) -> Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fp32(x).float()
        return bf16
    if name == "mlr":
        if variant == "int8-ref":
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notes
            return torch.ao.quantization.quantize_dynamic(fp32, {nn.Linear}, dtype=torch.qint8)
    kernel = "reference" if variant == "int8-ref" else None
    return getattr(quantization, builder)(weights="DEFAULT", quantize=True, kernel=kernel)


def measure(name: str, batch: int, images: Tensor, labels: Tensor,
            args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        built = {v: build(name, v, folder) for v in args.variants}
    models = {v: m for v, m in built.items() if m is not None}
    if batch == 1:
        images, labels = images[: args.latency_images], labels[: args.latency_images]
    batches = list(images.split(batch))

    def timed_pass(model: Callable[[Tensor], Tensor]) -> float:
        settle()  # ONNX Runtime's threads stop spinning first
        start = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                model(x)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {v: [] for v in models}
    for model in models.values():
        timed_pass(model)  # warm-up: oneDNN primitives, packed weights
    for _ in range(args.repeats):
        for variant, model in models.items():
            times[variant].append(timed_pass(model))
    rows = []
    base = times.get("32")
    with torch.inference_mode():
        for variant, model in models.items():
            acc = float(torch.cat([model(x).argmax(1) for x in batches]).eq(labels).float().mean())
            t = median(times[variant])
            row: dict[str, Any] = {
                "model": name, "variant": variant, "batch": batch, "images": len(images),
                # The key the README's throughput column reads; the logistic regression's
                # int8 row is torch.ao's dynamic quantization, not a path tp3nets ships.
                "precision": "dynamic-int8" if (name, variant) == ("mlr", "int8") else variant,
                "s (median)": round(t, 4), "images/s": round(len(images) / t, 1),
                "acc": round(100 * acc, 2),
            }
            if base is not None:
                ratios = sorted(b / s for b, s in zip(base, times[variant], strict=True))
                row["x fp32 (median)"] = round(median(ratios), 2)
                row["x fp32 (range)"] = f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
            row["runs"] = times[variant]
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlr,convnet2,convnet3,convnet4",
                        help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, from " + ", ".join(VARIANTS))
    parser.add_argument("--batch-sizes", default="1,64,1000")
    parser.add_argument("--limit", type=int, default=2000,
                        help="test images per pass at batch > 1")
    parser.add_argument("--latency-images", type=int, default=200,
                        help="single-image forwards per pass at batch 1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST/raw/")
    parser.add_argument("--device", default="cpu", help="cpu only (int8 kernels are CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true",
                        help="a few images, 1 repeat: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    add_memory_option(parser)
    args = parser.parse_args(argv)
    malloc = malloc_setting(args)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(v not in VARIANTS for v in args.variants):
        parser.error(f"--variants takes {', '.join(VARIANTS)}")
    try:
        sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batch-sizes takes comma-separated ints, got {args.batch_sizes!r}")
    if not sizes or min(sizes) < 1:
        parser.error(f"--batch-sizes takes positive ints, got {args.batch_sizes!r}")
    check_device(parser, args.device)
    if args.device != "cpu":
        parser.error("bench_evaluate measures CPU inference (the int8 kernels are CPU-only)")
    if args.quick:
        args.limit, args.latency_images, args.repeats = 64, 8, 1
        sizes = [b for b in sizes if b <= 64] or [1]
    if args.threads:
        torch.set_num_threads(args.threads)

    images, labels = load_mnist(args.data, train=False).tensors
    images = images[: max(args.limit, args.latency_images)].float().div(255)
    labels = labels[: len(images)]
    info = machine(args.device, malloc)
    print_machine(info)
    rows = []
    for name in names:
        for batch in sizes:
            count = args.latency_images if batch == 1 else args.limit
            rows += measure(name, batch, images[:count], labels[:count], args)
    floor = matmul_floor(1 if args.quick else 5)
    notes = [f"median of {args.repeats} interleaved run(s) after a warm-up run; int8 kernel "
             f"{quantization._int8.default_kernel()}; "
             f"fp32 matmul floor on {torch.get_num_threads()} thread(s): "
             f"{floor / 1e9:.1f} G multiply-adds/s"]
    for name in names:
        model = tp3nets.get_model(BUILDERS[name]).eval()
        macs = multiply_adds(model, tuple(model.input_shape))
        best = max((r["images/s"] for r in rows if r["model"] == name and r["variant"] == "32"),
                   default=None)
        if best:
            notes.append(f"{name}: {macs / 1e6:.1f} M multiply-adds/image; FLOP floor "
                         f"{floor / macs:.0f} images/s; best fp32 {best:.0f} images/s = "
                         f"{100 * best * macs / floor:.0f} % of it")
        for row in rows:
            if row["model"] == name:
                row["floor %"] = round(100 * row["images/s"] * macs / floor, 1)
    report("evaluate", info, rows, args, "\n".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
