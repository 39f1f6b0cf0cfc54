"""Warnings that point at the user's code, said once a run.

Every warning tp3nets gives goes through :func:`warn`: its ``stacklevel`` is counted at
run time to the first frame outside tp3nets (and outside torch and :mod:`contextlib`,
which call tp3nets' hooks), so the warning names the user's call site, however deep in
the engine it was raised. Inside :func:`once_per_run` (which :func:`~tp3nets.fit` opens
for its whole run) a warning given with a ``once`` key is said the first time only: a
figure that is NaN every epoch is one warning, not one an epoch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Hashable, Iterator
from contextvars import ContextVar
from typing import Final

import torch

_SKIPPED: Final = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # tp3nets
    "<frozen importlib",  # an import that a deprecated path answers
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
    os.path.abspath(contextlib.__file__),
)

#: The ``once`` keys said so far in the current run; ``None`` outside a run.
_said: ContextVar[set[Hashable] | None] = ContextVar("tp3nets_warnings_said", default=None)


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the caller that names the first
    frame outside tp3nets, torch, contextlib and the import machinery (1 would name the
    caller itself)."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_SKIPPED):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type[Warning] = UserWarning, *,
         once: Hashable | None = None) -> None:
    """Warn at the user's call site; with ``once``, at most once a run for that key."""
    said = _said.get()
    if once is not None and said is not None:
        if once in said:
            return
        said.add(once)
    warnings.warn(message, category, stacklevel=user_stacklevel())


@contextlib.contextmanager
def once_per_run() -> Iterator[None]:
    """A run: inside it, each ``once`` key of :func:`warn` is said a single time."""
    token = _said.set(set())
    try:
        yield
    finally:
        _said.reset(token)
