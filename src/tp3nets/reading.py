"""Reading digits from pictures as people give them, with "no digit" and "unsure" answers.

:func:`read_digits` is the whole path from a user's picture to an answer a program can
act on: open the file, find the digit (:class:`~tp3nets.MNISTPreprocess`), run the model,
and answer with the digit, ``"unsure"`` when its probability is below a threshold, or
``"no digit"`` when the picture holds none (a blank page, a number of several digits,
ruled paper, a texture). ``tp3nets predict`` prints what it returns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import torch
from torch import Tensor, nn

from ._util._checks import check_int as _check_int
from ._util._checks import check_probability as _check_probability
from .data import DigitImage as _DigitImage
from .data import MNISTPreprocess as _MNISTPreprocess
from .engine import predict as _predict

__all__ = ["DEFAULT_MIN_CONFIDENCE", "DigitReading", "read_digits"]

#: The probability below which :func:`read_digits` answers ``"unsure"`` by default.
DEFAULT_MIN_CONFIDENCE: Final = 0.9

Status = Literal["digit", "unsure", "no digit"]


@dataclass(frozen=True)
class DigitReading:
    """The answer for one picture.

    Attributes:
        status: ``"digit"`` (answered), ``"unsure"`` (the most probable class is below
            the threshold) or ``"no digit"`` (the picture holds no single digit).
        label: the digit answered, as the weights' categories name it; ``None`` unless
            ``status`` is ``"digit"``.
        probability: the most probable class's probability (NaN where the model gave
            non-finite outputs).
        top: the ``top`` most probable classes with their probabilities, most probable
            first, whatever the status: what the model would have answered.
        reason: why the picture holds no digit, in words (``None`` otherwise).
        image: the ``(1, 28, 28)`` tensor the model saw.
    """

    status: Status
    label: str | None
    probability: float
    top: list[tuple[str, float]]
    reason: str | None
    image: Tensor = field(repr=False)

    @property
    def answered(self) -> bool:
        """Whether the reading is a digit (neither unsure nor no digit)."""
        return self.status == "digit"


def _picture(item: Any) -> Any:
    """A path is opened with :func:`~tp3nets.data.open_image`; anything else is given to
    the preprocessing as it is."""
    if isinstance(item, (str, os.PathLike)):
        from .data import open_image

        return open_image(item)
    return item


def read_digits(
    model: nn.Module,
    pictures: Sequence[Any],
    *,
    weights: Any = None,
    transform: _MNISTPreprocess | None = None,
    min_confidence: float | None = DEFAULT_MIN_CONFIDENCE,
    top: int = 3,
    device: torch.device | str | None = None,
) -> list[DigitReading]:
    """Read one digit from each picture, or say there is none, or that the model is unsure.

    Args:
        model: a classifier of 28×28 digits (a bundled model with its weights).
        pictures: image files (paths), PIL images, NumPy arrays or image tensors
            ``(C, H, W)``, any size: phone photos, scans, canvas exports (transparent ones
            included), MNIST digits.
        weights: the model's weights member (``ConvNet4_Weights.DEFAULT``): its
            preprocessing and category names. Default: :class:`~tp3nets.MNISTPreprocess`
            and the class indices as names.
        transform: the preprocessing, when not the weights' own; it must have
            :meth:`~tp3nets.MNISTPreprocess.inspect`.
        min_confidence: answer ``"unsure"`` below this probability, in (0, 1]; ``None``
            answers every picture that holds a digit. The bundled weights' probabilities
            are calibrated, so the threshold is the share of answers expected right.
        top: how many classes :attr:`DigitReading.top` lists.
        device: where the model runs (default: where its parameters are).

    Returns:
        One :class:`DigitReading` per picture, in order.

    Raises:
        ValueError: ``min_confidence`` outside (0, 1], ``top`` outside [1, classes], or
            no pictures.
        tp3nets.data.ImageFileError: a path that is not a readable image.

    Example:
        >>> import tp3nets
        >>> weights = tp3nets.ConvNet4_Weights.DEFAULT
        >>> model = tp3nets.convnet4(weights=weights).eval()
        >>> blank = torch.full((3, 60, 80), 240, dtype=torch.uint8)  # an empty page
        >>> seven, empty = read_digits(model, [tp3nets.data.samples.digit(7), blank],
        ...                            weights=weights)
        >>> seven.status, seven.label, empty.status
        ('digit', '7', 'no digit')
    """
    if min_confidence is not None:
        _check_probability(min_confidence, "min_confidence", who="read_digits",
                           low_open=True, what="a probability in (0, 1], or None")
    if isinstance(pictures, (str, os.PathLike, Tensor)) or not isinstance(pictures, Sequence):
        raise ValueError(
            "read_digits expects a sequence of pictures (a list of paths, PIL images, "
            f"arrays or (C, H, W) tensors), got {type(pictures).__name__}; wrap one "
            "picture in a list"
        )
    if len(pictures) == 0:
        raise ValueError("read_digits got no pictures")
    if transform is None:
        transform = weights.transforms() if weights is not None else _MNISTPreprocess()
    inspected: list[_DigitImage] = [transform.inspect(_picture(p)) for p in pictures]
    batch = torch.stack([d.image for d in inspected])
    logits = _predict(model, batch, device=device)
    probs = logits.float().softmax(dim=1)
    classes = probs.shape[1]
    top = _check_int(top, "top", who="read_digits", maximum=classes)
    names = [str(c) for c in weights.meta["categories"]] if weights is not None and len(
        weights.meta.get("categories", ())) == classes else [str(i) for i in range(classes)]
    top_p, top_i = probs.topk(top, dim=1)
    readings = []
    for seen, ps, idx in zip(inspected, top_p.tolist(), top_i.tolist(), strict=True):
        best = ps[0]
        status: Status
        if not seen.found:
            status = "no digit"
        elif math.isnan(best) or (min_confidence is not None and best < min_confidence):
            status = "unsure"
        else:
            status = "digit"
        readings.append(DigitReading(
            status=status,
            label=names[idx[0]] if status == "digit" else None,
            probability=best,
            top=[(names[i], p) for p, i in zip(ps, idx, strict=True)],
            reason=seen.reason,
            image=seen.image,
        ))
    return readings
