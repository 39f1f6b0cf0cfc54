"""The ``tp3nets`` command: list, inspect, train, evaluate, run and export the models.

A thin layer over the library: every subcommand calls the public API (the registry,
:func:`~tp3nets.fit`, :func:`~tp3nets.evaluate`, :mod:`tp3nets.data`, :mod:`tp3nets.deploy`).
Mistakes in what the user gave (an unknown model, a missing folder or file, an unreadable
image, a bad option) print one ``tp3nets: error: …`` line on stderr and exit with status 2;
anything else is a bug and shows its traceback (status 1).

Example:
    >>> main(["list"])  # doctest: +ELLIPSIS
    MODEL ...
    0
"""

from __future__ import annotations

import linecache
import os
import sys
from pathlib import Path
from typing import Final

from ..deploy import BackendError as _BackendError
from ..deploy import ExportError as _ExportError
from ..engine import reuse_freed_memory as _reuse_freed_memory
from ..weights import CheckpointError as _CheckpointError
from ._common import _COMMANDS, PROG, REUSE_MEMORY_ENV, UsageError, _one_line
from ._parser import build_parser

__all__ = ["PROG", "REUSE_MEMORY_ENV", "UsageError", "build_parser", "main"]


_PACKAGE: Final = str(Path(__file__).resolve().parent.parent)
#: Errors that are always the user's (a file, the environment, the data), wherever raised.
_ALWAYS_USER: Final = (UsageError, _CheckpointError, OSError, FloatingPointError)


def _is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports a mistake in what the user gave, rather than a bug.

    Usage errors, checkpoint errors, file and system errors (a missing file, a full disk)
    and a diverging run are the user's. A ``ValueError`` or ``TypeError`` is the user's
    when tp3nets raised it itself, after checking what it was given: its traceback ends on
    a ``raise`` statement in tp3nets' own code. Anything else (an error inside torch, a
    ``TypeError`` of tp3nets' own arithmetic) is a bug and keeps its traceback.
    """
    if isinstance(exc, _ALWAYS_USER):
        return True
    if not isinstance(exc, (ValueError, TypeError)):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = str(Path(tb.tb_frame.f_code.co_filename).resolve())
    if not filename.startswith(_PACKAGE):
        return False
    line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
    return line.startswith("raise ")


def _tune_malloc() -> None:
    """Keep the memory freed by tensors (:func:`~tp3nets.engine.reuse_freed_memory`).

    Skipped when ``TP3NETS_REUSE_FREED_MEMORY=0``, or when the environment already tells
    glibc how to allocate (``MALLOC_*`` variables, ``GLIBC_TUNABLES``): that choice is the
    user's.
    """
    env = os.environ
    if env.get(REUSE_MEMORY_ENV, "1").strip() == "0" or "GLIBC_TUNABLES" in env or any(
        name.startswith("MALLOC_") for name in env
    ):
        return
    _reuse_freed_memory()


def main(argv: list[str] | None = None) -> int:
    """Run the ``tp3nets`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on a usage error, 1 when an export fails its check.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse's --help, --version and errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        print(f"{PROG}: error: a command is required: {', '.join(_COMMANDS)} "
              f"(see '{PROG} --help')", file=sys.stderr)
        return 2
    _tune_malloc()
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (tp3nets list | head): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (_ExportError, _BackendError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
