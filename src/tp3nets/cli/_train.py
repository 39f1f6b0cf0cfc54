"""``tp3nets train``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._common import (
    UsageError,
    _check_output_file,
    _count,
    _data_dir,
    _device,
    _load_model,
)


def _make_optimizer(name: str, model: nn.Module, lr: float | None,
                    weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name``, with its fused implementation where torch has one."""
    from ..optim import fused_optimizer

    params = model.parameters()
    if name == "adamw":
        return fused_optimizer(torch.optim.AdamW, params, lr=lr or 1e-3,
                                weight_decay=weight_decay)
    if name == "adam":
        return fused_optimizer(torch.optim.Adam, params, lr=lr or 1e-3,
                                weight_decay=weight_decay)
    return fused_optimizer(torch.optim.SGD, params, lr=lr or 0.05, momentum=0.9,
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




def _cmd_train(args: argparse.Namespace) -> int:

    from ..callbacks import ModelCheckpoint
    from ..checkpoint import load_checkpoint, write_atomically
    from ..data import (
        BatchRandomAffine,
        TensorLoader,
        TensorSubset,
        load_mnist,
        train_val_split,
    )
    from ..training import fit, seed_everything

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

        from .._version import __version__

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        data = save(state, metadata={"model": args.model, "format": "pt",
                                     "tp3nets": __version__})
        target = write_atomically(data, Path(args.weights_out).expanduser())
        print(f"weights: {target} (load with --weights {target})")
    return 0
