"""The Weights record, the WeightsEnum base and the loading of weight files."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import torch
from torch import Tensor, nn
from typing_extensions import Self

from .._io._serialization import (
    CHECKPOINT_SUFFIXES,
    CheckpointError,
    load_safetensors,
    load_torch,
    read_serialized,
    uncompiled_key,
)
from .._util import _warn

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CheckpointError",
    "Weights",
    "WeightsEnum",
    "load_state_dict",
    "load_weights_into",
]

_DDP_PREFIX: Final = "module."
_V = TypeVar("_V")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
# Keys under which training scripts commonly nest the model's state dict.
_NESTED_KEYS: Final = ("model", "state_dict", "model_state_dict")


def _weights_dir() -> Traversable:
    """The folder of the bundled weight files, inside the installed package.

    A function rather than a constant so that a test can point it at a tampered copy.
    """
    return resources.files("tp3nets.weights").joinpath("files")


def _check_finite(state: Mapping[str, Any], source: str) -> None:
    """Refuse floating-point (or complex) tensors holding NaN or infinity, naming them."""
    bad = []
    for key, value in state.items():
        if isinstance(value, Tensor) and (value.is_floating_point() or value.is_complex()):
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                count = int((~finite).sum())
                bad.append(f"{key} ({count:,} of {value.numel():,} values)")
    if bad:
        raise CheckpointError(
            f"{source} holds non-finite values (NaN or infinity) in {_listed(bad, 5)}; "
            f"those weights would make every prediction NaN"
        )


@dataclass(frozen=True, eq=False)
class Weights:
    """One set of pretrained weights shipped inside the package.

    Args:
        file: file name under ``tp3nets/weights/files/`` (a safetensors file).
        sha256: the full hex digest of that file; every load checks it.
        transforms: builds the preprocessing the weights were trained with.
        meta: categories, num_params, recipe, metrics and credits (see the models page).

    Raises:
        ValueError: ``file`` is not a bare ``.safetensors`` file name, ``sha256`` is not 64
            lowercase hex digits, or ``transforms`` is not callable.

    Example:
        >>> from tp3nets import ConvNet4_Weights
        >>> w = ConvNet4_Weights.DEFAULT.value
        >>> w.file, len(w.sha256)
        ('convnet4_mnist_v8.safetensors', 64)
    """

    file: str
    sha256: str
    transforms: Callable[..., Any]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.file, str)
            or not self.file.endswith(".safetensors")
            or Path(self.file).name != self.file
        ):
            raise ValueError(
                f"Weights.file must be a bare .safetensors file name under "
                f"tp3nets/weights/files/, got {self.file!r}"
            )
        if not isinstance(self.sha256, str) or not _SHA256_RE.fullmatch(self.sha256):
            raise ValueError(
                f"Weights.sha256 must be the full digest (64 lowercase hex digits), "
                f"got {self.sha256!r}"
            )
        if not callable(self.transforms):
            raise ValueError(f"Weights.transforms must be callable, got {self.transforms!r}")
        if not isinstance(self.meta, Mapping):
            raise ValueError(f"Weights.meta must be a mapping, got {type(self.meta).__name__}")

    def read_bytes(self) -> bytes:
        """Return the file's bytes after checking their sha256.

        Raises:
            CheckpointError: the file is missing from the installation or its digest
                differs; the message names the file.

        Example:
            >>> import hashlib
            >>> from tp3nets import ConvNet2_Weights
            >>> w = ConvNet2_Weights.DEFAULT
            >>> hashlib.sha256(w.value.read_bytes()).hexdigest() == w.sha256
            True
        """
        resource = _weights_dir().joinpath(self.file)
        try:
            data = resource.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise CheckpointError(
                f"weights file {self.file!r} is missing from the tp3nets installation "
                f"(looked for {resource}); reinstall tp3nets"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise CheckpointError(
                f"weights file {self.file!r} ({resource}) is corrupt or was modified: its "
                f"sha256 is {digest}, expected {self.sha256}; reinstall tp3nets"
            )
        return data

    def get_state_dict(self, *, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """Load the verified state dict, with its tensors on ``device`` (CPU by default).

        Raises:
            CheckpointError: see :meth:`read_bytes`.

        Example:
            >>> from tp3nets import ConvNet4_Weights
            >>> sd = ConvNet4_Weights.DEFAULT.get_state_dict()
            >>> sd["lin1.weight"].shape, sd["lin1.weight"].device.type
            (torch.Size([10, 256]), 'cpu')
        """
        from safetensors.torch import load

        location = torch.device(device) if device is not None else None
        state: dict[str, Tensor] = load(self.read_bytes())
        if location is not None and location.type != "cpu":
            state = {k: v.to(location) for k, v in state.items()}
        return state


class WeightsEnum(Enum):
    """Base of the per-model weight enums (``ConvNet4_Weights`` and the others).

    Members are :class:`Weights` records; ``DEFAULT`` names the recommended one. Members
    compare by identity, copy and deepcopy to themselves, and pickle by name.

    Example:
        >>> import copy, pickle
        >>> from tp3nets import ConvNet4_Weights
        >>> ConvNet4_Weights.verify("DEFAULT") is ConvNet4_Weights.DEFAULT
        True
        >>> ConvNet4_Weights.verify("ConvNet4_Weights.MNIST_V1")
        ConvNet4_Weights.MNIST_V1
        >>> pickle.loads(pickle.dumps(ConvNet4_Weights.DEFAULT)) is ConvNet4_Weights.DEFAULT
        True
        >>> copy.deepcopy(ConvNet4_Weights.DEFAULT) is ConvNet4_Weights.DEFAULT
        True
    """

    value: Weights

    @classmethod
    def verify(cls, obj: Any) -> Self | None:
        """Turn ``None``, a member or a member's name into a member of this enum.

        Names may be given bare (``"MNIST_V1"``) or qualified (``"ConvNet4_Weights.MNIST_V1"``),
        in any case (``"default"``).

        Raises:
            ValueError: an unknown name (close matches are suggested).
            TypeError: an object of another type, or a member of another enum.
        """
        if obj is None or isinstance(obj, cls):
            return obj
        if isinstance(obj, str):
            name = obj.strip()
            if name.lower().startswith(cls.__name__.lower() + "."):
                name = name[len(cls.__name__) + 1 :]
            members = {k.upper(): k for k in cls.__members__}
            if name.upper() in members:
                return cls[members[name.upper()]]
            names = list(cls.__members__)
            close = difflib.get_close_matches(name.upper(), names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown weights {obj!r} for {cls.__name__}; available: {', '.join(names)}{hint}"
            )
        if isinstance(obj, WeightsEnum):
            raise TypeError(
                f"weights must be a {cls.__name__} member, got {obj!r} (weights of another model)"
            )
        raise TypeError(
            f"weights must be None, a {cls.__name__} member or its name, got {obj!r}"
        )

    def get_state_dict(self, *, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """See :meth:`Weights.get_state_dict`."""
        return self.value.get_state_dict(device=device)

    @property
    def transforms(self) -> Callable[..., Any]:
        """Call it to get the preprocessing the weights were trained with.

        Example:
            >>> from tp3nets import ConvNet4_Weights
            >>> ConvNet4_Weights.DEFAULT.transforms()
            MNISTPreprocess(size=28, invert='auto', fit='auto')
        """
        return self.value.transforms

    @property
    def meta(self) -> Mapping[str, Any]:
        """Categories, num_params, input_size, recipe, metrics, file size and credits."""
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


def _unwrapped_keys(state: Mapping[str, _V]) -> dict[str, _V]:
    """``state`` keyed as the bare module expects: without ``_orig_mod.`` wherever it
    appears, and without the ``module.`` prefix of DDP/DataParallel where every key has it
    (a model's own child named ``module`` is left alone)."""
    out = {uncompiled_key(k): v for k, v in state.items()}
    while out and all(k.startswith(_DDP_PREFIX) for k in out):
        out = {k[len(_DDP_PREFIX) :]: v for k, v in out.items()}
    return out


def load_state_dict(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    sha256: str | None = None,
    model: nn.Module | None = None,
) -> dict[str, Tensor]:
    """Read a state dict from a ``.safetensors`` or ``.pt``/``.pth``/``.ckpt`` file, safely.

    The format is read from the file's first bytes, whatever its name. Pickle files are
    read with ``torch.load(weights_only=True)``, which refuses any object
    beyond tensors and plain containers, so a file cannot run code. A full training
    checkpoint written by :func:`tp3nets.fit` is accepted too (its ``"model"`` entry is
    used, as is a ``"state_dict"`` entry, such as a Lightning ``.ckpt``'s). The
    ``_orig_mod.`` parts of ``torch.compile`` are removed, and DDP's ``module.`` prefix
    where every key carries it (a model's own child named ``module`` beside others keeps its
    keys). Nothing is memory-mapped: a file truncated while being read gives an error, not a
    crash. Files saved from the reference lab's classes (``torch.save(model.state_dict(),
    path)``) have the tp3nets keys; the lab's base ConvNet's ``classifier.0``/``.2`` are
    renamed when loaded into :class:`~tp3nets.ConvNet2` (``weights=`` or
    ``load_state_dict``), not here.

    Args:
        path: the file.
        device: where to place the tensors (CPU by default).
        sha256: the file's expected full hex digest, checked before anything is parsed;
            the bytes parsed are the bytes hashed (the file is read once, in memory).
        model: the model the weights are for. Then a file larger than that model
            plausibly needs is refused before it is read, one common key prefix is
            removed when that makes the keys fit (a Lightning ``.ckpt``'s ``model.``; a
            :class:`UserWarning` names it), and tensors of a non-floating dtype where the
            model's are floating-point are refused.

    Returns:
        The state dict, keyed as the bare model expects.

    Raises:
        FileNotFoundError: no such file, a dangling symbolic link, or a directory.
        CheckpointError: the file is not a regular file (a FIFO, a device, a symbolic-link
            loop), is not a readable state dict, carries objects that are not tensors (such
            as a whole pickled model, or code), holds NaN or infinite values (the tensors
            are named), declares more bytes than plausible (a zip that would inflate to
            many times its size, or more than ``model`` needs: refused before inflating),
            changed while being read, or its digest differs from ``sha256``.

    Example:
        >>> import tempfile, torch
        >>> from tp3nets import ConvNet2
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save(ConvNet2().state_dict(), f"{d}/net.pt")
        ...     sorted(load_state_dict(f"{d}/net.pt"))[:2]
        ['classifier.1.bias', 'classifier.1.weight']
    """
    p = Path(path).expanduser()
    source = repr(str(p))
    location = torch.device(device) if device is not None else torch.device("cpu")
    try:
        data, kind = read_serialized(p, model=model, sha256=sha256)
    except CheckpointError:
        raise
    except ValueError as exc:  # not a regular file, digest, too large, changed while read
        raise CheckpointError(str(exc)) from None
    if kind == "unknown":
        what = "a safetensors file" if p.suffix == ".safetensors" else (
            "a PyTorch (torch.save) or safetensors file"
        )
        raise CheckpointError(f"{source} is not {what}: its header is not one of theirs")
    raw: Any
    if kind == "safetensors":
        raw = load_safetensors(data, source, location)
    else:
        raw = load_torch(
            data, source, location, model=model,
            unreadable=(
                f"{source} is not a safe, readable state dict (tp3nets loads tensors only and "
                f"never unpickles other objects; if it holds a whole pickled model, re-save "
                f"model.state_dict() from the code that made it)"
            ),
        )
    if isinstance(raw, Mapping) and not any(isinstance(v, Tensor) for v in raw.values()):
        for key in _NESTED_KEYS:
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping) or not raw:
        raise CheckpointError(f"{source} does not hold a state dict (a mapping of tensors)")
    bad = [k for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{source} holds entries that are not tensors: {', '.join(map(str, bad[:5]))}"
        )
    _check_finite(raw, source)
    state = _unwrapped_keys(raw)
    if model is not None:
        state = _fit_keys(model, state, source)
        _check_dtypes(model, state, source)
    return state


def _own_keys(model: nn.Module, state: Mapping[str, Tensor]) -> set[str]:
    upgrade = getattr(model, "_upgrade_keys", None)
    return set(upgrade(state) if callable(upgrade) else state)


def _fit_keys(model: nn.Module, state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """``state`` with one common key prefix removed, if that is what makes its keys those
    of ``model`` (Lightning's attribute prefix such as ``model.``, a wrapper's ``net.``);
    otherwise ``state`` unchanged. A :class:`UserWarning` names the prefix removed."""
    own = set(model.state_dict())
    if not state or _own_keys(model, state) == own:
        return state
    first, last = min(state), max(state)  # the common prefix of all keys is theirs
    size = min(len(first), len(last))
    size = next((i for i in range(size) if first[i] != last[i]), size)
    common = first[:size]
    dots = [i + 1 for i, ch in enumerate(common) if ch == "."]
    for end in dots:  # the shortest prefix that fits wins
        prefix = common[:end]
        stripped = {k[end:]: v for k, v in state.items()}
        if _own_keys(model, stripped) == own:
            _warn.warn(
                f"{source}: removed the prefix {prefix!r} that every key carries, so that "
                f"its keys fit {type(model).__name__}", once=("prefix", source, prefix)
            )
            return stripped
    return state


def _check_dtypes(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Refuse a tensor of another kind than the model's: integer, bool or complex values
    where the model holds floating-point ones (a cast would load them silently)."""
    own = model.state_dict()
    bad = [
        f"{k} ({v.dtype})"
        for k, v in state.items()
        if k in own
        and isinstance(own[k], Tensor)
        and own[k].is_floating_point()
        and not v.is_floating_point()
    ]
    if bad:
        raise CheckpointError(
            f"{source} holds tensors that are not floating-point where "
            f"{type(model).__name__} has floating-point ones: {_listed(bad, 5)}"
        )


def _listed(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f" … ({len(items)} in all)" if len(items) > limit else "")


def load_weights_into(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str = "checkpoint"
) -> None:
    """Load ``state_dict`` into ``model`` strictly, with an error that lists what differs.

    When every key carries one common prefix whose removal makes the keys those of
    ``model`` (a Lightning checkpoint's ``model.``, a wrapper's ``net.``), it is removed
    and a :class:`UserWarning` names it; any other difference is refused.

    Raises:
        CheckpointError: missing keys, unexpected keys or shape mismatches, each listed;
            a tensor that is not floating-point where the model's is (int64, bool, uint8,
            complex), or one holding NaN or infinity, named.

    Example:
        >>> from tp3nets import ConvNet2, ConvNet3
        >>> try:
        ...     load_weights_into(ConvNet2(), ConvNet3().state_dict(), source="net.pt")
        ... except CheckpointError as exc:
        ...     print(exc)
        net.pt does not fit ConvNet2: ...
    """
    model.load_state_dict(fitted_state(model, state_dict, source=source), strict=True)


def fitted_state(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """``state_dict`` checked against ``model`` and keyed as it expects, loading nothing:
    what :func:`load_weights_into` loads, for a check before anything is loaded.

    Raises:
        CheckpointError: as :func:`load_weights_into`.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"{source} does not hold a state dict (a mapping of tensors), but a "
            f"{type(state_dict).__name__}"
        )
    bad = [k for k, v in state_dict.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{source} holds entries that are not tensors: {', '.join(map(str, bad[:5]))}"
        )
    _check_finite(state_dict, source)
    state_dict = _fit_keys(model, dict(state_dict), source)
    upgrade = getattr(model, "_upgrade_keys", None)  # older layouts of the same model
    if callable(upgrade):
        state_dict = upgrade(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listed(unexpected)}")
        if wrong:
            shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]
            parts.append("shape mismatches (file vs model): " + _listed(shapes))
        head = getattr(model, "_head_path", "")
        hint = ""
        weight = f"{head}.weight"
        if head and wrong and not missing and not unexpected and all(
            k in (weight, f"{head}.bias") for k in wrong
        ) and weight in own and state_dict[weight].shape[1:] == own[weight].shape[1:]:
            # Only the number of classes differs (not the head's input width).
            hint = (
                f" (only the classifier head differs: the file has "
                f"{state_dict[head + '.weight'].shape[0]} classes; build the model with "
                f"num_classes={state_dict[head + '.weight'].shape[0]}, then call "
                f"reset_classifier for a new task)"
            )
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: " + "; ".join(parts) + hint
        )
    _check_dtypes(model, state_dict, source)
    return dict(state_dict)
