"""Accuracy of the bundled weights on perturbed MNIST: ``python recipes/robustness.py --data DIR``.

Each perturbation is applied to the 10,000 MNIST test images with its own seeded
generator (per-image parameters drawn from ``torch.Generator().manual_seed(SEED + i)``), so
that every run and every model sees the very same perturbed images; no training data is
made or used. The perturbations are those real digit images have (scanned, photographed,
written with another pen):

========== ==================================================================================
rotation   a rotation by an angle uniform in [-15°, 15°] about the centre
shift      a translation by (dx, dy) uniform in [-3, 3] pixels each
scale      a zoom by a factor uniform in [0.75, 1.25] about the centre
thin       grey-level erosion by a 3×3 cross (thinner strokes)
thick      grey-level dilation by a 3×3 cross (thicker strokes)
blur       a Gaussian blur, sigma 1 pixel (5×5 kernel)
noise      additive Gaussian noise, sigma 0.25 (pixels in [0, 1]), clamped to [0, 1]
contrast   contrast scaled by 0.3 about the image's mean (a faint scan)
========== ==================================================================================

Measures every bundled fp32 weights of each model (MNIST_V1, MNIST_V2 …). Writes
``results/robustness.json`` (per weights and perturbation: acc@1 in percent) and
``results/robustness.csv`` (the table of the models page), and prints the table; then
``sync_meta.py`` copies the figures into each weights' ``meta["metrics"]["MNIST-perturbed"]``.
Accuracy does not depend on the folded temperature (``calibrate.py``), so the two recipes
may run in either order.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import tp3nets
from tp3nets.data import load_mnist
from tp3nets.data._augment import dilate, erode
from tp3nets.weights._defaults import member_version, record_key

HERE = Path(__file__).resolve().parent
MODELS = ("multinomial_logistic_regression", "convnet2", "convnet3", "convnet4")
SEED = 2024
COMMAND = "python recipes/robustness.py --data DIR"


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    """Resample ``x (N, 1, H, W)`` through the ``(N, 2, 3)`` output-to-input maps ``theta``."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation(x: Tensor, g: torch.Generator, degrees: float = 15.0) -> Tensor:
    """Rotate each image by an angle uniform in ``[-degrees, degrees]``."""
    angle = (torch.rand(x.shape[0], generator=g) * 2 - 1) * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def shift(x: Tensor, g: torch.Generator, pixels: float = 3.0) -> Tensor:
    """Translate each image by ``(dx, dy)`` uniform in ``[-pixels, pixels]``."""
    n, _, h, w = x.shape
    d = (torch.rand(n, 2, generator=g) * 2 - 1) * pixels
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2 * d[:, 0] / w  # normalised coordinates span 2 over the width
    theta[:, 1, 2] = -2 * d[:, 1] / h
    return _affine(x, theta)


def scale(x: Tensor, g: torch.Generator, low: float = 0.75, high: float = 1.25) -> Tensor:
    """Zoom each image by a factor uniform in ``[low, high]`` about its centre."""
    factor = low + torch.rand(x.shape[0], generator=g) * (high - low)
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / factor
    return _affine(x, theta)


def thin(x: Tensor, g: torch.Generator) -> Tensor:
    """Grey-level erosion by a 3×3 cross: every stroke loses about a pixel of width."""
    return erode(x)


def thick(x: Tensor, g: torch.Generator) -> Tensor:
    """Grey-level dilation by a 3×3 cross: every stroke gains about a pixel of width."""
    return dilate(x)


def blur(x: Tensor, g: torch.Generator, sigma: float = 1.0) -> Tensor:
    """Gaussian blur, ``sigma`` pixels, 5×5 kernel, zero padding (MNIST's background)."""
    r = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-(r**2) / (2 * sigma**2))
    k = k / k.sum()
    kernel = (k[:, None] * k[None, :])[None, None]  # (1, 1, 5, 5)
    return F.conv2d(x, kernel, padding=2)


def noise(x: Tensor, g: torch.Generator, sigma: float = 0.25) -> Tensor:
    """Additive Gaussian noise of standard deviation ``sigma``, clamped to ``[0, 1]``."""
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)


def contrast(x: Tensor, g: torch.Generator, factor: float = 0.3) -> Tensor:
    """Contrast scaled by ``factor`` about each image's mean grey level."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + factor * (x - mean)).clamp(0.0, 1.0)


PERTURBATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "rotation": rotation, "shift": shift, "scale": scale, "thin": thin, "thick": thick,
    "blur": blur, "noise": noise, "contrast": contrast,
}
DESCRIPTIONS = {
    "rotation": "rotation uniform in [-15, 15] degrees",
    "shift": "translation uniform in [-3, 3] pixels on each axis",
    "scale": "zoom uniform in [0.75, 1.25]",
    "thin": "grey-level erosion, 3x3 cross",
    "thick": "grey-level dilation, 3x3 cross",
    "blur": "Gaussian blur, sigma 1 pixel, 5x5 kernel",
    "noise": "additive Gaussian noise, sigma 0.25, clamped to [0, 1]",
    "contrast": "contrast x0.3 about the image mean",
}


def bundled_weights(model: str) -> list[tuple[str, Any]]:
    """``(record key, member)`` of each bundled fp32 weights of ``model``, oldest first:
    ``convnet4`` for MNIST_V1, ``convnet4_v2`` for MNIST_V2 (the names of results/*.json)."""
    enum = tp3nets.get_model_weights(model)
    out = []
    for name, member in enum.__members__.items():
        if name != member.name:
            continue  # DEFAULT, an alias
        out.append((record_key(model, member_version(name)), member))
    return out


def weight_labels() -> dict[str, str]:
    """Record key -> label (``ConvNet4_Weights.MNIST_V2``) of every bundled fp32 weights,
    in the table's order."""
    return {key: repr(member) for n in MODELS for key, member in bundled_weights(n)}


def _with_earlier_rows(path: Path, table: dict[str, dict[str, dict[str, float]]]
                       ) -> dict[str, dict[str, dict[str, float]]]:
    """``table`` (this run's weights) with the rows of the other bundled weights from the
    earlier record, so that ``--models convnet4`` replaces only ConvNet4's rows. The earlier
    rows are kept only if they were measured on the same perturbations and seed."""
    if not path.is_file():
        return table
    earlier = json.loads(path.read_text())
    if earlier.get("perturbations") != DESCRIPTIONS or earlier.get("seed") != SEED:
        return table
    merged = {**earlier.get("models", {}), **table}
    return {k: merged[k] for k in weight_labels() if k in merged}


def perturbed(images: Tensor, name: str, index: int) -> Tensor:
    """The test images ``(N, 1, 28, 28)`` in [0, 1] under perturbation ``name``, seeded."""
    g = torch.Generator().manual_seed(SEED + index)
    out = torch.cat([PERTURBATIONS[name](chunk, g) for chunk in images.split(2000)])
    return out.clamp(0.0, 1.0)


def accuracy(model: torch.nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``x`` in percent, two decimals (batches of 1000)."""
    correct = 0
    with torch.inference_mode():
        for xb, yb in zip(x.split(1000), y.split(1000), strict=True):
            correct += int(model(xb).argmax(1).eq(yb).sum())
    return round(100 * correct / len(y), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TP3NETS_DATA", "../shared/datasets"))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--limit", type=int, help="only the first N test images (a quick check)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    test = load_mnist(args.data, train=False)
    images, labels = test.tensors
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    clean = images.float() / 255  # (N, 1, 28, 28), as MNISTPreprocess gives
    label_of = weight_labels()
    models = {key: tp3nets.get_model(n, weights=member).eval()
              for n in args.models for key, member in bundled_weights(n)}
    table: dict[str, dict[str, dict[str, float]]] = {n: {} for n in models}
    started = time.perf_counter()
    for name, model in models.items():
        table[name]["clean"] = {"acc@1": accuracy(model, clean, labels)}
    for index, perturbation in enumerate(PERTURBATIONS):
        x = perturbed(clean, perturbation, index)
        for name, model in models.items():
            table[name][perturbation] = {"acc@1": accuracy(model, x, labels)}
        print(f"{perturbation}: " + ", ".join(f"{n} {table[n][perturbation]['acc@1']:.2f}"
                                               for n in models), flush=True)
    columns = ["clean", *PERTURBATIONS]
    header = "| weights | " + " | ".join(columns) + " |"
    print(header)
    print("|" + " --- |" * (len(columns) + 1))
    for name in models:
        print(f"| {label_of[name]} | "
              + " | ".join(f"{table[name][c]['acc@1']:.2f}" for c in columns) + " |")
    if args.limit:
        print(f"--limit {args.limit}: a quick check, nothing written")
        return 0
    table = _with_earlier_rows(args.out / "robustness.json", table)
    rows = [{"weights": label, **{c: f"{table[key][c]['acc@1']:.2f}" for c in columns}}
            for key, label in label_of.items() if key in table]
    record = {
        "command": COMMAND,
        "dataset": "MNIST test set (10,000 images), perturbed; acc@1 in percent",
        "seed": SEED,
        "perturbations": DESCRIPTIONS,
        "models": table,
        "torch_version": torch.__version__,
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robustness.json").write_text(json.dumps(record, indent=2) + "\n")
    with (args.out / "robustness.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["weights", *columns])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out / 'robustness.json'} and robustness.csv; now run "
          "python recipes/sync_meta.py", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
