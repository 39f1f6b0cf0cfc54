"""Intersphinx that builds offline: small inventories compiled from text files in the repo.

The docs must build with ``-W`` on a machine without network access, so the Python and
PyTorch inventories are not fetched: each ``docs/_intersphinx/<name>.txt`` lists the
objects the tp3nets docs link to, one per line (``name domain:role uri``, the format of
``python -m sphinx.ext.intersphinx objects.inv``), and this extension compiles them into
``objects.inv`` files under the doctree folder before intersphinx loads its mapping.

Configuration (in ``conf.py``)::

    offline_intersphinx = {"python": "https://docs.python.org/3", ...}

With ``TP3NETS_DOCS_ONLINE=1`` the real inventories are fetched instead (the local ones
stay as a fallback), to check that the lists still match the published docs.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config

HERE = Path(__file__).resolve().parent
LISTS = HERE.parent / "_intersphinx"


def compile_inventory(source: Path, target: Path, project: str) -> None:
    """Write ``target`` (an ``objects.inv``, version 2) from the text list ``source``."""
    lines = []
    for raw in source.read_text(encoding="utf-8").splitlines():
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        name, role, uri = raw.split()[:3]
        # name domain:role priority uri dispname ("-": the name itself)
        lines.append(f"{name} {role} 1 {uri} -\n")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(header.encode() + zlib.compress("".join(lines).encode()))


def _on_config_inited(app: Sphinx, config: Config) -> None:
    projects: dict[str, str] = config.offline_intersphinx
    folder = Path(app.doctreedir) / "offline_intersphinx"
    online = os.environ.get("TP3NETS_DOCS_ONLINE", "") == "1"
    mapping: dict[str, Any] = dict(config.intersphinx_mapping or {})
    for name, url in projects.items():
        source = LISTS / f"{name}.txt"
        target = folder / f"{name}.inv"
        compile_inventory(source, target, name)
        locations = (None, str(target)) if online else (str(target),)
        mapping[name] = (url, locations)
    config.intersphinx_mapping = mapping


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("offline_intersphinx", {}, "env", types=frozenset({dict}))
    # Before sphinx.ext.intersphinx validates the mapping (priority 800).
    app.connect("config-inited", _on_config_inited, priority=400)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
