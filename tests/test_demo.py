"""``tp3nets demo``: its command line, and the page driven in a real browser.

The browser test starts ``tp3nets demo`` on a free port, opens it in headless Chromium
(Debian's package, driven by Playwright), draws digits stroke by stroke with the mouse in
black and in white, uploads a sample digit, checks what the page answers, and saves the
screenshot that the docs show (``docs/_static/demo.png``: written under CI, or where
``TP3NETS_DEMO_SCREENSHOT`` says, as in
``TP3NETS_DEMO_SCREENSHOT=docs/_static/demo.png pytest tests/test_demo.py`` to refresh
the committed one). The demo process runs with every connection off this machine refused
and reported, and the page's requests are watched: the demo needs no network. Without
Gradio, Playwright or a Chromium the tests that need them are skipped, and under CI
(``CI=true``) they fail instead, as MNIST's absence does.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tp3nets
from tp3nets import cli

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "docs" / "_static" / "demo.png"
EXTRA = "pip install 'tp3nets[demo]'"
DEFAULT = "convnet4-mnist-real-v8"  # ConvNet4's default weights, in the page's element ids
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

# The demo process, with every connection off this machine refused and reported on
# stderr: the test fails if Gradio (or anything) tries to reach the network.
_OFFLINE_MAIN = r"""
import faulthandler, signal, socket, sys

faulthandler.register(signal.SIGUSR1)  # the test asks for the threads' stacks on a hang
# Ctrl-C as in a terminal, even where the test runs as a background job (whose children
# start with SIGINT ignored, so Python would never raise KeyboardInterrupt).
signal.signal(signal.SIGINT, signal.default_int_handler)

_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")

def _guard(connect):
    def guarded(self, address):
        family = self.family in (socket.AF_INET, socket.AF_INET6)
        if family and not str(address[0]).startswith(_LOCAL):
            sys.stderr.write(f"OFF-MACHINE CONNECTION {address!r}\n")
            sys.stderr.flush()
            raise OSError(101, "Network is unreachable (tests/test_demo.py)")
        return connect(self, address)
    return guarded

socket.socket.connect = _guard(socket.socket.connect)
socket.socket.connect_ex = _guard(socket.socket.connect_ex)

from tp3nets.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    """Skip, or under CI fail: CI installs the demo's test dependencies and a browser."""
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)")
    pytest.skip(reason)


def _need_gradio() -> None:
    if importlib.util.find_spec("gradio") is None:
        _unavailable(f"Gradio is not installed ({EXTRA})")


def _chromium() -> str:
    given = os.environ.get("TP3NETS_CHROMIUM")
    for name in [given] if given else ["chromium", "chromium-browser", "google-chrome"]:
        path = shutil.which(name) if name else None
        if path:
            return path
    _unavailable("no Chromium installed (apt-get install chromium), or set TP3NETS_CHROMIUM")
    raise AssertionError  # unreachable: _unavailable raises


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------------------
# the command line


def test_without_gradio_one_line_names_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gradio missing (its import made to fail): one line that says what to install,
    exit 2."""
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    code, out, err = run(capsys, "demo", "--port", str(_free_port()))
    assert (code, out) == (2, "")
    line = _one_error_line(err)
    assert line.startswith("tp3nets: error: "), line
    assert EXTRA in line, line


def test_busy_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A port another program listens on: one line naming it, exit 2, before Gradio."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, "demo", "--port", str(port))
    assert (code, out) == (2, "")
    line = _one_error_line(err)
    assert f"port {port} on 127.0.0.1 is in use" in line, line
    assert "pass --port" in line, line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--port", "0"], "expected a port in 1..65535"),
        (["--port", "70000"], "expected a port in 1..65535"),
        (["--port", "http"], "expected a port number"),
        (["--min-confidence", "2"], "expected a probability in [0, 1]"),
        (["--weights", "MNIST_V1"], "--weights needs --model"),
        (["--quantized"], "--quantized needs --model"),
        (["--model", "convnet9"], "convnet9"),
        (["--model", "convnet4", "--weights", "MNIST_V9"], "MNIST_V9"),
        (["--model", "convnet4", "--weights", "none"], "the demo shows trained models"),
        (["--model", "multinomial_logistic_regression", "--quantized"], "no int8 weights"),
        (["--model", "convnet4", "--weights", "missing.safetensors"], "not found"),
        (["--host", "203.0.113.7"], "cannot serve on 203.0.113.7"),  # not this machine's
        (["--colour", "white"], "unrecognized arguments"),
    ],
)
def test_bad_options_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    port = [] if "--port" in argv else ["--port", str(_free_port())]
    code, out, err = run(capsys, "demo", *port, *argv)
    assert (code, out) == (2, "")
    line = _one_error_line(err)
    assert line.startswith("tp3nets"), line
    assert expected in line, line


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--help")
    assert (code, err) == (0, "")
    for option in ("--host", "--port", "--model", "--weights", "--quantized"):
        assert option in out
    assert "demo" in cli._COMMANDS


def test_ctrl_c_while_serving_is_one_line_exit_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's own handling of Ctrl-C (the real signal: test_page_in_a_browser)."""
    from tp3nets import demo

    def interrupted(*args: Any, **kwargs: Any) -> None:
        kwargs["on_ready"]("http://127.0.0.1:1/")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_gradio", lambda: None)
    monkeypatch.setattr(demo, "build_demo", lambda **kwargs: object())
    monkeypatch.setattr(demo, "serve", interrupted)
    code, out, err = run(capsys, "demo", "--port", str(_free_port()))
    assert code == 0
    assert out == "tp3nets demo: serving on http://127.0.0.1:1/ (Ctrl-C stops it)\n"
    assert err == "tp3nets demo: stopped\n"


def test_choices_every_bundled_weight_set_fp32_and_int8() -> None:
    from tp3nets.demo import available_choices

    choices = available_choices()
    labels = [c.label for c in choices]
    assert len(labels) == len(set(labels))
    for name in tp3nets.list_models():
        for member in tp3nets.get_model_weights(name):
            assert any(c.model == name and c.weights is member and not c.quantized
                       for c in choices), (name, member)
    assert "convnet4 · MNIST_REAL_V8 (DEFAULT)" in labels
    assert any(c.quantized for c in choices)
    assert all(c.slug.replace("-", "").isalnum() for c in choices)


def test_the_sketchpad_strokes_are_the_picture() -> None:
    """Gradio's sketchpad value: the strokes layer (any colour on transparent) is read,
    not the composite over the page's checkerboard; an empty canvas is no picture."""
    from PIL import Image, ImageDraw

    from tp3nets.demo import _checkerboard, _Models, _sketch_picture, available_choices

    ground = _checkerboard()
    choice = next(c for c in available_choices() if c.slug == DEFAULT)
    models = _Models([choice])
    for colour in ((255, 255, 255, 255), (0, 0, 0, 255)):
        layer = Image.new("RGBA", ground.size, (0, 0, 0, 0))
        ImageDraw.Draw(layer).line([(200, 80), (200, 320)], fill=colour, width=28)
        composite = ground.copy()
        composite.alpha_composite(layer)
        picture = _sketch_picture({"background": ground, "layers": [layer],
                                   "composite": composite})
        assert picture is not None
        assert picture.mode == "RGBA"
        reading = models.read(choice, picture, 0.9)
        assert (reading.status, reading.label) == ("digit", "1"), (colour, reading)
    empty = Image.new("RGBA", ground.size, (0, 0, 0, 0))
    assert _sketch_picture({"background": ground, "layers": [empty], "composite": None}) \
        is None
    assert _sketch_picture({"background": None, "layers": [], "composite": None}) is None
    assert _sketch_picture(None) is None


def test_verdicts_say_not_sure_and_no_digit() -> None:
    import torch

    from tp3nets.demo import _verdict
    from tp3nets.reading import DigitReading

    image = torch.zeros(1, 28, 28)
    assert _verdict(DigitReading("digit", "7", 0.987, [("7", 0.987)], None, image),
                    0.9) == "**7** · 98.7%"
    unsure = _verdict(DigitReading("unsure", None, 0.6, [("4", 0.6), ("9", 0.3)], None,
                                   image), 0.9)
    assert unsure.startswith("**not sure**"), unsure
    assert "best 4, 60.0%, below 90%" in unsure, unsure
    none = _verdict(DigitReading("no digit", None, 0.5, [("1", 0.5)], "blank: no ink",
                                 image), 0.9)
    assert none.startswith("**no digit**: blank: no ink")


def test_build_demo_without_a_browser() -> None:
    _need_gradio()
    import gradio as gr

    from tp3nets.demo import ModelChoice, available_choices, build_demo

    int8 = next(c for c in available_choices() if c.quantized)
    page = build_demo(selected=[int8, ModelChoice("convnet3", tp3nets.ConvNet3_Weights.MNIST_V2)])
    assert isinstance(page, gr.Blocks)
    assert page.title == "tp3nets: draw a digit"
    assert page.analytics_enabled is False


# --------------------------------------------------------------------------------------
# the page, in a real browser


@pytest.fixture(scope="module")
def demo_process() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``tp3nets demo`` on a free port, with no network: its address and process."""
    _need_gradio()
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TP3NETS_REUSE_FREED_MEMORY": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _OFFLINE_MAIN, "demo", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the address, or the process ends
        if not line.startswith("tp3nets demo: serving on "):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"the demo did not start: {line!r} {err[-3000:]}")
        url = line.split("serving on ", 1)[1].split()[0]
        assert url == f"http://127.0.0.1:{port}/"
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _stroke(page: Any, points: list[tuple[float, float]]) -> None:
    """One stroke with the mouse: press, move through the points, release."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def _digit_strokes(digit: int, cx: float, cy: float, s: float) -> list[list[tuple[float, float]]]:
    """The strokes of a digit drawn by hand, around (cx, cy), about 2*s tall."""
    if digit == 1:
        return [[(cx - 0.25 * s, cy - 0.7 * s), (cx, cy - s), (cx, cy + s)]]
    if digit == 7:
        return [[(cx - 0.6 * s, cy - s), (cx + 0.6 * s, cy - s), (cx - 0.1 * s, cy + s)]]
    if digit == 0:
        return [[(cx + 0.6 * s * math.sin(t * math.pi / 16), cy - s * math.cos(t * math.pi / 16))
                 for t in range(34)]]
    raise ValueError(digit)


def _text(page: Any, selector: str) -> str:
    return str(page.inner_text(selector)).strip()


def _wait_for(page: Any, selector: str, check: Any, what: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = _text(page, selector)
        if check(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {selector} shows {text!r}")
        time.sleep(0.2)


def _screenshot_path(tmp_path: Path) -> Path:
    """Where the screenshot goes: ``$TP3NETS_DEMO_SCREENSHOT``; under CI the docs' own
    (``docs/_static/demo.png``, so that the docs built next show the one CI took); else the
    test's temporary folder (a local run leaves the committed one alone: no two screenshots
    are byte for byte the same)."""
    given = os.environ.get("TP3NETS_DEMO_SCREENSHOT")
    if given:
        return Path(given).resolve()
    return SCREENSHOT if _in_ci() else tmp_path / "demo.png"


def _pick_colour(page: Any, index: int) -> None:
    page.click('#tp3nets-sketch button[aria-label="Color"]')
    page.click(f"#tp3nets-sketch menu.swatch button.color >> nth={index}")


@pytest.fixture
def chromium() -> str:
    """The browser (checked before the demo starts): Debian's Chromium, with Playwright."""
    path = _chromium()
    if importlib.util.find_spec("playwright") is None:
        _unavailable("Playwright is not installed (pip install playwright)")
    return path


@pytest.mark.slow
def test_page_in_a_browser(chromium: str, demo_process: tuple[str, subprocess.Popen[str]],
                           tmp_path: Path) -> None:
    """Digits drawn with the mouse, in black and in white, and an uploaded sample digit
    are read by the page; the docs' screenshot is taken; Ctrl-C stops the demo."""
    from playwright.sync_api import sync_playwright

    url, proc = demo_process
    elsewhere: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:"))
                    else elsewhere.append(r.url))
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_selector("#tp3nets-sketch canvas")
            # The four models side by side, each with its default weights.
            for slug in ("convnet2-mnist-v1", "convnet3-mnist-v1", DEFAULT,
                         "multinomial-logistic-regression-mnist-v1"):
                assert page.locator(f"#tp3nets-model-{slug}").is_visible(), slug
            # The page picks the brush: a user draws at once.
            page.wait_for_selector('#tp3nets-sketch button[aria-label="Brush"].highlight')
            box = page.locator("#tp3nets-sketch .pixi-target canvas").bounding_box()
            assert box is not None
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            for n, (digit, colour) in enumerate([(1, 0), (0, 1), (7, 0)]):
                if n:
                    page.click('#tp3nets-sketch button[aria-label="Clear canvas"]')
                    _wait_for(page, f"#tp3nets-reading-{DEFAULT}", lambda t: t == "",
                              "the answer cleared with the canvas")
                    page.wait_for_selector(
                        '#tp3nets-sketch button[aria-label="Brush"].highlight')
                _pick_colour(page, colour)
                for points in _digit_strokes(digit, cx, cy, 0.3 * box["height"]):
                    _stroke(page, points)
                shown = _wait_for(page, f"#tp3nets-reading-{DEFAULT}",
                                  lambda t, d=digit: t.startswith(f"{d} · "),
                                  f"a {digit} drawn in {('black', 'white')[colour]}")
                assert float(shown.split("· ")[1].rstrip("%")) >= 90, shown
                assert _text(page, "#tp3nets-status") == "Reading the drawing."
                top = _text(page, f"#tp3nets-model-{DEFAULT} .tp3nets-top")
                lines = [x.strip() for x in top.splitlines() if x.strip()]
                assert lines[:3] == ["top 3", str(digit), str(digit)], top  # heading, bar
                assert len([x for x in lines if x.endswith("%")]) == 3, top
                seen = page.locator(f"#tp3nets-model-{DEFAULT} .tp3nets-seen img")
                assert seen.count() == 1, "the 28x28 image the model saw"
                assert seen.get_attribute("src"), "the 28x28 image the model saw"
                for slug in ("convnet2-mnist-v1", "convnet3-mnist-v1"):
                    _wait_for(page, f"#tp3nets-reading-{slug}",
                              lambda t, d=digit: t.startswith(f"{d} · "), slug)
            shot = _screenshot_path(tmp_path)
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)

            # A sample digit, uploaded; then the int8 ConvNet4 added beside the others.
            sample = tp3nets.data.samples.digit_paths()[5]
            page.get_by_role("tab", name="Upload").click()
            page.set_input_files("#tp3nets-upload input[type=file]", str(sample))
            _wait_for(page, "#tp3nets-status", lambda t: t == f"Reading {sample.name}.",
                      "the upload read")
            _wait_for(page, f"#tp3nets-reading-{DEFAULT}", lambda t: t.startswith("5 · "),
                      "the uploaded sample 5")
            page.click("#tp3nets-models input")
            page.get_by_role("option", name="convnet4 · MNIST_INT8_V8 (DEFAULT)").click()
            page.keyboard.press("Escape")
            _wait_for(page, "#tp3nets-reading-convnet4-mnist-int8-v8",
                      lambda t: t.startswith("5 · "), "the int8 ConvNet4 on the sample 5")
        finally:
            context.close()
    assert elsewhere == [], f"the page fetched from elsewhere than the demo: {elsewhere}"

    # Ctrl-C: the demo stops, exit 0, one line, no traceback, no connection attempted.
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to stderr
        time.sleep(2)
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the demo did not stop within 60 s of Ctrl-C; its threads:\n{err[-6000:]}")
    assert proc.returncode == 0, err
    assert "OFF-MACHINE" not in err, err
    assert err.strip().splitlines() == ["tp3nets demo: stopped"], err
    assert shot.stat().st_size > 10_000
