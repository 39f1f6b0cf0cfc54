"""tp3nets: the MNIST models of the TP3 lab, as typed, tested software with pretrained weights.

Example:
    >>> import torch
    >>> from tp3nets import ConvNet4
    >>> ConvNet4().eval()(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import importlib
from typing import Any, Final

from . import _deprecated
from ._version import __version__
from .data import MNISTPreprocess
from .engine import History, evaluate, fit, predict, seed_everything, train_one_epoch
from .engine.callbacks import EMA, CSVLogger, EarlyStopping, ModelCheckpoint, TensorBoardLogger
from .models import (
    ConvNet2,
    ConvNet2_Weights,
    ConvNet3,
    ConvNet3_Weights,
    ConvNet4,
    ConvNet4_Weights,
    MultinomialLogisticRegression,
    MultinomialLogisticRegression_Weights,
    convnet2,
    convnet3,
    convnet4,
    get_model,
    get_model_builder,
    get_model_weights,
    get_weight,
    list_models,
    multinomial_logistic_regression,
)
from .models.layers import batch_relu
from .reading import DigitReading, read_digits
from .weights import CheckpointError, Weights, WeightsEnum, load_state_dict

__all__ = [
    "EMA",
    "CSVLogger",
    "CheckpointError",
    "ConvNet2",
    "ConvNet2_Weights",
    "ConvNet3",
    "ConvNet3_Weights",
    "ConvNet4",
    "ConvNet4_Weights",
    "DigitReading",
    "EarlyStopping",
    "History",
    "MNISTPreprocess",
    "ModelCheckpoint",
    "MultinomialLogisticRegression",
    "MultinomialLogisticRegression_Weights",
    "TensorBoardLogger",
    "Weights",
    "WeightsEnum",
    "__version__",
    "batch_relu",
    "convnet2",
    "convnet3",
    "convnet4",
    "evaluate",
    "fit",
    "get_model",
    "get_model_builder",
    "get_model_weights",
    "get_weight",
    "list_models",
    "load_state_dict",
    "multinomial_logistic_regression",
    "predict",
    "read_digits",
    "seed_everything",
    "train_one_epoch",
]

_deprecated.install()
_deprecated.keep_names(__name__)
_deprecated.keep_names(f"{__name__}.models")
_deprecated.keep_names(f"{__name__}.models.quantization")


#: The public subpackages and modules not imported above, imported on first use
#: (``tp3nets.calibration.fit_temperature`` after a bare ``import tp3nets``).
_SUBMODULES: Final = frozenset(
    {"calibration", "cli", "data", "demo", "deploy", "engine", "models", "reading", "weights"}
)


def __getattr__(name: str) -> Any:
    """The public submodules on first use; ``tp3nets.engine`` and the other modules of
    the flat 0.1 layout, as warning aliases (see :mod:`tp3nets._deprecated`)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _deprecated.top_level_alias(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return module
