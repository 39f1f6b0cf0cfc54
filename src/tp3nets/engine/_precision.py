"""Numeric precision of the engine, one object per mode.

As Lightning Fabric's precision plugins do, a precision object owns everything that
depends on the mode: the autocast context of the forward pass, the (scaled) backward,
and the optimizer step (unscaling and clipping the gradients, the gradient scaler's
update). :func:`~tp3nets.fit`, :func:`~tp3nets.train_one_epoch`,
:func:`~tp3nets.evaluate` and :func:`~tp3nets.predict` call those methods and hold no
precision branches; a new mode is one new class in :data:`PRECISION_CLASSES`.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Final, Literal

import torch
from torch import Tensor, nn

from . import _shortcuts

__all__ = [
    "BF16Precision",
    "FP16MixedPrecision",
    "FloatPrecision",
    "Precision",
    "get_precision",
]

#: Numeric precision of fit/evaluate/predict: float32, bfloat16 autocast, or float16
#: autocast with a gradient scaler (CUDA only).
Precision = Literal["32", "bf16", "16"]


class FloatPrecision:
    """float32 throughout (``precision="32"``): no autocast, a plain backward and step.

    Example:
        >>> p = get_precision("32", torch.device("cpu"))
        >>> type(p).__name__, p.scaler is None
        ('FloatPrecision', True)
    """

    #: The ``precision=`` value that selects this class.
    name: ClassVar[str] = "32"
    #: Whether an optimizer that evaluates the loss through a closure (LBFGS) can run.
    supports_closure: ClassVar[bool] = True

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.scaler: Any = None

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        """The context the forward pass and the loss run in."""
        return contextlib.nullcontext()

    def backward(self, loss: Tensor) -> None:
        """Backpropagate ``loss``."""
        loss.backward()  # type: ignore[no-untyped-call]

    def clip_gradients(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, max_norm: float | None
    ) -> None:
        """Clip the gradients' global norm to ``max_norm`` (nothing for ``None``)."""
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def optimizer_step(
        self, optimizer: torch.optim.Optimizer, model: nn.Module, grad_clip_norm: float | None
    ) -> None:
        """Clip the gradients if asked, then step the optimizer."""
        if grad_clip_norm is not None:
            self.clip_gradients(model, optimizer, grad_clip_norm)
        _shortcuts.step(optimizer)


class BF16Precision(FloatPrecision):
    """bfloat16 autocast (``precision="bf16"``), on the CPU and CUDA; no gradient scaler,
    since bfloat16 has float32's range."""

    name: ClassVar[str] = "bf16"

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)


class FP16MixedPrecision(FloatPrecision):
    """float16 autocast with a gradient scaler (``precision="16"``, CUDA only).

    ``scaler`` is the :class:`torch.amp.GradScaler` that carries its scale across epochs;
    a new one is made when none is given.
    """

    name: ClassVar[str] = "16"
    supports_closure: ClassVar[bool] = False

    def __init__(self, device: torch.device, scaler: Any = None) -> None:
        super().__init__(device)
        if device.type != "cuda":
            raise ValueError(
                f"precision='16' (float16 with a gradient scaler) needs a CUDA device, got "
                f"{device.type!r}; use precision='bf16' on the CPU"
            )
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler("cuda")

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device_type=self.device.type, dtype=torch.float16)

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()

    def clip_gradients(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, max_norm: float | None
    ) -> None:
        if max_norm is not None:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def optimizer_step(
        self, optimizer: torch.optim.Optimizer, model: nn.Module, grad_clip_norm: float | None
    ) -> None:
        self.clip_gradients(model, optimizer, grad_clip_norm)
        self.scaler.step(optimizer)
        self.scaler.update()


#: ``precision=`` value → class; a new mode is one more entry.
PRECISION_CLASSES: Final[dict[str, type[FloatPrecision]]] = {
    cls.name: cls for cls in (FloatPrecision, BF16Precision, FP16MixedPrecision)
}


def get_precision(precision: Any, device: torch.device, scaler: Any = None) -> FloatPrecision:
    """The precision object for a ``precision=`` value on ``device``.

    Args:
        precision: ``"32"``, ``"bf16"`` or ``"16"`` (numbers such as ``32`` and ``16``
            are read as their strings).
        device: where the model runs.
        scaler: for ``"16"``, the gradient scaler to keep using (one is made otherwise).

    Raises:
        ValueError: an unknown precision, or ``"16"`` on a device other than CUDA.

    Example:
        >>> type(get_precision("bf16", torch.device("cpu"))).__name__
        'BF16Precision'
    """
    value = str(precision)
    cls = PRECISION_CLASSES.get(value)
    if cls is None:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISION_CLASSES)}, got {precision!r}"
        )
    if cls is FP16MixedPrecision:
        return FP16MixedPrecision(device, scaler)
    return cls(device)
