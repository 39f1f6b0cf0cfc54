"""Pretrained weights: the Weights record, the WeightsEnum base and safe file loading.

The weight files ship inside the package under ``tp3nets/weights/files/`` and are read
offline; every load checks the sha256 of the file's record, package data under
``tp3nets/weights/records/``.
"""

from __future__ import annotations

from ._api import (
    CHECKPOINT_SUFFIXES,
    CheckpointError,
    Weights,
    WeightsEnum,
    load_state_dict,
    load_weights_into,
)

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CheckpointError",
    "Weights",
    "WeightsEnum",
    "load_state_dict",
    "load_weights_into",
]
