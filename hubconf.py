"""Entry points for ``torch.hub``, as torchvision's ``hubconf.py`` provides them.

From a clone (or any folder holding this repository)::

    import torch
    model = torch.hub.load("path/to/tp3nets", "convnet4", weights="DEFAULT", source="local")

or, once the repository is public, ``torch.hub.load("OWNER/tp3nets", "convnet4",
weights="DEFAULT")``, where ``torch.hub.list`` names the entry points and ``torch.hub.help``
prints a builder's docstring (those two read GitHub repositories only). The weights are the files
bundled in ``src/tp3nets/weights/files``: nothing is downloaded.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

# torch.hub puts this folder on sys.path; the package lives under src/ (a src layout), so
# make the repository's own copy importable too, as torchvision's hubconf imports the
# torchvision beside it. An already imported tp3nets is used as it is.
_SRC = _Path(__file__).resolve().parent / "src"
if (_SRC / "tp3nets").is_dir() and str(_SRC) not in _sys.path:
    _sys.path.insert(0, str(_SRC))

# Module names torch.hub checks before loading (importlib.util.find_spec).
dependencies = ["torch", "torchvision", "safetensors", "typing_extensions", "tqdm", "PIL", "scipy"]

from tp3nets.models import (  # noqa: E402
    convnet2,
    convnet3,
    convnet4,
    get_model_weights,
    get_weight,
    multinomial_logistic_regression,
)

__all__ = [
    "convnet2",
    "convnet3",
    "convnet4",
    "dependencies",
    "get_model_weights",
    "get_weight",
    "multinomial_logistic_regression",
]
