"""tp3nets: the MNIST models of the TP3 lab, as typed, tested software with pretrained weights.

Example:
    >>> import torch
    >>> from tp3nets import ConvNet4
    >>> ConvNet4().eval()(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from . import calibration as calibration
from . import samples
from ._version import __version__
from .callbacks import EMA, CSVLogger, EarlyStopping, ModelCheckpoint, TensorBoardLogger
from .layers import batch_relu
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
from .reading import DigitReading, read_digits
from .training import History, evaluate, fit, predict, seed_everything, train_one_epoch
from .transforms import MNISTPreprocess
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
    "samples",
    "seed_everything",
    "train_one_epoch",
]
