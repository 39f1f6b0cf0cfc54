"""``python -m tp3nets``: the same as the ``tp3nets`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
