"""The model families, one module each, and the registry."""

from __future__ import annotations

# The int8 builders (tp3nets.models.quantization) register beside the float ones.
from . import quantization as quantization  # a submodule, not an API name
from ._fold import fold_batchnorm
from ._registry import (
    get_model,
    get_model_builder,
    get_model_weights,
    get_weight,
    list_models,
    register_model,
)
from ._utils import ClassifierModel
from .convnet2 import ConvNet2, ConvNet2_Weights, convnet2
from .convnet3 import ConvNet3, ConvNet3_Weights, convnet3
from .convnet4 import ConvNet4, ConvNet4_Weights, convnet4
from .logistic import (
    MultinomialLogisticRegression,
    MultinomialLogisticRegression_Weights,
    multinomial_logistic_regression,
)

__all__ = [
    "ClassifierModel",
    "ConvNet2",
    "ConvNet2_Weights",
    "ConvNet3",
    "ConvNet3_Weights",
    "ConvNet4",
    "ConvNet4_Weights",
    "MultinomialLogisticRegression",
    "MultinomialLogisticRegression_Weights",
    "convnet2",
    "convnet3",
    "convnet4",
    "fold_batchnorm",
    "get_model",
    "get_model_builder",
    "get_model_weights",
    "get_weight",
    "list_models",
    "multinomial_logistic_regression",
    "register_model",
]
