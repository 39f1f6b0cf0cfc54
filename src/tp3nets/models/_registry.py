"""The model registry: builders by name, their weight enums, and the shared builder logic."""

import difflib
import fnmatch
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from torch import nn

from .._io._serialization import names_a_file
from ..weights import WeightsEnum, load_state_dict, load_weights_into
from ._utils import ClassifierModel

__all__ = [
    "get_model",
    "get_model_builder",
    "get_model_weights",
    "get_weight",
    "list_models",
    "register_model",
]

M = TypeVar("M", bound=ClassifierModel)
F = TypeVar("F", bound=Callable[..., nn.Module])

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_WEIGHTS: dict[str, type[WeightsEnum]] = {}
_QUANTIZED: set[str] = set()


def register_model(
    name: str | None = None,
    *,
    weights: type[WeightsEnum] | None = None,
    quantized: bool = False,
) -> Callable[[F], F]:
    """Register a builder under ``name`` (its function name by default).

    Names are kept in lower case (lookups ignore case), so ``"MyNet"`` is reached as
    ``get_model("mynet")`` or ``get_model("MyNet")``. ``quantized=True`` files the builder
    with the int8 models (``list_models(quantized=True)``), as torchvision's
    ``quantized_resnet18``.

    Raises:
        ValueError: if the name is taken (in any case).
        TypeError: the name is not a non-empty string.
    """

    def wrap(fn: F) -> F:
        key = _key(name or fn.__name__)
        if key in _BUILDERS:
            raise ValueError(f"a model named {key!r} is already registered")
        _BUILDERS[key] = fn
        if quantized:
            _QUANTIZED.add(key)
        if weights is not None:
            _WEIGHTS[key] = weights
        return fn

    return wrap


def _key(name: object) -> str:
    """Model names are looked up, and registered, stripped and in lower case."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"a model name must be a non-empty string, got {name!r}")
    return name.strip().lower()


#: Short names that users type for the registered ones (``tp3nets info mlr``).
ALIASES: Final[dict[str, str]] = {
    "mlr": "multinomial_logistic_regression",
    "logistic": "multinomial_logistic_regression",
    "logreg": "multinomial_logistic_regression",
    "logistic_regression": "multinomial_logistic_regression",
    "logistic-regression": "multinomial_logistic_regression",
}


def _lookup(name: object) -> str:
    """The registered key for a name or one of its :data:`ALIASES`."""
    key = _key(name)
    return ALIASES.get(key, key)


def _unknown(name: str) -> ValueError:
    names = sorted(k for k in _BUILDERS if k not in _QUANTIZED)  # as list_models() shows
    query = name.strip().lower()
    close = [n for n in sorted(_BUILDERS) if len(query) >= 3 and query in n][:3] or (
        difflib.get_close_matches(query, names, n=3, cutoff=0.5)
        or difflib.get_close_matches(query, sorted(_QUANTIZED), n=3, cutoff=0.5)
    )
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown model {name!r}{hint} (available: {', '.join(names)})")


def list_models(
    module: types.ModuleType | None = None,
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    quantized: bool | None = None,
) -> list[str]:
    """The names of the registered models, sorted, filtered as torchvision's
    ``list_models`` filters them.

    Args:
        module: only the builders defined in this module or in the private modules of
            this package (``tp3nets.models`` has the float builders,
            ``tp3nets.models.quantization`` the int8 ones), as torchvision's ``module``.
        include: :mod:`fnmatch` patterns (``"convnet*"``), one or several: the names that
            match any of them. ``None`` or empty: every name.
        exclude: patterns of names to leave out, applied after ``include``.
        quantized: ``True`` keeps the int8 builders only, ``False`` the float ones only.
            ``None`` (the default): the float ones, or, with ``module``, every builder of
            that module.

    Patterns match regardless of case, as lookups do (names are kept in lower case).

    Raises:
        TypeError: ``module`` is not a module (a name given as a string is refused: give
            patterns as ``include=``), a pattern is not a string, or ``quantized`` is not a
            bool or None.

    Example:
        >>> list_models()
        ['convnet2', 'convnet3', 'convnet4', 'multinomial_logistic_regression']
        >>> list_models(quantized=True)
        ['quantized_convnet2', 'quantized_convnet3', 'quantized_convnet4']
        >>> list_models(include="convnet*", exclude=["*4"])
        ['convnet2', 'convnet3']
        >>> import tp3nets.models.quantization
        >>> list_models(tp3nets.models.quantization, include="*convnet4")
        ['quantized_convnet4']
    """
    if quantized is not None and not isinstance(quantized, bool):
        raise TypeError(f"list_models expects quantized to be a bool or None, got {quantized!r}")
    if module is not None and not isinstance(module, types.ModuleType):
        hint = (
            f"; to select names by pattern, pass include={module!r}"
            if isinstance(module, str) else ""
        )
        raise TypeError(
            f"list_models expects module to be a module such as tp3nets.models.quantization, "
            f"got {module!r}{hint}"
        )
    includes = _patterns("include", include)
    excludes = _patterns("exclude", exclude)
    # Without a module, the float builders unless asked otherwise; with one, all of its own.
    int8 = False if quantized is None and module is None else quantized
    names = [
        k for k, fn in _BUILDERS.items()
        if (int8 is None or (k in _QUANTIZED) == int8)
        and (module is None or _home(fn) == module.__name__)
    ]
    if includes:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in includes)]
    return sorted(n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in excludes))


def _home(builder: Callable[..., nn.Module]) -> str:
    """The module a builder lives in, a private module standing for its package:
    ``tp3nets.models._convnet4``'s builder lives in ``tp3nets.models``,
    ``tp3nets.models.quantization._convnet4``'s in ``tp3nets.models.quantization`` (what
    torchvision's rule, the module's name less its last part, gives for its own files), and
    a builder defined in a public module ``mypkg.nets`` in ``mypkg.nets``."""
    name = getattr(builder, "__module__", None) or ""
    parent, _, last = name.rpartition(".")
    return parent if parent and last.startswith("_") else name


def _patterns(what: str, patterns: str | Iterable[str] | None) -> list[str]:
    """``include``/``exclude`` as a list of lower-case patterns, checked."""
    if patterns is None or (isinstance(patterns, str) and not patterns):
        return []  # as torchvision: no filter
    if isinstance(patterns, str):
        patterns = [patterns]
    elif not isinstance(patterns, Iterable) or isinstance(patterns, (bytes, Mapping)):
        raise TypeError(
            f"list_models expects {what} to be a pattern (str) or an iterable of patterns, "
            f"got {patterns!r}"
        )
    found = list(patterns)
    bad = [p for p in found if not isinstance(p, str)]
    if bad:
        raise TypeError(
            f"list_models expects {what} patterns to be strings, got {bad[0]!r} in {found!r}"
        )
    return [p.lower() for p in found]


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``.

    Raises:
        ValueError: unknown name; close matches are suggested.
        TypeError: the name is not a non-empty string.

    Example:
        >>> get_model_builder("convnet4").__name__
        'convnet4'
    """
    try:
        return _BUILDERS[_lookup(name)]
    except KeyError:
        raise _unknown(name) from None


def get_model(name: str, **config: Any) -> nn.Module:
    """Build the model registered under ``name``; ``config`` goes to its builder.

    Example:
        >>> get_model("convnet2", num_classes=3).num_classes
        3
    """
    return get_model_builder(name)(**config)


def get_model_weights(name: str | Callable[..., nn.Module]) -> type[WeightsEnum]:
    """The weights enum of a model, given its name or its builder.

    Example:
        >>> get_model_weights("convnet4").__name__
        'ConvNet4_Weights'
    """
    if callable(name):
        key = next((k for k, v in _BUILDERS.items() if v is name), None)
        if key is None:
            raise ValueError(f"{name!r} is not a registered builder")
    else:
        key = _lookup(name)
    if key not in _WEIGHTS:
        if key in _BUILDERS:
            raise ValueError(f"model {key!r} has no pretrained weights")
        raise _unknown(key)
    return _WEIGHTS[key]


def get_weight(name: str) -> WeightsEnum:
    """A weights member by its qualified name, such as ``"ConvNet4_Weights.MNIST_V1"``.

    The name is matched in any case; an unknown one raises a ValueError that suggests close
    names.

    Example:
        >>> get_weight("ConvNet4_Weights.DEFAULT")
        ConvNet4_Weights.MNIST_REAL_V8
    """
    enum_name, _, member = name.strip().partition(".")
    for enum_cls in _WEIGHTS.values():
        if enum_cls.__name__.lower() == enum_name.lower() and member:
            found = enum_cls.verify(member)
            assert found is not None
            return found
    # The float weights first: an int8 set is suggested where no float one is close.
    known = sorted(
        (f"{e.__name__}.{m}" for k, e in _WEIGHTS.items() for m in e.__members__),
        key=lambda q: ("Quantized" in q, q),
    )
    by_lower = {k.lower(): k for k in known}
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3)]
    if not close and "." not in name:
        close = [k for k in known if k.lower().endswith("." + name.strip().lower())][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown weights {name!r}{hint}")


def _refuse_pretrained(cls: type, kwargs: dict[str, Any]) -> None:
    """torchvision's old ``pretrained=True`` is ``weights=`` here: say so."""
    for old in ("pretrained", "pretrained_backbone"):
        if old in kwargs:
            raise TypeError(
                f"{cls.__name__}'s builder takes weights=, not {old}= (torchvision's "
                f"deprecated argument): weights='DEFAULT' for the bundled pretrained weights, "
                f"weights=None for random initialisation"
            )


def _build(cls: type[M], enum_cls: type[WeightsEnum], weights: Any, kwargs: dict[str, Any]) -> M:
    """Construct ``cls(**kwargs)`` and load ``weights`` (member, name or file) into it.

    A file (:func:`~tp3nets._io._serialization.names_a_file`) is read for the model built:
    one larger than it plausibly needs is refused before it is read. The command line's
    ``--weights FILE`` comes here too.
    """
    _refuse_pretrained(cls, kwargs)
    if weights is None:
        return cls(**kwargs)
    if names_a_file(weights):
        path = Path(weights)
        model = cls(**kwargs)
        load_weights_into(model, load_state_dict(path, model=model), source=str(path))
        return model
    member = enum_cls.verify(weights)
    assert member is not None
    categories = member.meta["categories"]
    model = cls(**kwargs)
    if model.num_classes != len(categories):
        raise ValueError(
            f"{member!r} has {len(categories)} classes but num_classes={model.num_classes} "
            f"was asked for; build with the pretrained head and call "
            f"model.reset_classifier({model.num_classes}) for a new task"
        )
    load_weights_into(model, member.get_state_dict(), source=member.file)
    return model
