"""Helpers shared by the test modules; tests/ is on sys.path through pytest's pythonpath."""

from __future__ import annotations

import re

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


def one_error_line(err: str, *needles: str) -> None:
    """stderr is exactly one 'tp3nets…: error: …' line holding every needle, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(r"tp3nets( \w+)?: error: ", lines[0]), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)
