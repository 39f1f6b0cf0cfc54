"""Metadata and preprocessing shared by every set of MNIST weights."""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from ..data._transforms import MNISTPreprocess
from ._api import Weights
from ._json_records import TORCHVISION_KEYS, read_record, torchvision_meta

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
    """The name of a training run's results, ``recipes/results/<key>.json`` (the int8
    ones: ``quantized_<key>.json``): ``convnet4`` for version 1, ``convnet4_v2`` for
    version 2.

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


def mnist_file(model: str, version: int = 1, *, int8: bool = False) -> str:
    """The name of bundled weights file ``version`` of ``model``, fp32 or int8.

    Example:
        >>> mnist_file("convnet4", 2), mnist_file("convnet4", 2, int8=True)
        ('convnet4_mnist_v2.safetensors', 'convnet4_mnist_int8_v2.safetensors')
    """
    return f"{model}_mnist_{'int8_' if int8 else ''}v{version}.safetensors"


def mnist_weights(model: str, version: int = 1) -> Weights:
    """The :class:`Weights` of the bundled MNIST file ``version`` of ``model``, from its
    training record.

    The sha256, file size, recipe and metrics come from the file's record,
    ``records/<file>.json``, which ``recipes/sync_meta.py`` writes from the training run's
    own output.

    Raises:
        CheckpointError: the record is missing or broken.
    """
    record = read_record(mnist_file(model, version), required=("history",))
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
    meta.update(torchvision_meta(record))
    return Weights(
        file=record["file"], sha256=record["sha256"], transforms=mnist_transforms, meta=meta
    )


def int8_mnist_weights(model: str, version: int = 1) -> Weights:
    """The :class:`Weights` of the bundled int8 file ``version`` of ``model``, derived from
    fp32 file ``version``, from its record (written by ``recipes/quantize.py``).

    Raises:
        CheckpointError: the record is missing or broken.
    """
    record = read_record(mnist_file(model, version, int8=True), required=("backend", "unquantized"))
    own = {k: v for k, v in record.items() if k not in ("file", "sha256", *TORCHVISION_KEYS)}
    meta = {**MNIST_META, **own, **torchvision_meta(record)}
    return Weights(
        file=record["file"], sha256=record["sha256"], transforms=mnist_transforms, meta=meta
    )
