"""Seeding for reproducible runs."""

from __future__ import annotations

import contextlib
import os
import random

import torch

from .._util._checks import check_seed

__all__ = ["seed_everything"]


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy (if present) and torch on every device.

    With the same seed, two :func:`~tp3nets.fit` runs on the CPU give bitwise identical weights and
    history. ``deterministic=True`` also makes torch pick deterministic kernels (and raise
    where none exists), which CUDA needs for bitwise repeatability.

    Example:
        >>> import torch
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """
    seed = check_seed(seed, who="seed_everything")
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"seed must lie in [-2**63, 2**64), got {seed}")
    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


