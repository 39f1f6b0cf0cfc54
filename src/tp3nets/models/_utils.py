"""Helpers shared by the model families: input checks, classifier heads, builders."""

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .._util._checks import check_int, value_error

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
) -> bool:
    """Raise a ValueError unless ``x`` is a float batch ``(N, channels, height, width)``.

    ``height == -1`` accepts any spatial size of at least ``min_size`` on each side. Written
    in the TorchScript subset, and a leaf call for ``torch.fx`` (see the ``torch.fx.wrap``
    below). It returns True for ``torch._assert`` (see :func:`_assert_images`).
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
    return True


def _check_flat(x: Tensor, model: str, features: int) -> bool:
    """Raise a ValueError unless every sample of ``x`` holds exactly ``features`` values.

    Returns True, for ``torch._assert`` (see :func:`_assert_flat`).
    """
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
    return True


def _assert_images(
    x: Tensor, model: str, channels: int, height: int, width: int, min_size: int
) -> None:
    """The input check of the image models' ``forward_features`` (see :func:`_check_images`).

    ``torch._assert`` consumes the check's result, so that graph passes that delete unused
    nodes (``create_feature_extractor``, ``convert_fx``, ``eliminate_dead_code``) keep
    ``torch._assert`` and therefore the check.
    """
    torch._assert(
        _check_images(x, model, channels, height, width, min_size), f"{model} input check"
    )


def _assert_flat(x: Tensor, model: str, features: int) -> None:
    """The input check of the flat models' ``forward_features`` (see :func:`_check_flat`
    and :func:`_assert_images`)."""
    torch._assert(_check_flat(x, model, features), f"{model} input check")


# Leaf calls for torch.fx. Plain annotations do not make these wraps unnecessary: the
# checks branch on the input's type, shape and dtype and put the received shape into their
# ValueError and TypeError messages, and fx's symbolic tracing can neither branch on a
# Proxy nor format one. A check written as traceable torch._assert conditions (as in
# torchvision) would trace, but would raise AssertionError with a fixed message instead of
# the models' own errors. torch.fx.wrap patches the globals of the module that calls it, so
# both checks are wrapped here, where _assert_images and _assert_flat call them: a model
# calls those two and needs no wrap of its own.
torch.fx.wrap("_check_images")
torch.fx.wrap("_check_flat")


def _size2(value: Any, owner: str) -> tuple[int, int]:
    """Normalise an ``input_size`` given as ``28`` or ``(28, 28)``."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair: tuple[Any, ...] = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise value_error(owner, "input_size", "an int or (H, W)", value)
    h = check_int(pair[0], "input_size", who=owner)
    w = check_int(pair[1], "input_size", who=owner)
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

    The models share timm's feature API: ``forward(x)`` is
    ``forward_head(forward_features(x))``; ``forward_features`` returns the last feature
    map (``num_features`` channels, or values for the logistic regression) and
    ``forward_head(x, pre_logits=True)`` the ``head_hidden_size`` values the final Linear
    layer reads. ``reset_classifier(0)`` replaces that layer by :class:`~torch.nn.Identity`,
    turning the model into a feature extractor.

    Example:
        >>> import torch
        >>> from tp3nets import ConvNet4
        >>> model = ConvNet4().eval()
        >>> x = torch.zeros(2, 1, 28, 28)
        >>> model.forward_features(x).shape, model.num_features
        (torch.Size([2, 256, 1, 1]), 256)
        >>> model.reset_classifier(0)
        >>> model(x).shape
        torch.Size([2, 256])
    """

    _head_path = ""
    if TYPE_CHECKING:  # not class annotations at run time: TorchScript cannot read those
        num_classes: int
        num_features: int
        head_hidden_size: int
        _head_device_dtype: tuple[torch.device, torch.dtype]

    def forward_features(self, x: Tensor) -> Tensor:
        """The input checked, then the feature layers: everything before the head."""
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """From :meth:`forward_features`' output to the logits (or, with ``pre_logits``,
        to the ``head_hidden_size`` values the final Linear layer reads)."""
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        """Return the final layer: the classification head (a Linear layer), or
        :class:`~torch.nn.Identity` after ``reset_classifier(0)``.

        Example:
            >>> from tp3nets import ConvNet4
            >>> ConvNet4().get_classifier()
            Linear(in_features=256, out_features=10, bias=True)
        """
        head = self.get_submodule(self._head_path)
        # An invariant of the subclasses, not user input.
        assert isinstance(head, (nn.Linear, nn.Identity))
        return head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised one with ``num_classes`` outputs.

        Everything else (the features, their device and dtype) is kept, for transfer learning
        from pretrained weights to another task. The new head's state_dict keys are those of
        the old one. ``num_classes=0`` removes the head (timm's convention): the model then
        returns the ``head_hidden_size`` pre-logit values.

        Args:
            num_classes: number of outputs of the new head, or 0 for no head.

        Raises:
            ValueError: if ``num_classes`` is not a non-negative int.

        Example:
            >>> import torch
            >>> from tp3nets import ConvNet2
            >>> model = ConvNet2()
            >>> model.reset_classifier(3)
            >>> model.eval()(torch.zeros(2, 1, 28, 28)).shape
            torch.Size([2, 3])
            >>> model.reset_classifier(0)
            >>> model(torch.zeros(2, 1, 28, 28)).shape
            torch.Size([2, 500])
        """
        owner = type(self).__name__
        num_classes = check_int(num_classes, "num_classes", who=owner, minimum=0,
                                what="a positive int, or 0 to remove the head")
        old = self.get_classifier()
        if isinstance(old, nn.Linear):
            # Where a head removed by reset_classifier(0) lived, for a later new head (the
            # logistic regression has no other parameter to take them from).
            self._head_device_dtype = (old.weight.device, old.weight.dtype)
        if num_classes == 0:
            new: nn.Module = nn.Identity()
            num_classes = 0
        elif isinstance(old, nn.Linear):
            num_classes = int(num_classes)
            new = _new_linear_like(old, num_classes)
        else:  # the head was removed: rebuild it from the pre-logit width
            num_classes = int(num_classes)
            device, dtype = self._head_device_dtype
            new = nn.Linear(self.head_hidden_size, num_classes, device=device, dtype=dtype)
        parent_path, _, name = self._head_path.rpartition(".")
        parent = self.get_submodule(parent_path) if parent_path else self
        setattr(parent, name, new)
        self.num_classes = num_classes
