"""``tp3nets train``."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import torch
from torch import nn

from ._common import UsageError, _check_output_file, _count, _data_dir, _device, _load_model

if TYPE_CHECKING:
    from ..engine._checkpoint import CheckedCheckpoint

#: The options that decide what a run computes: a resumed run must have the same, or it
#: would not continue the run that was saved (--epochs is handled on its own).
SETTINGS: Final = ("model", "optimizer", "lr", "weight_decay", "scheduler",
                   "label_smoothing", "precision", "seed", "split_seed", "val_size",
                   "augment", "ema", "batch_size", "limit_train_batches")
#: The folder under which a run without --output gets a folder of its own.
RUNS: Final = Path("runs") / "train"


def _make_optimizer(name: str, model: nn.Module, lr: float | None,
                    weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name``, with its fused implementation where torch has one."""
    from ..engine import fused_optimizer

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


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings as the checkpoint records them (see :data:`SETTINGS`)."""
    return {name: getattr(args, name) for name in SETTINGS} | {"epochs": args.epochs}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(name: str, value: Any) -> str:
    if name == "augment":
        return str(value) if value else "off"
    if name == "ema" and value is None:
        return "off"
    return "the default" if value is None else str(value)


def _saved_value(name: str, value: Any) -> Any:
    """A setting as saved by an older tp3nets: ``--augment`` was a flag (True: affine)."""
    if name == "augment" and isinstance(value, bool):
        return "affine" if value else None
    return value


def _check_same_settings(path: Path, saved: dict[str, Any], args: argparse.Namespace) -> None:
    """Refuse options that would make the resumed run differ from the one saved (a
    learning rate that would be ignored, another train/validation split ...)."""
    if saved.get("model") not in (None, args.model):
        raise UsageError(f"{str(path)!r} is a run of {saved['model']}, not {args.model}")
    for name in SETTINGS:
        if name in ("model", "optimizer") or name not in saved:
            continue  # the optimizer's class is checked by the library, in its words
        saved[name] = _saved_value(name, saved[name])
        if saved[name] != getattr(args, name):
            if name == "scheduler":
                raise UsageError(
                    f"{str(path)!r} was trained with --scheduler {saved[name]}; resume with it"
                )
            raise UsageError(
                f"{str(path)!r} was trained with {_option(name)} {_shown(name, saved[name])}, "
                f"not {_shown(name, getattr(args, name))}: a resumed run continues the saved "
                f"run with its own settings; drop {_option(name)} (or give the run's), or "
                f"start a new run"
            )


def _plan(path: Path, checkpoint: Mapping[str, Any], args: argparse.Namespace) -> int:
    """How the resumed run goes on: the epoch its schedule starts from.

    A run stopped before its --epochs continues its own schedule, and must be given the
    same --epochs. A finished run given a larger --epochs trains the added epochs with a
    new schedule of the same kind over them (a warm restart); the return value is then
    the checkpoint's epoch, else 0.
    """
    saved = (checkpoint.get("metadata") or {}).get("settings") or {}
    planned, done = saved.get("epochs"), int(checkpoint["epoch"])
    if planned is None or args.epochs == planned or args.epochs <= done:
        return 0
    if done < planned:
        raise UsageError(
            f"{str(path)!r} is a run of --epochs {planned} stopped after epoch {done}: "
            f"resume it with --epochs {planned} to finish its schedule; a finished run "
            f"resumed with a larger --epochs then trains the added epochs with a new "
            f"schedule"
        )
    return done if args.scheduler != "constant" else 0


def _check_schedule_length(path: Path, checkpoint: Mapping[str, Any], scheduler: Any) -> None:
    """For a checkpoint without recorded settings (written by fit, not by this command):
    refuse a schedule of another length, which would otherwise load silently."""
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


def _make_scheduler(args: argparse.Namespace, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int, epochs: int
                    ) -> tuple[Any, Literal["epoch", "step"]]:
    """The --scheduler over ``epochs`` epochs, and the interval fit steps it at."""
    if args.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=_warmup_fraction(epochs * steps_per_epoch),
        ), "step"
    if args.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs), "epoch"
    return None, "epoch"


def _resume_checkpoint(path: Path) -> CheckedCheckpoint:
    """The checkpoint of --resume, read and checked once for the whole command (the
    checks and fit below take it as checked), with advice in the command line's words for
    a file that is no training checkpoint."""
    from ..engine._checkpoint import CheckedCheckpoint
    from ..weights import CheckpointError

    try:
        return CheckedCheckpoint.read(path)
    except CheckpointError as exc:
        if getattr(exc, "kind", None) in ("safetensors", "weights"):
            raise UsageError(
                f"{str(path)!r} holds bare weights, not a training checkpoint: start from "
                f"them with --weights {path} (--resume continues a run from the checkpoint "
                f"that --output or the run folder's last.pt holds)"
            ) from None
        raise


def _run_folder(args: argparse.Namespace) -> Path | None:
    """Where the run keeps its files: --run-dir, the folder of the run resumed, or a new
    ``runs/train/MODEL-N``; ``None`` when --output chooses the checkpoint itself."""
    if args.output is not None:
        return None
    if args.run_dir is not None:
        return Path(args.run_dir).expanduser()
    if args.resume is not None and Path(args.resume).name == "last.pt":
        return Path(args.resume).expanduser().parent
    n = 1
    while (RUNS / f"{args.model}-{n}").exists():
        n += 1
    return RUNS / f"{args.model}-{n}"


def _check_space(folder: Path, model: nn.Module, what: str) -> None:
    """Refuse to start a run whose files cannot fit on the disk: a full checkpoint holds
    the weights and up to twice as much optimizer state."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    needed = 5 * weights + (1 << 20)  # last and best checkpoints (x3 each) are not all new
    if free < needed:
        raise UsageError(
            f"{what} {str(folder)!r}: about {needed / 1e6:.1f} MB are needed for the "
            f"checkpoints and weights, and {free / 1e6:.1f} MB are free there"
        )


class _Recorder:
    """Puts the run's settings in every checkpoint it writes (FitState.metadata)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    def on_fit_start(self, state: Any) -> None:
        state.metadata["settings"] = dict(self.settings)


def _cmd_train(args: argparse.Namespace) -> int:
    from ..engine import check_resumable, fit, get_precision, seed_everything
    from ..engine.callbacks import ModelCheckpoint

    # Everything that can be checked is checked before any work (data, training), once:
    # the precision object and the checkpoint read here are what fit gets.
    _check_options(args)
    device = _device(args.device)
    precision = get_precision(args.precision, device)  # fp16 on a CPU: refused now
    resume = Path(args.resume).expanduser() if args.resume is not None else None
    resumed = _resume_checkpoint(resume) if resume is not None else None
    seed_everything(args.seed)  # before the model is built: its initial weights
    model, _, source = _load_model(args.model, args.weights)
    settings = _settings(args)
    restart = 0
    if resumed is not None and resume is not None:
        check_resumable(resumed, model, None, None, source=resumed.source)
        saved = (resumed.get("metadata") or {}).get("settings") or {}
        _check_same_settings(resume, saved, args)
        restart = _plan(resume, resumed, args)
        if saved:
            settings["epochs"] = max(args.epochs, int(saved.get("epochs", 0)))
    folder = _run_folder(args)
    figures = ["epoch", "loss", "acc", "lr", "time"]
    if args.val_size > 0:
        figures += ["val_loss", "val_acc"]
    targets = [("--output", Path(args.output))] if args.output is not None else []
    if args.weights_out is not None:
        targets.append(("--weights-out", Path(args.weights_out)))
    for option, path in targets:
        _check_output_file(option, path.expanduser())
        _check_space(path.expanduser().parent, model, option)
    if folder is not None:
        _check_output_file("the run folder", folder / "last.pt")
        _check_space(folder, model, "the run folder")
    saver = ModelCheckpoint(args.output if folder is None else folder / "last.pt")
    saver.check_path(figures)

    train, val, train_loader, val_loader = _loaders(args)
    optimizer = _make_optimizer(args.optimizer, model, args.lr, args.weight_decay)
    scheduler, interval = _make_scheduler(args, optimizer, len(train_loader),
                                          args.epochs - restart)
    if resumed is not None and resume is not None:
        if restart:
            # A new schedule over the added epochs: the saved one ended with the run.
            resumed = resumed.without("scheduler", "scheduler_class")
        check_resumable(resumed, model, optimizer, scheduler, source=resumed.source)
        if scheduler is not None and not restart and not (
            (resumed.get("metadata") or {}).get("settings")
        ):
            _check_schedule_length(resume, resumed, scheduler)
    callbacks: list[Any] = [_Recorder(settings), saver]
    if args.ema is not None:
        from ..engine.callbacks import EMA

        callbacks.insert(1, EMA(decay=args.ema))
    if folder is not None:
        if val is not None:
            callbacks.append(ModelCheckpoint(folder / "best.pt", monitor="val_acc",
                                             save_best_only=True))
        callbacks += _loggers(folder)
    if not args.quiet:
        _print_header(args, model, source, resumed, restart, len(train), val, device, folder)
    started = time.perf_counter()
    history = fit(
        model, train_loader, epochs=args.epochs, optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
        val_loader=val_loader, device=device, scheduler=scheduler,
        scheduler_interval=interval,
        precision=precision, callbacks=callbacks,
        progress=False if args.quiet else None, resume_from=resumed,
    )
    seconds = time.perf_counter() - started
    before = int(resumed["epoch"]) if resumed is not None else 0
    trained = len(history) - before
    _print_done(args, history, before, trained, seconds)
    if saver.last_saved is not None and trained > 0:
        print(f"checkpoint: {saver.last_saved}")  # the file, its {fields} filled in
    _save_outputs(args, model, history, folder, saver.last_saved, val is not None)
    return 0


def _loaders(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """The MNIST training and validation sets of the options, and their loaders."""
    from ..data import TensorLoader, TensorSubset, augmentation, load_mnist, train_val_split

    full = load_mnist(_data_dir(args.data), train=True, download=args.download)
    if args.val_size > 0:
        train, val = train_val_split(full, args.val_size, seed=args.split_seed)
    else:
        train, val = full, None
    if args.limit_train_batches is not None:
        keep = args.limit_train_batches * args.batch_size
        train = TensorSubset(train, range(min(keep, len(train))))
    augment = augmentation(args.augment) if args.augment else None
    train_loader = TensorLoader(train, args.batch_size, shuffle=True, seed=args.seed,
                                transform=augment)
    val_loader = TensorLoader(val, 1000) if val is not None else None
    return train, val, train_loader, val_loader


def _save_outputs(args: argparse.Namespace, model: nn.Module, history: Any,
                  folder: Path | None, checkpoint: Path | None, validated: bool) -> None:
    """The final weights (--weights-out, the run folder's), the history and its plot."""
    from .._io._atomic import write_atomically

    weights_files = [folder / "weights.safetensors"] if folder is not None else []
    if args.weights_out is not None:
        weights_files.append(Path(args.weights_out).expanduser())
    for target in weights_files:
        _write_weights(target, model, args.model, checkpoint)
    if folder is not None:
        write_atomically(json.dumps(history.to_dict(), indent=1).encode(),
                         folder / "history.json")
        _plot(history, folder / "history.png")
        print(f"run folder: {folder} (last.pt, {'best.pt, ' if validated else ''}"
              f"weights.safetensors, history.csv, history.json"
              f"{', history.png' if (folder / 'history.png').exists() else ''})")


def _check_options(args: argparse.Namespace) -> None:
    """The checks of the options alone, before anything is read."""
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
    if args.output is not None and args.run_dir is not None:
        raise UsageError(
            "--output and --run-dir both say where the checkpoints go: --run-dir keeps "
            "the whole run (checkpoints, weights, history), --output one checkpoint file"
        )
    if args.resume is not None:
        path = Path(args.resume).expanduser()
        # A FIFO, a device or a link loop is named as such by load_checkpoint.
        if path.is_dir() or not (path.exists() or path.is_symlink()):
            what = "is a directory" if path.is_dir() else "not found"
            raise FileNotFoundError(f"checkpoint to resume {what}: {str(args.resume)!r}")


def _loggers(folder: Path) -> list[Any]:
    from ..engine.callbacks import CSVLogger, TensorBoardLogger

    loggers: list[Any] = [CSVLogger(folder / "history.csv")]
    with contextlib.suppress(ImportError):  # tensorboard is an optional extra
        loggers.append(TensorBoardLogger(folder / "tensorboard"))
    return loggers


def _write_weights(target: Path, model: nn.Module, name: str, checkpoint: Path | None) -> None:
    """The final bare weights; on a write error (a full disk) the message says where the
    trained weights are kept."""
    from safetensors.torch import save

    from .. import __version__
    from .._io._atomic import write_atomically

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(state, metadata={"model": name, "format": "pt", "tp3nets": __version__})
    try:
        write_atomically(data, target)
    except OSError as exc:
        kept = (f"the trained weights are in the checkpoint {checkpoint} (load them with "
                f"--weights {checkpoint})" if checkpoint is not None and checkpoint.is_file()
                else "the trained weights could not be saved")
        raise OSError(exc.errno, f"{exc.strerror or exc}; {kept}") from exc
    print(f"weights: {target} (load with --weights {target})")


def _plot(history: Any, target: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is an extra: pip install 'tp3nets[plot]'
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    names = history.keys()
    history.plot([k for k in names if k.endswith("loss")], ax=axes[0])
    history.plot([k for k in names if k.endswith("acc")], ax=axes[1])
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    from .._io._atomic import write_atomically

    write_atomically(buffer.getvalue(), target)


def _print_header(args: argparse.Namespace, model: nn.Module, source: str,
                  resumed: Mapping[str, Any] | None, restart: int, n_train: int, val: Any,
                  device: torch.device, folder: Path | None) -> None:
    if resumed is not None:
        source = f"resuming {args.resume} after epoch {resumed['epoch']}"
        if restart:
            source += (f"; epochs {restart + 1}-{args.epochs} with a new {args.scheduler} "
                       f"schedule")
    print(f"training {args.model} ({source}) on {n_train:,} MNIST images"
          + (f", validating on {len(val):,}" if val is not None else "")
          + f", {_count(args.epochs, 'epoch')}, batch {args.batch_size}, {args.optimizer}, "
          f"precision {args.precision}, device {device}"
          + (f"; run folder {folder}" if folder is not None else ""), flush=True)


def _print_done(args: argparse.Namespace, history: Any, before: int, trained: int,
                seconds: float) -> None:
    last = history.epochs[-1] if history.epochs else {}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items()
                      if k in ("loss", "acc", "val_loss", "val_acc"))
    if before and trained <= 0:
        print(f"nothing to train: {args.resume} already holds "
              f"{_count(before, 'epoch')} of --epochs {args.epochs}")
        return
    now = f" ({trained} now, after {before} resumed)" if before else ""
    print(f"done: {_count(len(history), 'epoch')}{now} in {seconds:.1f}s"
          + (f"; last epoch: {shown}" if shown else ""))
