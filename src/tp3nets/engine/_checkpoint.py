"""Full training checkpoints: written atomically, read without unpickling code."""

from __future__ import annotations

import contextlib
import io
import os
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from .._io._atomic import write_atomically
from .._io._serialization import first_line as _first_line
from .._io._serialization import load_torch, read_serialized
from .._io._serialization import uncompiled_key as _uncompiled
from ..weights import CheckpointError, load_weights_into
from ..weights._api import fitted_state
from . import _distributed as dist_utils
from . import _state_checks as checks
from ._devices import bare_module
from ._history import History

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_checkpoint",
    "check_resumable",
    "load_checkpoint",
    "make_checkpoint",
    "restore_callbacks",
    "restore_checkpoint",
    "rng_states",
    "save_checkpoint",
]

#: The ``format`` tag of every full training checkpoint tp3nets writes.
CHECKPOINT_FORMAT: Final = "tp3nets.checkpoint/1"


def rng_states() -> dict[str, Any]:
    """This process's RNG states: Python, NumPy, torch and CUDA."""
    version, internal, _ = random.getstate()
    rng: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [*internal, version],
    }
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch's usual installs
        pass
    else:
        _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
        rng["numpy"] = {
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _own_rng_states(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """This rank's RNG states: its own entry of a torchrun checkpoint's ``rng_ranks``
    when the world size is the same, else the saving process's ``rng``."""
    ranks = ckpt.get("rng_ranks")
    if isinstance(ranks, list) and dist_utils.is_distributed() and (
        len(ranks) == dist_utils.world_size()
    ):
        own = ranks[dist_utils.rank()]
        if isinstance(own, dict):
            return own
    rng = ckpt.get("rng")
    return rng if isinstance(rng, dict) else {}


def _set_rng_states(rng: dict[str, Any]) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"].cpu())
    if "python" in rng:
        values = rng["python"]
        random.setstate((values[-1], tuple(values[:-1]), None))
    if "numpy" in rng:
        try:
            import numpy as np
        except ImportError:  # pragma: no cover
            pass
        else:
            st = rng["numpy"]
            np.random.set_state(
                ("MT19937", st["keys"].numpy().astype(np.uint32), st["pos"], st["has_gauss"],
                 st["gauss"])
            )
    if "cuda" in rng and torch.cuda.is_available():
        states = [s.cpu() for s in rng["cuda"]][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def make_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    precision: Any,
    epoch: int,
    history: History | None,
    *,
    callbacks: Sequence[Any] = (),
    stop_training: bool = False,
    rank_rng_states: Sequence[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to continue a run exactly.

    ``rank_rng_states``: under torchrun, every rank's :func:`rng_states`, in rank order;
    each rank of a resumed run gets its own back. ``metadata``: the run's own plain data
    (:attr:`~tp3nets.engine.FitState.metadata`). ``precision``: the run's precision
    object, whose ``state_dict()`` (its gradient scaler's state) goes in the ``scaler``
    field (``None`` for a precision without one); a :class:`torch.amp.GradScaler` given
    itself, or ``None``, is taken as before.

    The weights (keyed as the bare module expects: no ``module.`` or ``_orig_mod.``
    prefix), the optimizer, scheduler and gradient-scaler states, the epoch, the history,
    the state of each callback that has ``state_dict()``, whether a callback asked to stop,
    and the RNG states of Python, NumPy, torch and CUDA.
    """
    bare = bare_module(model)
    return {
        "format": CHECKPOINT_FORMAT,
        "model_class": type(bare).__name__,
        "model": {_uncompiled(k): v for k, v in bare.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "optimizer_class": type(optimizer).__name__ if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_class": type(scheduler).__name__ if scheduler is not None else None,
        "scaler": _precision_state(precision) or None,
        "epoch": int(epoch),
        "stop_training": bool(stop_training),
        "history": history.to_dict() if history is not None else None,
        "callbacks": [
            {"class": type(cb).__name__, "state": _plain(cb.state_dict())}
            if callable(getattr(cb, "state_dict", None)) and not isinstance(cb, nn.Module)
            else None
            for cb in callbacks
        ],
        "rng": rng_states(),
        "rng_ranks": list(rank_rng_states) if rank_rng_states is not None else None,
        "metadata": _plain(dict(metadata or {})),
        "torch_version": str(torch.__version__),
    }


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays (common in callback states) turned into
    Python numbers and tensors, which ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.generic):
            return value.item()
        if isinstance(value, numpy.ndarray) and value.dtype.kind in "biufc":
            return torch.from_numpy(value.copy())
    return value


def _precision_state(precision: Any) -> dict[str, Any]:
    """What a checkpoint keeps of the run's precision (its gradient scaler's state), ``{}``
    for none. The file format holds it in the ``scaler`` field, ``None`` when empty, as
    it did when the scaler was passed beside the precision."""
    if precision is None:
        return {}
    state: dict[str, Any] = precision.state_dict()
    return state


class CheckedCheckpoint(Mapping[str, Any]):
    """A checkpoint read once and checked once (:func:`load_checkpoint` runs
    :func:`check_checkpoint`), with the name its errors give it.

    What ``tp3nets train --resume`` reads and hands on to :func:`~tp3nets.fit` (as
    ``resume_from``) and :func:`check_resumable`: they take it as checked, so the file is
    read once and its structure checked once a command. A read-only view of the dict;
    :meth:`without` drops optional fields.
    """

    __slots__ = ("_data", "source")

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self._data, self.source = data, source

    @classmethod
    def read(
        cls, path: str | os.PathLike[str], *, source: str | None = None,
        device: torch.device | str | None = None,
    ) -> CheckedCheckpoint:
        """:func:`load_checkpoint`'s checkpoint; errors later name it ``source``
        (default the path, quoted)."""
        return cls(load_checkpoint(path, device=device), source or repr(str(path)))

    def without(self, *fields: str) -> CheckedCheckpoint:
        """The same checkpoint without ``fields``, which must be optional ones (dropping
        one leaves a checked checkpoint valid)."""
        required = {"format", "model", "epoch"} & set(fields)
        if required:
            raise ValueError(f"{', '.join(sorted(required))} cannot be dropped from a checkpoint")
        return CheckedCheckpoint(
            {k: v for k, v in self._data.items() if k not in fields}, self.source
        )

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _structure_checked(ckpt: Mapping[str, Any], source: str) -> None:
    """:func:`check_checkpoint`, unless ``ckpt`` was checked when it was read."""
    if not isinstance(ckpt, CheckedCheckpoint):
        check_checkpoint(ckpt, source=source)


def _check_callback_states(checkpoint: dict[str, Any]) -> None:
    """Refuse callback states that ``resume_from``'s safe load would refuse, naming them.

    Only the callbacks' states are the user's own code; the rest of a checkpoint is
    torch's and tp3nets' state.
    """
    bad: list[str] = []
    for entry in checkpoint.get("callbacks") or []:
        if entry is None:
            continue
        buffer = io.BytesIO()
        try:
            torch.save(entry["state"], buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
        except Exception as exc:
            bad.append(f"the state of callback {entry['class']} ({_first_line(exc)})")
    if bad:
        raise CheckpointError(
            "this checkpoint could not be read back by resume_from, which loads tensors, "
            f"numbers, strings, lists and dicts only: {'; '.join(bad)}. Keep the "
            "callback's state_dict() to those types"
        )


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically: a temporary file, fsync, then rename.

    A process killed while saving leaves the previous file at ``path`` whole. Callback
    states are read back the way :func:`load_checkpoint` reads them before anything is
    written, so that one a resumed run could not read is named now, not then.

    Raises:
        CheckpointError: a callback's state holds objects that a safe load refuses (such
            as an object of its own class); the message names the callback.
    """
    _check_callback_states(checkpoint)
    # Serialise in memory first: torch's zip writer turns a write error (a full disk)
    # into an opaque RuntimeError, while a plain write lets the OSError through.
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return write_atomically(buffer.getbuffer(), path)


def load_checkpoint(
    path: str | os.PathLike[str], *, device: torch.device | str | None = None
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing pickled code.

    Raises:
        FileNotFoundError: no such file (or a directory).
        NotRegularFileError: a FIFO, a device, a socket or a symbolic-link loop (a
            ``ValueError``).
        CheckpointError: not a tp3nets checkpoint, unreadable, or malformed.
    """
    p = Path(path)
    # Read once into memory (a FIFO or a device is refused, not read; nothing is
    # memory-mapped): the bytes sniffed, size-checked and parsed are the same.
    data, kind = read_serialized(p)
    if kind == "safetensors":
        raise CheckpointError(
            f"{str(p)!r} is not a tp3nets training checkpoint but a safetensors weights file "
            "(for bare weights use tp3nets.load_state_dict)", kind="safetensors"
        )
    if kind != "torch":
        raise CheckpointError(
            f"{str(p)!r} is not a PyTorch file (torch.save), so not a tp3nets training "
            "checkpoint: its header is not one of theirs", kind="other"
        )
    ckpt = load_torch(data, repr(str(p)), device or "cpu",
                      unreadable=f"{str(p)!r} is not a readable tp3nets checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(p)!r} is not a tp3nets training checkpoint (for bare weights use "
            "tp3nets.load_state_dict)", kind="weights"
        )
    check_checkpoint(ckpt, source=repr(str(p)))
    return ckpt


def check_checkpoint(ckpt: Mapping[str, Any], *, source: str = "the checkpoint") -> None:
    """Refuse a checkpoint whose contents do not have the structure tp3nets writes.

    Every field a resumed run reads is checked here, in one place, before anything is
    restored: the error names the file (``source``) and the field.

    Raises:
        CheckpointError: a missing or wrongly typed field (no ``model`` entry, an
            ``epoch`` that is not a whole number >= 0, a history that is not a dict of
            rows, ...).

    Example:
        >>> try:
        ...     check_checkpoint({"format": CHECKPOINT_FORMAT, "model": {}, "epoch": -3},
        ...                      source="run.pt")
        ... except CheckpointError as exc:
        ...     print(exc)
        run.pt: field 'epoch' must be a whole number >= 0, got -3
    """

    def bad(field: str, expected: str) -> CheckpointError:
        got = ckpt.get(field, "nothing")
        shown = repr(got) if isinstance(got, (int, float, str, bool)) else type(got).__name__
        return CheckpointError(f"{source}: field {field!r} must be {expected}, got {shown}")

    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source}: a checkpoint is a dict, got {type(ckpt).__name__}")
    model = ckpt.get("model")
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise bad("model", "the model's state dict (names -> tensors)")
    epoch = ckpt.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise bad("epoch", "a whole number >= 0")
    for field in ("model_class", "optimizer_class", "scheduler_class"):
        if ckpt.get(field) is not None and not isinstance(ckpt[field], str):
            raise bad(field, "a class name")
    for field in ("optimizer", "scheduler", "scaler", "rng", "metadata"):
        if ckpt.get(field) is not None and not isinstance(ckpt[field], dict):
            raise bad(field, "a dict or None")
    optimizer = ckpt.get("optimizer")
    if optimizer is not None and not (
        isinstance(optimizer.get("state"), dict) and isinstance(optimizer.get("param_groups"), list)
    ):
        raise bad("optimizer", "an optimizer state dict (state, param_groups)")
    if not isinstance(ckpt.get("stop_training", False), bool):
        raise bad("stop_training", "True or False")
    _check_history(ckpt, bad)
    callbacks = ckpt.get("callbacks")
    if callbacks is not None and not (
        isinstance(callbacks, list) and all(
            entry is None or (isinstance(entry, dict) and isinstance(entry.get("class"), str)
                              and "state" in entry)
            for entry in callbacks
        )
    ):
        raise bad("callbacks", "a list of {'class', 'state'} entries")
    ranks = ckpt.get("rng_ranks")
    if ranks is not None and not isinstance(ranks, list):
        raise bad("rng_ranks", "a list of RNG states, one a rank, or None")
    with _fields_of(source):
        if ckpt.get("rng") is not None:
            checks.rng_state(ckpt["rng"], "rng")
        for r, rng in enumerate(ranks or []):
            checks.rng_state(rng, f"rng_ranks[{r}]")


@contextlib.contextmanager
def _fields_of(source: str) -> Iterator[None]:
    """A saved state that does not fit, as a CheckpointError naming the file and field."""
    try:
        yield
    except checks.StateMismatchError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def _check_history(ckpt: Mapping[str, Any], bad: Any) -> None:
    history = ckpt.get("history")
    if history is None:
        return
    rows = history.get("epochs", []) if isinstance(history, dict) else None
    if not isinstance(rows, list) or not all(
        isinstance(row, dict) and all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in row.items()
        )
        for row in rows
    ):
        raise bad("history", "a dict with 'epochs': a list of rows {figure: number}")


def restore_checkpoint(
    ckpt: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    precision: Any,
    *,
    source: str,
    callbacks: Sequence[Any] = (),
) -> tuple[int, History]:
    """Load a checkpoint's states into the run's objects; return ``(epoch, history)``.

    Everything is checked first (:func:`check_resumable`, the callbacks' states
    included), so a checkpoint that does not fit changes nothing. The callbacks' states
    are given back later, by :func:`restore_callbacks`, after their ``on_fit_start``.
    ``precision`` is the run's precision object: the checkpoint's ``scaler`` field goes
    to its ``load_state_dict()`` when it has a state (a gradient scaler); a
    :class:`torch.amp.GradScaler` given itself is taken as before.

    Raises:
        CheckpointError: the checkpoint was saved from another model class, with another
            optimizer or scheduler class, or without the scheduler given; its weights,
            optimizer, scheduler, scaler or callback states do not fit.
    """
    check_resumable(ckpt, model, optimizer, scheduler, source=source, precision=precision,
                    callbacks=callbacks)
    bare = bare_module(model)
    load_weights_into(bare, ckpt["model"], source=source)
    if ckpt.get("optimizer") is not None:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"{source}: the optimizer state does not fit the {type(optimizer).__name__} "
                f"given: {exc}"
            ) from None
    if scheduler is not None and ckpt.get("scheduler") is not None:
        try:
            scheduler.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{source}: the scheduler state does not fit the {type(scheduler).__name__} "
                f"given: {exc}"
            ) from None
    if ckpt.get("scaler") is not None and _precision_state(precision):
        precision.load_state_dict(ckpt["scaler"])
    _set_rng_states(_own_rng_states(ckpt))
    history = History.from_dict(ckpt["history"] or {})
    return int(ckpt["epoch"]), history


def check_resumable(
    ckpt: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    *,
    source: str = "the checkpoint",
    precision: Any = None,
    callbacks: Sequence[Any] = (),
    scaler: Any = None,
) -> None:
    """Refuse to resume ``ckpt`` into a run it does not belong to, before loading anything.

    The checkpoint's structure (:func:`check_checkpoint`), its model class, and its
    optimizer and scheduler classes must be the run's: another optimizer's state would
    load and then fail at the first step (its settings lack this one's keys), another
    scheduler's would silently give another schedule. ``optimizer=None`` checks the model
    alone (for a check before the optimizer is built).

    Then every state is checked against what it will be loaded into, so that none
    fails inside torch or at the first step: the optimizer's groups and per-parameter
    state (shapes, kinds, steps) against the parameters, the scheduler's against the
    scheduler's, the gradient scaler's against the state of ``precision`` (the run's
    precision object, or a :class:`torch.amp.GradScaler`), and each callback's through
    its ``check_state_dict(state, model)`` where it has one. ``scaler=``, what 0.1 took
    for the gradient scaler, is still taken in its place.

    Raises:
        CheckpointError: naming ``source``, the field and what differs.
        ValueError: both ``precision`` and ``scaler`` given.
    """
    if scaler is not None:
        if precision is not None:
            raise ValueError("check_resumable expects precision or scaler (0.1's name for "
                             "it), not both")
        precision = scaler
    _structure_checked(ckpt, source)
    bare = bare_module(model)
    if ckpt.get("model_class") != type(bare).__name__:
        raise CheckpointError(
            f"{source} was saved from a {ckpt.get('model_class')}, not a {type(bare).__name__}"
        )
    fitted_state(bare, ckpt["model"], source=source)  # loads nothing
    if optimizer is None:
        return
    saved = ckpt.get("optimizer_class")  # absent from checkpoints of tp3nets <= 0.1.0
    if saved is not None and saved != type(optimizer).__name__:
        raise CheckpointError(
            f"{source} was saved with the {saved} optimizer, not the "
            f"{type(optimizer).__name__} given; resume with the same optimizer"
        )
    saved = ckpt.get("scheduler_class")
    if scheduler is not None and "scheduler" in ckpt and ckpt["scheduler"] is None:
        raise CheckpointError(
            f"{source} was saved without a learning-rate scheduler, but "
            f"{type(scheduler).__name__} is given; resume without one"
        )
    if scheduler is not None and saved is not None and saved != type(scheduler).__name__:
        raise CheckpointError(
            f"{source} was saved with the {saved} scheduler, not the "
            f"{type(scheduler).__name__} given; resume with the same scheduler"
        )
    with _fields_of(source):
        if ckpt.get("optimizer") is not None:
            checks.optimizer_state(ckpt["optimizer"], optimizer)
        if scheduler is not None and ckpt.get("scheduler") is not None:
            checks.like(ckpt["scheduler"], scheduler.state_dict(), "scheduler")
        live = _precision_state(precision)
        if live and ckpt.get("scaler") is not None:
            checks.scaler_state(ckpt["scaler"], live)
    _check_callbacks_fit(ckpt, callbacks, bare, source)


def _callback_entries(
    ckpt: Mapping[str, Any], callbacks: Sequence[Any]
) -> Iterator[tuple[int, Any, dict[str, Any]]]:
    """``(index, callback, saved entry)`` for each callback whose state is restored:
    matched by position and class name."""
    for i, (cb, entry) in enumerate(zip(callbacks, ckpt.get("callbacks") or [], strict=False)):
        if entry is not None and entry.get("class") == type(cb).__name__:
            yield i, cb, entry


def _callback_error(source: str, i: int, entry: dict[str, Any], exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{source}: field 'callbacks[{i}]' (the state of {entry['class']}) does not fit: "
        f"{_first_line(exc)}"
    )


def _check_callbacks_fit(
    ckpt: Mapping[str, Any], callbacks: Sequence[Any], model: nn.Module, source: str
) -> None:
    for i, cb, entry in _callback_entries(ckpt, callbacks):
        check = getattr(cb, "check_state_dict", None)
        if callable(check):
            try:
                check(entry["state"], model)
            except (ValueError, TypeError, KeyError) as exc:
                raise _callback_error(source, i, entry, exc) from None


def restore_callbacks(
    ckpt: Mapping[str, Any], callbacks: Sequence[Any], *, source: str = "the checkpoint"
) -> None:
    """Give each callback back its saved state (matched by position and class name).

    Raises:
        CheckpointError: a callback's ``load_state_dict`` refused its state (a
            ``ValueError``, ``TypeError`` or ``KeyError``), naming the file and the field.
    """
    for i, cb, entry in _callback_entries(ckpt, callbacks):
        load = getattr(cb, "load_state_dict", None)
        if callable(load):
            try:
                load(entry["state"])
            except (ValueError, TypeError, KeyError) as exc:
                raise _callback_error(source, i, entry, exc) from None
