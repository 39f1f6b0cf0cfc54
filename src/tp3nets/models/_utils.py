"""Helpers shared by the model families: input checks, classifier heads, builders."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

__all__: list[str] = []


def _shape_str(x: Tensor) -> str:
    return "(" + ", ".join([str(s) for s in x.shape]) + ")"


def _check_tensor(x: Any, model: str) -> None:
    """Raise a TypeError for a list, a NumPy array or anything else that is not a tensor.

    Skipped under TorchScript, whose signatures already guarantee a tensor.
    """
    if not torch.jit.is_scripting() and not isinstance(x, Tensor):  # type: ignore[attr-defined]
        raise TypeError(
            f"{model} expects a torch.Tensor, got {type(x).__name__}; convert it with "
            f"torch.as_tensor(x, dtype=torch.float32)"
        )


def _check_images(
    x: Tensor, model: str, channels: int, height: int, width: int, min_size: int
) -> None:
    """Raise a ValueError unless ``x`` is a float batch ``(N, channels, height, width)``.

    ``height == -1`` accepts any spatial size of at least ``min_size`` on each side. Written
    in the TorchScript subset; each model module registers it with ``torch.fx.wrap`` (which
    patches the caller's globals) so that ``torch.fx`` records it as a leaf call.
    """
    _check_tensor(x, model)
    if height > 0:
        expected = f"(N, {channels}, {height}, {width})"
    else:
        expected = f"(N, {channels}, H, W) with H, W >= {min_size}"
    if x.dim() != 4:
        raise ValueError(f"{model} expects inputs of shape {expected}, got {_shape_str(x)}")
    if x.shape[1] != channels:
        raise ValueError(f"{model} expects inputs of shape {expected}, got {_shape_str(x)}")
    if height > 0:
        if x.shape[2] != height or x.shape[3] != width:
            raise ValueError(f"{model} expects inputs of shape {expected}, got {_shape_str(x)}")
    elif x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(f"{model} expects inputs of shape {expected}, got {_shape_str(x)}")
    if not x.is_floating_point():
        raise TypeError(
            f"{model} expects a floating-point tensor, got an integer tensor of shape "
            f"{_shape_str(x)}; convert uint8 images with x.float() / 255"
        )


def _check_flat(x: Tensor, model: str, features: int) -> None:
    """Raise a ValueError unless every sample of ``x`` holds exactly ``features`` values."""
    _check_tensor(x, model)
    if x.dim() < 2:
        raise ValueError(
            f"{model} expects a batch of shape (N, {features}) or (N, C, H, W) with "
            f"C*H*W == {features}, got {_shape_str(x)}; add the batch dimension with "
            f"x.unsqueeze(0)"
        )
    n = 1
    for s in x.shape[1:]:
        n *= s
    if n != features:
        raise ValueError(
            f"{model} expects a batch of shape (N, {features}) or (N, C, H, W) with "
            f"C*H*W == {features}, got {_shape_str(x)} ({n} values per sample)"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{model} expects a floating-point tensor, got an integer tensor of shape "
            f"{_shape_str(x)}; convert uint8 images with x.float() / 255"
        )


def _positive_int(name: str, value: Any, owner: str) -> int:
    """``value`` as an int (NumPy integers too), or a ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner} expects {name} to be a positive int, got {value!r}")
    return int(value)


def _probability(name: str, value: Any, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        0.0 <= float(value) < 1.0
    ):
        raise ValueError(f"{owner} expects {name} to be a probability in [0, 1), got {value!r}")
    return float(value)


def _size2(value: Any, owner: str) -> tuple[int, int]:
    """Normalise an ``input_size`` given as ``28`` or ``(28, 28)``."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair: tuple[Any, ...] = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ValueError(f"{owner} expects input_size to be an int or (H, W), got {value!r}")
    h = _positive_int("input_size", pair[0], owner)
    w = _positive_int("input_size", pair[1], owner)
    return h, w


def _new_linear_like(old: nn.Linear, out_features: int) -> nn.Linear:
    """A freshly initialised Linear with ``old``'s inputs, device and dtype."""
    return nn.Linear(
        old.in_features,
        out_features,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )


class ClassifierModel(nn.Module):
    """Base of the tp3nets models: a classifier whose last Linear layer is its head.

    Subclasses name the head's attribute path in ``_head_path`` (``"classifier.3"``,
    ``"lin1"``), so that the head keeps the reference state_dict keys when it is replaced.
    """

    _head_path = ""
    if TYPE_CHECKING:  # not a class annotation at run time: TorchScript cannot read those
        num_classes: int

    def get_classifier(self) -> nn.Linear:
        """Return the final Linear layer (the classification head).

        Example:
            >>> from tp3nets import ConvNet4
            >>> ConvNet4().get_classifier()
            Linear(in_features=256, out_features=10, bias=True)
        """
        head = self.get_submodule(self._head_path)
        assert isinstance(head, nn.Linear)  # invariant of the subclasses, not user input
        return head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised one with ``num_classes`` outputs.

        Everything else (the features, their device and dtype) is kept, for transfer learning
        from pretrained weights to another task. The new head's state_dict keys are those of
        the old one.

        Args:
            num_classes: number of outputs of the new head.

        Raises:
            ValueError: if ``num_classes`` is not a positive int.

        Example:
            >>> import torch
            >>> from tp3nets import ConvNet2
            >>> model = ConvNet2()
            >>> model.reset_classifier(3)
            >>> model.eval()(torch.zeros(2, 1, 28, 28)).shape
            torch.Size([2, 3])
        """
        num_classes = _positive_int("num_classes", num_classes, type(self).__name__)
        new = _new_linear_like(self.get_classifier(), num_classes)
        parent_path, _, name = self._head_path.rpartition(".")
        parent = self.get_submodule(parent_path) if parent_path else self
        setattr(parent, name, new)
        self.num_classes = num_classes
