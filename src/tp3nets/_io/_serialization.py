"""Reading weight and checkpoint files: what a file is, and reading it safely.

One module for every reader of a serialized model (``tp3nets.weights.load_state_dict``,
``tp3nets.engine.load_checkpoint``, the builders' ``weights=<path>``):

- :func:`names_a_file`: whether a ``weights=`` value is a file rather than a member name;
- :func:`read_serialized`: the bytes of a regular file, read once (no FIFO, no
  memory-map; a file larger than a model plausibly needs refused before it is read), and
  their kind from their first bytes (:func:`sniff_bytes`: safetensors, a torch zip or a
  legacy pickle, TorchScript, or unknown), TorchScript refused;
- :func:`load_safetensors` and :func:`load_torch`: the tensors of those bytes, a torch zip
  checked against inflation first (:func:`check_inflated_size`), pickles read with
  ``weights_only=True``.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any, Final, Literal

import torch
from torch import Tensor, nn

from ._files import read_regular_file

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "TORCHSCRIPT",
    "CheckpointError",
    "check_inflated_size",
    "first_line",
    "load_safetensors",
    "load_torch",
    "model_bytes",
    "names_a_file",
    "read_serialized",
    "size_limit",
    "sniff_bytes",
    "uncompiled_key",
]

#: File suffixes that builders and ``--weights`` treat as checkpoint paths.
CHECKPOINT_SUFFIXES: Final = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
# Suffixes of files that are not weights but are still files, not member names: an ONNX
# export given as weights is named as such (its reader says what to do), not looked up.
_OTHER_FILE_SUFFIXES: Final = (".onnx",)
#: What :func:`sniff_bytes` tells apart.
Kind = Literal["torch", "torchscript", "safetensors", "unknown"]
_ZIP_MAGIC: Final = b"PK\x03\x04"
# A torch zip is written uncompressed: entries that inflate to many times the file's size
# (and to more than the floor) are a zip bomb, refused before anything is inflated.
_MAX_INFLATION: Final = 16
_INFLATION_FLOOR: Final = 64 << 20
# A file for a model may hold its weights, an optimizer's state (Adam: twice the weights),
# a history and RNG states: a few times the weights, never a thousand.
_MODEL_FACTOR: Final = 8
_MODEL_SLACK: Final = 64 << 20

TORCHSCRIPT: Final = (
    "{path!r} is a TorchScript program (torch.jit.save, tp3nets export), not weights: run it "
    "with torch.jit.load, or give the weights it was exported from (.safetensors, or a .pt "
    "state dict)"
)


class CheckpointError(ValueError):
    """A weight or checkpoint file is corrupt, tampered with, or does not fit the model.

    ``kind``, where known, says what a file that is not what was asked for is instead:
    ``"safetensors"`` or ``"weights"`` (bare weights), ``"torchscript"``, ``"other"``.
    """

    def __init__(self, *args: object, kind: str | None = None) -> None:
        super().__init__(*args)
        self.kind = kind


def names_a_file(value: object) -> bool:
    """Whether a ``weights=`` value names a file rather than a weights member.

    The one rule of the builders and the command line's ``--weights``: a path object, or a
    string with a path separator or the suffix of a weights, checkpoint or export file.
    Anything else is looked up as a member name (the command line then tries an existing
    file of that name).

    Example:
        >>> names_a_file("runs/best.pt"), names_a_file("model.onnx"), names_a_file("DEFAULT")
        (True, True, False)
    """
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and (
        "/" in value or os.sep in value
        or value.lower().endswith((*CHECKPOINT_SUFFIXES, *_OTHER_FILE_SUFFIXES))
    )


def first_line(exc: BaseException) -> str:
    """The informative line of an exception's message.

    ``torch.load(weights_only=True)`` opens with generic advice; the reason follows
    ``WeightsUnpickler error:`` or names the refused ``GLOBAL``.
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = [line.split("WeightsUnpickler error:", 1)[1].strip(), *lines[i + 1 :]]
            reason = next((r for r in rest if r), "")
            if reason:
                return reason.split(" Please use ")[0].strip()
        if "GLOBAL" in line:
            return line.split(" Please use ")[0].strip()
    return lines[0]


def uncompiled_key(key: str) -> str:
    """``key`` without the ``_orig_mod`` parts that ``torch.compile`` wrappers add: state
    dicts are written and read keyed as the bare module expects."""
    return ".".join(part for part in key.split(".") if part != "_orig_mod")


def sniff_bytes(data: bytes) -> Kind:
    """``"torch"`` (zip or pickle from torch.save), ``"torchscript"`` (a program saved by
    torch.jit.save), ``"safetensors"``, or ``"unknown"``, from a file's bytes.

    Example:
        >>> sniff_bytes(b"\\x80\\x02}q\\x00."), sniff_bytes(b"hello")
        ('torch', 'unknown')
    """
    head = data[:9]
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
        except Exception:  # a damaged archive (BadZipFile, UnicodeDecodeError …)
            return "torch"  # torch.load reports the damage in its own words
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "torch"
    if head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        header = int.from_bytes(head[:8], "little")
        if 0 < header <= len(data) - 8:
            return "safetensors"
    return "unknown"


def model_bytes(model: nn.Module) -> int:
    """The bytes of ``model``'s state dict."""
    return sum(
        t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, Tensor)
    )


def size_limit(model: nn.Module) -> int:
    """The most bytes a weights or checkpoint file for ``model`` plausibly holds."""
    return _MODEL_FACTOR * model_bytes(model) + _MODEL_SLACK


def check_inflated_size(data: bytes, source: str, model: nn.Module | None) -> None:
    """Refuse a zip whose entries declare more bytes than plausible, before inflating.

    torch reads a record into a buffer of the size the zip's directory declares; a small
    deflated file could otherwise claim gigabytes.

    Raises:
        CheckpointError: more than 16 times the file's size (and 64 MiB), or more than
            ``model`` plausibly needs.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(max(info.file_size, 0) for info in archive.infolist())
    except Exception:  # not a readable zip: torch.load reports it in its own words
        return
    limit = max(_MAX_INFLATION * len(data), _INFLATION_FLOOR)
    why = f"{_MAX_INFLATION} times the file's size (torch writes its zips uncompressed)"
    if model is not None and size_limit(model) < limit:
        limit = size_limit(model)
        why = (
            f"what {type(model).__name__} plausibly needs ({model_bytes(model):,} bytes of "
            f"weights)"
        )
    if declared > limit:
        raise CheckpointError(
            f"{source} is refused before inflating it: its entries declare {declared:,} bytes "
            f"once inflated (the file is {len(data):,} bytes), more than {why}"
        )


def read_serialized(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    sha256: str | None = None,
) -> tuple[bytes, Kind]:
    """The bytes of a weights or checkpoint file and their kind, TorchScript refused.

    The file is read once, whole, into memory (:func:`~tp3nets._io._files.read_regular_file`:
    a FIFO or a device is refused, not read; nothing is memory-mapped), so the bytes
    hashed, sniffed and parsed are the same bytes.

    Args:
        path: the file.
        model: the model it is for: a file larger than it plausibly needs is refused
            before any of it is read.
        sha256: the expected digest, checked before anything is parsed.

    Raises:
        FileNotFoundError: no such file, a dangling symbolic link, or a directory.
        tp3nets._io._files.NotRegularFileError: a FIFO, device, socket or link loop.
        tp3nets._io._files.DigestError: the digest differs from ``sha256``.
        ValueError: too large for ``model``, or changed while read.
        CheckpointError: a TorchScript program (``kind="torchscript"``).
    """
    p = Path(path).expanduser()
    contents = read_regular_file(
        p,
        "checkpoint file",
        max_bytes=size_limit(model) if model is not None else None,
        too_big=(
            f"for {type(model).__name__} ({model_bytes(model):,} bytes of weights); it "
            f"is not a file of this model" if model is not None else ""
        ),
        sha256=sha256,
    )
    kind = sniff_bytes(contents.data)
    if kind == "torchscript":
        raise CheckpointError(TORCHSCRIPT.format(path=str(p)), kind="torchscript")
    return contents.data, kind


def load_safetensors(data: bytes, source: str, location: torch.device) -> dict[str, Tensor]:
    """The tensors of a safetensors file's bytes, in sorted order, on ``location``.

    From the bytes read: nothing is memory-mapped, so a file truncated meanwhile cannot
    crash the process.

    Raises:
        CheckpointError: the bytes are not a readable safetensors file.
    """
    from safetensors.torch import load

    try:
        loaded = load(data)
    except Exception as exc:
        raise CheckpointError(
            f"{source} is not a readable safetensors file: {first_line(exc)}"
        ) from None
    # In sorted order, as safetensors' own readers give them (``load`` does not).
    return {k: loaded[k].to(location) for k in sorted(loaded)}


def load_torch(
    data: bytes,
    source: str,
    location: torch.device | str,
    *,
    model: nn.Module | None = None,
    unreadable: str,
) -> Any:
    """What ``torch.save`` wrote in ``data``, read with ``weights_only=True`` (tensors and
    plain containers only: a file cannot run code).

    A torch zip (what torch reads as one: the zip magic first) is checked against
    inflation first (:func:`check_inflated_size`).

    Args:
        data: the file's bytes.
        source: how messages name the file.
        location: ``map_location``.
        model: the model the file is for, for the inflation limit.
        unreadable: the message when ``torch.load`` fails; its reason follows.

    Raises:
        CheckpointError: a zip that would inflate past the limit, or bytes ``torch.load``
            refuses.
    """
    if data.startswith(_ZIP_MAGIC):
        check_inflated_size(data, source, model)
    try:
        return torch.load(io.BytesIO(data), map_location=location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{unreadable}: {first_line(exc)}") from None
