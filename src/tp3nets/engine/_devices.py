"""Where the engine runs: device resolution (torchrun's one device per process
included) and moving batches there."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .._util import _warn
from .._util._modules import state_tensors
from . import _distributed as dist_utils

__all__ = ["resolve_device"]


def bare_module(model: nn.Module) -> nn.Module:
    """The module under DDP/DataParallel (``.module``) and torch.compile (``._orig_mod``)
    wrappers; a model of the user's own with a child named ``module`` is not one."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
            continue
        # torch.compile's wrapper class exists only once dynamo has been imported.
        dynamo = sys.modules.get("torch._dynamo.eval_frame")
        if dynamo is not None and isinstance(model, dynamo.OptimizedModule):
            model = model._orig_mod
            continue
        return model


def move_model(model: nn.Module, device: torch.device) -> None:
    """``model.to(device)`` when a parameter or buffer is elsewhere. A model already there
    is left alone: ``.to`` re-sets every tensor of every module (about 0.4 ms for ConvNet4,
    a tenth of a single-image forward pass)."""
    for _name, tensor in state_tensors(model):
        if tensor.device != device:
            model.to(device)
            return


def cheap_readback(device: torch.device) -> bool:
    """Whether reading a tensor's value back costs no synchronisation (on the CPU).

    Where it does (accelerators), losses and counts stay tensors during a pass and are
    read together, and the NaN check reads every so many batches. Tests run that path on
    the CPU by replacing this function (``tp3nets.engine._devices.cheap_readback``).
    """
    return device.type == "cpu"


def resolve_device(
    device: torch.device | str | None, model: nn.Module | None = None
) -> torch.device:
    """The device :func:`~tp3nets.fit`, :func:`~tp3nets.evaluate` and
    :func:`~tp3nets.predict` run on for ``device``.

    ``None`` means where the model's parameters are (CUDA when it has none and CUDA is
    there), with one CUDA device per process under torchrun (``cuda:LOCAL_RANK``) where
    the node has enough; ``"auto"`` the best device here (CUDA, else MPS, else the CPU).
    A device that is named but not available here is refused.

    Raises:
        ValueError: an unknown device name, or CUDA/MPS asked for where there is none.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    launched = dist_utils.launched()
    if device is None:
        if launched and torch.cuda.is_available():
            if dist_utils.gpus_for_every_process():
                return torch.device("cuda", dist_utils.local_rank())
            if dist_utils.local_rank() == 0:
                _warn.warn(
                    f"torchrun started {dist_utils.local_world_size()} processes on this "
                    f"node, which has {torch.cuda.device_count()} CUDA device(s): not enough "
                    f"for one each, so they run where the model is; pass device='cpu' to "
                    f"say so, or start at most {torch.cuda.device_count()} processes a node",
                    once="processes per device",
                )
        first = next(model.parameters(), None) if model is not None else None
        if first is not None and first.device.type != "meta":
            return first.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "auto":
        return _best_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {str(device)!r} was asked for, but there are "
            f"{torch.cuda.device_count()} CUDA devices"
        )
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and (mps is None or not mps.is_available()):
        raise ValueError(f"device {str(device)!r} was asked for, but MPS is not available here")
    if dev.type == "cuda" and dev.index is None:
        if launched and not dist_utils.is_distributed():
            # torchrun's convention: process LOCAL_RANK drives CUDA device LOCAL_RANK.
            if not dist_utils.gpus_for_every_process():
                raise ValueError(
                    f"device {str(device)!r} under torchrun needs one CUDA device per "
                    f"process, but {dist_utils.local_world_size()} processes share "
                    f"{torch.cuda.device_count()} on this node; start fewer processes or "
                    f"pass device='cpu'"
                )
            return torch.device("cuda", dist_utils.local_rank())
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(obj, Tensor):
        if not channels_last and obj.device == device:
            return obj
        # Asynchronous copies from pinned host memory; a pageable copy would be synchronous
        # anyway, and non_blocking on it only adds a staging copy.
        non_blocking = obj.device.type == "cpu" and device.type != "cpu" and obj.is_pinned()
        out = obj.to(device, non_blocking=non_blocking)
        if channels_last and out.dim() == 4 and out.is_floating_point():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj


def _best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
