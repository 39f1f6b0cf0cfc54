"""Regenerate the records ``src/tp3nets/weights/records/*.json`` from ``recipes/results/*.json``.

Run after ``train_weights.py`` and ``calibrate.py``: the sha256, file size, recipe and
metrics that the weight enums expose come from those runs themselves, never typed by hand.
The calibration (``recipe["calibration"]``: temperature, split, ECE before and after) and
the test ECE (``metrics["MNIST"]["ece"]``) travel inside ``recipe`` and ``metrics``. The
int8 records are rewritten from ``results/quantized_*.json`` (what ``quantize.py`` wrote),
their ``_ops`` being those of their fp32 weights, as torchvision's are. Each record also
gets torchvision's meta keys (``weights_file.torchvision_keys``): the GFLOPs and the
smallest input size are measured on the model, here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from weights_file import FILES, RECORDS, float_docs, int8_docs, torchvision_keys, write_record

import tp3nets
from tp3nets.models import quantization
from tp3nets.weights._measure import gflops, min_input_size

HERE = Path(__file__).resolve().parent
MODELS = ("convnet2", "convnet3", "convnet4", "multinomial_logistic_regression")
KEEP = ("file", "sha256", "file_size", "num_params", "recipe", "metrics")
# What results/quantized_*.json holds beside the record: the selection run, the interpreter.
INT8_RESULTS_ONLY = ("selection_run", "python")


def record_files() -> list[Path]:
    """``results/MODEL.json`` (version 1) and ``results/MODEL_vN.json`` of every model."""
    found = []
    for name in MODELS:
        found.append(HERE / "results" / f"{name}.json")
        found += sorted((HERE / "results").glob(f"{name}_v[0-9]*.json"))
    return found


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    records = {}
    model_of: dict[str, str] = {}  # record key (convnet4, convnet4_v2 ...) -> model
    for path in record_files():
        data = json.loads(path.read_text())
        key = path.stem
        model = data["model"]
        _check_digest(path, data)
        records[key] = {k: data[k] for k in KEEP}
        model_of[key] = model
        records[key]["history"] = [
            {k: round(v, 5) for k, v in row.items()} for row in data["history"]["epochs"]
        ]
    robustness = HERE / "results" / "robustness.json"
    if robustness.is_file():
        data = json.loads(robustness.read_text())
        for name, row in data["models"].items():
            records[name]["metrics"]["MNIST-perturbed"] = {
                k: v["acc@1"] for k, v in row.items() if k != "clean"
            }
    tta = HERE / "results" / "time_to_accuracy.json"
    if tta.is_file():
        # Training from scratch to a target: a figure of the model and its training, not of
        # one weight file; every version of the model's weights carries it.
        data = json.loads(tta.read_text())
        if "models" not in data:
            raise SystemExit(f"{tta} is in the format of an older time_to_accuracy.py: "
                             f"rerun python recipes/time_to_accuracy.py")
        for model, run in data["models"].items():
            figure = {
                "target_acc": run["target_acc"], "reached": run["reached"],
                "median_seconds": run["median_seconds"],
                "seconds": [r["seconds"] for r in run["runs"]],
                "seeds": [r["seed"] for r in run["runs"]], "settings": run["settings"],
                "command": data["command"], "hardware": data["hardware"],
                "torch_version": data["torch_version"],
            }
            for key, record in records.items():
                if model_of[key] == model:
                    record["time_to_accuracy"] = figure
    measured: dict[str, tuple[float, tuple[int, int]]] = {}
    for model in sorted(set(model_of.values())):
        net = tp3nets.get_model(model)
        measured[model] = (gflops(net, net.input_shape), min_input_size(net, net.input_shape))
    written = []
    for key, record in records.items():
        ops, min_size = measured[model_of[key]]
        record.update(torchvision_keys(record, ops=ops, min_size=min_size,
                                       docs=float_docs(record)))
        written.append(write_record(record))
    written += int8_records({r["sha256"]: r for r in records.values()})
    stale = sorted(set(RECORDS.glob("*.json")) - set(written))
    for path in stale:
        print(f"warning: {path.name} has no results file here; left as it is")
    print(f"wrote {len(written)} records to {RECORDS}")
    return 0


def _check_digest(path: Path, data: dict[str, Any]) -> None:
    digest = hashlib.sha256((FILES / data["file"]).read_bytes()).hexdigest()
    if digest != data["sha256"]:
        raise SystemExit(f"{path.name} records sha256 {data['sha256']} but "
                         f"{data['file']} has {digest}: rerun the recipe that wrote it")


def int8_records(float_records: dict[str, dict[str, Any]]) -> list[Path]:
    """Rewrite the record of every int8 file from ``results/quantized_*.json``; the fp32
    records, by sha256, give each its ``_ops``."""
    written = []
    for path in sorted((HERE / "results").glob("quantized_*.json")):
        data = json.loads(path.read_text())
        _check_digest(path, data)
        record = {k: v for k, v in data.items() if k not in INT8_RESULTS_ONLY}
        unquantized = float_records.get(record["unquantized_sha256"])
        if unquantized is None:
            raise SystemExit(f"{path.name} derives from {record['unquantized']}, whose sha256 "
                             f"{record['unquantized_sha256']} no fp32 record has")
        model = record["file"].partition("_mnist_")[0]
        int8 = getattr(quantization, model)(quantize=True)
        record.update(torchvision_keys(
            record, ops=unquantized["_ops"], min_size=min_input_size(int8, int8.input_shape),
            docs=int8_docs(record)))
        written.append(write_record(record))
    return written


if __name__ == "__main__":
    raise SystemExit(main())
