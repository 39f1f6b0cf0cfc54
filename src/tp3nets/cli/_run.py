"""``tp3nets evaluate``, ``predict`` and ``export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

import torch
from torch import Tensor

from ._common import (
    _EXPORT_SUFFIXES,
    UsageError,
    _check_output_file,
    _data_dir,
    _default_member,
    _device,
    _json,
    _load_model,
    _load_quantized,
)

_IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff",
                          ".webp", ".pgm", ".ppm")


class _ConfusionMatrix:
    """A :class:`~tp3nets.engine.Metric`: overall accuracy, keeping the confusion matrix."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix.zero_()

    def update(self, preds: Tensor, target: Tensor) -> None:
        pred = preds.argmax(dim=1).cpu()
        true = target.cpu().to(torch.int64)
        index = true * self.num_classes + pred
        counts = torch.bincount(index, minlength=self.num_classes**2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)

    def compute(self) -> Tensor:
        total = int(self.matrix.sum())
        return self.matrix.diag().sum().double() / max(total, 1)


def _backend_device(args: argparse.Namespace) -> torch.device:
    """``--device``, the CPU for int8 models and for backends other than eager (their
    kernels are the CPU's: the default ``--device auto`` runs there)."""
    on_cpu = args.quantized or args.backend != "eager"
    device = _device("cpu" if on_cpu and args.device == "auto" else args.device)
    if args.backend != "eager" and device.type != "cpu":
        raise UsageError(f"--backend {args.backend} runs on the CPU; got --device "
                         f"{args.device} (use --backend eager there)")
    return device


def _with_backend(model: Any, backend: str) -> tuple[Any, str]:
    """The model run by ``--backend`` (checked against eager), and the backend's name."""
    from ..deploy._runtime import check_backend, optimize

    if backend == "eager":
        return model, "eager"
    try:
        fast = optimize(model.eval(), check_backend(backend))
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    if sys.stderr.isatty():
        print(f"backend: {fast.backend} ({fast.reason})", file=sys.stderr)
    return fast, fast.backend


def _cmd_evaluate(args: argparse.Namespace) -> int:

    from ..data import TensorLoader, TensorSubset, load_mnist, train_val_split
    from ..engine import evaluate

    device = _backend_device(args)
    model, member, source = (
        _load_quantized(args.model, args.weights, device) if args.quantized
        else _load_model(args.model, args.weights)
    )
    model, backend = _with_backend(model, args.backend)
    folder = _data_dir(args.data)
    if args.split == "test":
        data = load_mnist(folder, train=False, download=args.download)
    else:
        data = train_val_split(load_mnist(folder, train=True, download=args.download),
                               args.val_size, seed=args.split_seed)[1]
    if args.limit is not None:
        data = TensorSubset(data, range(min(args.limit, len(data))))
    num_classes = int(getattr(model, "num_classes", 10))
    categories = [str(c) for c in member.meta["categories"]] if member is not None else [
        str(i) for i in range(num_classes)
    ]
    matrix = _ConfusionMatrix(num_classes)
    result = evaluate(model, TensorLoader(data, args.batch_size), metrics={"acc": matrix},
                      device=device, progress=not args.json and sys.stderr.isatty())
    cm = matrix.matrix
    per_class_n = cm.sum(dim=1)
    per_class = [float(cm[i, i]) / int(per_class_n[i]) if int(per_class_n[i]) else None
                 for i in range(num_classes)]
    report = {
        "model": args.model,
        "weights": source,
        "split": args.split,
        "num_samples": len(data),
        "backend": backend,
        "loss": result["loss"],
        "acc": result["acc"],
        "categories": categories,
        "per_class_acc": per_class,
        "per_class_count": [int(n) for n in per_class_n],
        "confusion_matrix": cm.tolist(),
    }
    if args.json:
        print(_json(report))
        return 0
    print(f"{args.model} ({source}) on MNIST {args.split}, {len(data):,} images"
          + ("" if backend == "eager" else f", {backend} backend"))
    print(f"loss      {result['loss']:.4f}")
    print(f"accuracy  {100 * result['acc']:.2f}%")
    print("per-class accuracy:")
    for name, acc, n in zip(categories, per_class, per_class_n.tolist(), strict=True):
        shown = "-" if acc is None else f"{100 * acc:6.2f}%"
        print(f"  {name:>3}  {shown:>7}  ({n} images)")
    width = max(4, len(str(int(cm.max()))) + 1)
    print("confusion matrix (rows: true class, columns: predicted):")
    print("     " + "".join(f"{c:>{width}}" for c in categories))
    for name, row in zip(categories, cm.tolist(), strict=True):
        print(f"  {name:>3}" + "".join(f"{v:>{width}}" for v in row))
    return 0


# --------------------------------------------------------------------------------------
# predict


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..data import MNISTPreprocess, open_image, samples
    from ..reading import read_digits

    if Path(args.model).suffix.lower() in _IMAGE_SUFFIXES or Path(args.model).is_file():
        raise UsageError(
            f"{args.model!r} is a file, not a model name: give the model first, as in "
            f"'tp3nets predict convnet4 {args.model}' (models: 'tp3nets list')"
        )
    images = [*args.images, *(str(p) for p in samples.digit_paths())] if args.samples \
        else list(args.images)
    if not images:
        raise UsageError("the following arguments are required: IMAGE (the image files to "
                         "classify), or --samples for the ten sample digits of tp3nets "
                         "(see 'tp3nets predict --help')")
    if args.save_input is not None:
        _check_output_dir("--save-input", args.save_input)
    device = _backend_device(args)
    model, member, source = (
        _load_quantized(args.model, args.weights, device) if args.quantized
        else _load_model(args.model, args.weights)
    )
    num_classes = int(getattr(model, "num_classes", 10))
    if not 1 <= args.top <= num_classes:
        raise UsageError(f"--top must be between 1 and {num_classes}, got {args.top}")
    reference = member if member is not None else _default_member(args.model)
    if reference is not None and len(reference.meta["categories"]) != num_classes:
        reference = None
    threshold = args.min_confidence if args.min_confidence else None
    model, backend = _with_backend(model, args.backend)
    readings = read_digits(
        model, [open_image(path) for path in images], weights=reference,
        transform=reference.transforms() if reference is not None else MNISTPreprocess(),
        min_confidence=threshold, top=args.top, device=device)
    saved = _save_inputs(args.save_input, images, readings) if args.save_input else None
    results = [
        {
            "image": path,
            "status": r.status,
            "label": r.label,
            "predictions": [
                {"class": name, "index": _index(reference, name), "probability": p}
                for name, p in r.top
            ],
            "no_digit": r.status == "no digit",
            "reason": r.reason,
            "blank": r.reason is not None and r.reason.startswith("blank"),
            "unsure": r.status == "unsure",
            **({"input_image": saved[i]} if saved else {}),
        }
        for i, (path, r) in enumerate(zip(images, readings, strict=True))
    ]
    if args.json:
        print(_json({"model": args.model, "weights": source, "backend": backend,
                     "min_confidence": threshold, "results": results}))
        return 0
    for res in results:
        shown = ", ".join(f"{p['class']} ({p['probability']:.4f})" for p in res["predictions"])
        if res["no_digit"]:
            shown = f"no digit: {res['reason']} (the model would say {shown})"
        elif res["unsure"]:
            shown = f"unsure (best: {shown}; below --min-confidence {threshold:g})"
        print(f"{res['image']}: {shown}")
    return 0


def _index(reference: Any, name: str) -> int:
    if reference is None:
        return int(name)
    return [str(c) for c in reference.meta["categories"]].index(name)


def _check_output_dir(option: str, folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {str(folder)!r} is a file; give a folder")


def _save_inputs(folder: Path, images: list[str], readings: list[Any]) -> list[str]:
    """Write the 28x28 image the model saw for each picture, as PNG, into ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (path, reading) in enumerate(zip(images, readings, strict=True)):
        pixels = (reading.image[0].clamp(0, 1) * 255).round().to(torch.uint8)
        out = folder / f"{i:04d}_{Path(path).stem}.png"
        Image.frombytes("L", (pixels.shape[1], pixels.shape[0]),
                        bytes(pixels.flatten().tolist())).save(out)
        written.append(str(out))
    return written


# --------------------------------------------------------------------------------------
# export


def _cmd_export(args: argparse.Namespace) -> int:
    import importlib.util

    from ..deploy._export import (
        ExportError,
        export_onnx,
        export_torchscript,
        onnx_runtime,
        verify_onnx,
        verify_torchscript,
    )

    out = Path(args.output).expanduser()
    _check_output_file("output", out)
    fmt = args.format or _EXPORT_SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"cannot tell the format from {str(out)!r}; pass --format onnx or --format "
            "torchscript (or name the file .onnx or .pt)"
        )
    if fmt == "onnx" and args.method is not None:
        raise UsageError("--method is for TorchScript files; ONNX files are made by "
                         "torch.export (drop --method, or write a .pt file)")
    if fmt == "torchscript" and args.opset is not None:
        raise UsageError("--opset is for ONNX files (drop --opset, or write a .onnx file)")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(
                f"ONNX export needs {' and '.join(missing)}: pip install 'tp3nets[onnx]'"
            )
    if args.quantized:
        model, _, source = _load_quantized(args.model, args.weights, torch.device("cpu"))
    else:
        model, _, source = _load_model(args.model, args.weights)
    if fmt == "onnx" and args.quantized:
        from ..models.quantization import QuantizedExportError, export_quantized_onnx

        try:
            path = export_quantized_onnx(model, out, **(
                {"opset_version": args.opset} if args.opset is not None else {}))
        except QuantizedExportError as exc:
            raise ExportError(str(exc)) from exc
        # int8 kernels round differently in ONNX Runtime: the check is the predictions.
        print(f"wrote {path} (onnx, int8 QDQ, {path.stat().st_size / 1e6:.2f} MB) from "
              f"{args.model} ({source})")
        print(f"verified with {onnx_runtime()}: the same predictions as the int8 model")
        return 0
    elif fmt == "onnx":
        path = export_onnx(model, out, opset_version=args.opset, verify=False)
        diff = verify_onnx(path, model)
        checked = f"onnx.checker and {onnx_runtime()}"
    else:
        path = export_torchscript(model, out, method=args.method or "script", verify=False)
        diff = verify_torchscript(path, model)
        checked = "torch.jit.load"
    print(f"wrote {path} ({fmt}, {path.stat().st_size / 1e6:.2f} MB) from {args.model} "
          f"({source})")
    print(f"verified with {checked}: max abs diff {diff:.2e} from eager PyTorch "
          f"(batches of 2 and 3)")
    return 0
