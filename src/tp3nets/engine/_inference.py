"""Inference passes: :func:`~tp3nets.evaluate` (loss and metrics over a loader) and
:func:`~tp3nets.predict` (the model's outputs)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .._util._checks import check_int
from ..deploy._runtime import Backend
from . import _devices as devices
from . import _distributed as dist_utils
from ._batches import (
    LabelGuard,
    check_loader,
    compute_loss,
    default_unpack,
    device_batches,
    len_or_none,
    nothing_counted,
    progress_bar,
    skipped_warning,
)
from ._batches import batch_size as size_of
from ._metrics import Meter, MetricLike, default_metrics
from ._passes import InferencePass, checked_unpack, split_batch
from ._precision import FloatPrecision, Precision

__all__ = ["evaluate", "predict"]


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    loss_fn: Callable[..., Tensor] | None = None,
    metrics: Mapping[str, MetricLike] | None = None,
    device: torch.device | str | None = None,
    precision: Precision | FloatPrecision = "32",
    channels_last: bool = False,
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
    progress: bool = False,
    backend: Backend = "eager",
) -> dict[str, float]:
    """Loss and metrics of ``model`` over ``loader``, in eval mode, under inference mode.

    Figures are weighted by batch size, so a short last batch counts for what it holds.
    Under ``torchrun`` (the process group is started from the environment if needed) each
    process evaluates whole batches of its own (no sample twice, no padding) and the
    results are summed over processes: every process gets the figures a single process
    would. Every submodule's train/eval mode is restored afterwards; the model is moved to
    ``device`` and stays there, as after :func:`~tp3nets.fit`.

    ``backend`` other than ``"eager"`` runs the model through
    :func:`tp3nets.deploy.optimize` (CPU, float32 only; the export and its check cost a
    few seconds, once per model: ``optimize`` keeps what it made while the weights are
    unchanged).

    Returns:
        ``{"loss": …, "acc": …}`` (or the names of ``metrics``).

    Raises:
        ValueError: an empty loader, labels outside the model's classes, a target the
            loss cannot take, a backend other than eager off the CPU or not in float32.
        TypeError: ``unpack`` returned something other than ``(inputs, target)``.

    Example:
        >>> import torch
        >>> from tp3nets import MultinomialLogisticRegression
        >>> from tp3nets.data import TensorLoader
        >>> data = (torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,)))
        >>> sorted(evaluate(MultinomialLogisticRegression(), TensorLoader(data, 8)))
        ['acc', 'loss']
    """
    check_loader(loader, "loader")
    run = InferencePass(model, device, precision)
    dev = run.device
    dist_utils.init_from_env(dev)
    run.use_backend(backend)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    meter = Meter(default_metrics(metrics), dev, loss_fn)
    if dist_utils.is_distributed():
        loader = dist_utils.shard_loader(loader, train=False)
    guard = LabelGuard(loss_fn, dev)
    on_cpu = devices.cheap_readback(dev)
    split = checked_unpack(unpack)
    with run.running():
        batches = progress_bar(loader, len_or_none(loader), "eval", progress)
        for _, x, y, n in device_batches(batches, split, guard, dev, channels_last):
            with run.forward_context():  # the loss too: under the same autocast
                out = run.model(x)
                guard.after_forward(y, out)
                loss = compute_loss(loss_fn, out, y)
            value = loss.item() if on_cpu else None
            if value is not None and not math.isfinite(value) and nothing_counted(y, loss_fn):
                guard.skipped["ignored"] += 1  # 0/0: nothing in this batch to count
                continue
            meter.update(loss.float(), out, y, n, value)
    skipped_warning(guard.skipped, "evaluate", training=False)
    figures, count = meter.compute()
    if count == 0:
        raise ValueError("the loader yielded no batch to evaluate")
    return figures


def predict(
    model: nn.Module,
    data: Tensor | Iterable[Any],
    *,
    device: torch.device | str | None = None,
    batch_size: int = 512,
    precision: Precision | FloatPrecision = "32",
    unpack: Callable[[Any], tuple[Any, Any]] | None = None,
    backend: Backend = "eager",
) -> Tensor:
    """Model outputs (logits) for a tensor of inputs or for every batch of a loader, on CPU.

    A loader may yield bare inputs, ``(inputs, target, …)`` batches or dicts read by
    :func:`default_unpack` (the target is ignored; a dict without one needs ``unpack=``).
    Runs in eval and inference mode; every submodule's mode is restored afterwards, and the
    model is moved to ``device`` and stays there, as after :func:`~tp3nets.fit`. Under
    ``torchrun`` each process predicts what it is given.

    Args:
        model: any module returning a tensor whose first dimension is the batch.
        data: inputs ``(N, ...)``, cut into batches of ``batch_size``, or a loader.
        device: default the model's device.
        batch_size: for a tensor ``data``.
        precision: ``"32"``, ``"bf16"`` or ``"16"``, as for :func:`~tp3nets.fit`.
        unpack: splits a batch into ``(inputs, target)``, as for :func:`~tp3nets.fit` (the same
            function serves both; the target may be ``None``).
        backend: ``"eager"`` (the model itself), ``"torch"``, ``"onnxruntime"`` or
            ``"auto"``: see :func:`tp3nets.deploy.optimize` (CPU and float32 only; a
            tensor ``data`` serves as the check's example for a model without
            ``input_shape``).

    Returns:
        The outputs of every batch, concatenated along the first dimension, as float32.

    Raises:
        ValueError: no batch; an output whose first dimension is not the batch's (unbatched
            samples, such as a list of single images or ``DataLoader(batch_size=None)``).
        TypeError: the model returns something other than a tensor, or ``unpack``
            something other than ``(inputs, target)``.
        tp3nets.deploy.BackendError: the named backend disagrees with eager.

    Example:
        >>> import torch
        >>> from tp3nets import ConvNet2
        >>> predict(ConvNet2(), torch.rand(3, 1, 28, 28)).shape
        torch.Size([3, 10])
    """
    batch_size = check_int(batch_size, "batch_size", who="predict")
    run = InferencePass(model, device, precision)
    _refuse_images(data)
    if isinstance(data, Tensor):
        if data.dim() == 0 or data.shape[0] == 0:
            raise ValueError(f"predict needs a non-empty batch, got shape {tuple(data.shape)}")
        run.use_backend(backend, data[:8])
        batches: Iterable[Any] = (data[i : i + batch_size] for i in range(0, len(data), batch_size))
    else:
        check_loader(data, "data")
        run.use_backend(backend)
        batches = data
    outs: list[Tensor] = []
    with run.running():
        for batch in batches:
            x, _ = split_batch(batch, unpack, needs_target=False)
            _refuse_images(x)
            out = run.forward(run.to_device(x))
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"predict needs a model that returns a tensor, got {type(out).__name__}; "
                    f"wrap the model to return the outputs to collect"
                )
            n = size_of(x)
            if out.dim() == 0 or out.shape[0] != n:
                raise ValueError(
                    f"the model's output {tuple(out.shape)} does not start with the batch's "
                    f"size {n}: predict needs batches (N, ...); a list of single samples or a "
                    f"DataLoader with batch_size=None gives unbatched inputs"
                )
            outs.append(out.float().cpu())
    if not outs:
        raise ValueError("predict got no batch")
    return torch.cat(outs)


def _is_image(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.")


def _refuse_images(obj: Any) -> None:
    """PIL images (alone or in a list) are not model inputs: say how to make a batch."""
    if _is_image(obj) or (isinstance(obj, (list, tuple)) and obj and _is_image(obj[0])):
        raise TypeError(
            "predict takes tensors, got PIL images: turn them into a batch with the "
            "weights' transforms, torch.stack([weights.transforms()(img) for img in "
            "images]) (weights such as tp3nets.ConvNet4_Weights.DEFAULT)"
        )
