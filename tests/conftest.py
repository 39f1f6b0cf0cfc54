"""Shared fixtures: the MNIST folder (``--data`` / ``TP3NETS_DATA``) and the devices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The command line, run in-process by the tests, would otherwise change glibc's malloc
# settings for the whole test process (tests/test_malloc.py checks that it does).
os.environ.setdefault("TP3NETS_REUSE_FREED_MEMORY", "0")
_DEFAULT_DATA = REPO.parent / "shared" / "datasets"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--data",
        default=None,
        help="folder holding MNIST/raw/ (default: $TP3NETS_DATA, then ../shared/datasets)",
    )


def _data_root(config: pytest.Config) -> Path:
    opt = config.getoption("--data")
    if opt:
        return Path(opt).resolve()
    env = os.environ.get("TP3NETS_DATA")
    return Path(env).resolve() if env else _DEFAULT_DATA


@pytest.fixture(scope="session")
def mnist_root(request: pytest.FixtureRequest) -> Path:
    """The MNIST folder; skips where the files are truly absent, fails in CI (CI=true)."""
    root = _data_root(request.config)
    if not (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        msg = f"MNIST files not found under {root}/MNIST/raw (use --data DIR or TP3NETS_DATA)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return root

