"""docs/screenshot_pages.py: which pages it takes, and a real headless screenshot."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "screenshot_pages", REPO / "docs" / "screenshot_pages.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        page = root / name
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<html><body><h1>t</h1><table><tr><td>x</td></tr></table></body></html>")


def test_pages_are_every_reader_page_and_nothing_else(tmp_path: Path) -> None:
    """Content pages at any depth are kept; sources, assets, search and indexes are not."""
    script = _script()
    _tree(
        tmp_path,
        [
            "index.html",
            "models.html",
            "api/samples.html",
            "auto_examples/plot_evaluate.html",
            "_static/x.html",
            "_modules/tp3nets/samples.html",
            "genindex.html",
            "search.html",
            "py-modindex.html",
        ],
    )
    got = [p.relative_to(tmp_path).as_posix() for p in script.pages(tmp_path, None)]
    assert got == [
        "api/samples.html",
        "auto_examples/plot_evaluate.html",
        "index.html",
        "models.html",
    ]
    only = [p.name for p in script.pages(tmp_path, "models")]
    assert only == ["models.html"]


def test_no_chromium_says_how_to_get_one() -> None:
    """A missing browser is one line naming the install command and the option."""
    with pytest.raises(SystemExit, match="apt-get install chromium, or pass --chromium"):
        _script().find_chromium("no-such-browser-here")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_screenshot_is_a_png_of_the_asked_size(tmp_path: Path) -> None:
    """Headless Chromium writes a PNG of exactly the window size asked for."""
    from PIL import Image

    script = _script()
    _tree(tmp_path, ["index.html"])
    target = tmp_path / "index@640.png"
    script.screenshot(script.find_chromium(None), tmp_path / "index.html", target, 640, 480)
    with Image.open(target) as image:
        assert image.format == "PNG"
        assert image.size == (640, 480)
