"""Helpers shared by the test modules; tests/ is on sys.path through pytest's pythonpath."""

from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """``cpu``, then ``cuda`` and ``mps`` where present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


DEVICES = available_devices()
