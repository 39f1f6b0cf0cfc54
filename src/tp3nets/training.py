"""fit, evaluate, predict: a generic, fast, reproducible training engine for any nn.Module."""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import _distributed as dist_utils
from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "FitState",
    "History",
    "Metric",
    "Precision",
    "accuracy",
    "evaluate",
    "fit",
    "predict",
    "seed_everything",
    "train_one_epoch",
]

Precision = Literal["32", "bf16", "16"]
_PRECISIONS: Final = ("32", "bf16", "16")


@runtime_checkable
class Metric(Protocol):
    """A stateful metric in torchmetrics' shape: ``update``, ``compute``, ``reset``."""

    def update(self, preds: Tensor, target: Tensor) -> Any: ...

    def compute(self) -> Any: ...

    def reset(self) -> Any: ...


MetricLike = Metric | Callable[[Tensor, Tensor], Tensor | float]


def accuracy(preds: Tensor, target: Tensor) -> Tensor:
    """Top-1 accuracy of logits ``(N, C)`` against class indices ``(N,)``.

    Example:
        >>> import torch
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor(0.5000)
    """
    if preds.dim() == target.dim() + 1:
        hits = preds.argmax(dim=-1) == target
    else:
        hits = preds.round() == target
    return hits.float().mean()


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy (if present) and torch on every device.

    With the same seed, two :func:`fit` runs on the CPU give bitwise identical weights and
    history. ``deterministic=True`` also makes torch pick deterministic kernels (and raise
    where none exists), which CUDA needs for bitwise repeatability.

    Example:
        >>> import torch
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@dataclass
class History:
    """Per-epoch figures of a :func:`fit` run, Keras-style keys (``loss``, ``val_acc`` …).

    Example:
        >>> h = History(monitor="val_loss")
        >>> h.append({"epoch": 1, "loss": 0.5, "val_loss": 0.4})
        >>> h.append({"epoch": 2, "loss": 0.3, "val_loss": 0.45})
        >>> h.best_epoch, h["loss"]
        (1, [0.5, 0.3])
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"

    def append(self, row: Mapping[str, float]) -> None:
        """Add one epoch's figures."""
        self.epochs.append(dict(row))

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, key: str) -> list[float]:
        """The series of one figure over the epochs (``nan`` where it is missing)."""
        if not any(key in row for row in self.epochs):
            raise KeyError(f"no figure {key!r} in history; have {', '.join(self.keys())}")
        return [row.get(key, math.nan) for row in self.epochs]

    def keys(self) -> list[str]:
        """Every figure name that appears, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.epochs:
            seen.update(dict.fromkeys(row))
        return list(seen)

    @property
    def best_epoch(self) -> int | None:
        """The epoch (1-based) with the best ``monitor`` figure, or ``None`` without one."""
        rows = [r for r in self.epochs if self.monitor in r and not math.isnan(r[self.monitor])]
        if not rows:
            return None
        pick = min if self.mode == "min" else max
        return int(pick(rows, key=lambda r: r[self.monitor])["epoch"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy: ``{"monitor", "mode", "best_epoch", "epochs": [...]}``."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_epoch": self.best_epoch,
            "epochs": [dict(r) for r in self.epochs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild a history saved with :meth:`to_dict`."""
        return cls(
            epochs=[dict(r) for r in data.get("epochs", [])],
            monitor=str(data.get("monitor", "val_loss")),
            mode="max" if data.get("mode") == "max" else "min",
        )

    def plot(self, keys: Sequence[str] | None = None, *, ax: Any = None) -> Any:
        """Plot figures against the epoch with matplotlib (``pip install tp3nets[plot]``).

        Args:
            keys: figures to draw; default every loss, then every accuracy, on twin axes.
            ax: an existing matplotlib Axes.

        Returns:
            The matplotlib Axes.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError(
                "History.plot needs matplotlib: pip install 'tp3nets[plot]'"
            ) from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(self.epochs)]
        names = list(keys) if keys is not None else [
            k for k in self.keys() if k.endswith("loss") or k.endswith("acc")
        ]
        for name in names:
            ax.plot(epochs, self[name], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        return ax


@dataclass
class FitState:
    """What callbacks see and may change during :func:`fit`.

    Set ``stop_training = True`` to end the run after the current epoch.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    history: History
    epoch: int = 0
    batch: int = 0
    logs: dict[str, float] = field(default_factory=dict)
    stop_training: bool = False
    is_main: bool = True
    scaler: Any = None

    def checkpoint(self) -> dict[str, Any]:
        """A full checkpoint of the run so far (model, optimizer, scheduler, RNG, history)."""
        from .checkpoint import make_checkpoint

        return make_checkpoint(
            self.model, self.optimizer, self.scheduler, self.scaler, self.epoch, self.history
        )

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`checkpoint` atomically to ``path`` (on the main process only)."""
        target = Path(path)
        if self.is_main:
            save_checkpoint(self.checkpoint(), target)
        return target


# --------------------------------------------------------------------------------------
# batches and devices


def _resolve_device(device: torch.device | str | None, model: nn.Module) -> torch.device:
    if device is None:
        if dist_utils.is_distributed() and torch.cuda.is_available():
            return torch.device("cuda", dist_utils.local_rank())
        first = next(model.parameters(), None)
        if first is not None and first.device.type != "meta":
            return first.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(obj, Tensor):
        non_blocking = device.type == "cuda" and obj.device.type == "cpu" and obj.is_pinned()
        out = obj.to(device, non_blocking=non_blocking)
        if channels_last and out.dim() == 4 and out.is_floating_point():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device, channels_last) for v in obj)
    return obj


def default_unpack(batch: Any) -> tuple[Any, Any]:
    """Split a batch into ``(inputs, target)``: ``(x, y, ...)`` sequences or dicts."""
    if isinstance(batch, Mapping):
        for xk, yk in (("input", "target"), ("x", "y"), ("image", "label"), ("inputs", "labels")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
        raise ValueError(
            f"cannot find inputs and targets in a batch with keys {sorted(batch)}; pass "
            "unpack=lambda b: (inputs, target)"
        )
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(
        f"expected batches of (inputs, target), got {type(batch).__name__}; pass "
        "unpack=lambda b: (inputs, target)"
    )


def _batch_size(x: Any) -> int:
    if isinstance(x, Tensor):
        return int(x.shape[0]) if x.dim() else 1
    if isinstance(x, Mapping):
        return _batch_size(next(iter(x.values())))
    if isinstance(x, (list, tuple)) and x:
        return _batch_size(x[0])
    raise ValueError(f"cannot tell the batch size of {type(x).__name__}")


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _check_precision(precision: Any, device: torch.device) -> str:
    precision = str(precision)
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
    if precision == "16" and device.type != "cuda":
        raise ValueError(
            f"precision='16' (float16 with a gradient scaler) needs a CUDA device, got "
            f"{device.type!r}; use precision='bf16' on the CPU"
        )
    return precision


def _check_loader(loader: Any, name: str) -> None:
    if not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be an iterable of batches, got {type(loader).__name__}")
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return
    if n == 0:
        raise ValueError(f"{name} is empty (0 batches); check the dataset and batch_size")


def _check_targets(y: Any, logits: Tensor, loss_fn: Callable[..., Tensor]) -> None:
    """Catch class labels outside ``[0, C)`` before they reach the loss (and the device)."""
    if not isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return
    if not isinstance(y, Tensor) or y.is_floating_point() or y.numel() == 0:
        return
    if logits.dim() < 2:
        return
    classes = logits.shape[1]
    ignore = getattr(loss_fn, "ignore_index", -100)
    valid = y[y != ignore]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= classes):
        raise ValueError(
            f"labels must be class indices in [0, {classes}) for a model with {classes} "
            f"outputs, got labels from {int(valid.min())} to {int(valid.max())}"
        )


def _compute_loss(loss_fn: Callable[..., Tensor], out: Any, y: Any) -> Tensor:
    try:
        loss = loss_fn(out, y)
    except (RuntimeError, ValueError, IndexError) as exc:
        oshape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        yshape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"{type(loss_fn).__name__} cannot take model output {oshape} with target {yshape}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor (use reduction='mean' or 'sum')")
    return loss


class _Meter:
    """Batch-size-weighted sums of the loss and metrics, reducible across processes."""

    def __init__(self, metrics: Mapping[str, MetricLike], device: torch.device) -> None:
        self.metrics = metrics
        self.device = device
        self.names = [k for k, m in metrics.items() if not isinstance(m, Metric)]
        self.sums = torch.zeros(len(self.names) + 1, dtype=torch.float64, device=device)
        self.count = 0
        for m in metrics.values():
            if isinstance(m, Metric):
                m.reset()

    def update(self, loss: Tensor | None, out: Any, y: Any, n: int) -> None:
        self.count += n
        if loss is not None:
            self.sums[0] += loss.detach().to(torch.float64) * n
        if not self.metrics:
            return
        preds = out.detach().float() if isinstance(out, Tensor) else out
        for i, name in enumerate(self.names, start=1):
            value = self.metrics[name](preds, y)  # type: ignore[operator]
            v = value.detach().to(self.device, torch.float64) if isinstance(value, Tensor) \
                else torch.tensor(float(value), dtype=torch.float64, device=self.device)
            self.sums[i] += v * n
        for m in self.metrics.values():
            if isinstance(m, Metric):
                m.update(preds, y)

    def compute(self, prefix: str = "", with_loss: bool = True) -> dict[str, float]:
        sums = self.sums.clone()
        count = torch.tensor(float(self.count), dtype=torch.float64, device=self.device)
        if dist_utils.is_distributed():
            dist_utils.all_reduce_sum(sums)
            dist_utils.all_reduce_sum(count)
        total = max(float(count), 1.0)
        out: dict[str, float] = {}
        if with_loss:
            out[prefix + "loss"] = float(sums[0]) / total
        for i, name in enumerate(self.names, start=1):
            out[prefix + name] = float(sums[i]) / total
        for name, m in self.metrics.items():
            if isinstance(m, Metric):
                value = m.compute()
                out[prefix + name] = float(value.item() if isinstance(value, Tensor) else value)
        return out


def _default_metrics(metrics: Mapping[str, MetricLike] | None) -> dict[str, MetricLike]:
    if metrics is None:
        return {"acc": accuracy}
    for name, m in metrics.items():
        if not (isinstance(m, Metric) or callable(m)):
            raise TypeError(
                f"metric {name!r} must be callable(preds, target) or have update/compute/reset"
            )
    return dict(metrics)


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Set train/eval mode, then restore every submodule's own previous mode."""
    before = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield
    finally:
        for m, was in before.items():
            m.training = was


def _progress_bar(
    iterable: Iterable[Any], total: int | None, desc: str, enabled: bool
) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _len_or_none(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


# --------------------------------------------------------------------------------------
# one epoch


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., Tensor] | None = None,
    metrics: Mapping[str, MetricLike] | None = None,
    device: torch.device | str | None = None,
    precision: Precision = "32",
    scaler: Any = None,
    grad_clip_norm: float | None = None,
    accumulate_grad_batches: int = 1,
    scheduler: Any = None,
    channels_last: bool = False,
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
    on_batch_end: Callable[[int, float], None] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader`` that updates the weights; for users who keep their own loop.

    The model must already be on ``device``. Gradients of ``accumulate_grad_batches``
    batches are summed before each optimizer step, each scaled by the real size of its
    window (a short last window is not under-weighted). ``scheduler``, if given, is stepped
    after every optimizer step (per-step schedules such as OneCycleLR).

    Returns:
        The epoch's batch-size-weighted ``loss`` and metrics.
    """
    dev = _resolve_device(device, model)
    precision = _check_precision(precision, dev)  # type: ignore[assignment]
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    metric_map = _default_metrics(metrics)
    meter = _Meter(metric_map, dev)
    total = _len_or_none(loader)
    accumulate = int(accumulate_grad_batches)
    if accumulate < 1:
        raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
    optimizer.zero_grad(set_to_none=True)
    window_start = 0
    seen = 0
    with _mode(model, True):
        bar = _progress_bar(loader, total, desc, progress)
        for i, batch in enumerate(bar):
            x, y = unpack(batch)
            n = _batch_size(x)
            x = _to_device(x, dev, channels_last)
            y = _to_device(y, dev)
            if i % accumulate == 0:
                window_start = i
            window = accumulate
            if total is not None and window_start + accumulate > total:
                window = total - window_start  # the real size of a short last window
            step_now = (i + 1 - window_start) == window
            sync_ctx = (
                model.no_sync()  # type: ignore[operator]
                if not step_now and hasattr(model, "no_sync")
                else contextlib.nullcontext()
            )
            with sync_ctx:
                with _autocast(dev, precision):
                    out = model(x)
                    if i == 0 or not isinstance(y, Tensor) or y.device.type == "cpu":
                        _check_targets(y, out, loss_fn)
                    loss = _compute_loss(loss_fn, out, y)
                if not bool(torch.isfinite(loss.detach())):
                    raise FloatingPointError(
                        f"the loss became {float(loss)} at batch {i + 1}; lower the learning "
                        "rate, clip gradients (grad_clip_norm) or check the data"
                    )
                scaled = loss / window
                if scaler is not None:
                    scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            meter.update(loss, out, y, n)
            seen += n
            if step_now:
                if grad_clip_norm is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if scheduler is not None:
                    scheduler.step()
            if on_batch_end is not None:
                on_batch_end(i, float(loss.detach()))
    if seen == 0:
        raise ValueError("the training loader yielded no batch")
    return meter.compute()


# --------------------------------------------------------------------------------------
# evaluate and predict


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    loss_fn: Callable[..., Tensor] | None = None,
    metrics: Mapping[str, MetricLike] | None = None,
    device: torch.device | str | None = None,
    precision: Precision = "32",
    channels_last: bool = False,
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
    progress: bool = False,
) -> dict[str, float]:
    """Loss and metrics of ``model`` over ``loader``, in eval mode, without gradients.

    Figures are weighted by batch size. Under ``torchrun`` each process evaluates its own
    share of the data (no sample twice) and the sums and counts are reduced across processes.
    The model's train/eval mode is restored afterwards.

    Returns:
        ``{"loss": …, "acc": …}`` (or the names of ``metrics``).

    Example:
        >>> import torch
        >>> from tp3nets import MultinomialLogisticRegression
        >>> from tp3nets.data import TensorLoader
        >>> data = (torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,)))
        >>> sorted(evaluate(MultinomialLogisticRegression(), TensorLoader(data, 8)))
        ['acc', 'loss']
    """
    _check_loader(loader, "loader")
    dev = _resolve_device(device, model)
    prec = _check_precision(precision, dev)
    model.to(dev)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    meter = _Meter(_default_metrics(metrics), dev)
    if dist_utils.is_distributed():
        loader = dist_utils.shard_loader(loader, train=False)
    with _mode(model, False), torch.inference_mode():
        for batch in _progress_bar(loader, _len_or_none(loader), "eval", progress):
            x, y = unpack(batch)
            n = _batch_size(x)
            x = _to_device(x, dev, channels_last)
            y = _to_device(y, dev)
            with _autocast(dev, prec):
                out = model(x)
                _check_targets(y, out, loss_fn)
                loss = _compute_loss(loss_fn, out, y)
            meter.update(loss.float(), out, y, n)
    return meter.compute()


def predict(
    model: nn.Module,
    data: Tensor | Iterable[Any],
    *,
    device: torch.device | str | None = None,
    batch_size: int = 512,
    precision: Precision = "32",
    unpack: Callable[[Any], Any] | None = None,
) -> Tensor:
    """Model outputs (logits) for a tensor of inputs or for every batch of a loader, on CPU.

    A loader may yield bare inputs or ``(inputs, target, …)`` batches (the target is
    ignored). The model's train/eval mode is restored afterwards.

    Example:
        >>> import torch
        >>> from tp3nets import ConvNet2
        >>> predict(ConvNet2(), torch.rand(3, 1, 28, 28)).shape
        torch.Size([3, 10])
    """
    dev = _resolve_device(device, model)
    prec = _check_precision(precision, dev)
    model.to(dev)
    if isinstance(data, Tensor):
        if data.dim() == 0 or data.shape[0] == 0:
            raise ValueError(f"predict needs a non-empty batch, got shape {tuple(data.shape)}")
        batches: Iterable[Any] = (data[i : i + batch_size] for i in range(0, len(data), batch_size))
    else:
        _check_loader(data, "data")
        batches = data
    outs: list[Tensor] = []
    with _mode(model, False), torch.inference_mode():
        for batch in batches:
            if unpack is not None:
                x = unpack(batch)
            elif isinstance(batch, (list, tuple)):
                x = batch[0]
            elif isinstance(batch, Mapping):
                x = default_unpack(batch)[0]
            else:
                x = batch
            with _autocast(dev, prec):
                out = model(_to_device(x, dev))
            outs.append(out.float().cpu())
    if not outs:
        raise ValueError("predict got no batch")
    return torch.cat(outs)


# --------------------------------------------------------------------------------------
# fit


def _check_optimizer(optimizer: Any, model: nn.Module) -> torch.optim.Optimizer:
    if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizer(model.parameters())
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer or a callable params -> Optimizer, "
            f"got {type(optimizer).__name__}"
        )
    own = {id(p) for p in model.parameters()}
    foreign = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in own]
    if foreign:
        raise ValueError(
            f"the optimizer holds {len(foreign)} parameter tensor(s) that are not the model's: "
            "it was built for another model (build it on model.parameters())"
        )
    return optimizer


def _check_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    if scheduler is None:
        return
    if not hasattr(scheduler, "step"):
        raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
    owner = getattr(scheduler, "optimizer", optimizer)
    if owner is not optimizer:
        raise ValueError("the scheduler was built for another optimizer than the one given")


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for k, v in state.items():
            if isinstance(v, Tensor) and v.dim() > 0:
                state[k] = v.to(device)


def _call(callbacks: Sequence[Callback], hook: str, state: FitState) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


def fit(
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer],
    loss_fn: Callable[..., Tensor] | None = None,
    val_loader: Iterable[Any] | None = None,
    metrics: Mapping[str, MetricLike] | None = None,
    device: torch.device | str | None = None,
    scheduler: Any = None,
    scheduler_interval: Literal["epoch", "step"] = "epoch",
    precision: Precision = "32",
    grad_clip_norm: float | None = None,
    accumulate_grad_batches: int = 1,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    channels_last: bool = False,
    compile: bool = False,
    resume_from: str | os.PathLike[str] | None = None,
    monitor: str | None = None,
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
) -> History:
    """Train ``model`` for ``epochs`` epochs; validate after each one if ``val_loader`` is set.

    Works for any :class:`~torch.nn.Module`, loss, optimizer, device and batch structure.
    The model (and any optimizer state) is moved to ``device`` once, before training.
    Under ``torchrun`` the model is wrapped in DistributedDataParallel, each process trains
    on its share of every epoch, figures are reduced across processes, and only rank 0
    prints and writes files.

    Args:
        model: any module; tp3nets models or your own.
        train_loader: batches of ``(inputs, target)`` (a :class:`~tp3nets.data.TensorLoader`,
            a :class:`~torch.utils.data.DataLoader`, any iterable).
        epochs: the total number of epochs (a resumed run continues up to it).
        optimizer: an optimizer over ``model.parameters()``, or a callable building one.
        loss_fn: default :class:`~torch.nn.CrossEntropyLoss`.
        val_loader: validation batches, evaluated after each epoch.
        metrics: name → metric object (update/compute/reset) or callable(preds, target);
            default ``{"acc": accuracy}``.
        device: default the model's device (CUDA when the model has no parameters yet and
            CUDA is there).
        scheduler: a learning-rate scheduler of ``optimizer``; ReduceLROnPlateau gets the
            monitored figure.
        scheduler_interval: step the scheduler per ``"epoch"`` or per optimizer ``"step"``.
        precision: ``"32"``, ``"bf16"`` (autocast, CPU and CUDA) or ``"16"`` (float16 with
            a gradient scaler, CUDA only).
        grad_clip_norm: clip the gradients' global norm to this value.
        accumulate_grad_batches: batches whose gradients are summed per optimizer step.
        callbacks: objects with any of ``on_fit_start``, ``on_epoch_start``,
            ``on_batch_end``, ``on_epoch_end``, ``on_fit_end``, each taking a
            :class:`FitState`.
        progress: a tqdm bar (``True``), a one-line summary per epoch (``None`` on a
            non-interactive stream), or silence (``False``).
        channels_last: run 4-D inputs and the model in channels-last memory format.
        compile: run the model through :func:`torch.compile` (checkpoints keep plain keys).
        resume_from: a checkpoint written by :class:`~tp3nets.callbacks.ModelCheckpoint`
            or :meth:`FitState.save_checkpoint`; training continues after its epoch, with
            its optimizer, scheduler, history and RNG states, and ends with the weights an
            uninterrupted run would have.
        monitor: the figure for the history's best epoch and ReduceLROnPlateau; default
            ``"val_loss"`` with a validation loader, else ``"loss"``.
        unpack: splits a batch into ``(inputs, target)``.

    Returns:
        The :class:`History`.

    Raises:
        ValueError: zero or negative epochs, an empty loader, fp16 on a CPU, an optimizer
            or scheduler built for another model, labels outside the model's classes, a
            target the loss cannot take, a checkpoint from another model.
        FloatingPointError: the loss became NaN or infinite.

    Example:
        >>> import torch
        >>> from tp3nets import MultinomialLogisticRegression, fit
        >>> from tp3nets.data import TensorLoader
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(64, 1, 28, 28); y = (x.mean((1, 2, 3)) > 0.5).long()
        >>> model = MultinomialLogisticRegression()
        >>> history = fit(model, TensorLoader((x, y), 16, shuffle=True), epochs=2,
        ...               optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
        >>> len(history), sorted(history.keys())
        (2, ['acc', 'epoch', 'loss', 'lr', 'time'])
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    _check_loader(train_loader, "train_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if grad_clip_norm is not None and not grad_clip_norm > 0:
        raise ValueError(f"grad_clip_norm must be positive, got {grad_clip_norm}")
    dev = _resolve_device(device, model)
    prec = _check_precision(precision, dev)
    # Move once, before anything touches the optimizer state; module.to keeps the same
    # Parameter objects, so an optimizer built beforehand stays valid.
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = _check_optimizer(optimizer, model)
    _check_scheduler(scheduler, opt)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    metric_map = _default_metrics(metrics)
    watch = monitor or ("val_loss" if val_loader is not None else "loss")
    watch_mode: Literal["min", "max"] = "min" if "loss" in watch else "max"
    history = History(monitor=watch, mode=watch_mode)
    scaler = torch.amp.GradScaler("cuda") if prec == "16" else None
    start_epoch = 0
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, device=dev)
        from .checkpoint import restore_checkpoint

        start_epoch, history = restore_checkpoint(ckpt, model, opt, scheduler, scaler,
                                                  source=str(resume_from))
        history.monitor, history.mode = watch, watch_mode
    _move_optimizer_state(opt, dev)

    distributed = dist_utils.is_distributed()
    is_main = dist_utils.rank() == 0
    runner: nn.Module = model
    if distributed:
        runner = dist_utils.wrap_ddp(model, dev)
        train_loader = dist_utils.shard_loader(train_loader, train=True)
    if compile:
        runner = torch.compile(runner)  # type: ignore[assignment]
    show_bar = is_main and (progress is True or (progress is None and sys.stderr.isatty()))
    summary = is_main and progress is not False and not show_bar

    state = FitState(model=model, optimizer=opt, scheduler=scheduler, history=history,
                     epoch=start_epoch, is_main=is_main, scaler=scaler)
    _call(callbacks, "on_fit_start", state)
    step_sched = scheduler if scheduler_interval == "step" else None
    for epoch in range(start_epoch + 1, epochs + 1):
        if state.stop_training:
            break
        state.epoch = epoch
        for loader in (train_loader, val_loader):
            if loader is not None and hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch - 1)
            sampler = getattr(loader, "sampler", None)
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch - 1)
        _call(callbacks, "on_epoch_start", state)
        started = time.perf_counter()

        def on_batch(i: int, loss: float) -> None:
            state.batch = i
            state.logs = {"batch": float(i), "loss": loss}
            _call(callbacks, "on_batch_end", state)

        has_batch_cb = any(hasattr(cb, "on_batch_end") for cb in callbacks)
        logs = train_one_epoch(
            runner, train_loader, optimizer=opt, loss_fn=loss_fn, metrics=metric_map,
            device=dev, precision=prec, scaler=scaler,  # type: ignore[arg-type]
            grad_clip_norm=grad_clip_norm, accumulate_grad_batches=accumulate_grad_batches,
            scheduler=step_sched, channels_last=channels_last, unpack=unpack,
            on_batch_end=on_batch if has_batch_cb else None, progress=show_bar,
            desc=f"epoch {epoch}/{epochs}",
        )
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn=loss_fn, metrics=metric_map, device=dev,
                           precision=prec, channels_last=channels_last, unpack=unpack)  # type: ignore[arg-type]
            logs.update({f"val_{k}": v for k, v in val.items()})
        logs["lr"] = float(opt.param_groups[0]["lr"])
        logs["time"] = time.perf_counter() - started
        if scheduler is not None and scheduler_interval == "epoch":
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if watch not in logs:
                    raise ValueError(f"ReduceLROnPlateau monitors {watch!r}, which fit did not log")
                scheduler.step(logs[watch])
            else:
                scheduler.step()
        row = {"epoch": float(epoch), **logs}
        history.append(row)
        state.logs = row
        if summary:
            shown = "  ".join(
                f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "time", "lr")
            )
            print(f"epoch {epoch}/{epochs}  {shown}  lr {row['lr']:.3g}  "
                  f"({row['time']:.1f}s)", flush=True)
        _call(callbacks, "on_epoch_end", state)
        if distributed:
            state.stop_training = dist_utils.any_true(state.stop_training, dev)
    _call(callbacks, "on_fit_end", state)
    return history
