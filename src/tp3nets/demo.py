"""Draw a digit: a local web page where the bundled models read what you draw or upload.

``tp3nets demo`` (with the ``demo`` extra: ``pip install 'tp3nets[demo]'``) serves it; this
module is the page itself, for use from Python. It needs `Gradio <https://gradio.app>`_,
imported only when a page is built, and nothing from the network: no share link, no
analytics, the page's fonts and scripts served by Gradio itself.

The page has a sketchpad to draw on with the mouse (black or white strokes, on a
transparent layer over a grey checkerboard: the preprocessing reads the strokes' alpha as
the ink, whatever their colour), an upload box for a photo or a scan, and, for each model
chosen (every bundled weight set, fp32 and int8, side by side), the 28x28 image the model
saw, its three most probable classes with their calibrated probabilities, and its answer:
the digit, "not sure" when the most probable class is below the threshold, or "no digit"
with the reason. Everything is read by :func:`tp3nets.read_digits`, as ``tp3nets
predict`` reads files.

From Python, ``serve(build_demo())`` is ``tp3nets demo``; :func:`build_demo` returns the
``gradio.Blocks`` to mount or launch elsewhere.

Example:
    >>> from tp3nets.demo import available_choices
    >>> [c.label for c in available_choices() if c.model == "convnet4"][:3]
    ['convnet4 · MNIST_V1', 'convnet4 · MNIST_V2', 'convnet4 · MNIST_V3']
"""

from __future__ import annotations

import errno
import inspect
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import torch
from torch import nn

from .reading import DEFAULT_MIN_CONFIDENCE
from .reading import DigitReading as _DigitReading
from .reading import read_digits as _read_digits

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["DEMO_EXTRA", "ModelChoice", "available_choices", "build_demo", "serve"]

#: What to install for the demo, as the one-line error says it.
DEMO_EXTRA: Final = "pip install 'tp3nets[demo]'"

_CANVAS: Final = 400  # the sketchpad's pixels (square)
_BRUSH: Final = 14  # the brush's radius in canvas pixels: MNIST's stroke for a digit ~250 tall
_STROKES: Final = ("#000000", "#ffffff")
_CSS: Final = """
.tp3nets-seen img { width: 84px !important; height: 84px !important;
  object-fit: contain !important; image-rendering: pixelated; margin-top: 14px; }
.tp3nets-reading p { font-size: 1.25rem; }
"""
# The sketchpad's brush, chosen when the page opens and after the canvas is cleared: draw
# at once, no tool to pick first.
_PICK_BRUSH: Final = """
() => {
  const pick = (tries) => {
    const brush = document.querySelector('#tp3nets-sketch button[aria-label="Brush"]');
    if (brush && !brush.classList.contains("highlight")) { brush.click(); }
    else if (!brush && tries > 0) { setTimeout(() => pick(tries - 1), 100); }
  };
  setTimeout(() => pick(100), 300);
}
"""


@dataclass(frozen=True)
class ModelChoice:
    """A model and weight set the page offers.

    Attributes:
        model: the registered model's name (``"convnet4"``).
        weights: its weights member; for a model loaded from a file, the member whose
            preprocessing and categories it uses (the model's default).
        quantized: the int8 model (its bundled int8 weights, run on the CPU).
        source: what the weights are, when not ``weights`` itself (a file's path).
        module: the model, when already built (else built from ``model`` and ``weights``
            when first chosen).
    """

    model: str
    weights: Any
    quantized: bool = False
    source: str | None = None
    module: nn.Module | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """The page's name for it, such as ``convnet4 · MNIST_REAL_V8 (DEFAULT)``."""
        if self.source is not None:
            return f"{self.model} · {os.path.basename(self.source)}"
        name = getattr(self.weights, "name", str(self.weights))
        default = _default(self.model, self.quantized)
        return f"{self.model} · {name}" + (" (DEFAULT)" if self.weights is default else "")

    @property
    def slug(self) -> str:
        """The page's element ids end with it, such as ``convnet4-mnist-v2``."""
        what = os.path.basename(self.source) if self.source else getattr(
            self.weights, "name", str(self.weights))
        return re.sub(r"[^a-z0-9]+", "-", f"{self.model} {what}".lower()).strip("-")

    def load(self) -> nn.Module:
        """The model with its weights, in eval mode."""
        if self.module is not None:
            return self.module.eval()
        from .models import get_model_builder

        if not self.quantized:
            return get_model_builder(self.model)(weights=self.weights).eval()
        return get_model_builder(f"quantized_{self.model}")(
            weights=self.weights, quantize=True).eval()


def _default(model: str, quantized: bool) -> Any:
    from .models import get_model_weights

    try:
        return get_model_weights(f"quantized_{model}" if quantized else model).verify("DEFAULT")
    except ValueError:
        return None


def available_choices() -> list[ModelChoice]:
    """Every bundled weight set of every registered model: fp32, then int8 where the model
    has int8 weights (CPU only)."""
    from .models import get_model_weights, list_models

    quantized = set(list_models(quantized=True))
    out: list[ModelChoice] = []
    for name in list_models():
        for is_int8 in (False, True):
            key = f"quantized_{name}" if is_int8 else name
            if is_int8 and key not in quantized:
                continue
            try:
                enum_cls = get_model_weights(key)
            except ValueError:
                continue
            for alias, member in enum_cls.__members__.items():
                if alias == member.name:  # each weight set once, not its DEFAULT alias
                    out.append(ModelChoice(name, member, quantized=is_int8))
    return out


class _Models:
    """The models of the choices, built once, when first used."""

    def __init__(self, choices: Sequence[ModelChoice]) -> None:
        self.choices = list(choices)
        self._built: dict[str, nn.Module] = {}
        self._lock = threading.Lock()

    def get(self, choice: ModelChoice) -> nn.Module:
        with self._lock:
            if choice.label not in self._built:
                self._built[choice.label] = choice.load()
            return self._built[choice.label]

    def read(self, choice: ModelChoice, picture: Any, min_confidence: float) -> _DigitReading:
        model = self.get(choice)
        device = torch.device("cpu") if choice.quantized else None
        return _read_digits(model, [picture], weights=choice.weights,
                           min_confidence=min_confidence or None, device=device)[0]


def _sketch_picture(value: Any) -> Any:
    """What was drawn, as strokes on a transparent canvas (RGBA), or ``None`` when nothing
    is. Gradio's sketchpad gives a dict of ``background`` (the page's grey checkerboard,
    which only shows the strokes), ``layers`` (the strokes, on transparent) and
    ``composite`` (the two flattened): the layers are the picture; a bare image is taken
    as it is."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return value
    layers = [x for x in value.get("layers") or () if x is not None]
    if not layers:
        return value.get("composite")
    picture = layers[0].convert("RGBA")
    for layer in layers[1:]:
        picture.alpha_composite(layer.convert("RGBA").resize(picture.size))
    return picture if picture.getchannel("A").getextrema()[1] > 0 else None


def _checkerboard() -> Any:
    """The sketchpad's ground: grey squares on which black and white strokes both show."""
    from PIL import Image, ImageDraw

    board = Image.new("RGBA", (_CANVAS, _CANVAS), (140, 140, 140, 255))
    draw = ImageDraw.Draw(board)
    step = _CANVAS // 16
    for i in range(16):
        for j in range(i % 2, 16, 2):
            draw.rectangle([j * step, i * step, (j + 1) * step - 1, (i + 1) * step - 1],
                           fill=(166, 166, 166, 255))
    return board


def _verdict(r: _DigitReading, min_confidence: float) -> str:
    best, p = r.top[0]
    if r.status == "no digit":
        return f"**no digit**: {r.reason} (the model would say {best}, {p:.1%})"
    if r.status == "unsure":
        return (f"**not sure**: best {best}, {p:.1%}, below {min_confidence:.0%}"
                if not math.isnan(p) else "**not sure**: the model gave no number")
    return f"**{r.label}** · {p:.1%}"


def _seen(r: _DigitReading) -> Any:
    from PIL import Image

    pixels = (r.image[0].clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
    return Image.frombytes("L", (pixels.shape[1], pixels.shape[0]), pixels.numpy().tobytes())


def build_demo(
    choices: Sequence[ModelChoice] | None = None,
    *,
    selected: Sequence[ModelChoice] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> gr.Blocks:
    """The page, as a Gradio app: :func:`serve` it (or ``launch()`` it as any Gradio app).

    Args:
        choices: the models and weight sets offered (default :func:`available_choices`);
            those of ``selected`` missing from it are added.
        selected: those shown when the page opens (default: each model's default fp32
            weights, side by side).
        min_confidence: the threshold below which a model answers "not sure", at first
            (the page has a slider); 0 answers every digit.

    Returns:
        A ``gradio.Blocks``.

    Raises:
        ImportError: Gradio is not installed (:data:`DEMO_EXTRA`).
    """
    gr = _gradio()
    offered = list(choices) if choices is not None else available_choices()
    for s in selected or ():
        if s not in offered:
            offered.append(s)
        elif s.module is not None:  # already built (a file's weights): keep it
            offered[offered.index(s)] = s
    if selected is None:
        picked = [c for c in offered if not c.quantized and c.weights is _default(c.model, False)
                  and c.source is None] or offered[:1]
    else:
        picked = [offered[offered.index(s)] for s in selected]
    models = _Models(offered)
    for c in picked:
        models.get(c)
    by_label = {c.label: c for c in offered}
    blank = {"background": _checkerboard(), "layers": [], "composite": None}

    # Gradio keeps each stroke's pictures in its cache folder: emptied of those over half
    # an hour old, every half hour.
    with gr.Blocks(title="tp3nets: draw a digit", analytics_enabled=False,
                   delete_cache=(1800, 1800)) as demo:
        gr.Markdown(
            "## Draw a digit\nDraw one digit with the mouse (black or white strokes), or "
            "upload a photo or a scan. Each model chosen below reads it: the 28x28 image "
            "it saw, its three most probable classes with their calibrated probabilities, "
            "and its answer, or *not sure*, or *no digit*.")
        last = gr.State(None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                with gr.Tabs():
                    with gr.Tab("Draw", id="draw"):
                        sketch = gr.Sketchpad(
                            value=blank,
                            type="pil", image_mode="RGBA", format="png", layers=False,
                            transforms=(), canvas_size=(_CANVAS, _CANVAS), fixed_canvas=True,
                            brush=gr.Brush(colors=list(_STROKES), default_color=_STROKES[0],
                                           color_mode="fixed", default_size=_BRUSH),
                            label="Draw one digit", elem_id="tp3nets-sketch")
                    with gr.Tab("Upload", id="upload"):
                        upload = gr.Image(
                            type="filepath", image_mode=None, sources=["upload", "clipboard"],
                            label="A photo or a scan of one digit", elem_id="tp3nets-upload")
                picker = gr.Dropdown(
                    [c.label for c in offered], value=[c.label for c in picked],
                    multiselect=True, filterable=True, elem_id="tp3nets-models",
                    label="Models and weights, side by side (int8: MNIST_INT8, on the CPU)")
                threshold = gr.Slider(
                    0, 1, value=min_confidence, step=0.01, elem_id="tp3nets-threshold",
                    label="Answer 'not sure' below this probability (0: always answer)")
            with gr.Column(scale=2):
                status = gr.Markdown("Draw a digit, or upload a picture.",
                                     elem_id="tp3nets-status")
                slots: list[tuple[Any, Any, Any, Any]] = []
                for c in offered:
                    with gr.Row(visible=c in picked, equal_height=False,
                                elem_id=f"tp3nets-model-{c.slug}",
                                elem_classes=["tp3nets-slot"]) as row:
                        with gr.Column(scale=2, min_width=180):
                            gr.Markdown(f"#### {c.label}")
                            verdict = gr.Markdown("", elem_id=f"tp3nets-reading-{c.slug}",
                                                  elem_classes=["tp3nets-reading"])
                        seen = gr.Image(label="what it saw", height=120, width=120, scale=1,
                                        min_width=130, interactive=False, format="png",
                                        buttons=[], elem_classes=["tp3nets-seen"])
                        top = gr.Label(num_top_classes=3, label="top 3", scale=2,
                                       min_width=200, elem_classes=["tp3nets-top"])
                    slots.append((row, verdict, seen, top))

        def outputs(picture: Any, labels: list[str], p_min: float, what: str) -> list[Any]:
            chosen = {by_label[x] for x in labels if x in by_label}
            note = f"Reading {what}." if picture is not None else \
                "Draw a digit, or upload a picture."
            out: list[Any] = []
            readings: dict[ModelChoice, _DigitReading | str] = {}
            for c in offered:
                if picture is None or c not in chosen:
                    continue
                try:
                    readings[c] = models.read(c, picture, p_min)
                except ValueError as exc:  # an unreadable upload (ImageFileError)
                    readings[c] = " ".join(str(exc).split())
            errors = {r for r in readings.values() if isinstance(r, str)}
            if errors:
                note = f"Cannot read {what}: {sorted(errors)[0]}"
            for c in offered:
                r = readings.get(c)
                out.append(gr.Row(visible=c in chosen))
                if isinstance(r, _DigitReading):
                    out += [_verdict(r, p_min), _seen(r), dict(r.top)]
                else:
                    out += ["", None, None]
            return [note, *out]

        flat = [status, *[x for slot in slots for x in slot]]

        def from_sketch(value: Any, labels: list[str], p_min: float) -> list[Any]:
            picture = _sketch_picture(value)
            return [picture, *outputs(picture, labels, p_min, "the drawing")]

        def cleared(labels: list[str], p_min: float) -> list[Any]:
            return [blank, None, *outputs(None, labels, p_min, "the drawing")]

        def from_upload(path: str | None, labels: list[str], p_min: float) -> list[Any]:
            what = f"{os.path.basename(path)}" if path else "the upload"
            return [path, *outputs(path, labels, p_min, what)]

        def again(picture: Any, labels: list[str], p_min: float) -> list[Any]:
            what = os.path.basename(picture) if isinstance(picture, str) else "the drawing"
            return outputs(picture, labels, p_min, what)

        common: dict[str, Any] = {"trigger_mode": "always_last", "show_progress": "hidden"}
        # The sketchpad's change event does not fire for strokes over a background
        # (Gradio 6): input does, at each stroke's end. Its bin clears the background
        # too: put it back.
        sketch.input(from_sketch, [sketch, picker, threshold], [last, *flat], **common)
        sketch.clear(cleared, [picker, threshold], [sketch, last, *flat], **common).then(
            None, js=_PICK_BRUSH)
        upload.change(from_upload, [upload, picker, threshold], [last, *flat], **common)
        picker.change(again, [last, picker, threshold], flat, **common)
        threshold.release(again, [last, picker, threshold], flat, **common)
    return demo


def _gradio() -> Any:
    """Gradio, with its analytics off; an ImportError naming the extra without it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as exc:
        why = "" if exc.name == "gradio" else f" (importing it failed: {exc})"
        raise ImportError(f"the demo needs Gradio{why}: {DEMO_EXTRA}", name="gradio") from exc
    return gradio


def _check_port(host: str, port: int) -> None:
    """Raise an :class:`OSError` with one clear line when ``host:port`` cannot be served
    (in use, or a host that is not this machine's)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(errno.EADDRNOTAVAIL,
                      f"cannot serve on host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"port {port} on {host} is in use (another "
                              "program, or a demo already running); pass --port with "
                              "another port") from None
            raise OSError(exc.errno, f"cannot serve on {host}:{port}: "
                          f"{exc.strerror or exc}") from None


def serve(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the page at ``http://host:port/`` until interrupted (Ctrl-C), then close it.

    Nothing is fetched from the network: no share link, analytics off, no server-side
    rendering (it would need Node), no run history.

    Args:
        demo: the page (:func:`build_demo`).
        host: the address to listen on (``0.0.0.0``: every interface).
        port: the port.
        on_ready: called with the page's address once it is served.

    Raises:
        OSError: the port is in use or the host is not this machine's.
        KeyboardInterrupt: Ctrl-C, after the server is closed.
    """
    _check_port(host, port)
    _gradio()
    demo.queue(default_concurrency_limit=2)
    options = {
        "server_name": host, "server_port": port, "share": False, "inbrowser": False,
        "prevent_thread_lock": True, "quiet": True, "show_error": True,
        "ssr_mode": False, "pwa": False, "mcp_server": False, "enable_monitoring": False,
        "run_history": False, "footer_links": [], "css": _CSS, "js": _PICK_BRUSH,
    }
    # Gradio 6 releases add launch options (run_history, footer_links): those it has.
    known = inspect.signature(demo.launch).parameters
    try:
        demo.launch(**{k: v for k, v in options.items() if k in known})
    except OSError as exc:  # taken between the check and the launch
        raise OSError(errno.EADDRINUSE, f"cannot serve on {host}:{port}: {exc}") from None
    try:
        shown = "localhost" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        if on_ready is not None:
            on_ready(f"http://{shown}:{port}/")
        while demo.is_running:
            time.sleep(0.2)
    finally:
        demo.close(verbose=False)
