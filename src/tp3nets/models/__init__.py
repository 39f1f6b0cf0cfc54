"""The models of the TP3 lab, their builders and weights, and the registry.

Each family (:class:`ConvNet2`, :class:`ConvNet3`, :class:`ConvNet4`,
:class:`MultinomialLogisticRegression`) has its class, its builder and its weights enum here,
as torchvision's ``models`` does; the int8 ones are in :mod:`tp3nets.models.quantization` and
the shared ``batch_relu`` block in :mod:`tp3nets.models.layers`.
"""

# The int8 builders (tp3nets.models.quantization) register beside the float ones.
from . import quantization as quantization  # a submodule, not an API name
from ._convnet2 import ConvNet2, ConvNet2_Weights, convnet2
from ._convnet3 import ConvNet3, ConvNet3_Weights, convnet3
from ._convnet4 import ConvNet4, ConvNet4_Weights, convnet4
from ._logistic import (
    MultinomialLogisticRegression,
    MultinomialLogisticRegression_Weights,
    multinomial_logistic_regression,
)
from ._registry import (
    get_model,
    get_model_builder,
    get_model_weights,
    get_weight,
    list_models,
    register_model,
)
from ._utils import ClassifierModel

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
    "get_model",
    "get_model_builder",
    "get_model_weights",
    "get_weight",
    "list_models",
    "multinomial_logistic_regression",
    "register_model",
]
