"""Writing a weight file and its record for the wheel: the one place that says how the
recipes do it.

``calibrate.py``, ``quantize.py`` and ``train_weights.py`` write their safetensors files
through :func:`write_weights`; ``sync_meta.py`` and ``quantize.py`` write each file's
record, ``src/tp3nets/weights/records/<file>.json``, through :func:`write_record`, with
torchvision's meta keys from :func:`torchvision_keys`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tp3nets.weights._json_records import check_record, dump_record, record_name
from tp3nets.weights._measure import file_size_mb

WEIGHTS = Path(__file__).resolve().parent.parent / "src" / "tp3nets" / "weights"
FILES = WEIGHTS / "files"
RECORDS = WEIGHTS / "records"

# How a recipe's "augment" reads in a sentence.
AUGMENTATIONS = {
    "none": "no augmentation",
    "affine": "random affine augmentation (rotation, shift, zoom)",
    "scan": 'the "scan" augmentation (affine, thinner and thicker strokes, faint contrast, '
            "noise)",
}


def write_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Save ``state`` to ``path`` as safetensors with ``metadata``, readable by all.

    safetensors writes 0600; the wheel ships its files 0644. Give ``metadata`` one key, or
    keys whose order does not matter: the bytes, and so the recorded sha256, follow it.
    """
    save_file(state, str(path), metadata=metadata)
    path.chmod(0o644)


def torchvision_keys(record: Mapping[str, Any], *, ops: float, min_size: Sequence[int],
                     docs: str) -> dict[str, Any]:
    """torchvision's meta keys for ``record``: ``_metrics`` from its ``metrics``, ``_ops``
    and ``min_size`` as measured (``tp3nets.weights._measure``), ``_file_size`` from the
    bundled file itself, ``_docs``."""
    return {
        "_metrics": {"MNIST": {"acc@1": record["metrics"]["MNIST"]["acc@1"]}},
        "_ops": ops,
        "_file_size": file_size_mb((FILES / record["file"]).stat().st_size),
        "_docs": docs,
        "min_size": [int(v) for v in min_size],
    }


def float_docs(record: Mapping[str, Any]) -> str:
    """The ``_docs`` sentence of fp32 weights, from their recipe."""
    recipe = record["recipe"]
    how = [recipe["optimizer"], AUGMENTATIONS.get(recipe["augment"],
                                                  f"the {recipe['augment']!r} augmentation")]
    if recipe.get("weights") == "average":
        how.append("an exponential moving average of the weights")
    how_text = ", ".join(how)
    epochs = recipe["epochs"]
    if recipe.get("start_from"):
        kinds = ", ".join(k.replace("_", " ") for k in sorted(recipe.get("train_counts", {})))
        made = (f"{recipe['start_from']} fine-tuned for {epochs} epochs on MNIST plus "
                f"realistic pictures and pictures without a digit ({kinds}), with {how_text}")
    else:
        made = (f"Trained from scratch on 55,000 MNIST training images for {epochs} epochs, "
                f"with {how_text}")
    if "temperature" in (recipe.get("calibration") or {}):
        made += ", then calibrated by temperature scaling on held-out validation images"
    return made + "."


def int8_docs(record: Mapping[str, Any]) -> str:
    """The ``_docs`` sentence of int8 weights, from their record."""
    return (f"{record['unquantized']} quantized to int8 after training (static, per-channel "
            f"weights, {record['backend']} backend), calibrated on "
            f"{record['calibration']['images']} seeded MNIST training images.")


def write_record(record: Mapping[str, Any]) -> Path:
    """Write ``record`` to ``records/<file>.json``, after checking it has every key the
    library reads; returns the path."""
    problems = check_record(record)
    if problems:
        raise SystemExit(f"the record of {record.get('file')!r} is incomplete: "
                         + "; ".join(problems))
    path = RECORDS / record_name(record["file"])
    RECORDS.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_record(record), encoding="utf-8")
    return path
