"""The training engine: :func:`fit`, the passes over a loader, and what they share.

``fit`` trains any :class:`torch.nn.Module` with any loss, optimizer and device;
:func:`evaluate` and :func:`predict` run a model over a loader; :func:`train_one_epoch` is
the loop's one epoch for a loop of your own. Below them sit the pieces they share, each
with one home here: the fitted state and its :class:`History`, metrics, precision, devices,
seeding, and checkpoints. Callbacks and loggers live in :mod:`tp3nets.engine.callbacks`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from tp3nets.engine import evaluate
    >>> data = [(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))]
    >>> sorted(evaluate(nn.Linear(2, 2), data, device="cpu"))
    ['acc', 'loss']
"""

from __future__ import annotations

from ._batches import default_unpack
from ._checkpoint import (
    CHECKPOINT_FORMAT,
    check_checkpoint,
    check_resumable,
    load_checkpoint,
    make_checkpoint,
    restore_callbacks,
    restore_checkpoint,
    rng_states,
    save_checkpoint,
)
from ._devices import resolve_device
from ._epoch import train_one_epoch
from ._history import History
from ._inference import evaluate, predict
from ._malloc import reuse_freed_memory
from ._metrics import Metric, MetricLike, accuracy
from ._optim import fused_optimizer
from ._precision import BF16Precision, FloatPrecision, FP16MixedPrecision, Precision, get_precision
from ._seeding import seed_everything
from ._shortcuts import fast_step_enabled, set_fast_step
from ._state import FitState
from ._training import fit

__all__ = [
    "CHECKPOINT_FORMAT",
    "BF16Precision",
    "FP16MixedPrecision",
    "FitState",
    "FloatPrecision",
    "History",
    "Metric",
    "MetricLike",
    "Precision",
    "accuracy",
    "check_checkpoint",
    "check_resumable",
    "default_unpack",
    "evaluate",
    "fast_step_enabled",
    "fit",
    "fused_optimizer",
    "get_precision",
    "load_checkpoint",
    "make_checkpoint",
    "predict",
    "resolve_device",
    "restore_callbacks",
    "restore_checkpoint",
    "reuse_freed_memory",
    "rng_states",
    "save_checkpoint",
    "seed_everything",
    "set_fast_step",
    "train_one_epoch",
]
