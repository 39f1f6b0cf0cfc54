"""Numeric precision of the engine, one object per mode.

As Lightning Fabric's precision plugins do, a precision object owns everything that
depends on the mode: the autocast context of the forward pass, the (scaled) backward,
and the optimizer step (unscaling and clipping the gradients, the gradient scaler's
update). :func:`~tp3nets.fit` and :func:`~tp3nets.train_one_epoch` take a
``precision=`` string or such an object, :func:`~tp3nets.evaluate` and
:func:`~tp3nets.predict` a string; each turns it into the object once
(:func:`get_precision`) and passes the object down. The loops call its methods and hold
no precision branches; a new mode is one new class in :data:`PRECISION_CLASSES`. The
object also owns what a checkpoint keeps of it (``state_dict()``: the gradient scaler's
state), so the checkpoint code asks it rather than handling a scaler beside it.
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
        >>> type(p).__name__, p.scaler is None, p.state_dict()
        ('FloatPrecision', True, {})
    """

    #: The ``precision=`` value that selects this class.
    name: ClassVar[Precision] = "32"
    #: Whether an optimizer that evaluates the loss through a closure (LBFGS) can run.
    supports_closure: ClassVar[bool] = True

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        #: The gradient scaler this precision owns (``None``: it has none).
        self.scaler: Any = None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this precision: its gradient scaler's state, ``{}``
        for a precision without one."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (nothing to restore here)."""

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

    name: ClassVar[Precision] = "bf16"

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)


class FP16MixedPrecision(FloatPrecision):
    """float16 autocast with a gradient scaler (``precision="16"``, CUDA only).

    ``scaler`` is the :class:`torch.amp.GradScaler` that carries its scale across epochs;
    a new one is made when none is given. The object owns it: its :meth:`state_dict` is the
    scaler's, which full checkpoints keep (in their ``scaler`` field).
    """

    name: ClassVar[Precision] = "16"
    supports_closure: ClassVar[bool] = False

    def __init__(self, device: torch.device | str, scaler: Any = None) -> None:
        super().__init__(device)
        if self.device.type != "cuda":
            raise ValueError(
                f"precision='16' (float16 with a gradient scaler) needs a CUDA device, got "
                f"{self.device.type!r}; use precision='bf16' on the CPU"
            )
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler("cuda")

    def state_dict(self) -> dict[str, Any]:
        """The gradient scaler's state (its scale, growth tracker and settings)."""
        state: dict[str, Any] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Give the gradient scaler back a state that :meth:`state_dict` returned."""
        self.scaler.load_state_dict(state)

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

    The public entry points (:func:`~tp3nets.fit`, :func:`~tp3nets.train_one_epoch`,
    :func:`~tp3nets.evaluate`, :func:`~tp3nets.predict`) call it once, and pass the object
    it returns down.

    Args:
        precision: ``"32"``, ``"bf16"`` or ``"16"`` (numbers such as ``32`` and ``16``
            are read as their strings), or a precision object, returned as it is.
        device: where the model runs.
        scaler: for ``"16"``, the gradient scaler to keep using (one is made otherwise).

    Returns:
        A new precision object, or ``precision`` itself when it is one.

    Raises:
        ValueError: an unknown precision, ``"16"`` on a device other than CUDA, a
            precision object made for another kind of device, or one given with a
            ``scaler`` other than its own.

    Example:
        >>> type(get_precision("bf16", torch.device("cpu"))).__name__
        'BF16Precision'
        >>> p = BF16Precision(torch.device("cpu"))
        >>> get_precision(p, torch.device("cpu")) is p
        True
    """
    if isinstance(precision, FloatPrecision):
        if precision.device.type != device.type:
            raise ValueError(
                f"the {type(precision).__name__} given as precision was made for a "
                f"{precision.device.type!r} device, but the model runs on {str(device)!r}; "
                f"pass precision={precision.name!r} to get one for that device"
            )
        if scaler is not None and scaler is not precision.scaler:
            raise ValueError(
                f"a scaler was given beside a {type(precision).__name__}, which owns its "
                f"gradient scaler: give the scaler to the precision object "
                f"(FP16MixedPrecision(device, scaler)) or pass precision={precision.name!r}"
            )
        return precision
    value = str(precision)
    cls = PRECISION_CLASSES.get(value)
    if cls is None:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISION_CLASSES)}, got {precision!r}"
        )
    if cls is FP16MixedPrecision:
        return FP16MixedPrecision(device, scaler)
    return cls(device)
