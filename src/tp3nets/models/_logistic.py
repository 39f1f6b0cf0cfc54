"""Multinomial logistic regression: one Linear layer over the flattened pixels."""

from typing import Any

from torch import Tensor, nn

from .._util._checks import check_int
from ..weights import WeightsEnum
from ..weights._defaults import mnist_weights
from ._registry import _build, register_model
from ._utils import ClassifierModel, _assert_flat

__all__ = [
    "MultinomialLogisticRegression",
    "MultinomialLogisticRegression_Weights",
    "multinomial_logistic_regression",
]


class MultinomialLogisticRegression(ClassifierModel):
    """Softmax regression: logits ``x W^T + b`` over the flattened input.

    Same layer and state_dict keys (``classifier.weight``, ``classifier.bias``) as the
    reference lab. Unlike the reference, which reads a global ``input_size`` and calls
    ``reshape(-1, input_size)`` (silently regrouping the pixels of wrongly sized images
    into a different batch), the batch dimension is kept and every sample must hold exactly
    ``input_size`` values. There is no softmax: pair the logits with
    :class:`~torch.nn.CrossEntropyLoss`.

    Args:
        input_size: values per sample (784 for 28×28 grayscale images).
        output_size: number of classes (the reference's name for it); 10 when neither it
            nor ``num_classes`` is given.
        num_classes: keyword alias of ``output_size``, shared with the other models.

    Raises:
        ValueError: if a size is not a positive int, or ``num_classes`` conflicts with
            ``output_size``.

    Shape:
        (N, input_size) or (N, C, H, W) with C·H·W = input_size → (N, output_size)

    Example:
        >>> import torch
        >>> model = MultinomialLogisticRegression(784, 10)
        >>> model(torch.zeros(4, 1, 28, 28)).shape
        torch.Size([4, 10])
        >>> model(torch.zeros(4, 784)).shape
        torch.Size([4, 10])
    """

    _head_path = "classifier"

    def __init__(
        self,
        input_size: int = 784,
        output_size: int | None = None,
        *,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if output_size is not None and num_classes is not None and output_size != num_classes:
            # An explicit output_size=10 with num_classes=5 is a conflict, not a default.
            raise ValueError(
                f"{name} got output_size={output_size!r} and num_classes={num_classes!r}; "
                "give one of them"
            )
        classes = output_size if output_size is not None else num_classes
        self.input_size = check_int(input_size, "input_size", who=name)
        self.num_classes = check_int(
            10 if classes is None else classes,
            "output_size" if output_size is not None else "num_classes",
            who=name,
        )
        self.input_shape: tuple[int, ...] = (
            (1, 28, 28) if self.input_size == 784 else (self.input_size,)
        )
        self.num_features = self.input_size  # forward_features gives the flat pixels
        self.head_hidden_size = self.input_size
        # No softmax here: CrossEntropyLoss applies log-softmax itself.
        self.classifier = nn.Linear(self.input_size, self.num_classes)

    @property
    def output_size(self) -> int:
        """The number of classes, under the reference's name."""
        return self.num_classes

    def _check_input(self, x: Tensor) -> None:
        _assert_flat(x, "MultinomialLogisticRegression", self.input_size)

    def forward_features(self, x: Tensor) -> Tensor:
        """The checked input, flattened: ``(N, input_size)``."""
        self._check_input(x)
        return x.reshape(x.shape[0], self.input_size)  # (N, input_size)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """The Linear layer (``pre_logits`` returns ``x`` as it came)."""
        if pre_logits:
            return x
        out: Tensor = self.classifier(x)  # (N, num_classes)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class MultinomialLogisticRegression_Weights(WeightsEnum):
    """Pretrained weights for :class:`MultinomialLogisticRegression`."""

    MNIST_V1 = mnist_weights("multinomial_logistic_regression")
    DEFAULT = MNIST_V1


@register_model(weights=MultinomialLogisticRegression_Weights)
def multinomial_logistic_regression(
    *,
    weights: MultinomialLogisticRegression_Weights | str | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> MultinomialLogisticRegression:
    """Build a :class:`MultinomialLogisticRegression`, optionally with pretrained weights.

    Args:
        weights: ``None`` for random initialisation, a
            :class:`MultinomialLogisticRegression_Weights` member, its name (``"DEFAULT"``,
            ``"MNIST_V1"``, ``"MultinomialLogisticRegression_Weights.MNIST_V1"``), or the path
            of a checkpoint file (``.safetensors``, ``.pt``, ``.pth``).
        progress: accepted for torchvision compatibility; the weights ship inside the package,
            so nothing is downloaded and no progress bar is shown.
        **kwargs: passed to :class:`MultinomialLogisticRegression`.

    Returns:
        The model, in training mode.

    Example:
        >>> model = multinomial_logistic_regression(weights="DEFAULT")
        >>> model.num_classes
        10
    """
    return _build(
        MultinomialLogisticRegression, MultinomialLogisticRegression_Weights, weights, kwargs
    )
