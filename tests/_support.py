"""Helpers shared by the test modules; tests/ is on sys.path through pytest's pythonpath."""

from __future__ import annotations

import re

import numpy as np
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


def sample_ink(label: int, side: int) -> np.ndarray:
    """The bundled sample digit's ink (1 = ink), enlarged to a ``side`` x ``side`` float
    array: a clean handwritten digit to draw into made-up photos and pages."""
    import tp3nets
    from tp3nets import MNISTPreprocess

    x = MNISTPreprocess()(tp3nets.data.samples.digit(label))  # (1, 28, 28), light on dark
    big = torch.nn.functional.interpolate(x[None], size=(side, side), mode="bicubic")[0, 0]
    ink: np.ndarray = big.clamp(0, 1).numpy()
    return ink
