"""Metadata and preprocessing shared by every set of MNIST weights."""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from ..transforms import MNISTPreprocess

DIGITS: Final = tuple(str(d) for d in range(10))

MNIST_CREDIT: Final = (
    "MNIST by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, "
    "distributed under CC BY-SA 3.0"
)

MNIST_META: Final[dict[str, Any]] = {
    "categories": DIGITS,
    "input_size": (1, 28, 28),
    "dataset": "MNIST",
    "dataset_license": MNIST_CREDIT,
}

mnist_transforms: Final = partial(MNISTPreprocess)
