"""One pass of a model over batches, in eval mode and under inference mode: what
:func:`~tp3nets.evaluate`, :func:`~tp3nets.predict` and
:func:`tp3nets.calibration.collect_logits` share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..deploy._runtime import Backend, check_backend, optimize
from . import _devices as devices
from ._batches import default_unpack, model_lock, set_mode
from ._precision import FloatPrecision, Precision, get_precision

__all__ = ["InferencePass", "split_batch"]

Unpack = Callable[[Any], tuple[Any, Any]]


class InferencePass:
    """A model run over batches without gradients, by the rules the three passes share.

    * **Device.** The pass runs on ``device``, resolved by
      :func:`~tp3nets.engine.resolve_device` (``None``: where the model's parameters
      are). The model is moved there when the pass is made and stays there afterwards,
      as after :func:`~tp3nets.fit`: a model given ``device="cuda"`` is on CUDA after
      :func:`~tp3nets.evaluate`, :func:`~tp3nets.predict` and
      :func:`~tp3nets.calibration.collect_logits` alike. A model already there is not
      touched.
    * **Modes.** While :meth:`running`, the model's lock is held (calls on one model from
      several threads take turns), the model is in eval mode and every submodule's own
      mode is restored afterwards; gradients are off (:func:`torch.inference_mode`).
    * **Precision.** Each forward runs in the precision's :meth:`forward_context`
      (autocast for ``"bf16"`` and ``"16"``, nothing for ``"32"``).
    * **Batches.** :func:`split_batch` splits them, the same way for every pass; inputs go
      to the device with :func:`to_device`.

    Raises:
        ValueError: an unknown device or precision, or one not available here.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str | None,
        precision: Precision | FloatPrecision = "32",
    ) -> None:
        self.device = devices.resolve_device(device, model)
        self.precision: FloatPrecision = get_precision(precision, self.device)
        self.precision_name: Precision = self.precision.name
        devices.move_model(model, self.device)  # the device rule: moved, and left there
        self.model = model

    def use_backend(self, backend: Backend, example: Tensor | None = None) -> None:
        """Run :func:`tp3nets.deploy.optimize`'s model instead of the eager one, for a
        ``backend`` other than ``"eager"`` (CPU and float32 only)."""
        chosen = check_backend(backend)
        if chosen == "eager":
            return
        if self.device.type != "cpu" or self.precision_name != "32":
            raise ValueError(
                f"backend={backend!r} runs float32 on the CPU; got device {self.device}, "
                f"precision {self.precision_name!r}: use backend='eager' there"
            )
        if example is not None and getattr(self.model, "input_shape", None) is not None:
            example = None  # the model's own shape: the check's random inputs are seeded
        with model_lock(self.model), set_mode(self.model, False):
            self.model = optimize(self.model, chosen, example=example)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The model locked, in eval mode, under inference mode; modes restored after."""
        with model_lock(self.model), set_mode(self.model, False), torch.inference_mode():
            yield

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        """The precision's context, for a forward pass and whatever must share its
        autocast (evaluate's loss)."""
        return self.precision.forward_context()

    def forward(self, x: Any) -> Any:
        """The model's output for inputs already on the device, in the forward context."""
        with self.precision.forward_context():
            out = self.model(x)
        return out

    def to_device(self, x: Any, channels_last: bool = False) -> Any:
        """``x`` (a tensor, or a dict, list or tuple of them) on the pass's device."""
        return devices.to_device(x, self.device, channels_last)


def split_batch(batch: Any, unpack: Unpack | None, *, needs_target: bool = True) -> tuple[Any, Any]:
    """``(inputs, target)`` of a batch, the same way for every pass.

    With ``unpack`` its result, which must be a pair. Without it, :func:`default_unpack`:
    ``(x, y, ...)`` sequences and dicts with known keys. Where the target is optional
    (``needs_target=False``, :func:`~tp3nets.predict`) a batch may also be bare inputs or a
    one-element sequence, and the target is then ``None``.

    Raises:
        TypeError: ``unpack`` returned something other than a pair.
        ValueError: a batch :func:`default_unpack` cannot split, where a target is needed.

    Example:
        >>> split_batch({"image": 1, "label": 2}, None)
        (1, 2)
        >>> split_batch([5], None, needs_target=False)
        (5, None)
    """
    if unpack is not None:
        parts = unpack(batch)
        if not isinstance(parts, (list, tuple)) or len(parts) != 2:
            raise TypeError(
                f"unpack must return (inputs, target) as for fit (the target may be "
                f"None), got {type(parts).__name__}"
            )
        return parts[0], parts[1]
    if needs_target:
        return default_unpack(batch)
    if isinstance(batch, (list, tuple)):
        return batch[0], batch[1] if len(batch) > 1 else None
    if isinstance(batch, Mapping):
        return default_unpack(batch)
    return batch, None


def checked_unpack(unpack: Unpack | None) -> Unpack:
    """:func:`split_batch` with ``unpack`` bound, for the engine's batch iterators."""
    return lambda batch: split_batch(batch, unpack)
