"""Writing a weight file for the wheel: the one place that says how the recipes do it.

``calibrate.py``, ``quantize.py`` and ``train_weights.py`` write their safetensors files
through :func:`write_weights`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def write_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Save ``state`` to ``path`` as safetensors with ``metadata``, readable by all.

    safetensors writes 0600; the wheel ships its files 0644. Give ``metadata`` one key, or
    keys whose order does not matter: the bytes, and so the recorded sha256, follow it.
    """
    save_file(state, str(path), metadata=metadata)
    path.chmod(0o644)
