"""Calibrate the bundled weight files: ``python recipes/calibrate.py --data DIR``.

Runs after ``train_weights.py`` and before ``sync_meta.py``. For every bundled fp32 file it
fits a temperature ``T`` on the validation split the training used (the 5,000 images of
the MNIST training set held out by ``mnist_splits(val_size=5000, seed=42)``, never trained
on), by minimising the negative log-likelihood of ``logits / T`` (the ECE for the linear
model, see ``CRITERIA``); folds ``T`` into the
final Linear layer (``tp3nets.calibration.fold_temperature``: the same argmax, so the same
accuracy, and still a plain state dict); and rewrites the file. The 10,000 test images are
touched once, at the end, to report the accuracy and the expected calibration error (15
equal-width bins) before and after. Writes the figures into ``results/<model>.json``
(then run ``sync_meta.py``), ``results/calibration.csv`` (the table of the models page)
and the reliability diagram ``docs/_static/reliability.png``.

A file that is already calibrated (its record holds a calibration and its sha256) is left
as it is: calibrate the output of a training run, not the result of a calibration.
``--no-test`` is the selection mode: validation figures only, nothing written.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from robustness import bundled_weights, weight_labels
from weights_file import write_weights

import tp3nets
from tp3nets.calibration import (
    collect_logits,
    expected_calibration_error,
    fold_temperature,
    reliability_diagram,
    temperature_from_logits,
)
from tp3nets.data import TensorLoader, mnist_splits

HERE = Path(__file__).resolve().parent
FILES = HERE.parent / "src" / "tp3nets" / "weights" / "files"
FIGURE = HERE.parent / "docs" / "_static" / "reliability.png"
MODELS = ("multinomial_logistic_regression", "convnet2", "convnet3", "convnet4")
# The split of recipes/train_weights.py: the temperature is fitted where the
# hyperparameters were chosen, on images no weight was trained on.
VAL_SIZE, SPLIT_SEED = 5000, 42
N_BINS = 15
# What the temperature minimises, chosen on the validation split (results/SELECTION.md): the
# NLL, except for the linear model, whose NLL optimum (T=1.043) raises its validation ECE.
CRITERIA = {"multinomial_logistic_regression": "ece", "convnet2": "nll", "convnet3": "nll",
            "convnet4": "nll"}
COMMAND = "python recipes/calibrate.py --data DIR"
FITTED_ON = (f"validation split: the {VAL_SIZE:,} MNIST training images held out by "
             f"mnist_splits(val_size={VAL_SIZE}, seed={SPLIT_SEED}), as in training")


def _figures(logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    probs = logits.softmax(dim=1)
    return {
        "acc@1": round(100 * float(logits.argmax(1).eq(target).double().mean()), 2),
        "ece": round(100 * expected_calibration_error(probs, target, N_BINS), 3),
        "nll": round(float(F.cross_entropy(logits.double(), target)), 4),
        "mean_confidence": round(100 * float(probs.max(1).values.double().mean()), 2),
    }


def _already_calibrated(record: dict[str, Any], path: Path) -> bool:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return "calibration" in record["recipe"] and record["sha256"] == digest


def _weights(models: Any) -> list[tuple[str, str, Any]]:
    """``(record key, model, member)`` of every bundled fp32 weights of ``models``."""
    return [(key, m, member) for m in models for key, member in bundled_weights(m)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TP3NETS_DATA", "../shared/datasets"))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--no-test", action="store_true",
                        help="selection run: report validation only, write nothing")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args(argv)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    _, val, test = mnist_splits(args.data, val_size=VAL_SIZE, seed=SPLIT_SEED)
    fitted: dict[str, tuple[torch.nn.Module, float, dict[str, Any]]] = {}
    for key, model_name, member in _weights(args.models):
        results = HERE / "results" / f"{key}.json"
        record = json.loads(results.read_text())
        path = FILES / record["file"]
        if _already_calibrated(record, path):
            print(f"{key}: already calibrated (T={record['recipe']['calibration']['temperature']})"
                  f"; retrain with train_weights.py to calibrate again", flush=True)
            continue
        name = key
        model = tp3nets.get_model(model_name, weights=member)  # checks the recorded sha256
        logits, target = collect_logits(model, TensorLoader(val, 1000), device="cpu")
        before = _figures(logits, target)
        print(f"{name}: validation before {before}", flush=True)
        for criterion in ("nll", "ece"):
            t = temperature_from_logits(logits, target, criterion=criterion, n_bins=N_BINS)
            print(f"  criterion={criterion}: T={t:.4f} validation after "
                  f"{_figures(logits / t, target)}", flush=True)
        temperature = temperature_from_logits(logits, target, criterion=CRITERIA[model_name],
                                              n_bins=N_BINS)
        after = _figures(logits / temperature, target)
        fold_temperature(model, temperature)
        probe = val.tensors[0][:256].float() / 255
        with torch.inference_mode():
            torch.testing.assert_close(model.eval()(probe), logits[:256] / temperature,
                                       rtol=1e-4, atol=1e-5)
        fitted[name] = (model, temperature, {"before": before, "after": after})
    if args.no_test or not fitted:
        return 0

    # The test set, once, after every choice is made.
    panels: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    rows = []
    labels = weight_labels()
    for name, (model, temperature, val_figures) in fitted.items():
        logits, target = collect_logits(model, TensorLoader(test, 1000), device="cpu")
        after = _figures(logits, target)
        before = _figures(logits * temperature, target)
        print(f"{name}: test before {before} after {after}", flush=True)
        results = HERE / "results" / f"{name}.json"
        record = json.loads(results.read_text())
        recorded = float(record["metrics"]["MNIST"]["acc@1"])
        if abs(after["acc@1"] - recorded) > 0.005:
            raise SystemExit(f"{name}: test acc@1 {after['acc@1']} differs from the recorded "
                             f"{recorded}: the weights are not those of the record")
        target_file = FILES / record["file"]
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        write_weights(state, target_file,
                      metadata={"model": record["model"], "format": "pt",
                                "temperature": repr(temperature)})
        record["sha256"] = hashlib.sha256(target_file.read_bytes()).hexdigest()
        record["file_size"] = target_file.stat().st_size
        record["recipe"]["calibration"] = {
            "command": COMMAND,
            "method": "temperature scaling, folded into the final Linear layer",
            "criterion": CRITERIA[record["model"]],
            "temperature": round(temperature, 6),
            "fitted_on": FITTED_ON,
            "n_bins": N_BINS,
            "validation": val_figures,
            "MNIST_before": before,
        }
        record["metrics"]["val_ece"] = val_figures["after"]["ece"]
        record["metrics"]["MNIST"]["loss"] = after["nll"]
        record["metrics"]["MNIST"]["ece"] = after["ece"]
        record["metrics"]["MNIST"]["mean_confidence"] = after["mean_confidence"]
        results.write_text(json.dumps(record, indent=2) + "\n")
        rows.append({
            "weights": labels[name],
            "temperature": f"{temperature:.3f}",
            "val ECE before (%)": f"{val_figures['before']['ece']:.2f}",
            "val ECE after (%)": f"{val_figures['after']['ece']:.2f}",
            "test acc@1 (%)": f"{after['acc@1']:.2f}",
            "test ECE before (%)": f"{before['ece']:.2f}",
            "test ECE after (%)": f"{after['ece']:.2f}",
            "test mean confidence after (%)": f"{after['mean_confidence']:.2f}",
        })
    # The table keeps the rows of the weights calibrated before (the order of _weights);
    # the figure shows each model's DEFAULT weights, as trained and as calibrated.
    table = HERE / "results" / "calibration.csv"
    kept = {}
    if table.is_file():
        with table.open(newline="") as fh:
            kept = {row["weights"]: row for row in csv.DictReader(fh)}
    kept.update({row["weights"]: row for row in rows})
    order = [labels[k] for k, _, _ in _weights(MODELS)]
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept[w] for w in order if w in kept)
    for key, model_name, member in _weights(MODELS):
        if member is not tp3nets.get_model_weights(model_name).DEFAULT:
            continue
        model = fitted[key][0] if key in fitted else tp3nets.get_model(model_name, weights=member)
        t = float(json.loads((HERE / "results" / f"{key}.json").read_text())
                  ["recipe"]["calibration"]["temperature"])
        logits, target = collect_logits(model, TensorLoader(test, 1000), device="cpu")
        panels.append((type(model).__name__, logits * t, logits, target))
    _figure(panels, args.figure)
    print("now run: python recipes/sync_meta.py", flush=True)
    return 0


def _figure(panels: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]],
            path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: {path} not drawn", flush=True)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, raw, calibrated, target) in zip(axes[0], panels, strict=True):
        reliability_diagram(raw.softmax(1), target, ax, label="trained")
        reliability_diagram(calibrated.softmax(1), target, ax, label="calibrated")
        ax.set_title(f"{title} (MNIST test)", fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
