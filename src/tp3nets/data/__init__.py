"""Data: MNIST and its loaders, the batch augmentations, image files and the transforms.

Everything that turns files into model-ready tensors has its home here: :func:`load_mnist`
and :class:`TensorLoader` for the dataset, the ``Batch*`` augmentations, :func:`open_image`
for a picture on disk, and :class:`MNISTPreprocess`, which makes any digit picture (a
photo, a scan, a canvas drawing) look like an MNIST digit. The bundled sample pictures are
in :mod:`tp3nets.data.samples`.

Example:
    >>> from tp3nets.data import MNISTPreprocess, open_image
    >>> from tp3nets.data.samples import digit_path
    >>> MNISTPreprocess()(open_image(digit_path(7))).shape
    torch.Size([1, 28, 28])
"""

from __future__ import annotations

from . import samples as samples  # a subpackage of picture files, not an API name
from ._augment import (
    AUGMENTATIONS,
    BatchElasticDistortion,
    BatchGaussianNoise,
    BatchRandomAffine,
    BatchRandomContrast,
    BatchRandomStrokeWidth,
    augmentation,
)
from ._datasets import (
    DATA_ENV,
    TensorLoader,
    TensorSubset,
    default_data_root,
    load_mnist,
    mnist_splits,
    train_val_split,
)
from ._images import ImageFileError, open_image, standard_mode
from ._transforms import DigitImage, MNISTPreprocess

__all__ = [
    "AUGMENTATIONS",
    "DATA_ENV",
    "BatchElasticDistortion",
    "BatchGaussianNoise",
    "BatchRandomAffine",
    "BatchRandomContrast",
    "BatchRandomStrokeWidth",
    "DigitImage",
    "ImageFileError",
    "MNISTPreprocess",
    "TensorLoader",
    "TensorSubset",
    "augmentation",
    "default_data_root",
    "load_mnist",
    "mnist_splits",
    "open_image",
    "standard_mode",
    "train_val_split",
]
