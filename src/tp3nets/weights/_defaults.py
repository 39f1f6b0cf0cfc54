"""Metadata and preprocessing shared by every set of MNIST weights."""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from ..data._transforms import MNISTPreprocess
from ._api import Weights
from ._records import RECORDS

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


def record_key(model: str, version: int = 1) -> str:
    """The name of a weights record (and of its ``recipes/results/<key>.json``):
    ``convnet4`` for version 1, ``convnet4_v2`` for version 2.

    Example:
        >>> record_key("convnet4"), record_key("convnet4", 2)
        ('convnet4', 'convnet4_v2')
    """
    return model if version == 1 else f"{model}_v{version}"


def member_version(name: str) -> int:
    """The version of a weights member from its name: ``MNIST_V2`` and ``MNIST_INT8_V2`` → 2.

    Example:
        >>> member_version("MNIST_V1"), member_version("MNIST_INT8_V2")
        (1, 2)
    """
    return int(name.rsplit("_V", 1)[1])


def mnist_weights(model: str, version: int = 1) -> Weights:
    """The :class:`Weights` of the bundled MNIST file ``version`` of ``model``, from its
    training record.

    The sha256, file size, recipe and metrics come from ``_records.py``, which
    ``recipes/sync_meta.py`` writes from the training run's own output.
    """
    record = RECORDS[record_key(model, version)]
    meta = {
        **MNIST_META,
        "num_params": record["num_params"],
        "file_size": record["file_size"],
        "recipe": record["recipe"],
        "metrics": record["metrics"],
        "history": record["history"],
    }
    if "time_to_accuracy" in record:
        meta["time_to_accuracy"] = record["time_to_accuracy"]
    return Weights(
        file=record["file"], sha256=record["sha256"], transforms=mnist_transforms, meta=meta
    )
