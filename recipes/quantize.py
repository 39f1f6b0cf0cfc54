"""Derive the bundled int8 weights from the fp32 ones: ``python recipes/quantize.py --data DIR``.

For each model: load its fp32 weights (``*_Weights.DEFAULT``, or the member named by
``--weights``: ``MNIST_V2`` …), fuse, calibrate on
``--calibration`` images drawn (seeded) from the 55,000-image training split, convert to
int8 for the x86 backend, and report the fp32 and int8 accuracy on the 5,000 validation
images. The 10,000 test images are touched once, at the end, for the figures recorded in
meta. Writes ``src/tp3nets/weights/files/<model>_mnist_int8_v<N>.safetensors`` (N: the
version of the fp32 weights it comes from), ``recipes/results/quantized_<model>[_vN].json``
and the file's record, ``src/tp3nets/weights/records/<model>_mnist_int8_v<N>.json``
(``python recipes/sync_meta.py`` rewrites the records from those results).

Deterministic: the calibration sample is seeded and calibration runs on one thread (the
histogram observers see bit-identical activations), so a rerun on the same fp32 weights
writes the same files. A new fp32 DEFAULT (MNIST_V2) gets a new int8 file beside the old
one (MNIST_INT8_V2), so that published int8 weights never change. About a minute per model
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from weights_file import FILES, int8_docs, torchvision_keys, write_record, write_weights

import tp3nets
from tp3nets.calibration import expected_calibration_error
from tp3nets.data import mnist_splits
from tp3nets.models import quantization
from tp3nets.weights._defaults import member_version, record_key
from tp3nets.weights._measure import min_input_size

HERE = Path(__file__).resolve().parent
MODELS = ("convnet2", "convnet3", "convnet4")
# The logistic regression is left in fp32: see docs/quantization.rst (int8 does not pay for
# one 784x10 matrix product; benchmarks/bench_evaluate.py measures it).


def _scaled(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(255)


@torch.no_grad()
def probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(b).softmax(1) for b in images.split(1000)])


def predictions(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return probabilities(model, images).argmax(1)


def recipe_command(model: str, weights: str, calibration: int, seed: int, backend: str
                   ) -> str:
    """The command that derives this int8 file again: it names the model and the fp32
    member, so that it keeps meaning the same file when the DEFAULT changes."""
    return (f"python recipes/quantize.py --data DIR --models {model} --weights {weights} "
            f"--calibration {calibration} --seed {seed} --backend {backend}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder holding MNIST/raw/")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--calibration", type=int, default=512, help="training images")
    parser.add_argument("--seed", type=int, default=0, help="of the calibration sample")
    parser.add_argument("--backend", default="x86", choices=quantization.BACKENDS)
    parser.add_argument("--weights", default="DEFAULT",
                        help="the fp32 weights of each model to derive from: MNIST_V1, "
                             "MNIST_V2 … (default: DEFAULT)")
    parser.add_argument("--no-test", action="store_true",
                        help="selection run: report validation only, write nothing")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    float_members: dict[str, Any] = {}
    for name in names:
        try:
            float_members[name] = tp3nets.get_model_weights(name).verify(args.weights)
        except ValueError as exc:
            parser.error(str(exc))

    train, val, test = mnist_splits(args.data, val_size=5000, seed=42)
    train_x = train.tensors[0]  # uint8; scaled to [0, 1] below, as TensorLoader does
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed))
    calibration = _scaled(train_x[order[: args.calibration]])
    val_x, val_y = _scaled(val.tensors[0]), val.tensors[1]
    results: dict[str, dict[str, Any]] = {}
    int8_models: dict[str, torch.nn.Module] = {}
    fp32_models: dict[str, torch.nn.Module] = {}
    for name in names:
        builder = getattr(quantization, name)
        # The float Quantizable model with the chosen fp32 weights.
        fp32 = builder(weights=float_members[name]).eval()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # bit-identical activations for the observers
        start = time.perf_counter()
        int8 = quantization.quantize_model(fp32, calibration, backend=args.backend)
        seconds = time.perf_counter() - start
        torch.set_num_threads(threads)
        fp32_val = predictions(fp32, val_x)
        int8_val_probs = probabilities(int8, val_x)
        int8_val = int8_val_probs.argmax(1)
        results[name] = {
            "val_ece_percent": round(100 * expected_calibration_error(int8_val_probs, val_y), 2),
            "quantize_seconds": round(seconds, 1),
            "val_acc@1": round(100 * float((int8_val == val_y).float().mean()), 2),
            "fp32_val_acc@1": round(100 * float((fp32_val == val_y).float().mean()), 2),
            "val_agreement": int((int8_val == fp32_val).sum()),
        }
        print(f"{name}: validation {results[name]}", flush=True)
        int8_models[name], fp32_models[name] = int8, fp32
    if args.no_test:
        return 0

    test_x, test_y = _scaled(test.tensors[0]), test.tensors[1]  # touched once, here
    for name in names:
        fp32_test = predictions(fp32_models[name], test_x)
        int8_probs = probabilities(int8_models[name], test_x)
        int8_test = int8_probs.argmax(1)
        float_member = float_members[name]
        version = member_version(float_member.name)
        key = record_key(name, version)
        file = f"{name}_mnist_int8_v{version}.safetensors"
        flat = quantization.encode_quantized_state(int8_models[name].state_dict())
        FILES.mkdir(parents=True, exist_ok=True)
        # One metadata key: safetensors writes several in a per-process random order,
        # which would change the file's sha256 from one run to the next.
        write_weights(flat, FILES / file, metadata={"tp3nets": json.dumps({
            "format": "tp3nets-int8-v1", "backend": args.backend,
            "derived_from": float_member.file, "derived_from_sha256": float_member.sha256,
        }, sort_keys=True)})
        data = (FILES / file).read_bytes()
        int8_acc = round(100 * float((int8_test == test_y).float().mean()), 2)
        fp32_acc = round(100 * float((fp32_test == test_y).float().mean()), 2)
        record = {
            "file": file,
            "sha256": hashlib.sha256(data).hexdigest(),
            "file_size": len(data),
            "num_params": float_member.meta["num_params"],
            "backend": args.backend,
            "quantization": (
                "post-training static int8 (tp3nets quantize_model on plain int8 tensors, "
                "the numerics of torch.ao.quantization's eager mode): Conv-BN-ReLU and "
                "Linear-ReLU fused, per-channel symmetric weights, histogram observers for "
                "activations (the backend's default qconfig)"
            ),
            "calibration": {
                "images": args.calibration,
                "source": "MNIST training split (55,000 images, val seed 42), seeded sample",
                "seed": args.seed,
            },
            "unquantized": f"{type(float_member).__name__}.{float_member.name}",
            "unquantized_sha256": float_member.sha256,
            "unquantized_metrics": {"MNIST": {"acc@1": fp32_acc}},
            "metrics": {
                "MNIST": {
                    "acc@1": int8_acc,
                    "agreement": int((int8_test == fp32_test).sum()),
                    # 15 equal-width bins, as for the fp32 weights, whose temperature the
                    # int8 weights inherit (folded into the last layer before quantizing).
                    "ece": round(100 * expected_calibration_error(int8_probs, test_y), 2),
                },
                "val_acc@1": results[name]["val_acc@1"],
            },
            "recipe": {
                "command": recipe_command(name, float_member.name, args.calibration,
                                          args.seed, args.backend),
                "torch_version": torch.__version__,
                "hardware": f"{platform.machine()}, {torch.get_num_threads()} CPU threads",
            },
        }
        (HERE / "results" / f"quantized_{key}.json").write_text(
            json.dumps({**record, "selection_run": results[name],
                        "python": sys.version.split()[0]}, indent=2) + "\n"
        )
        # torchvision's keys: the GFLOPs of the fp32 weights, as torchvision records them.
        record.update(torchvision_keys(
            record, ops=float_member.meta["_ops"], docs=int8_docs(record),
            min_size=min_input_size(int8_models[name], int8_models[name].input_shape)))
        written = write_record(record)
        print(f"{name}: test int8 {int8_acc} % / fp32 {fp32_acc} %, "
              f"{record['metrics']['MNIST']['agreement']} identical predictions; wrote {file} "
              f"and {written.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
