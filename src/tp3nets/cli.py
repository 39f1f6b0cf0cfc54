"""The ``tp3nets`` command: list, inspect, train, evaluate, run and export the models.

A thin layer over the library: every subcommand calls the public API (the registry,
:func:`~tp3nets.fit`, :func:`~tp3nets.evaluate`, :mod:`tp3nets.data`, :mod:`tp3nets.export`).
Mistakes in what the user gave (an unknown model, a missing folder or file, an unreadable
image, a bad option) print one ``tp3nets: error: …`` line on stderr and exit with status 2;
anything else is a bug and shows its traceback (status 1).

Example:
    >>> main(["list"])  # doctest: +ELLIPSIS
    MODEL ...
    0
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn

import torch
from torch import Tensor, nn

from ._malloc import reuse_freed_memory

__all__ = ["build_parser", "main"]

PROG: Final = "tp3nets"
# Set to 0 to leave glibc's malloc settings as they are; see _tune_malloc.
REUSE_MEMORY_ENV: Final = "TP3NETS_REUSE_FREED_MEMORY"
_EXPORT_SUFFIXES: Final = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript",
                           ".ts": "torchscript", ".torchscript": "torchscript"}


class UsageError(ValueError):
    """A mistake in the command line that argparse cannot see (a bad value, a bad file)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to find help, no usage dump."""

    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message and self.prog == PROG:
            message = _suggest_command(message)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _suggest_command(message: str) -> str:
    # "argument command: invalid choice: 'trian' (choose from ...)"
    start = message.find("'")
    end = message.find("'", start + 1)
    given = message[start + 1 : end] if 0 <= start < end else ""
    close = difflib.get_close_matches(given, list(_COMMANDS), n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown command {given!r}{hint} (commands: {', '.join(_COMMANDS)})"


# --------------------------------------------------------------------------------------
# shared helpers


def _device(value: str) -> torch.device:
    if value == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(value)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(
            f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {value!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and (
        device.index >= torch.cuda.device_count()
    ):
        raise UsageError(
            f"device {value!r} asked for, but there are {torch.cuda.device_count()} CUDA devices"
        )
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"device {value!r} asked for, but MPS is not available here")
    return device


def _data_dir(value: str | None) -> Path:
    from .data import DATA_ENV, default_data_root

    folder = Path(value).expanduser() if value else default_data_root()
    if not folder.is_dir():
        how = "--data" if value else f"--data or {DATA_ENV}"
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"data folder {str(folder)!r} {what}; give the folder that holds "
            f"MNIST/raw/ with {how}"
        )
    return folder


def _looks_like_path(value: str) -> bool:
    from .weights import CHECKPOINT_SUFFIXES

    return "/" in value or os.sep in value or value.lower().endswith(CHECKPOINT_SUFFIXES)


def _load_model(name: str, weights: str | None) -> tuple[nn.Module, Any, str]:
    """Build model ``name`` with ``weights``: a member name, a file, or ``none``.

    A value with a path separator or a checkpoint suffix is a file; otherwise a member name
    of the model's weights enum, or else an existing file of that name.

    Returns:
        The model, the weights member (or ``None``) and a description of the weights.
    """
    from .models import get_model_builder, get_model_weights
    from .weights import load_state_dict, load_weights_into

    builder = get_model_builder(name)
    if weights is None or weights.lower() == "none":
        return builder(), None, "random initialisation"
    member = None
    if not _looks_like_path(weights):
        enum_cls = get_model_weights(name)
        try:
            member = enum_cls.verify(weights)
        except ValueError as exc:
            if not Path(weights).expanduser().is_file():
                raise UsageError(
                    f"{exc} (or give the path of a .safetensors or .pt file)"
                ) from None
    if member is not None:
        return builder(weights=member), member, repr(member)
    path = Path(weights).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise FileNotFoundError(f"weights file {what}: {weights!r}")
    model = builder()
    load_weights_into(model, load_state_dict(path), source=str(path))
    return model, None, str(path)


def _default_member(name: str) -> Any:
    from .models import get_model_weights

    try:
        return get_model_weights(name).verify("DEFAULT")
    except ValueError:
        return None


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _input_shape(model: nn.Module, member: Any) -> tuple[int, ...]:
    if member is not None and "input_size" in member.meta:
        return tuple(int(s) for s in member.meta["input_size"])
    shape = getattr(model, "input_shape", None)
    return tuple(int(s) for s in shape) if isinstance(shape, tuple) else (1, 28, 28)


def _acc(meta: Any) -> float | None:
    try:
        return float(meta["metrics"]["MNIST"]["acc@1"])
    except (KeyError, TypeError, ValueError):
        return None


def _members(enum_cls: Any) -> list[tuple[Any, list[str]]]:
    """Each distinct member with its aliases (``DEFAULT``)."""
    out: list[tuple[Any, list[str]]] = []
    for alias, member in enum_cls.__members__.items():
        for seen, aliases in out:
            if seen is member:
                aliases.append(alias)
                break
        else:
            out.append((member, []))
    return out


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=lambda o: list(o) if isinstance(o, tuple) else str(o))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return text or type(exc).__name__


def _positive(kind: type[int] | type[float], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _check_output_file(option: str, path: Path) -> None:
    """Refuse, before any work, a file that cannot be written: a folder, a path under a
    file, or a place where no file can be created (tried with a temporary file)."""
    if path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a directory; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(
                    f"{option} {str(path)!r} cannot be written: {str(parent)!r} is a file, "
                    "not a folder"
                )
            try:
                with tempfile.TemporaryFile(dir=parent):
                    pass
            except OSError as exc:
                raise UsageError(
                    f"{option} {str(path)!r} cannot be written: no file can be created in "
                    f"{str(parent)!r} ({exc.strerror or exc})"
                ) from None
            return


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


# --------------------------------------------------------------------------------------
# list and info


def _cmd_list(args: argparse.Namespace) -> int:
    from .models import get_model, get_model_weights, list_models

    rows: list[dict[str, Any]] = []
    for name in list_models():
        model = get_model(name)
        try:
            enum_cls: Any = get_model_weights(name)
        except ValueError:
            enum_cls = None
        default = _default_member(name)
        weights = [
            {
                "name": member.name,
                "qualified_name": repr(member),
                "aliases": aliases,
                "file": member.file,
                "acc@1": _acc(member.meta),
            }
            for member, aliases in (_members(enum_cls) if enum_cls is not None else [])
        ]
        rows.append({
            "name": name,
            "class": type(model).__name__,
            "num_params": _num_params(model),
            "input_size": list(_input_shape(model, default)),
            "weights": weights,
        })
    if args.json:
        print(_json(rows))
        return 0
    print(f"{'MODEL':<32} {'PARAMS':>10}  {'INPUT':<8}  {'WEIGHTS':<20} {'MNIST ACC@1':>11}")
    for row in rows:
        shape = "x".join(str(s) for s in row["input_size"])
        lines = row["weights"] or [{"name": "-", "aliases": [], "acc@1": None}]
        for i, w in enumerate(lines):
            label = w["name"] + (f" ({', '.join(w['aliases'])})" if w["aliases"] else "")
            acc = "-" if w["acc@1"] is None else f"{w['acc@1']:.2f}%"
            if i == 0:
                print(f"{row['name']:<32} {row['num_params']:>10,}  {shape:<8}  {label:<20} "
                      f"{acc:>11}")
            else:
                print(f"{'':<32} {'':>10}  {'':<8}  {label:<20} {acc:>11}")
    return 0


def _describe_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_describe_value(v) for v in value)
    return str(value)


def _cmd_info(args: argparse.Namespace) -> int:
    from .models import get_model, get_model_builder, get_model_weights

    builder = get_model_builder(args.model)
    name = builder.__name__
    model = get_model(name)
    try:
        enum_cls: Any = get_model_weights(name)
    except ValueError:
        enum_cls = None
    default = _default_member(name)
    shape = _input_shape(model, default)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    num_classes = int(getattr(model, "num_classes", 0))
    weights = []
    for member, aliases in _members(enum_cls) if enum_cls is not None else []:
        meta = {k: v for k, v in member.meta.items() if args.history or k != "history"}
        weights.append({"name": repr(member), "aliases": aliases, "file": member.file,
                        "sha256": member.sha256, "meta": meta})
    if args.json:
        print(_json({
            "name": name,
            "class": type(model).__name__,
            "num_params": _num_params(model),
            "trainable_params": trainable,
            "input_size": list(shape),
            "num_classes": num_classes,
            "architecture": repr(model),
            "weights": weights,
        }))
        return 0
    print(f"{name}: {type(model).__name__}")
    print(f"parameters: {_num_params(model):,} ({trainable:,} trainable)")
    print(f"input: (N, {', '.join(str(s) for s in shape)}) float in [0, 1], light ink on dark")
    print(f"output: (N, {num_classes}) logits")
    print("architecture:")
    print(repr(model))
    if not weights:
        print("weights: none")
        return 0
    print("weights:")
    for w in weights:
        meta = w["meta"]
        label = w["name"] + (f" ({', '.join(w['aliases'])})" if w["aliases"] else "")
        print(f"  {label}")
        size = meta.get("file_size")
        size_text = f", {size / 1e6:.2f} MB" if isinstance(size, int) else ""
        print(f"    file: {w['file']}{size_text}, sha256 {w['sha256']}")
        metrics = meta.get("metrics", {})
        test = metrics.get("MNIST", {})
        parts = []
        if "acc@1" in test:
            parts.append(f"MNIST test acc@1 {float(test['acc@1']):.2f}%")
        if "loss" in test:
            parts.append(f"test loss {float(test['loss']):.4f}")
        if "val_acc@1" in metrics:
            parts.append(f"validation acc@1 {float(metrics['val_acc@1']):.2f}%")
        if parts:
            print(f"    metrics: {', '.join(parts)}")
        if "num_params" in meta:
            print(f"    num_params: {meta['num_params']:,}")
        if "categories" in meta:
            print(f"    categories: {' '.join(str(c) for c in meta['categories'])}")
        recipe = meta.get("recipe")
        if isinstance(recipe, dict):
            print("    recipe:")
            for key, value in recipe.items():
                print(f"      {key}: {_describe_value(value)}")
        if "dataset_license" in meta:
            print(f"    dataset: {meta['dataset_license']}")
        for row in meta.get("history", []) if args.history else []:
            print("    history: " + "  ".join(f"{k} {_describe_value(v)}" for k, v in row.items()))
    return 0


# --------------------------------------------------------------------------------------
# train


def _make_optimizer(name: str, model: nn.Module, lr: float | None,
                    weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name``, with its fused implementation where torch has one."""
    from .training import _fused_optimizer

    params = model.parameters()
    if name == "adamw":
        return _fused_optimizer(torch.optim.AdamW, params, lr=lr or 1e-3,
                                weight_decay=weight_decay)
    if name == "adam":
        return _fused_optimizer(torch.optim.Adam, params, lr=lr or 1e-3,
                                weight_decay=weight_decay)
    return _fused_optimizer(torch.optim.SGD, params, lr=lr or 0.05, momentum=0.9,
                            nesterov=True, weight_decay=weight_decay)


def _warmup_fraction(steps: int, share: float = 0.2) -> float:
    """OneCycleLR's ``pct_start`` for a warm-up of about ``share`` of ``steps``.

    torch divides by the length of each phase, and the warm-up phase has length
    ``pct_start * steps - 1``: zero (a ZeroDivisionError) when that product is 1, as for
    5 steps at 0.2. The warm-up is rounded to whole steps and given half a step more, so
    that neither phase is ever empty; for long runs this is the plain ``share``.

    Example:
        >>> _warmup_fraction(5), round(_warmup_fraction(4300), 4), _warmup_fraction(1)
        (0.3, 0.2001, 0.5)
    """
    warmup = min(max(1, round(share * steps)), steps - 1)
    return (warmup + 0.5) / steps


def _check_resumable(path: Path, checkpoint: dict[str, Any], scheduler: Any) -> None:
    """Refuse to resume a run whose learning-rate schedule was another, or had another
    length, in the command line's own words."""
    names = {"OneCycleLR": "onecycle", "CosineAnnealingLR": "cosine"}
    if "scheduler" in checkpoint and checkpoint["scheduler"] is None:
        raise UsageError(
            f"{str(path)!r} was trained with --scheduler constant; resume with it"
        )
    was = checkpoint.get("scheduler_class")
    if was is not None and was != type(scheduler).__name__:
        raise UsageError(
            f"{str(path)!r} was trained with --scheduler {names.get(was, was)}; resume with it"
        )
    saved = checkpoint.get("scheduler") or {}
    ours = scheduler.state_dict()
    for key in ("total_steps", "T_max"):
        if key in saved and key in ours and saved[key] != ours[key]:
            raise UsageError(
                f"{str(path)!r} was trained with a schedule of {saved[key]} "
                f"{'steps' if key == 'total_steps' else 'epochs'}, these options give "
                f"{ours[key]}; resume with the same --epochs, --batch-size, "
                "--limit-train-batches and --val-size (or --scheduler constant)"
            )


def _count(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cmd_train(args: argparse.Namespace) -> int:

    from .callbacks import ModelCheckpoint
    from .checkpoint import load_checkpoint, write_atomically
    from .data import (
        BatchRandomAffine,
        TensorLoader,
        TensorSubset,
        load_mnist,
        train_val_split,
    )
    from .training import fit, seed_everything

    # Check everything the user gave before the (long) run starts.
    if args.weights_out is not None and Path(args.weights_out).suffix != ".safetensors":
        raise UsageError(
            f"--weights-out writes a .safetensors file, got {str(args.weights_out)!r}"
        )
    if args.resume is not None and args.weights is not None:
        raise UsageError(
            "--weights and --resume both give the starting weights; --resume continues the "
            "checkpoint's own (drop --weights)"
        )
    if args.output is not None and Path(args.output).suffix.lower() == ".safetensors":
        raise UsageError(
            f"--output writes a full training checkpoint (a .pt file), got "
            f"{str(args.output)!r}; bare weights go to --weights-out FILE.safetensors"
        )
    if args.resume is not None and not Path(args.resume).expanduser().is_file():
        what = "is a directory" if Path(args.resume).expanduser().is_dir() else "not found"
        raise FileNotFoundError(f"checkpoint to resume {what}: {str(args.resume)!r}")
    # Read now, so that a file that is no checkpoint is reported before MNIST is loaded.
    resumed = load_checkpoint(Path(args.resume).expanduser()) if args.resume is not None else None
    for option, path in (("--output", args.output), ("--weights-out", args.weights_out)):
        if path is not None:
            _check_output_file(option, Path(path).expanduser())
    device = _device(args.device)
    seed_everything(args.seed)
    model, _, source = _load_model(args.model, args.weights)
    folder = _data_dir(args.data)

    full = load_mnist(folder, train=True, download=args.download)
    if args.val_size > 0:
        train, val = train_val_split(full, args.val_size, seed=args.split_seed)
    else:
        train, val = full, None
    if args.limit_train_batches is not None:
        keep = args.limit_train_batches * args.batch_size
        train = TensorSubset(train, range(min(keep, len(train))))
    augment = BatchRandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1)) \
        if args.augment else None
    train_loader = TensorLoader(train, args.batch_size, shuffle=True, seed=args.seed,
                                transform=augment)
    val_loader = TensorLoader(val, 1000) if val is not None else None
    optimizer = _make_optimizer(args.optimizer, model, args.lr, args.weight_decay)
    scheduler: Any = None
    interval = "epoch"
    if args.scheduler == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], epochs=args.epochs,
            steps_per_epoch=len(train_loader),
            pct_start=_warmup_fraction(args.epochs * len(train_loader)),
        )
        interval = "step"
    elif args.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    if resumed is not None and scheduler is not None:
        _check_resumable(args.resume, resumed, scheduler)
    saver = ModelCheckpoint(args.output) if args.output is not None else None
    callbacks = [saver] if saver is not None else []
    if not args.quiet:
        if resumed is not None:
            source = f"resuming {args.resume} after epoch {resumed['epoch']}"
        print(f"training {args.model} ({source}) on {len(train):,} MNIST images"
              + (f", validating on {len(val):,}" if val is not None else "")
              + f", {_count(args.epochs, 'epoch')}, batch {args.batch_size}, {args.optimizer}, "
              f"precision {args.precision}, device {device}", flush=True)
    started = time.perf_counter()
    history = fit(
        model, train_loader, epochs=args.epochs, optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
        val_loader=val_loader, device=device, scheduler=scheduler,
        scheduler_interval=interval,  # type: ignore[arg-type]
        precision=args.precision, callbacks=callbacks,
        progress=False if args.quiet else None, resume_from=args.resume,
    )
    seconds = time.perf_counter() - started
    last = history.epochs[-1] if history.epochs else {}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items()
                      if k in ("loss", "acc", "val_loss", "val_acc"))
    before = int(resumed["epoch"]) if resumed is not None else 0
    trained = len(history) - before
    if resumed is not None and trained <= 0:
        print(f"nothing to train: {args.resume} already holds "
              f"{_count(before, 'epoch')} of --epochs {args.epochs}")
    else:
        now = f" ({trained} now, after {before} resumed)" if before else ""
        print(f"done: {_count(len(history), 'epoch')}{now} in {seconds:.1f}s"
              + (f"; last epoch: {shown}" if shown else ""))
    if saver is not None and saver.last_saved is not None and trained > 0:
        print(f"checkpoint: {saver.last_saved}")  # the file, its {fields} filled in
    if args.weights_out is not None:
        from safetensors.torch import save

        from ._version import __version__

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        data = save(state, metadata={"model": args.model, "format": "pt",
                                     "tp3nets": __version__})
        target = write_atomically(data, Path(args.weights_out).expanduser())
        print(f"weights: {target} (load with --weights {target})")
    return 0


# --------------------------------------------------------------------------------------
# evaluate


class _ConfusionMatrix:
    """A :class:`~tp3nets.training.Metric`: overall accuracy, keeping the confusion matrix."""

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


def _cmd_evaluate(args: argparse.Namespace) -> int:

    from .data import TensorLoader, TensorSubset, load_mnist, train_val_split
    from .training import evaluate

    device = _device(args.device)
    model, member, source = _load_model(args.model, args.weights)
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
    print(f"{args.model} ({source}) on MNIST {args.split}, {len(data):,} images")
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


def _open_image(path: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"image not found: {path!r}")
    if file.is_dir():
        raise UsageError(f"{path!r} is a directory, not an image file")
    try:
        with Image.open(file) as img:
            img.load()
            return img.copy()
    except UnidentifiedImageError:
        raise UsageError(f"{path!r} is not an image file that Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Truncated or corrupt files (PIL raises OSError, sometimes SyntaxError).
        raise UsageError(f"cannot read image {path!r}: {_one_line(exc)}") from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from .training import predict
    from .transforms import MNISTPreprocess

    device = _device(args.device)
    model, member, source = _load_model(args.model, args.weights)
    num_classes = int(getattr(model, "num_classes", 10))
    if not 1 <= args.top <= num_classes:
        raise UsageError(f"--top must be between 1 and {num_classes}, got {args.top}")
    reference = member if member is not None else _default_member(args.model)
    preprocess = reference.transforms() if reference is not None else MNISTPreprocess()
    categories = [str(c) for c in reference.meta["categories"]] if reference is not None and \
        len(reference.meta["categories"]) == num_classes else [str(i) for i in range(num_classes)]
    batch = torch.stack([preprocess(_open_image(path)) for path in args.images])
    # A uniform input after preprocessing: no ink was found, whatever the model answers.
    blank = (batch.flatten(1).amax(1) == batch.flatten(1).amin(1)).tolist()
    probs = predict(model, batch, device=device).softmax(dim=1)
    top_p, top_i = probs.topk(args.top, dim=1)
    results = [
        {
            "image": path,
            "predictions": [
                {"class": categories[i], "index": i, "probability": p}
                for p, i in zip(ps, idx, strict=True)
            ],
            "blank": empty,
        }
        for path, ps, idx, empty in zip(args.images, top_p.tolist(), top_i.tolist(), blank,
                                        strict=True)
    ]
    if args.json:
        print(_json({"model": args.model, "weights": source, "results": results}))
        return 0
    for res in results:
        shown = ", ".join(f"{p['class']} ({p['probability']:.4f})" for p in res["predictions"])
        note = "  [blank: no ink found, the answer means nothing]" if res["blank"] else ""
        print(f"{res['image']}: {shown}{note}")
    return 0


# --------------------------------------------------------------------------------------
# export


def _cmd_export(args: argparse.Namespace) -> int:
    import importlib.util

    from .export import (
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
    model, _, source = _load_model(args.model, args.weights)
    if fmt == "onnx":
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


# --------------------------------------------------------------------------------------
# the parser


_COMMANDS: Final = ("list", "info", "train", "evaluate", "predict", "export")


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="NAME", help="a registered model (see 'tp3nets list')")


def _add_weights(p: argparse.ArgumentParser, default: str | None, what: str) -> None:
    p.add_argument(
        "--weights", default=default, metavar="WEIGHTS",
        help=f"{what}: DEFAULT, MNIST_V1 (or qualified, ConvNet4_Weights.MNIST_V1), a "
        f".safetensors/.pt file, or none (default: {default or 'none'})",
    )


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps, or auto: CUDA, then MPS, then CPU "
                   "(default: auto)")


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
    from ._version import __version__

    parser = _Parser(
        prog=PROG,
        description="The MNIST models of the TP3 lab, with pretrained weights: list and "
        "inspect them, train, evaluate, classify digit images, export to ONNX/TorchScript.",
        epilog="Exit status: 0 on success, 2 on a usage error (one line on stderr), 1 on an "
        "unexpected failure. 'tp3nets COMMAND --help' describes each command. On Linux the "
        f"command keeps memory freed by tensors for reuse ({REUSE_MEMORY_ENV}=0: do not).",
    )
    parser.add_argument("--version", action="version",
                        version=f"{PROG} {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser("list", help="the models, their sizes and bundled weights",
                       description="List the registered models with their parameter counts, "
                       "bundled weights and MNIST test accuracy.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="one model's architecture, weights, metrics and recipe",
                       description="Show a model's architecture, parameter count, input "
                       "shape, and its weights with their metrics, recipe and credits.")
    _add_model(p)
    p.add_argument("--history", action="store_true",
                   help="also show the per-epoch training history of the weights")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("train", help="train a model on MNIST",
                       description="Train a model on the seeded train/validation split of "
                       "the MNIST training set, validating after each epoch.")
    _add_model(p)
    _add_data(p, "0 trains on all 60,000")
    p.add_argument("--epochs", type=_positive(int, "an integer"), default=10, metavar="N",
                   help="total epochs (a resumed run continues up to it; default: 10)")
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
    p.add_argument("--augment", action="store_true",
                   help="random rotation (10°), shift (10%%) and zoom (±10%%) of each batch")
    _add_weights(p, None, "initial weights, to fine-tune")
    p.add_argument("--output", type=Path, metavar="CHECKPOINT",
                   help="write a full training checkpoint here after every epoch "
                   "(continue with --resume); fields such as {epoch} or {val_loss:.3f} in "
                   "the name are filled in, one file per epoch")
    p.add_argument("--weights-out", type=Path, metavar="FILE.safetensors",
                   help="write the final bare weights here (load with --weights FILE)")
    p.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                   help="continue the run saved in this checkpoint (give the same options, "
                   "without --weights)")
    p.add_argument("--limit-train-batches", type=_positive(int, "an integer"),
                   metavar="N", help="train on the first N batches' worth of images only "
                   "(smoke tests)")
    _add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="loss, accuracy and confusion matrix on MNIST",
                       description="Evaluate a model on the MNIST test set (or the "
                       "validation split): loss, accuracy, per-class accuracy, confusion "
                       "matrix.")
    _add_model(p)
    _add_weights(p, "DEFAULT", "weights to evaluate")
    _add_data(p, "used by --split val")
    p.add_argument("--split", choices=("test", "val"), default="test", help="default: test")
    p.add_argument("--batch-size", type=_positive(int, "an integer"), default=1000, metavar="N",
                   help="default: 1000")
    p.add_argument("--limit", type=_positive(int, "an integer"), metavar="N",
                   help="evaluate the first N images only")
    _add_device(p)
    p.add_argument("--json", action="store_true", help="print JSON (accuracies as fractions)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="classify digit images (PNG, JPEG, ...)",
                       description="Classify images of handwritten or printed digits of any "
                       "size, preprocessed as the weights expect (grayscale, dark ink on "
                       "light paper inverted, cropped, centred, resized to 28x28). An "
                       "image in which no ink is found is marked blank (\"blank\": true "
                       "in JSON): the model's answer for it means nothing.")
    _add_model(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    _add_weights(p, "DEFAULT", "weights to use")
    p.add_argument("--top", type=_positive(int, "an integer"), default=1, metavar="K",
                   help="show the K most probable classes (default: 1)")
    _add_device(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="write an ONNX or TorchScript file, checked",
                       description="Export a model to ONNX or TorchScript and check that "
                       "the file's outputs match eager PyTorch (max abs diff <= 1e-4).")
    _add_model(p)
    p.add_argument("output", metavar="OUT", help="the file to write")
    p.add_argument("--format", choices=("onnx", "torchscript"),
                   help="default: from OUT's suffix (.onnx, or .pt for torchscript)")
    _add_weights(p, "DEFAULT", "weights to export")
    p.add_argument("--opset", type=_positive(int, "an integer"), default=None, metavar="N",
                   help="ONNX opset (default: the exporter's)")
    p.add_argument("--method", choices=("script", "trace"), default=None,
                   help="TorchScript method (default: script)")
    p.set_defaults(func=_cmd_export)
    return parser


# --------------------------------------------------------------------------------------
# main


def _user_errors() -> tuple[type[BaseException], ...]:
    from .weights import CheckpointError

    return (
        ValueError,  # includes CheckpointError and UsageError
        CheckpointError,
        TypeError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        FileExistsError,
        PermissionError,
        FloatingPointError,
    )


def _tune_malloc() -> None:
    """Keep the memory freed by tensors (:func:`~tp3nets.training.reuse_freed_memory`).

    Skipped when ``TP3NETS_REUSE_FREED_MEMORY=0``, or when the environment already tells
    glibc how to allocate (``MALLOC_*`` variables, ``GLIBC_TUNABLES``): that choice is the
    user's.
    """
    env = os.environ
    if env.get(REUSE_MEMORY_ENV, "1").strip() == "0" or "GLIBC_TUNABLES" in env or any(
        name.startswith("MALLOC_") for name in env
    ):
        return
    reuse_freed_memory()


def main(argv: list[str] | None = None) -> int:
    """Run the ``tp3nets`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on a usage error, 1 when an export fails its check.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse's --help, --version and errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        print(f"{PROG}: error: a command is required: {', '.join(_COMMANDS)} "
              f"(see '{PROG} --help')", file=sys.stderr)
        return 2
    from .export import ExportError

    _tune_malloc()
    try:
        return int(args.func(args))
    except _user_errors() as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (tp3nets list | head): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
