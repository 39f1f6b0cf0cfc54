"""The argument parser of the ``tp3nets`` command."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data import AUGMENTATIONS
from ..deploy import BACKENDS
from ..reading import DEFAULT_MIN_CONFIDENCE
from . import _demo, _info, _run, _train
from ._common import (
    PROG,
    REUSE_MEMORY_ENV,
    _decay,
    _fraction,
    _non_negative_float,
    _non_negative_int,
    _Parser,
    _positive,
    _probability_or_zero,
)


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="NAME", help="a registered model (see 'tp3nets list')")


def _add_weights(p: argparse.ArgumentParser, default: str | None, what: str) -> None:
    p.add_argument(
        "--weights", default=default, metavar="WEIGHTS",
        help=f"{what}: DEFAULT, MNIST_V1 (or qualified, ConvNet4_Weights.MNIST_V1), a "
        f".safetensors/.pt file, or none (default: {default or 'none'})",
    )


def _add_quantized(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantized", action="store_true",
                   help="the int8 model with its bundled int8 weights (ConvNet2/3/4; CPU "
                   "only; --weights then names an int8 member, default DEFAULT)")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps, or auto: CUDA, then MPS, then CPU "
                   "(default: auto)")


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="eager",
                   help="what runs the model: eager (PyTorch as is), torch (BatchNorm folded, "
                   "oneDNN graph), onnxruntime (the model's ONNX export; pip install "
                   "'tp3nets[onnx]'), or auto (onnxruntime if installed and it agrees with "
                   "eager, else torch); all but eager run on the CPU and are checked "
                   "against eager first (default: eager)")


def _add_data(p: argparse.ArgumentParser, zero_val: str) -> None:
    p.add_argument("--data", metavar="DIR",
                   help="folder holding MNIST/raw/ (default: $TP3NETS_DATA, else "
                   "~/.cache/tp3nets/data)")
    p.add_argument("--download", action="store_true",
                   help="download MNIST into --data when it is missing (needs a network)")
    p.add_argument("--val-size", type=_non_negative_int, default=5000, metavar="N",
                   help="images of the training set held out for validation (default: 5000; "
                   f"{zero_val})")
    p.add_argument("--split-seed", type=int, default=42, metavar="SEED",
                   help="seed of the train/validation split (default: 42, the weights' split)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tp3nets`` command (the CLI reference is made from it).

    Example:
        >>> args = build_parser().parse_args(["predict", "convnet4", "digit.png", "--top", "3"])
        >>> args.command, args.images, args.top
        ('predict', ['digit.png'], 3)
    """
    from .._version import __version__

    parser = _Parser(
        prog=PROG,
        description="The MNIST models of the TP3 lab, with pretrained weights: list and "
        "inspect them, train, evaluate, classify digit images, export to ONNX/TorchScript.",
        epilog="'tp3nets COMMAND --help' describes each command. Exit status: 0 on "
        "success, 2 on a usage error (one line on stderr), 1 on an unexpected failure. "
        f"Performance note: on Linux, tp3nets keeps memory that tensors free for reuse, "
        f"which makes small models faster ({REUSE_MEMORY_ENV}=0 turns it off).",
    )
    parser.add_argument("--version", action="version",
                        version=f"{PROG} {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser("list", help="the models, their sizes and bundled weights",
                       description="List the registered models with their parameter counts, "
                       "bundled weights and MNIST test accuracy.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info._cmd_list)

    p = sub.add_parser("info", help="one model's architecture, weights, metrics and recipe",
                       description="Show a model's architecture, parameter count, input "
                       "shape, and its weights with their metrics, recipe and credits.")
    _add_model(p)
    p.add_argument("--history", action="store_true",
                   help="also show the per-epoch training history of the weights")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info._cmd_info)

    p = sub.add_parser("train", help="train a model on MNIST",
                       description="Train a model on the seeded train/validation split of "
                       "the MNIST training set, validating after each epoch.")
    _add_model(p)
    _add_data(p, "0 trains on all 60,000")
    p.add_argument("--epochs", type=_positive(int, "an integer"), default=10, metavar="N",
                   help="total epochs (default: 10). --resume continues a run up to its own "
                   "--epochs; a finished run resumed with a larger --epochs trains the "
                   "added epochs with a new schedule")
    p.add_argument("--batch-size", type=_positive(int, "an integer"), default=128, metavar="N",
                   help="default: 128")
    p.add_argument("--optimizer", choices=("adamw", "adam", "sgd"), default="adamw",
                   help="default: adamw (sgd uses Nesterov momentum 0.9)")
    p.add_argument("--lr", type=_positive(float, "a number"), default=None,
                   help="(peak) learning rate (default: 1e-3 for adam/adamw, 0.05 for sgd)")
    p.add_argument("--weight-decay", type=_non_negative_float, default=1e-4, metavar="WD",
                   help="default: 1e-4")
    p.add_argument("--scheduler", choices=("onecycle", "cosine", "constant"),
                   default="onecycle", help="learning-rate schedule (default: onecycle, "
                   "stepped per batch, as the bundled weights were trained)")
    p.add_argument("--label-smoothing", type=_fraction, default=0.0, metavar="EPS",
                   help="in [0, 1) (default: 0)")
    p.add_argument("--precision", choices=("32", "bf16", "16"), default="32",
                   help="32, bf16 (autocast, CPU or CUDA) or 16 (float16, CUDA only); "
                   "default: 32")
    p.add_argument("--seed", type=int, default=0, help="seed of the run (default: 0)")
    p.add_argument("--augment", nargs="?", const="affine", default=None,
                   choices=AUGMENTATIONS, metavar="{" + ",".join(AUGMENTATIONS) + "}",
                   help="augment each batch: affine (the default when given alone): random "
                   "rotation (10°), shift (10%%) and zoom (±10%%); scan: also thinner or "
                   "thicker strokes, faint contrast and noise, as the MNIST_V2 weights; "
                   "elastic-scan: scan with an elastic distortion after the affine stage")
    p.add_argument("--ema", type=_decay, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights (such as "
                   "0.999): validated, checkpointed and saved instead of the last weights")
    _add_weights(p, None, "initial weights, to fine-tune")
    p.add_argument("--run-dir", type=Path, metavar="DIR",
                   help="the run's folder (default: a new runs/train/MODEL-N): the last "
                   "and best full checkpoints (last.pt, best.pt), weights.safetensors, "
                   "history.csv/.json, history.png (with matplotlib) and TensorBoard "
                   "events (with tensorboard)")
    p.add_argument("--output", type=Path, metavar="CHECKPOINT",
                   help="instead of a run folder, write a full training checkpoint here "
                   "after every epoch (continue with --resume); fields such as {epoch} or "
                   "{val_loss:.3f} in the name are filled in, one file per epoch")
    p.add_argument("--weights-out", type=Path, metavar="FILE.safetensors",
                   help="write the final bare weights here (load with --weights FILE)")
    p.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                   help="continue the run saved in this checkpoint (the same options, "
                   "without --weights; a run folder's last.pt continues in that folder)")
    p.add_argument("--limit-train-batches", type=_positive(int, "an integer"),
                   metavar="N", help="train on the first N batches' worth of images only "
                   "(smoke tests)")
    _add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_train._cmd_train)

    p = sub.add_parser("evaluate", help="loss, accuracy and confusion matrix on MNIST",
                       description="Evaluate a model on the MNIST test set (or the "
                       "validation split): loss, accuracy, per-class accuracy, confusion "
                       "matrix.")
    _add_model(p)
    _add_weights(p, "DEFAULT", "weights to evaluate")
    _add_quantized(p)
    _add_data(p, "used by --split val")
    p.add_argument("--split", choices=("test", "val"), default="test", help="default: test")
    p.add_argument("--batch-size", type=_positive(int, "an integer"), default=1000, metavar="N",
                   help="default: 1000")
    p.add_argument("--limit", type=_positive(int, "an integer"), metavar="N",
                   help="evaluate the first N images only")
    _add_device(p)
    _add_backend(p)
    p.add_argument("--json", action="store_true", help="print JSON (accuracies as fractions)")
    p.set_defaults(func=_run._cmd_evaluate)

    p = sub.add_parser("predict", help="classify digit images (PNG, JPEG, ...)",
                       description="Classify images of handwritten or printed digits of any "
                       "size, preprocessed as the weights expect (grayscale, dark ink on "
                       "light paper inverted, the paper's lighting divided out, the digit's "
                       "strokes found, cropped, centred, resized to 28x28). A picture with "
                       "no single digit (blank, several digits, ruled lines, a texture) is "
                       "answered 'no digit' (JSON: \"no_digit\": true, with a reason); the "
                       "exit status stays 0.")
    _add_model(p)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    p.add_argument("--samples", action="store_true",
                   help="also classify the ten sample digits that ship with tp3nets")
    _add_weights(p, "DEFAULT", "weights to use")
    _add_quantized(p)
    p.add_argument("--top", type=_positive(int, "an integer"), default=1, metavar="K",
                   help="show the K most probable classes with their probabilities "
                   "(default: 1)")
    p.add_argument("--min-confidence", type=_probability_or_zero,
                   default=DEFAULT_MIN_CONFIDENCE, metavar="P",
                   help="answer 'unsure' for an image whose most probable class has a "
                   "probability below P, in [0, 1] (JSON: \"unsure\": true; 0 answers "
                   f"every digit; default: {DEFAULT_MIN_CONFIDENCE})")
    p.add_argument("--save-input", type=Path, default=None, metavar="DIR",
                   help="write the 28x28 image the model saw for each picture into DIR "
                   "(PNG), to see what it read")
    _add_device(p)
    _add_backend(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_run._cmd_predict)

    p = sub.add_parser("export", help="write an ONNX or TorchScript file, checked",
                       description="Export a model to ONNX or TorchScript and check that "
                       "the file's outputs match eager PyTorch (max abs diff <= 1e-4).")
    _add_model(p)
    p.add_argument("output", metavar="OUT", help="the file to write")
    p.add_argument("--format", choices=("onnx", "torchscript"),
                   help="default: from OUT's suffix (.onnx, or .pt for torchscript)")
    _add_weights(p, "DEFAULT", "weights to export")
    _add_quantized(p)
    p.add_argument("--opset", type=_positive(int, "an integer"), default=None, metavar="N",
                   help="ONNX opset (default: the exporter's)")
    p.add_argument("--method", choices=("script", "trace"), default=None,
                   help="TorchScript method (default: script)")
    p.set_defaults(func=_run._cmd_export)

    _demo.add_parser(sub)
    return parser
