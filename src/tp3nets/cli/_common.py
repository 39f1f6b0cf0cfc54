"""What the subcommands share: usage errors, option parsers, model and file lookups."""

from __future__ import annotations

import argparse
import difflib
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn

import torch
from torch import nn

PROG: Final = "tp3nets"
_COMMANDS: Final = ("list", "info", "train", "evaluate", "predict", "export", "demo")
# Set to 0 to leave glibc's malloc settings as they are; see _tune_malloc.
REUSE_MEMORY_ENV: Final = "TP3NETS_REUSE_FREED_MEMORY"
_EXPORT_SUFFIXES: Final = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript",
                           ".ts": "torchscript", ".torchscript": "torchscript"}


class UsageError(ValueError):
    """A mistake in the command line that argparse cannot see (a bad value, a bad file)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to find help, no usage dump.

    A command's options go anywhere among its positionals: ``predict convnet4 --json a.png``,
    ``predict convnet4 a.png --json`` and ``predict --json convnet4 a.png`` are the same
    command (see :meth:`parse_known_args`).
    """

    # True while parse_known_intermixed_args runs: argparse's own implementation before
    # Python 3.12.8 and 3.13.1 calls parse_known_args (twice), which must then parse as
    # argparse does, not start intermixed parsing again.
    _intermixing: bool = False

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """As argparse's, with the close names of a mistyped choice (any option's, or the
        command's), case aside: ``--precision BF16`` points at bf16."""
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(c) for c in choices]
        by_lower = {n.lower(): n for n in names}
        given = str(value).lower()
        close = [by_lower[given]] if given in by_lower else [
            by_lower[c] for c in difflib.get_close_matches(given, list(by_lower), n=2)]
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        if isinstance(action, argparse._SubParsersAction):
            raise argparse.ArgumentError(
                None, f"unknown command {value!r}{hint} (commands: {', '.join(names)})")
        raise argparse.ArgumentError(
            action, f"invalid choice: {value!r}{hint} (choose from {', '.join(names)})")

    def parse_known_args(
        self, args: Any = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        """As argparse's, except that a command's parser parses intermixed
        (:meth:`~argparse.ArgumentParser.parse_known_intermixed_args`): its options may come
        before, between or after its positionals.

        argparse alone matches a run of positionals at once: at ``predict convnet4 a.png
        --json b.png``, ``IMAGE...`` (``nargs="*"``) took ``a.png`` only and ``b.png`` was
        an unrecognized argument (and at ``predict convnet4 --json a.png``, on Python 3.11,
        ``IMAGE...`` was matched empty with ``NAME``). The top-level parser cannot parse
        intermixed (parse_known_intermixed_args refuses its subcommands), but argparse
        hands each command's arguments to that command's parser through this method,
        which can.
        """
        if self._intermixing or not self._intermixable():
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _intermixable(self) -> bool:
        """Whether intermixed parsing applies: not to a parser with subcommands (a
        ``PARSER`` positional) or one whose positional takes the rest (``REMAINDER``),
        which parse_known_intermixed_args refuses with a TypeError."""
        return not any(not a.option_strings and a.nargs in (argparse.PARSER, argparse.REMAINDER)
                       for a in self._actions)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """As argparse's, except that an unknown option of a subcommand is reported by
        that subcommand (its usage, its help, the close option names), not the top level."""
        parsed, extras = self.parse_known_args(args, namespace)
        if not extras:
            return parsed
        sub = self._subcommand(getattr(parsed, "command", None))
        if sub is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        options = [o for a in sub._actions for o in a.option_strings if o not in ("-h", "--help")]
        unknown = [e for e in extras if e.startswith("-")]
        close = difflib.get_close_matches(unknown[0].split("=")[0], options, n=1) \
            if unknown else []
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        sub.error(f"unrecognized arguments: {' '.join(extras)}{hint}")

    def _subcommand(self, name: str | None) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                chosen: argparse.ArgumentParser = action.choices[name]
                return chosen
        return None


# --------------------------------------------------------------------------------------
# shared helpers


def _device(value: str) -> torch.device:
    """The device of ``--device``: resolved by the library, limited to those the command
    line drives (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    from ..engine import resolve_device

    unknown = UsageError(f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps")
    try:
        device = resolve_device(value)
    except ValueError as exc:
        raise (unknown if str(exc).startswith("unknown device") else UsageError(exc)) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise unknown
    return device


def _data_dir(value: str | None) -> Path:
    from ..data import DATA_ENV, default_data_root

    folder = Path(value).expanduser() if value else default_data_root()
    if not folder.is_dir():
        how = "--data" if value else f"--data or {DATA_ENV}"
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"data folder {str(folder)!r} {what}; give the folder that holds "
            f"MNIST/raw/ with {how}"
        )
    return folder


def _load_model(name: str, weights: str | None) -> tuple[nn.Module, Any, str]:
    """Build model ``name`` with ``weights``: a member name, a file, or ``none``.

    A value with a path separator or a checkpoint suffix is a file (the builders' rule,
    :func:`~tp3nets._io._serialization.names_a_file`); otherwise a member name of the
    model's weights enum, or else an existing file of that name. A file is loaded by the
    builder, as ``builder(weights=path)`` in Python.

    Returns:
        The model, the weights member (or ``None``) and a description of the weights.
    """
    from .._io._serialization import names_a_file
    from ..models import get_model_builder, get_model_weights

    builder = get_model_builder(name)
    if weights is None or weights.lower() == "none":
        return builder(), None, "random initialisation"
    member = None
    if not names_a_file(weights):
        enum_cls = get_model_weights(name)
        try:
            member = enum_cls.verify(weights)
        except ValueError as exc:
            if not Path(weights).expanduser().exists():
                raise UsageError(
                    f"{exc} (or give the path of a .safetensors or .pt file)"
                ) from None
    if member is not None:
        return builder(weights=member), member, repr(member)
    path = Path(weights).expanduser()
    if path.is_dir() or not (path.exists() or path.is_symlink()):
        # A FIFO, a device or a link loop is named as such by load_state_dict.
        what = "is a directory" if path.is_dir() else "not found"
        raise FileNotFoundError(f"weights file {what}: {weights!r}")
    if path.suffix.lower() == ".onnx":
        raise UsageError(
            f"{weights!r} is an ONNX export, which tp3nets does not load back: give a "
            f".safetensors or .pt weights file (run ONNX files with onnxruntime)"
        )
    return builder(weights=path), None, str(path)


def _load_quantized(
    name: str, weights: str | None, device: torch.device
) -> tuple[nn.Module, Any, str]:
    """The int8 model of ``name`` with its bundled int8 weights (``--quantized``)."""
    from .._io._serialization import names_a_file
    from ..models import get_model_builder, get_model_weights, list_models

    key = get_model_builder(name).__name__
    if f"quantized_{key}" not in list_models(quantized=True):
        have = ", ".join(n.removeprefix("quantized_") for n in list_models(quantized=True))
        raise UsageError(
            f"{key} has no int8 weights (int8 does not pay for it; see the quantization "
            f"page); --quantized takes {have}"
        )
    if device.type != "cpu":
        raise UsageError(
            f"--quantized runs on the CPU (int8 kernels of the x86 backend), not {device}; "
            f"pass --device cpu"
        )
    enum_cls = get_model_weights(f"quantized_{key}")
    if weights is not None and names_a_file(weights):
        raise UsageError(
            f"--quantized loads the bundled int8 weights "
            f"({', '.join(m.name for m in enum_cls)}), not a file such as {weights!r}"
        )
    member = enum_cls.verify(weights if weights is not None else "DEFAULT")
    if member is None:
        raise UsageError("--quantized needs int8 weights: --weights DEFAULT or a member name")
    model = get_model_builder(f"quantized_{key}")(weights=member, quantize=True)
    return model, member, repr(member)


def _default_member(name: str) -> Any:
    from ..models import get_model_weights

    try:
        return get_model_weights(name).verify("DEFAULT")
    except ValueError:
        return None


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _input_shape(model: nn.Module, member: Any) -> tuple[int, ...]:
    if member is not None and "input_size" in member.meta:
        return tuple(int(s) for s in member.meta["input_size"])
    shape = getattr(model, "input_shape", None)
    return tuple(int(s) for s in shape) if isinstance(shape, tuple) else (1, 28, 28)


def _acc(meta: Any) -> float | None:
    try:
        return float(meta["metrics"]["MNIST"]["acc@1"])
    except (KeyError, TypeError, ValueError):
        return None


def _members(enum_cls: Any) -> list[tuple[Any, list[str]]]:
    """Each distinct member with its aliases (``DEFAULT``)."""
    out: list[tuple[Any, list[str]]] = []
    for alias, member in enum_cls.__members__.items():
        for seen, aliases in out:
            if seen is member:
                aliases.append(alias)
                break
        else:
            out.append((member, []))
    return out


def _json(obj: Any) -> str:
    """Strict JSON (no bare NaN or Infinity tokens): a non-finite number becomes null."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False,
                      default=lambda o: list(o) if isinstance(o, tuple) else str(o))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return text or type(exc).__name__


def _positive(kind: type[int] | type[float], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _check_output_file(option: str, path: Path) -> None:
    """Refuse, before any work, a file that cannot be written: a folder, a path under a
    file, or a place where no file can be created (tried with a temporary file)."""
    if path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a directory; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(
                    f"{option} {str(path)!r} cannot be written: {str(parent)!r} is a file, "
                    "not a folder"
                )
            try:
                with tempfile.TemporaryFile(dir=parent):
                    pass
            except OSError as exc:
                raise UsageError(
                    f"{option} {str(path)!r} cannot be written: no file can be created in "
                    f"{str(parent)!r} ({exc.strerror or exc})"
                ) from None
            return


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _probability_or_zero(text: str) -> float:
    """A probability in [0, 1]: ``--min-confidence 0`` answers every digit."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _decay(text: str) -> float:
    value = _non_negative_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a number in (0, 1), such as 0.999, got {text!r}")
    return value


def _count(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
