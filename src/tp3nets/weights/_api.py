"""The Weights record, the WeightsEnum base and the loading of weight files."""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import Self

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CheckpointError",
    "Weights",
    "WeightsEnum",
    "load_state_dict",
    "load_weights_into",
]

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A weight or checkpoint file is corrupt, tampered with, or does not fit the model."""


@dataclass(frozen=True, eq=False)
class Weights:
    """One set of pretrained weights shipped inside the package.

    Args:
        file: file name under ``tp3nets/weights/files/`` (a safetensors file).
        sha256: the full hex digest of that file; every load checks it.
        transforms: builds the preprocessing the weights were trained with.
        meta: categories, num_params, recipe, metrics and credits (see the models page).
    """

    file: str
    sha256: str
    transforms: Callable[..., Any]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def read_bytes(self) -> bytes:
        """Return the file's bytes after checking their sha256.

        Raises:
            CheckpointError: the file is missing from the installation or its digest differs.
        """
        resource = resources.files("tp3nets.weights").joinpath("files", self.file)
        try:
            data = resource.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(
                f"weights file {self.file!r} is missing from the tp3nets installation "
                f"(looked in {resource}); reinstall tp3nets"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise CheckpointError(
                f"weights file {self.file!r} is corrupt or was modified: its sha256 is "
                f"{digest}, expected {self.sha256}; reinstall tp3nets"
            )
        return data

    def get_state_dict(
        self, *, device: torch.device | str | None = None
    ) -> dict[str, Tensor]:
        """Load the verified state dict, with its tensors on ``device`` (CPU by default).

        Example:
            >>> from tp3nets import ConvNet4_Weights
            >>> sd = ConvNet4_Weights.DEFAULT.get_state_dict()
            >>> sd["lin1.weight"].shape
            torch.Size([10, 256])
        """
        from safetensors.torch import load

        state: dict[str, Tensor] = load(self.read_bytes())
        if device is not None:
            state = {k: v.to(device) for k, v in state.items()}
        return state


class WeightsEnum(Enum):
    """Base of the per-model weight enums (``ConvNet4_Weights`` and the others).

    Members are :class:`Weights` records; ``DEFAULT`` names the recommended one. Members
    compare by identity, copy and deepcopy to themselves, and pickle by name.

    Example:
        >>> from tp3nets import ConvNet4_Weights
        >>> ConvNet4_Weights.verify("DEFAULT") is ConvNet4_Weights.DEFAULT
        True
        >>> ConvNet4_Weights.verify("ConvNet4_Weights.MNIST_V1")
        ConvNet4_Weights.MNIST_V1
    """

    value: Weights

    @classmethod
    def verify(cls, obj: Any) -> Self | None:
        """Turn ``None``, a member or a member's name into a member of this enum.

        Names may be given bare (``"MNIST_V1"``) or qualified (``"ConvNet4_Weights.MNIST_V1"``).

        Raises:
            ValueError: an unknown name (close matches are suggested).
            TypeError: an object of another type, or a member of another enum.
        """
        if obj is None or isinstance(obj, cls):
            return obj
        if isinstance(obj, str):
            name = obj.removeprefix(cls.__name__ + ".")
            if name in cls.__members__:
                return cls[name]
            names = list(cls.__members__)
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown weights {obj!r} for {cls.__name__}; available: {', '.join(names)}{hint}"
            )
        raise TypeError(
            f"weights must be None, a {cls.__name__} member or its name, got {obj!r}"
        )

    def get_state_dict(self, *, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """See :meth:`Weights.get_state_dict`."""
        return self.value.get_state_dict(device=device)

    @property
    def transforms(self) -> Callable[..., Any]:
        """Call it to get the preprocessing the weights were trained with."""
        return self.value.transforms

    @property
    def meta(self) -> Mapping[str, Any]:
        """Categories, num_params, recipe, metrics and credits."""
        return self.value.meta

    @property
    def file(self) -> str:
        """The file name inside the package."""
        return self.value.file

    @property
    def sha256(self) -> str:
        """The full sha256 digest recorded for the file."""
        return self.value.sha256

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self._name_}"

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return getattr, (type(self), self._name_)


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key.replace("._orig_mod.", ".")


def load_state_dict(
    path: str | os.PathLike[str], *, device: torch.device | str | None = None
) -> dict[str, Tensor]:
    """Read a state dict from a ``.safetensors`` or ``.pt``/``.pth`` file, safely.

    Pickle files are read with ``torch.load(weights_only=True)``, which refuses any object
    beyond tensors and plain containers, so a file cannot run code. A full training
    checkpoint written by :func:`tp3nets.fit` is accepted too (its ``"model"`` entry is
    used), and the ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``) prefixes are
    removed.

    Args:
        path: the file.
        device: where to place the tensors (CPU by default).

    Returns:
        The state dict, keyed as the bare model expects.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a readable state dict, or carries objects that are
            not tensors.

    Example:
        >>> import tempfile, torch
        >>> from tp3nets import ConvNet2
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save(ConvNet2().state_dict(), f"{d}/net.pt")
        ...     sorted(load_state_dict(f"{d}/net.pt"))[:2]
        ['classifier.1.bias', 'classifier.1.weight']
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {str(p)!r}")
    location = torch.device(device) if device is not None else torch.device("cpu")
    raw: Any
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw = load_file(str(p), device=str(location))
        except Exception as exc:
            raise CheckpointError(f"{str(p)!r} is not a readable safetensors file: {exc}") from None
    else:
        try:
            raw = torch.load(p, map_location=location, weights_only=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{str(p)!r} is not a safe, readable state dict (tp3nets never unpickles "
                f"arbitrary objects): {first}"
            ) from None
    if isinstance(raw, Mapping) and not any(isinstance(v, Tensor) for v in raw.values()):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping) or not raw:
        raise CheckpointError(f"{str(p)!r} does not hold a state dict (a mapping of tensors)")
    bad = [k for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{str(p)!r} holds entries that are not tensors: {', '.join(map(str, bad[:5]))}"
        )
    return {_strip_prefixes(k): v for k, v in raw.items()}


def load_weights_into(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str = "checkpoint"
) -> None:
    """Load ``state_dict`` into ``model`` strictly, with an error that lists what differs.

    Raises:
        CheckpointError: missing keys, unexpected keys or shape mismatches, each listed.

    Example:
        >>> from tp3nets import ConvNet2, ConvNet3
        >>> load_weights_into(ConvNet2(), ConvNet3().state_dict(), source="net.pt")
        Traceback (most recent call last):
        ...
        tp3nets.weights._api.CheckpointError: net.pt does not fit ConvNet2: ...
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:8])}" + (" …" * (len(missing) > 8)))
        if unexpected:
            parts.append(
                f"unexpected keys: {', '.join(unexpected[:8])}" + (" …" * (len(unexpected) > 8))
            )
        if mismatched:
            parts.append(
                "shape mismatches (file vs model): " + "; ".join(mismatched[:8])
                + (" …" * (len(mismatched) > 8))
            )
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
