"""Sphinx configuration of the tp3nets documentation.

Build (from the repository root, offline, warnings as errors)::

    sphinx-build -W -b html docs docs/_build/html

The gallery examples run in fast mode (``TP3NETS_FAST=1``: a few seconds each) unless
``TP3NETS_FAST=0`` is set. They read MNIST from ``TP3NETS_DATA`` (default
``../shared/datasets`` next to the repository); without the MNIST files the gallery is
rendered without running the examples.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(REPO / "src"))

# Examples read these; set them before sphinx-gallery runs any of them.
os.environ.setdefault("TP3NETS_FAST", "1")
os.environ.setdefault("TP3NETS_DATA", str(REPO.parent / "shared" / "datasets"))
os.environ.setdefault("MPLBACKEND", "agg")

# sphinx-autodoc-typehints calls an API that Sphinx 10 removes; not ours to fix.
warnings.filterwarnings("ignore", message=".*set_application.*is deprecated")

import tp3nets

# -- project -------------------------------------------------------------------------------

project = "tp3nets"
author = "tp3nets developers"
copyright = (
    "tp3nets developers; models after the TP3 lab report of Kim ANTUNEZ and Isabelle BERNARD"
)
release = tp3nets.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",  # after napoleon
    "offline_intersphinx",  # before intersphinx loads its inventories
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
    "sphinx_gallery.gen_gallery",
    "argparse_cli",
    "tp3nets_docs",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "**.ipynb"]
templates_path: list[str] = []
default_role = "py:obj"
# Every reference to a tp3nets name must resolve (a broken internal link fails the -W
# build). Links into Python, PyTorch and torchvision resolve through the small offline
# inventories in _intersphinx/; a name missing there stays plain text instead of failing
# the build: add it to the list to make it a link.
nitpicky = True
nitpick_ignore_regex = [("py:.*", r"(?!tp3nets\b).*")]

# -- HTML ----------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"tp3nets {release}"
html_static_path = ["_static"]
html_css_files = ["tp3nets.css"]
html_show_sourcelink = False

# -- autodoc, napoleon, typehints ----------------------------------------------------------

autodoc_default_options = {
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
napoleon_custom_sections = ["Shape"]

typehints_defaults = "comma"
typehints_use_signature = False
typehints_use_signature_return = False
always_document_param_types = False
typehints_document_rtype = True
typehints_fully_qualified = False

# -- intersphinx (offline: see _ext/offline_intersphinx.py) --------------------------------

offline_intersphinx = {
    "python": "https://docs.python.org/3",
    "torch": "https://docs.pytorch.org/docs/stable",
    "torchvision": "https://docs.pytorch.org/vision/stable",
}
intersphinx_mapping: dict[str, tuple[str, tuple[str | None, ...]]] = {}
intersphinx_timeout = 5

# -- doctest -------------------------------------------------------------------------------

# The docstrings' doctests run under pytest (--doctest-modules over src/); the doctest
# builder runs only the pages' own ``.. doctest::`` blocks, so nothing runs twice.
doctest_test_doctest_blocks = ""
doctest_global_setup = "import torch\nimport tp3nets"

# -- gallery -------------------------------------------------------------------------------

_mnist = Path(os.environ["TP3NETS_DATA"]) / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
_run_examples = os.environ.get("TP3NETS_DOCS_NO_GALLERY", "") != "1"
if _run_examples and not _mnist.is_file():
    print(f"tp3nets docs: MNIST not found in {_mnist.parent}: the examples are not run")
    _run_examples = False

# The home page shows the quickstart example's figure; without the gallery run it is absent.
suppress_warnings = [] if _run_examples else ["image.not_readable"]

sphinx_gallery_conf = {
    "examples_dirs": str(REPO / "examples"),
    "gallery_dirs": "auto_examples",
    # Every script runs, except the torchrun worker (it needs two processes).
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(__init__|make_digits)\.py",
    "plot_gallery": _run_examples,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "gallery_order.ExampleOrder",
    "min_reported_time": 1,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "line_numbers": False,
}

# -- tp3nets_docs --------------------------------------------------------------------------

def _public_modules() -> list[str]:
    """Every public module of tp3nets (no part of its path starts with ``_``): each
    name of their ``__all__`` must have an API entry."""
    import pkgutil

    import tp3nets

    found = [m.name for m in pkgutil.walk_packages(tp3nets.__path__, "tp3nets.")]
    public = (n for n in found if not any(part.startswith("_") for part in n.split(".")[1:]))
    return ["tp3nets", *sorted(public)]


tp3nets_api_modules = _public_modules()
