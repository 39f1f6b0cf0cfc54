"""Each public name has one home: the public module whose ``__all__`` lists it.

A module is public when no part of its dotted path starts with ``_``. The top-level
``tp3nets`` package is the one allowed second home, for what a user types first; every
other public module lists in ``__all__`` each tp3nets name it exposes, and no two list the
same object. The old flat paths of 0.1 import as aliases that warn and name the home.
"""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import subprocess
import sys
import types
import warnings

import pytest
import torch

import tp3nets
from tp3nets import _deprecated

#: 0.1's public modules and some names each exposed (`python -c 'import tp3nets.X; dir()'`
#: on 0.1): every one still imports, with a DeprecationWarning.
OLD_PATHS: dict[str, list[str]] = {
    "tp3nets.augment": ["AUGMENTATIONS", "BatchRandomAffine", "augmentation"],
    "tp3nets.callbacks": ["Callback", "EMA", "EarlyStopping", "ModelCheckpoint", "CSVLogger"],
    "tp3nets.checkpoint": ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint",
                           "check_resumable", "write_atomically"],
    "tp3nets.devices": ["resolve_device"],
    "tp3nets.ema": ["EMA"],
    "tp3nets.epoch": ["train_one_epoch"],
    "tp3nets.export": ["EXPORT_FORMATS", "ExportError", "export_onnx", "verify_onnx"],
    "tp3nets.history": ["History"],
    "tp3nets.images": ["ImageFileError", "open_image", "standard_mode"],
    "tp3nets.inference": ["evaluate", "predict"],
    "tp3nets.layers": ["batch_relu"],
    "tp3nets.loggers": ["CSVLogger", "TensorBoardLogger"],
    "tp3nets.metrics": ["Metric", "MetricLike", "accuracy"],
    "tp3nets.optim": ["fused_optimizer"],
    "tp3nets.precision": ["BF16Precision", "FP16MixedPrecision", "Precision", "get_precision"],
    "tp3nets.runtime": ["BACKENDS", "InferenceModel", "optimize", "available_backends"],
    "tp3nets.samples": ["DIGITS", "digit", "digit_batch", "digit_paths"],
    "tp3nets.seeding": ["seed_everything"],
    "tp3nets.state": ["FitState"],
    "tp3nets.training": ["fit", "evaluate", "predict", "History", "FitState", "accuracy",
                         "fused_optimizer", "reuse_freed_memory", "set_fast_step"],
    "tp3nets.transforms": ["DigitImage", "MNISTPreprocess"],
    "tp3nets.models.convnet4": ["ConvNet4", "ConvNet4_Weights", "convnet4"],
    "tp3nets.models.logistic": ["MultinomialLogisticRegression"],
    "tp3nets.models.quantization.convnet4": ["QuantizableConvNet4", "ConvNet4_QuantizedWeights"],
}


def _public_modules() -> list[types.ModuleType]:
    names = ["tp3nets"] + [
        m.name for m in pkgutil.walk_packages(tp3nets.__path__, "tp3nets.")
        if not any(part.startswith("_") for part in m.name.split(".")[1:])
    ]
    return [importlib.import_module(n) for n in names]


def _exposed(module: types.ModuleType) -> dict[str, object]:
    """The names a user can take from ``module`` that tp3nets defines (submodules aside)."""
    found: dict[str, object] = {}
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        owner = getattr(value, "__module__", None)
        if name in getattr(module, "__all__", ()) or (
            isinstance(owner, str) and owner.startswith("tp3nets")
            and (isinstance(value, type) or callable(value))
        ):
            found[name] = value
    return found


def test_every_public_module_declares_what_it_exposes() -> None:
    """No public module exposes a tp3nets class or function that its ``__all__`` does not
    list: an import for internal use is private (``_name``) or inside a function."""
    undeclared = {
        m.__name__: sorted(set(_exposed(m)) - set(getattr(m, "__all__", ())))
        for m in _public_modules()
    }
    assert {k: v for k, v in undeclared.items() if v} == {}


def test_each_public_name_has_one_home() -> None:
    """Apart from the top-level ``tp3nets``, no object is listed in two modules' ``__all__``."""
    homes: dict[tuple[str, object], list[str]] = {}
    for module in _public_modules():
        if module.__name__ == "tp3nets":
            continue
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, (str, int, float, tuple, frozenset, bool)):
                key: tuple[str, object] = ("constant", f"{module.__name__}.{name}")
            else:
                key = ("object", id(value))
            homes.setdefault(key, []).append(f"{module.__name__}.{name}")
    assert [h for h in homes.values() if len(h) > 1] == []


def test_the_top_level_reexports_each_name_from_its_home() -> None:
    """Every name of ``tp3nets.__all__`` is the object of exactly one other public home."""
    others = [m for m in _public_modules() if m.__name__ != "tp3nets"]
    for name in tp3nets.__all__:
        if name == "__version__":
            continue
        value = getattr(tp3nets, name)
        found = [m.__name__ for m in others if getattr(m, name, None) is value
                 and name in m.__all__]
        assert len(found) == 1, (name, found)


def test_models_namespace_holds_only_model_builders_as_lowercase_callables() -> None:
    """torchvision's ``list_models(module)`` test: the lower-case callables of
    ``tp3nets.models`` are the registered builders and the registry's own functions."""
    registry = {"get_model", "get_model_builder", "get_model_weights", "get_weight",
                "list_models", "register_model"}
    callables = {n for n, v in vars(tp3nets.models).items()
                 if callable(v) and n[0].islower() and not n.startswith("_")
                 and not isinstance(v, types.ModuleType)}
    assert callables - registry == set(tp3nets.list_models())


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_module_paths_import_with_a_deprecation_warning(old: str) -> None:
    """``from tp3nets.<old> import name`` still gives the same object, warns
    DeprecationWarning once per name taken, and the message names the home."""
    module = importlib.import_module(old)
    for name in OLD_PATHS[old]:
        with pytest.warns(DeprecationWarning, match="deprecated alias") as caught:
            value = getattr(module, name)
        home = _deprecated.home_of(value, name)
        if home is not None:
            assert home in str(caught[0].message)
            assert getattr(importlib.import_module(home), name) is value
        assert caught[0].filename == __file__  # the warning names the user's line


def test_old_top_level_attribute_warns() -> None:
    """``tp3nets.training.fit`` after a bare ``import tp3nets`` still works, warning."""
    with pytest.warns(DeprecationWarning, match=r"tp3nets\.training"):
        module = tp3nets.training  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match=r"import it from tp3nets\.engine"):
        assert module.fit is tp3nets.fit


def test_importing_an_old_model_module_keeps_the_builder() -> None:
    """``import tp3nets.models.convnet4`` (an alias) leaves ``tp3nets.models.convnet4``
    the builder function, as it was."""
    importlib.import_module("tp3nets.models.convnet4")
    importlib.import_module("tp3nets.models.quantization.convnet4")
    assert callable(tp3nets.models.convnet4)
    assert not isinstance(tp3nets.models.convnet4, types.ModuleType)
    assert not isinstance(tp3nets.models.quantization.convnet4, types.ModuleType)


def test_unknown_names_on_aliases_and_package_raise_attribute_error() -> None:
    """A name that never existed is an AttributeError, on the alias and on ``tp3nets``."""
    module = importlib.import_module("tp3nets.training")
    with pytest.raises(AttributeError, match="deprecated alias"):
        module.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'no_such_module'"):
        tp3nets.no_such_module  # type: ignore[attr-defined]  # noqa: B018


def test_a_pickle_naming_an_old_module_path_loads() -> None:
    """A whole model pickled under 0.1 names ``tp3nets.models.convnet2.ConvNet2``; it
    still loads (torch.save of a module, not of its state_dict)."""
    model = tp3nets.ConvNet2()
    data = pickle.dumps(model, protocol=0).replace(
        b"tp3nets.models._convnet2", b"tp3nets.models.convnet2"
    )
    assert b"tp3nets.models.convnet2" in data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = pickle.loads(data)
    assert type(loaded) is tp3nets.ConvNet2
    x = torch.zeros(1, 1, 28, 28)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_public_submodules_load_on_first_use() -> None:
    """``import tp3nets`` then ``tp3nets.calibration.fit_temperature``, in a fresh
    interpreter, without importing the submodule first, and without a warning."""
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import tp3nets\n"
        "assert callable(tp3nets.calibration.fit_temperature)\n"
        "assert callable(tp3nets.deploy.optimize)\n"
        "assert callable(tp3nets.data.samples.digit)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_new_paths_import_without_warnings() -> None:
    """The library itself never goes through an old path: importing every public module
    in a fresh interpreter with DeprecationWarning as an error succeeds."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "import importlib, pkgutil, tp3nets\n"
        "for m in pkgutil.walk_packages(tp3nets.__path__, 'tp3nets.'):\n"
        "    if m.name != 'tp3nets.__main__':\n"
        "        importlib.import_module(m.name)\n"
    )
    subprocess.run([sys.executable, "-W", "error::DeprecationWarning:tp3nets", "-c", code],
                   check=True)
