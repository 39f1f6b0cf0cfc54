"""Build the docs and screenshot every page in headless Chromium, to look at them as a reader.

    python docs/screenshot_pages.py                  # build (sphinx -W), then screenshot
    python docs/screenshot_pages.py --no-build       # screenshot the existing build
    python docs/screenshot_pages.py --page models    # only pages whose path contains this

Writes ``docs/_build/screenshots/<page>@<width>.png`` for a desktop width (1920 px), a
laptop width (1280 px) and a phone width (414 px), each the top ``--height`` pixels of the
page, and prints the list. Needs a Chromium (``apt-get install chromium`` on Debian and
Ubuntu, or ``--chromium PATH``). The docs build runs the gallery in fast mode, which takes a
few minutes of CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
HTML = DOCS / "_build" / "html"
OUT = DOCS / "_build" / "screenshots"
# Generated pages with nothing to review, and the sources and assets beside the pages.
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "_modules"}
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
WIDTHS = (1920, 1280, 414)


def find_chromium(given: str | None) -> str:
    for name in [given] if given else ["chromium", "chromium-browser", "google-chrome"]:
        path = shutil.which(name) if name else None
        if path:
            return path
    raise SystemExit("no Chromium found: apt-get install chromium, or pass --chromium PATH")


def pages(root: Path, contains: str | None) -> list[Path]:
    found = []
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root)
        if rel.parts[0] in SKIP_DIRS or rel.name in SKIP_PAGES:
            continue
        if contains and contains not in str(rel):
            continue
        found.append(page)
    return found


def screenshot(chromium: str, page: Path, target: Path, width: int, height: int) -> None:
    cmd = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        "--virtual-time-budget=3000",
        f"--screenshot={target}",
        page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not target.is_file():
        raise SystemExit(f"chromium failed on {page}: {done.stderr.strip()[-500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="use the existing build")
    parser.add_argument("--page", help="only pages whose path contains this text")
    parser.add_argument("--height", type=int, default=3000, help="pixels of each page kept")
    parser.add_argument("--chromium", help="the Chromium executable")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default {OUT}")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    if not args.no_build:
        subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "-b", "html", str(DOCS), str(HTML)],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        )
    found = pages(HTML, args.page)
    if not found:
        raise SystemExit(f"no pages under {HTML}: build the docs first (drop --no-build)")
    args.out.mkdir(parents=True, exist_ok=True)
    for page in found:
        name = str(page.relative_to(HTML).with_suffix("")).replace(os.sep, "__")
        for width in WIDTHS:
            target = args.out / f"{name}@{width}.png"
            screenshot(chromium, page, target, width, args.height)
            print(target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target)
    print(f"{len(found)} pages, {len(found) * len(WIDTHS)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
