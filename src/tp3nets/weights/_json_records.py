"""The records of the bundled weight files: JSON package data, read when the enums are built.

One file per weights file, ``records/<name>.json`` for ``files/<name>.safetensors``,
written by the recipes (``recipes/sync_meta.py`` for the fp32 files and, from their
results, the int8 ones; ``recipes/quantize.py`` when it makes an int8 file). A record
holds the file's name, sha256 and size, how it was made (``recipe``), what it scored
(``metrics``), and torchvision's meta keys (:data:`TORCHVISION_KEYS`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from ._api import CheckpointError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

#: The keys of torchvision's weights meta that tp3nets' records carry beside their own:
#: ``_metrics`` (``{"MNIST": {"acc@1": ...}}``), ``_ops`` (GFLOPs per image, a
#: multiply-add counted once, as torchvision does), ``_file_size`` (MB: bytes / 1024 /
#: 1024, 3 decimals), ``_docs`` (a sentence on the weights) and ``min_size`` (the smallest
#: (height, width) the model accepts).
TORCHVISION_KEYS: Final = ("_metrics", "_ops", "_file_size", "_docs", "min_size")

# The type of each key every record holds.
_REQUIRED: Final[dict[str, type]] = {
    "file": str,
    "sha256": str,
    "file_size": int,
    "num_params": int,
    "recipe": dict,
    "metrics": dict,
    "_metrics": dict,
    "_ops": float,
    "_file_size": float,
    "_docs": str,
    "min_size": list,
}


def _records_dir() -> Traversable:
    """The folder of the records, inside the installed package.

    A function rather than a constant so that a test can point it at a broken copy.
    """
    return resources.files("tp3nets.weights").joinpath("records")


def record_name(file: str) -> str:
    """The name of the record of weights file ``file``.

    Example:
        >>> record_name("convnet4_mnist_v1.safetensors")
        'convnet4_mnist_v1.json'
    """
    return file.removesuffix(".safetensors") + ".json"


def has_record(file: str) -> bool:
    """Whether the package holds a record for weights file ``file``.

    Example:
        >>> has_record("convnet4_mnist_v1.safetensors"), has_record("convnet4_mnist_v9.safetensors")
        (True, False)
    """
    return _records_dir().joinpath(record_name(file)).is_file()


def read_record(file: str, *, required: Iterable[str] = ()) -> dict[str, Any]:
    """The record of weights file ``file``, checked: every key of every record and those of
    ``required`` are there, with their types, and the record names ``file``.

    Raises:
        CheckpointError: the record is missing, is not JSON, lacks a key, holds a value of
            another type, or names another file; the message names the record.

    Example:
        >>> record = read_record("convnet4_mnist_v1.safetensors")
        >>> record["file"], record["min_size"]
        ('convnet4_mnist_v1.safetensors', [4, 4])
    """
    resource = _records_dir().joinpath(record_name(file))
    where = f"the record of {file!r} ({resource})"
    try:
        text = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise CheckpointError(
            f"{where} is missing from the tp3nets installation; reinstall tp3nets"
        ) from None
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{where} is not valid JSON ({exc}); reinstall tp3nets") from None
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{where} must hold a JSON object, got {type(record).__name__}; reinstall tp3nets"
        )
    problems = check_record(record, file=file, required=required)
    if problems:
        raise CheckpointError(f"{where} is broken: {'; '.join(problems)}; reinstall tp3nets")
    return record


def check_record(
    record: Mapping[str, Any], *, file: str | None = None, required: Iterable[str] = ()
) -> list[str]:
    """What is wrong with ``record`` (an empty list when nothing is): a key missing, a value
    of another type, or another ``file`` than the one asked for.

    Example:
        >>> check_record({"file": "a.safetensors"}, file="b.safetensors")[:2]
        ["file is 'a.safetensors', expected 'b.safetensors'", 'sha256 is missing']
    """
    problems = []
    if file is not None and record.get("file", file) != file:
        problems.append(f"file is {record['file']!r}, expected {file!r}")
    for key, kind in _REQUIRED.items():
        if key not in record:
            problems.append(f"{key} is missing")
        elif isinstance(record[key], bool) or not isinstance(record[key], kind):
            problems.append(f"{key} must be a {kind.__name__}, got {record[key]!r}")
    problems += [f"{key} is missing" for key in required if key not in record]
    size = record.get("min_size")
    if isinstance(size, list) and not (
        len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        problems.append(f"min_size must be [height, width], got {size!r}")
    return problems


def torchvision_meta(record: Mapping[str, Any]) -> dict[str, Any]:
    """The torchvision keys of a checked record, as they go into ``meta``: ``min_size`` as a
    tuple, as torchvision has it.

    Example:
        >>> meta = torchvision_meta(read_record("convnet2_mnist_v1.safetensors"))
        >>> meta["min_size"], meta["_metrics"]
        ((28, 28), {'MNIST': {'acc@1': 99.31}})
    """
    meta = {key: record[key] for key in TORCHVISION_KEYS}
    meta["min_size"] = tuple(record["min_size"])
    return meta


def dump_record(record: Mapping[str, Any]) -> str:
    """``record`` as the text of its JSON file: sorted keys, one value a line, UTF-8.

    The recipes write records through it, so that a rewrite with the same values gives the
    same bytes.

    Raises:
        ValueError: a value is NaN or infinite, which JSON does not have.

    Example:
        >>> print(dump_record({"b": [1, 2], "a": 0.5}), end="")
        {
         "a": 0.5,
         "b": [
          1,
          2
         ]
        }
    """
    return json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
