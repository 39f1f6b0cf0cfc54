"""Folding BatchNorm into the convolution before it, for inference."""

from __future__ import annotations

import copy
import itertools

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm"]


def require_eval(model: object, caller: str, purpose: str) -> None:
    """A TypeError for a non-module, a ValueError naming the first submodule in training
    mode (the inference tools' shared check)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller} expects an nn.Module, got {type(model).__name__}")
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"{purpose}: call model.eval() first ({training[0]!r} is in training mode)"
        )


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` with each BatchNorm folded into the convolution before it.

    In eval mode a BatchNorm is an affine map per channel, so ``Conv → BN`` equals one
    convolution with rescaled weights and a shifted bias: the copy computes the same
    outputs (to float rounding) with one pass over the activations less per block. Pairs
    are found inside every :class:`~torch.nn.Sequential` (``batch_relu`` blocks and
    ConvNet4's ``features``); each folded BatchNorm becomes :class:`~torch.nn.Identity`,
    so the other layers keep their indices. The original model is left as it was.

    Args:
        model: a model in eval mode.

    Returns:
        The folded copy, in eval mode. Its state dict lacks the BatchNorm entries: it is for
        inference, not for training or for saving as tp3nets weights.

    Raises:
        ValueError: the model is in training mode (BatchNorm then normalises with the
            batch's statistics, which no fixed convolution reproduces).

    Example:
        >>> import torch
        >>> from tp3nets import ConvNet4
        >>> model = ConvNet4(width=8).eval()
        >>> folded = fold_batchnorm(model)
        >>> x = torch.randn(2, 1, 28, 28)
        >>> torch.allclose(folded(x), model(x), atol=1e-5)
        True
        >>> sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        0
    """
    require_eval(model, "fold_batchnorm", "fold_batchnorm is for inference")
    folded = copy.deepcopy(model)
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = module._modules[first], module._modules[second]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and bn.running_mean is not None
            ):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return folded
