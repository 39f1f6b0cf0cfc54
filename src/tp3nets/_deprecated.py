"""The module paths of tp3nets 0.1's flat layout, kept for one release as warning aliases.

0.1 had 31 modules at the top level; they now live in :mod:`tp3nets.engine`,
:mod:`tp3nets.engine.callbacks`, :mod:`tp3nets.data`, :mod:`tp3nets.deploy` and private
modules. An old path still imports (``import tp3nets.training``,
``from tp3nets.checkpoint import load_checkpoint``, a pickle that names
``tp3nets.models.convnet4.ConvNet4``): a finder on :data:`sys.meta_path` answers it with an
alias module, and each name taken from the alias gives one :class:`DeprecationWarning` that
names the name's one home. The aliases go in the release after next.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any, Final

from ._util import _warn

#: Old module path -> the module that holds its code now.
MOVED: Final[dict[str, str]] = {
    "tp3nets._atomic": "tp3nets._io._atomic",
    "tp3nets._batches": "tp3nets.engine._batches",
    "tp3nets._checks": "tp3nets._util._checks",
    "tp3nets._distributed": "tp3nets.engine._distributed",
    "tp3nets._files": "tp3nets._io._files",
    "tp3nets._locate": "tp3nets.data._locate",
    "tp3nets._malloc": "tp3nets.engine._malloc",
    "tp3nets._shortcuts": "tp3nets.engine._shortcuts",
    "tp3nets._state_checks": "tp3nets.engine._state_checks",
    "tp3nets._warn": "tp3nets._util._warn",
    "tp3nets.augment": "tp3nets.data._augment",
    "tp3nets.callbacks": "tp3nets.engine.callbacks._base",
    "tp3nets.checkpoint": "tp3nets.engine._checkpoint",
    "tp3nets.devices": "tp3nets.engine._devices",
    "tp3nets.ema": "tp3nets.engine.callbacks._ema",
    "tp3nets.epoch": "tp3nets.engine._epoch",
    "tp3nets.export": "tp3nets.deploy._export",
    "tp3nets.history": "tp3nets.engine._history",
    "tp3nets.images": "tp3nets.data._images",
    "tp3nets.inference": "tp3nets.engine._inference",
    "tp3nets.layers": "tp3nets.models.layers",
    "tp3nets.loggers": "tp3nets.engine.callbacks._loggers",
    "tp3nets.metrics": "tp3nets.engine._metrics",
    "tp3nets.models._fold": "tp3nets.deploy._fold",
    "tp3nets.models.convnet2": "tp3nets.models._convnet2",
    "tp3nets.models.convnet3": "tp3nets.models._convnet3",
    "tp3nets.models.convnet4": "tp3nets.models._convnet4",
    "tp3nets.models.logistic": "tp3nets.models._logistic",
    "tp3nets.models.quantization.convnet2": "tp3nets.models.quantization._convnet2",
    "tp3nets.models.quantization.convnet3": "tp3nets.models.quantization._convnet3",
    "tp3nets.models.quantization.convnet4": "tp3nets.models.quantization._convnet4",
    "tp3nets.optim": "tp3nets.engine._optim",
    "tp3nets.precision": "tp3nets.engine._precision",
    "tp3nets.runtime": "tp3nets.deploy._runtime",
    "tp3nets.samples": "tp3nets.data.samples",
    "tp3nets.seeding": "tp3nets.engine._seeding",
    "tp3nets.state": "tp3nets.engine._state",
    "tp3nets.training": "tp3nets.engine._training",
    "tp3nets.transforms": "tp3nets.data._transforms",
}

#: The public homes, searched in this order for where a name taken from an alias lives now.
HOMES: Final = (
    "tp3nets.engine",
    "tp3nets.engine.callbacks",
    "tp3nets.data",
    "tp3nets.data.samples",
    "tp3nets.deploy",
    "tp3nets.models",
    "tp3nets.models.layers",
    "tp3nets.models.quantization",
    "tp3nets.weights",
    "tp3nets.calibration",
    "tp3nets.reading",
)

#: The release that removes the aliases.
REMOVED_IN: Final = "0.3"


def home_of(value: object, name: str) -> str | None:
    """The public module whose ``__all__`` lists ``name`` as ``value``, if any."""
    for home in HOMES:
        module = importlib.import_module(home)
        if name in getattr(module, "__all__", ()) and getattr(module, name) is value:
            return home
    return None


_MISSING: Final = object()


def _from_homes(name: str) -> object:
    """``name`` from the first public home that lists it, or :data:`_MISSING`."""
    for home in HOMES:
        module = importlib.import_module(home)
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    return _MISSING


class _Alias(types.ModuleType):
    """An old module path: its names come from the module that holds them now, with a
    :class:`DeprecationWarning` that names their home."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old)
        self.__dict__["_tp3nets_target"] = new
        self.__doc__ = f"Deprecated alias of {new} (tp3nets 0.1's {old}); see its home."

    def __getattr__(self, name: str) -> Any:
        target: str = self.__dict__["_tp3nets_target"]
        if name.startswith("__"):
            raise AttributeError(name)
        module = importlib.import_module(target)
        try:
            value = getattr(module, name)
        except AttributeError:
            # A name the old module re-exported from elsewhere (tp3nets.callbacks.EMA).
            value = _from_homes(name)
        if value is _MISSING:
            raise AttributeError(
                f"module {self.__name__!r} (a deprecated alias of {target!r}) has no "
                f"attribute {name!r}"
            )
        home = home_of(value, name) if not name.startswith("_") else None
        where = f"import it from {home}" if home else f"its code is in {target}"
        _warn.warn(
            f"{self.__name__}.{name}: {self.__name__} is a deprecated alias since tp3nets "
            f"0.2 and goes in {REMOVED_IN}; {where}",
            DeprecationWarning,
        )
        return value

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self.__dict__["_tp3nets_target"]))


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _Alias(spec.name, MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Answers the old module paths of :data:`MOVED`, and nothing else."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader())


class _KeepsNames(types.ModuleType):
    """A package that never stores its deprecated submodule aliases as attributes.

    The import system sets ``tp3nets.models.convnet4`` to the module it has just
    imported; for an alias that would replace the builder ``tp3nets.models.convnet4``,
    and on ``tp3nets`` itself it would silence the warning of the next
    ``tp3nets.training``. The alias is reached through ``sys.modules`` instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not isinstance(value, _Alias):
            super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        alias = sys.modules.get(f"{self.__name__}.{name}")
        if isinstance(alias, _Alias):
            return alias
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def keep_names(module_name: str) -> None:
    """Guard the package ``module_name`` against its aliases (see :class:`_KeepsNames`)."""
    sys.modules[module_name].__class__ = _KeepsNames


def install() -> None:
    """Put the alias finder on :data:`sys.meta_path`, once."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())


def top_level_alias(name: str) -> types.ModuleType | None:
    """``tp3nets.<name>`` for an old top-level module (``tp3nets.training``), imported
    as its alias; ``None`` for any other name."""
    old = f"tp3nets.{name}"
    if old not in MOVED:
        return None
    _warn.warn(
        f"{old} is a deprecated alias since tp3nets 0.2 and goes in {REMOVED_IN}; "
        f"its names now live in {', '.join(_homes_for(old))}",
        DeprecationWarning,
    )
    return importlib.import_module(old)


def _homes_for(old: str) -> list[str]:
    new = MOVED[old]
    if not new.rpartition(".")[2].startswith("_"):
        return [new]  # a public module that moved whole (samples, layers)
    return [new.rpartition(".")[0]]  # the package whose private module holds the code
