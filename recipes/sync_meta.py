"""Regenerate ``src/tp3nets/weights/_records.py`` from ``recipes/results/*.json``.

Run after ``train_weights.py`` and ``calibrate.py``: the sha256, file size, recipe and
metrics that the weight enums expose come from those runs themselves, never typed by hand.
The calibration (``recipe["calibration"]``: temperature, split, ECE before and after) and
the test ECE (``metrics["MNIST"]["ece"]``) travel inside ``recipe`` and ``metrics``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pprint
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "src" / "tp3nets" / "weights" / "_records.py"
FILES = TARGET.parent / "files"
MODELS = ("convnet2", "convnet3", "convnet4", "multinomial_logistic_regression")
KEEP = ("file", "sha256", "file_size", "num_params", "recipe", "metrics")


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
        digest = hashlib.sha256((FILES / data["file"]).read_bytes()).hexdigest()
        if digest != data["sha256"]:
            raise SystemExit(f"{path.name} records sha256 {data['sha256']} but "
                             f"{data['file']} has {digest}: rerun the recipe that wrote it")
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
    body = pprint.pformat(records, indent=1, width=96, sort_dicts=True)
    TARGET.write_text(
        '"""Records of the bundled weight files, written by recipes/sync_meta.py.\n\n'
        "Generated from the training runs' own output (recipes/results/*.json); do not edit.\n"
        '"""\n\nfrom __future__ import annotations\n\nfrom typing import Any, Final\n\n'
        f"RECORDS: Final[dict[str, dict[str, Any]]] = {body}\n"
    )
    print(f"wrote {TARGET} ({len(records)} records)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
