"""Finding the digit in phone photos of pen and pencil on paper under uneven light
(``MNISTPreprocess.inspect``, the steps of ``tp3nets/data/_ink.py`` and ``_locate.py``).

Each test is one class of picture the preprocessing used to get wrong: faint pencil on a
sheet beside a dark table, pencil's grain, a sheet half in a deep shadow (which way the ink
goes), a digit across a margin line, a lone piece of a ruled line. The pictures are made
here, small, from the sample digits that ship with tp3nets (never the MNIST test images).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

import tp3nets
from _support import sample_ink
from tp3nets import MNISTPreprocess, read_digits

WEIGHTS = tp3nets.ConvNet4_Weights.DEFAULT


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tp3nets.convnet4(weights=WEIGHTS).eval()


def _jpeg(page: np.ndarray, blur: float = 0.8, quality: int = 85) -> Image.Image:
    """A page in [0, 1] (grey (H, W) or colour (H, W, 3)) as a phone saves it: blurred a
    little, JPEG."""
    img = Image.fromarray((np.clip(page, 0, 1) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.filter(ImageFilter.GaussianBlur(blur)).convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def _photo(page: np.ndarray, blur: float = 0.8) -> Image.Image:
    """A grey page in [0, 1] as a phone saves it: blurred a little, JPEG."""
    return _jpeg(page, blur)


def _pencil(label: int, side: int, rng: np.random.Generator, opacity: float) -> np.ndarray:
    """A pencil digit's opacity: grey, not opaque, grainy (the paper's fibres show through
    specks of the stroke)."""
    fibres = np.abs(rng.normal(0.0, 1.0, (side // 2 + 1, side // 2 + 1)))
    fibres = np.kron(fibres, np.ones((2, 2)))[:side, :side]  # grain of two pixels
    return opacity * sample_ink(label, side) * np.clip(1 - 0.5 * fibres, 0, 1)


def _read(model: torch.nn.Module, img: Image.Image) -> tuple[str, str | None]:
    (reading,) = read_digits(model, [img], weights=WEIGHTS)
    return reading.status, reading.label


def _wood(rng: np.random.Generator, h: int, w: int, level: float) -> np.ndarray:
    """A wooden table top: stripes of grain, strong enough to break into pieces."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    grain = np.sin(yy / 4 + 2 * np.sin(xx / 17))
    return level * (1 + 0.15 * grain) + rng.normal(0.0, 0.01, (h, w))


@pytest.mark.parametrize("table", ["wood", "dark wood", "plain dark"])
def test_pencil_beside_a_table_is_read(model: torch.nn.Module, table: str) -> None:
    """A table along the sheet's edge, divided by the sheet's brightness, is far stronger
    "ink" than pencil: it does not set the threshold or the darkness a piece of ink must
    reach, and its grain, in stripes that each touch the edge for a short stretch, runs
    along the edge as one (it is no digit, nor a number of several). The faint pencil
    digit on the sheet is found and read."""
    read = []
    for label in range(10):
        rng = np.random.default_rng(label)
        h, w = 300, 360
        page = 0.85 + rng.normal(0.0, 0.01, (h, w))
        page[:, :60] = (_wood(rng, h, 60, 0.3) if table == "wood"
                        else _wood(rng, h, 60, 0.18) if table == "dark wood"
                        else 0.15 + rng.normal(0.0, 0.01, (h, 60)))
        page[90:210, 170:290] *= 1 - _pencil(label, 120, rng, 0.35)
        read.append(_read(model, _photo(page)) == ("digit", str(label)))
    assert sum(read) >= 8, read


def test_pencil_beside_a_grained_table_over_half_the_picture(model: torch.nn.Module) -> None:
    """A table with strong grain fills half the picture: its texture, not the sheet's,
    would set a noise floor lower than the table's own grain if the floor were measured on
    the sheet alone (SELECTION.md, "The noise floor measured on the lit paper"), and the
    grain would be taken for ink all over. The pencil digit on the sheet's half is found
    and read."""
    read = []
    for label in range(10):
        rng = np.random.default_rng(label)
        h, w = 300, 360
        page = 0.85 + rng.normal(0.0, 0.01, (h, w))
        t = h // 2
        yy, xx = np.mgrid[0:t, 0:w].astype(np.float64)
        grain = np.sin(xx / 3 + 3 * np.sin(yy / 11))
        page[h - t:, :] = 0.35 * (1 + 0.6 * grain) + rng.normal(0.0, 0.02, (t, w))
        page[40:140, 200:300] *= 1 - _pencil(label, 100, rng, 0.4)
        read.append(_read(model, _photo(page)) == ("digit", str(label)))
    assert sum(read) >= 9, read


@pytest.mark.parametrize("width", [5, 9])
def test_grainy_pencil_is_ink_not_shade(model: torch.nn.Module, width: int) -> None:
    """Pencil's grain breaks a stroke into specks with fainter ink between them: a speck's
    surroundings are judged with that ink (not as the dark edge of a table or a shadow),
    and a dark table beside the sheet is not the darkest "ink" the specks are measured
    by. Soft pencil, thin or thick, is found and read."""
    from scipy import ndimage

    read = []
    for label in range(10):
        rng = np.random.default_rng(label)
        h, w = 300, 360
        page = 0.85 + rng.normal(0.0, 0.01, (h, w))
        page[:, :50] = 0.2 + rng.normal(0.0, 0.01, (h, 50))
        ink = ndimage.grey_dilation(sample_ink(label, 140), size=width)
        fibres = np.kron(np.abs(rng.normal(0.0, 1.0, (71, 71))), np.ones((2, 2)))[:140, :140]
        page[80:220, 150:290] *= 1 - 0.5 * ink * np.clip(1 - 0.8 * fibres, 0, 1)
        read.append(_read(model, _photo(page)) == ("digit", str(label)))
    assert sum(read) >= 9, read


def _half_in_shadow(label: int, table: bool) -> Image.Image:
    """Dark ink on a sheet three quarters in a deep shadow (and on a table): the border and
    the median lie low in the picture's range, as a dark ground under light ink does."""
    rng = np.random.default_rng(label)
    h, w = 300, 360
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    shadow = 1 / (1 + np.exp(-np.clip((0.7 * w - xx - 0.3 * yy) / 4.0, -30, 30)))
    page = 0.85 * (1 - 0.7 * shadow) + rng.normal(0.0, 0.01, (h, w))
    if table:
        page[h - 60:, :] = 0.12 + rng.normal(0.0, 0.01, (60, w))
    page[60:170, 230:340] *= 1 - 0.8 * sample_ink(label, 110)
    return _photo(page)


@pytest.mark.parametrize("table", [False, True])
def test_a_sheet_mostly_in_shadow_holds_dark_ink(model: torch.nn.Module, table: bool) -> None:
    """A ground in the middle of the picture's range (neither at its dark end nor even) is
    paper under uneven light: the ink is dark, and the lit paper beside the shadow is not
    read as light ink."""
    read = [_read(model, _half_in_shadow(label, table)) for label in range(10)]
    assert read == [("digit", str(label)) for label in range(10)]


def test_light_ink_on_a_noisy_dark_ground_stays_light(model: torch.nn.Module) -> None:
    """Chalk on a dark board, photographed with noise: the ground lies at the dark end of
    the range and is even, so the ink is light."""
    rng = np.random.default_rng(0)
    read = []
    for label in range(10):
        board = 0.15 + rng.normal(0.0, 0.02, (260, 300))
        board[60:200, 90:230] += 0.7 * sample_ink(label, 140)
        read.append(_read(model, _photo(board)))
    assert read == [("digit", str(label)) for label in range(10)]


def _margin(label: int | None) -> Image.Image:
    """Ruled paper's red margin line from top to bottom, and a blue digit written across
    it (``None``: none)."""
    rng = np.random.default_rng(0 if label is None else label)
    h, w = 320, 300
    rgb = np.ones((h, w, 3)) * 0.9 + rng.normal(0.0, 0.01, (h, w, 1))
    rgb[:, 98:101] = rgb[:, 98:101] * 0.3 + 0.7 * np.array([0.86, 0.31, 0.35])
    if label is not None:
        ink = np.zeros((h, w, 1))
        ink[100:220, 60:180, 0] = 0.85 * sample_ink(label, 120)
        rgb = rgb * (1 - ink) + ink * np.array([0.1, 0.12, 0.45])
    return _jpeg(rgb, blur=0.8, quality=85)


def test_a_digit_across_a_margin_line_is_read(model: torch.nn.Module) -> None:
    """A thin line from one side of the picture to the other is cleared as ruled lines are:
    the digit that crosses it no longer spans the picture with it (and counts as its
    edge)."""
    read = [_read(model, _margin(label)) for label in range(10)]
    assert read == [("digit", str(label)) for label in range(10)]


def test_a_margin_line_alone_is_no_digit(model: torch.nn.Module) -> None:
    """The margin line alone is a line, not a "1"."""
    seen = MNISTPreprocess().inspect(_margin(None))
    assert not seen.found
    assert _read(model, _margin(None)) == ("no digit", None)


def test_a_piece_of_a_ruled_line_is_no_digit(model: torch.nn.Module) -> None:
    """A straight hairline (where the threshold kept a part of a faint ruled line) is
    thinner than any pen writes a digit that tall: no digit, not a "1"."""
    rng = np.random.default_rng(1)
    page = 0.9 + rng.normal(0.0, 0.01, (300, 360))
    page[40:230, 200:202] = 0.45
    seen = MNISTPreprocess().inspect(_photo(page, blur=0.5))
    assert not seen.found
    assert seen.reason is not None
    assert "hairline" in seen.reason


def _noisy_squared_sheet(seed: int, label: int | None, noise: float) -> Image.Image:
    """A dim photo of squared paper with a red margin line, noisy enough that the margin
    line's ink breaks into short pieces at the threshold; ``label``: a digit beside it."""
    rng = np.random.default_rng(seed)
    h, w = 300, 280
    rgb = np.ones((h, w, 3)) * 0.5
    grid = np.array([0.35, 0.45, 0.6])
    for y in range(8, h, 17):
        rgb[y:y + 2] = rgb[y:y + 2] * 0.6 + 0.4 * grid
    for x in range(5, w, 17):
        rgb[:, x:x + 2] = rgb[:, x:x + 2] * 0.6 + 0.4 * grid
    rgb[:, 60:63] = rgb[:, 60:63] * 0.7 + 0.3 * np.array([0.55, 0.15, 0.15])
    if label is not None:
        ink = np.zeros((h, w, 1))
        ink[100:210, 120:230, 0] = 0.85 * sample_ink(label, 110)
        rgb = rgb * (1 - ink) + ink * np.array([0.08, 0.08, 0.1])
    rgb = rgb + rng.normal(0.0, noise, (h, w, 1))
    return _jpeg(rgb, blur=0.6, quality=80)


def test_a_margin_line_broken_by_noise_is_no_digit(model: torch.nn.Module) -> None:
    """The pieces of a margin line broken by a dim photo's noise join into a straight "1"
    that was answered at 0.99; its line runs on beyond it over the rest of the margin line:
    a line, not a digit. The digits written beside it are still read."""
    sheets = [_noisy_squared_sheet(seed, None, noise)
              for noise in (0.015, 0.02, 0.025) for seed in range(12)]
    answers = read_digits(model, sheets, weights=WEIGHTS)
    assert [r.label for r in answers if r.status == "digit"] == []
    digits = read_digits(model, [_noisy_squared_sheet(label, label, 0.02) for label in range(10)],
                         weights=WEIGHTS)
    assert [r.label for r in digits] == [str(label) for label in range(10)]


def _straight(length: int, *, continued: float, tight: bool = False
              ) -> tuple[Any, Any, torch.Tensor]:
    """A vertical piece ``length`` px tall in a 200x120 ink mask, whose line goes on above
    and below it over ``continued`` of the way (in dashes); ``tight``: the picture is
    cropped to the piece."""
    from tp3nets.data._pieces import _parts

    h = length + 4 if tight else 200
    weak = torch.zeros(h, 120, dtype=torch.bool)
    top = 2 if tight else 80
    weak[top:top + length, 59:61] = True
    piece = weak.clone()
    if continued:
        period = 10
        on = round(continued * period)
        rows = torch.arange(h)
        dashes = (rows % period) < on
        outside = (rows < top - 3) | (rows >= top + length + 3)
        weak[dashes & outside, 59:61] = True
    labels, parts = _parts(piece, piece.float())
    return parts[0], labels, weak


def test_a_piece_is_on_a_line_only_where_its_line_goes_on() -> None:
    from tp3nets.data._locate import _on_a_line

    assert _on_a_line(*_straight(30, continued=1.0))
    assert _on_a_line(*_straight(30, continued=0.7))
    assert not _on_a_line(*_straight(30, continued=0.0))  # a "1" alone on its paper
    assert not _on_a_line(*_straight(30, continued=0.3))  # crossing other lines
    assert not _on_a_line(*_straight(60, continued=1.0, tight=True))  # nothing beyond it


def _canvas(ink: np.ndarray, side: int, fg: tuple[int, int, int], bg: tuple[int, int, int],
            at: tuple[int, int] | None = None) -> Image.Image:
    """A canvas export: ``ink`` (0..1) drawn in ``fg`` on a plain ``bg``, centred or at
    ``at`` (top, left)."""
    h, w = ink.shape
    top, left = at if at is not None else ((side - h) // 2, (side - w) // 2)
    alpha = np.zeros((side, side, 1))
    alpha[top:top + h, left:left + w, 0] = ink
    rgb = np.array(bg, np.float64) * (1 - alpha) + np.array(fg, np.float64) * alpha
    return Image.fromarray(rgb.astype(np.uint8))


def test_colour_strokes_on_a_colour_ground_of_the_same_lightness_are_read(
        model: torch.nn.Module) -> None:
    """A magenta digit on green, about as light: the channels where the stroke is lighter
    than the ground are not read (their paper estimate made a halo of false ink), and the
    edges are judged where the ink is dark. Each was answered "only shadows"."""
    pairs = [((219, 45, 214), (81, 157, 6)), ((207, 1, 170), (14, 162, 15)),
             ((232, 117, 243), (85, 252, 29)), ((30, 90, 230), (200, 60, 40))]
    pictures = [_canvas(sample_ink(label, 180), 280, *pairs[label % 4]) for label in range(10)]
    assert [r.label for r in read_digits(model, pictures, weights=WEIGHTS)] == [
        str(label) for label in range(10)]


def test_a_bold_digit_as_tall_as_its_canvas_is_no_ruled_line() -> None:
    """The sides of a bold "8" as tall as its canvas fill more than 0.7 of their columns,
    as ruled lines do; they are far thicker than a line, and stay (half the digit was
    cleared, and the rest read as another digit)."""
    from scipy import ndimage

    ink = ndimage.grey_dilation(sample_ink(8, 300), size=(13, 13))
    ys, xs = np.nonzero(ink > 0.05)
    ink = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = ink.shape
    canvas = np.zeros((h + 40, 2 * h))
    canvas[20:20 + h, h - w // 2:h - w // 2 + w] = ink
    picture = torch.from_numpy(canvas)[None].float()  # white on black
    found = tp3nets.data._locate.locate_digit(picture)
    assert found.found
    assert found.box is not None
    assert found.box[3] - found.box[1] >= 0.9 * w  # the whole "8", not half of it


@pytest.mark.parametrize("spare", [10, 20])
@pytest.mark.parametrize("light", [True, False], ids=["white on black", "black on white"])
def test_a_bold_digit_drawn_large_on_a_plain_canvas_is_read(model: torch.nn.Module,
                                                            spare: int, light: bool) -> None:
    """A bold digit drawn large covers 35-45 % of its canvas: on a plain ground its spread
    is no paper grain (the threshold landed above the strokes: "blank"), and one bold mark
    with at most two holes is no texture ("ink all over the picture")."""
    from scipy import ndimage

    pictures = []
    for label in range(10):
        ink = ndimage.grey_dilation(sample_ink(label, 200), size=(9, 9))
        ys, xs = np.nonzero(ink > 0.05)
        ink = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        fg, bg = ((255, 255, 255), (0, 0, 0)) if light else ((0, 0, 0), (255, 255, 255))
        pictures.append(_canvas(ink, ink.shape[0] + spare, fg, bg))
    assert [r.label for r in read_digits(model, pictures, weights=WEIGHTS)] == [
        str(label) for label in range(10)]


def test_the_soft_tip_of_a_shadow_from_the_edge_is_shading(model: torch.nn.Module) -> None:
    """A photographed blank sheet (the benchmark's own generator, ``"bench"`` split, picture
    110) whose one mark is the soft tip of a shadow coming in from a corner was answered
    "1" at 0.98: alone, a soft piece had nothing sharper beside it to be judged shading
    by. Joined to the picture's edge by fainter ink, it is a shadow's tip."""
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        real_inputs = importlib.import_module("real_inputs")
    finally:
        sys.path.pop(0)
    picture, _ = real_inputs.blank(real_inputs._rng(0, "blank", "bench", 110), None)
    seen = MNISTPreprocess().inspect(picture)
    assert not seen.found
    assert seen.reason is not None
    assert "shad" in seen.reason
    assert _read(model, picture) == ("no digit", None)


# Marks a form or a person draws around the digit: a printed box, a row of boxes, a
# circle, an underline. They are not the digit's strokes and must stay out of the crop.


def _form_page(label: int | None, mark: str, *, mark_level: float = 0.8,
               ink: float = 0.85, seed: int = 0, faint_bottom: float | None = None
               ) -> Image.Image:
    """A 300x400 photographed page with a digit (``label``; ``None``: none) about 110 px
    tall and ``mark`` drawn around it at darkness ``mark_level`` (0: paper, 1: black);
    with ``faint_bottom``, the boxes' bottom rule is that much darker than the paper only."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    h, w, side = 300, 400, 110
    top, left = 95, 150
    lines = Image.new("L", (w, h), 0)
    bottom = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(lines)
    if mark in ("box", "row"):
        # One box, or a row of them running past both edges of the picture.
        for k in (range(-3, 4) if mark == "row" else (0,)):
            a = left - 25 + k * (side + 50)
            draw.rectangle([a, top - 25, a + side + 50, top + side + 25], outline=255, width=3)
        if faint_bottom is not None:
            a, b = (0, w) if mark == "row" else (left - 25, left + side + 25)
            draw.line([a, top + side + 24, b, top + side + 24], fill=0, width=5)
            ImageDraw.Draw(bottom).line([a, top + side + 24, b, top + side + 24], fill=255,
                                        width=3)
    elif mark == "open circle":
        draw.arc([left - 45, top - 40, left + side + 45, top + side + 40], 100, 420,
                 fill=255, width=6)
    elif mark == "underline":
        draw.line([left - 5, top + side + 12, left + side + 10, top + side + 14], fill=255,
                  width=5)
    elif mark == "touching circle":  # drawn tight: the digit's strokes reach it
        draw.ellipse([left, top, left + side, top + side], outline=255, width=5)
    elif mark == "touching box":
        draw.rectangle([left + 12, top + 12, left + side - 12, top + side - 12], outline=255,
                       width=4)
    page = 0.9 + rng.normal(0.0, 0.01, (h, w)) - 0.1 * np.linspace(0, 1, w)[None, :]
    page -= mark_level * np.asarray(lines, np.float64) / 255 * page
    page -= (faint_bottom or 0.0) * np.asarray(bottom, np.float64) / 255 * page
    if label is not None:
        page[top:top + side, left:left + side] *= 1 - ink * sample_ink(label, side)
    return _photo(page)


@pytest.mark.parametrize("mark", ["box", "row", "open circle", "underline"])
def test_a_digit_in_a_box_circled_or_underlined_is_read(model: torch.nn.Module,
                                                         mark: str) -> None:
    """The box, the row of boxes (whose long rules span the picture, as ruled lines do), a
    hand-drawn circle left open, an underline: none is in what the model sees."""
    read = [_read(model, _form_page(label, mark, seed=label)) for label in range(10)]
    assert read == [("digit", str(label)) for label in range(10)]
    seen = MNISTPreprocess().inspect(_form_page(7, mark))
    plain = MNISTPreprocess().inspect(_form_page(7, "none"))
    assert seen.found
    assert float((seen.image - plain.image).abs().max()) < 0.35


@pytest.mark.parametrize("mark", ["touching circle", "touching box"])
def test_a_frame_the_digit_touches_is_left_out(model: torch.nn.Module, mark: str) -> None:
    """A circle drawn tight around the digit, a box its strokes reach: frame and digit are
    one piece of ink, and the frame is the band along that piece's outline. (Read with its
    frame, a "7" in a circle was a "0", and most digits in a box "unsure".)"""
    read = [_read(model, _form_page(label, mark, seed=label)) for label in range(10)]
    assert read == [("digit", str(label)) for label in range(10)]


def test_a_pencil_digit_in_a_black_box_is_read(model: torch.nn.Module) -> None:
    """A black printed box is far darker than pencil: left out of the threshold, it does
    not make the pencil count as grain."""
    read = [_read(model, _form_page(label, "box", mark_level=0.9, ink=0.45, seed=label))
            for label in range(10)]
    assert read == [("digit", str(label)) for label in range(10)]


@pytest.mark.parametrize("mark", ["box", "row"])
def test_a_box_with_a_side_under_the_threshold_is_a_frame(model: torch.nn.Module,
                                                          mark: str) -> None:
    """A box, or a row of boxes, whose bottom rule falls under the ink's threshold (a light
    or thin print) is found on the fainter ink, where it is closed; on the threshold's ink
    alone it is open, and stays in the crop."""
    read = [_read(model, _form_page(label, mark, seed=label, faint_bottom=0.25))
            for label in range(10)]
    assert read == [("digit", str(label)) for label in range(10)]
    seen = MNISTPreprocess().inspect(_form_page(7, mark, faint_bottom=0.25))
    plain = MNISTPreprocess().inspect(_form_page(7, "none"))
    assert float((seen.image - plain.image).abs().max()) < 0.35


@pytest.mark.parametrize("mark", ["box", "row", "underline"])
def test_the_marks_alone_are_no_digit_or_unsure(model: torch.nn.Module, mark: str) -> None:
    """An empty row of boxes holds no digit; an empty box or a line alone are no digit
    either, or at least not a confident digit."""
    status, _label = _read(model, _form_page(None, mark))
    assert status != "digit"
    if mark == "row":
        assert status == "no digit"


@pytest.mark.parametrize("dot", [5, 24])
def test_a_zero_with_a_dot_inside_keeps_its_ring(model: torch.nn.Module, dot: int) -> None:
    """What a frame holds is most of its height: a "0" with a speck of dust in its hole, or
    a typeface's dotted zero (a dot about a quarter of the zero's height, apart from the
    ring), is still a "0", not a frame around a dot."""
    from PIL import ImageDraw

    rng = np.random.default_rng(3)
    ring = Image.new("L", (400, 300), 0)
    draw = ImageDraw.Draw(ring)
    draw.ellipse([165, 100, 235, 200], outline=255, width=12)  # 100 tall, 46 wide inside
    draw.rectangle([200 - dot // 2, 150 - dot // 2, 200 + (dot + 1) // 2 - 1,
                    150 + (dot + 1) // 2 - 1], fill=255)
    page = 0.9 + rng.normal(0.0, 0.01, (300, 400))
    page *= 1 - 0.8 * np.asarray(ring, np.float64) / 255
    assert _read(model, _photo(page)) == ("digit", "0")


def test_two_digits_in_two_boxes_are_several(model: torch.nn.Module) -> None:
    """Frames go, what they hold stays: two boxed digits side by side are a number."""
    from PIL import ImageDraw

    rng = np.random.default_rng(4)
    page = 0.9 + rng.normal(0.0, 0.01, (300, 500))
    lines = Image.new("L", (500, 300), 0)
    draw = ImageDraw.Draw(lines)
    for a, label in ((60, 3), (260, 8)):
        draw.rectangle([a, 70, a + 170, 240], outline=255, width=2)
        page[100:210, a + 30:a + 140] *= 1 - 0.85 * sample_ink(label, 110)
    page -= 0.5 * np.asarray(lines, np.float64) / 255 * page
    seen = MNISTPreprocess().inspect(_photo(page))
    assert not seen.found
    assert seen.reason is not None
    assert "several" in seen.reason


# A digit small on a large page: under a thousandth of the picture's pixels.


def _large_page(label: int | None, *, side: int = 70, seed: int = 0, scan: bool = False,
                specks: int = 0) -> Image.Image:
    """A 2000x1500 photo of a sheet (lighting ramp, noise, JPEG) or a grayscale scan (flat
    white paper) with one digit ``side`` px tall (``label``; ``None``: none) off-centre."""
    rng = np.random.default_rng(seed)
    h, w = 1500, 2000
    if scan:
        page = np.full((h, w), 0.97)
    else:
        page = (0.85 - 0.15 * np.linspace(0, 1, w)[None, :] + 0.05 * np.linspace(0, 1, h)[:, None]
                + rng.normal(0.0, 0.01, (h, w)))
    if label is not None:
        top, left = int(rng.integers(200, 1100)), int(rng.integers(200, 1600))
        page[top:top + side, left:left + side] *= 1 - 0.85 * sample_ink(label, side)
    for _ in range(specks):
        y, x = int(rng.integers(0, h - 3)), int(rng.integers(0, w - 3))
        page[y:y + 2, x:x + 2] *= 0.5
    if scan:
        return Image.fromarray((np.clip(page, 0, 1) * 255).astype(np.uint8), "L")
    return _photo(page, blur=1.0)


@pytest.mark.parametrize("scan", [False, True], ids=["photo", "scan"])
def test_a_small_digit_on_a_large_page_is_read(model: torch.nn.Module, scan: bool) -> None:
    """A 70 px digit in a 2000x1500 page covers 0.1 % of it: found (its ink is not below
    the picture's 99.9th percentile any more), read as ink on paper (not the noise's
    polarity), and read at the page's own resolution, not shrunk to a dozen pixels."""
    read = [_read(model, _large_page(label, seed=label, scan=scan)) for label in range(10)]
    assert read == [("digit", str(label)) for label in range(10)]


def test_a_large_blank_page_is_no_digit(model: torch.nn.Module) -> None:
    """The second look at a larger working copy does not make digits of a blank page's
    noise, nor of a few specks of dust."""
    for seed, specks in ((0, 0), (1, 5)):
        status, _label = _read(model, _large_page(None, seed=seed, specks=specks))
        assert status == "no digit", (seed, specks)
    assert _read(model, _large_page(None, scan=True)) == ("no digit", None)


def _thin_page(label: int, seed: int) -> Image.Image:
    """A 2400x1800 photo of a sheet with a digit 60 px tall drawn with a pen two or three
    pixels wide, grey (the sample digit's strokes thinned), as a JPEG file reads."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    h, w, side = 1800, 2400, 60
    page = (0.85 - 0.1 * np.linspace(0, 1, w)[None, :] + 0.05 * np.linspace(0, 1, h)[:, None]
            + rng.normal(0.0, 0.01, (h, w)))
    ink = ndimage.binary_erosion(sample_ink(label, side) > 0.5).astype(np.float64)
    top, left = int(rng.integers(200, h - 300)), int(rng.integers(200, w - 300))
    page[top:top + side, left:left + side] *= 1 - 0.55 * ink
    return _photo(page, blur=1.0)


def test_a_thin_small_digit_in_a_photo_file_is_found(model: torch.nn.Module) -> None:
    """A thin digit small on a large photo averages away in the shrunk working copy: the
    second look keeps its strokes (the darkest pixel of each block) and reads it from the
    picture's own pixels. A picture read from a file (PIL, shrunk when read) gets the same
    looks, and the same answers, as the same picture given as a tensor."""
    pages = [_thin_page(label, seed=label) for label in range(10)]
    from_files = read_digits(model, pages, weights=WEIGHTS)
    assert [(r.status, r.label) for r in from_files] == [
        ("digit", str(label)) for label in range(10)]
    as_tensors = read_digits(model, [torch.from_numpy(np.asarray(p).copy()).permute(2, 0, 1)
                                     for p in pages], weights=WEIGHTS)
    assert [r.label for r in as_tensors] == [r.label for r in from_files]


def test_a_faint_small_digit_below_a_table_is_found(model: torch.nn.Module) -> None:
    """A table across the top of a 2400x1800 photo and a faint digit 60 px tall on the
    sheet: on the first look's averaged copy only the table's edge is ink ("ink only along
    the picture's edges"); the second look, which keeps thin strokes, finds the digit."""
    from scipy import ndimage

    read = []
    for label in range(10):
        rng = np.random.default_rng(label)
        h, w, side = 1800, 2400, 60
        page = (0.85 - 0.1 * np.linspace(0, 1, w)[None, :]
                + 0.05 * np.linspace(0, 1, h)[:, None] + rng.normal(0.0, 0.01, (h, w)))
        page[:300, :] = _wood(rng, 300, w, 0.3)
        ink = ndimage.binary_erosion(sample_ink(label, side) > 0.5).astype(np.float64)
        top, left = int(rng.integers(500, 1200)), int(rng.integers(500, 1800))
        page[top:top + side, left:left + side] *= 1 - 0.4 * ink
        read.append(_read(model, _photo(page, blur=1.5)))
    assert read == [("digit", str(label)) for label in range(10)]


def test_the_second_look_keeps_a_one_pixel_stroke_dark() -> None:
    """Shrunk 3x for the second look, a one-pixel dark line keeps its darkness, where area
    averaging leaves a third of it; light ink on a dark ground likewise; uint8 pictures (a
    PIL file's pixels) give the floats a float picture gives."""
    from tp3nets.data._locate import _keeping_ink

    paper = torch.full((1, 2304, 2304), 0.9)
    paper[0, 1000, 200:2000] = 0.3
    kept = _keeping_ink(paper, 768, dark=True)
    assert kept.shape == (1, 768, 768)
    assert abs(float(kept.min()) - 0.3) < 1e-6
    averaged = torch.nn.functional.interpolate(paper[None], size=(768, 768), mode="area")[0]
    assert float(averaged.min()) > 0.65
    assert abs(float(_keeping_ink(1 - paper, 768, dark=False).max()) - 0.7) < 1e-6
    as_bytes = (paper * 255).round().to(torch.uint8)
    assert torch.allclose(_keeping_ink(as_bytes, 768, dark=True),
                          _keeping_ink(as_bytes.float() / 255, 768, dark=True))


def test_a_closing_wider_than_twice_the_picture_is_capped_without_changing_it() -> None:
    """The paper's closing caps its window at twice the picture's side plus one: beyond
    that, every pixel's window already holds its whole row and column (the edges continue),
    so the result is scipy's for the window asked. A plain picture, all "ink", measures
    strokes as wide as itself; the uncapped window cost seconds on a 12 MP black photo."""
    from scipy import ndimage

    from tp3nets.data._ink import _closing

    x = torch.rand(1, 20, 30, generator=torch.Generator().manual_seed(0))
    for k, along in ((101, None), (1001, 1), (75, 0)):
        size = (1, k, k) if along is None else (1, k, 1) if along == 1 else (1, 1, k)
        expected = ndimage.grey_closing(x.numpy(), size=size, mode="nearest")
        assert np.array_equal(_closing(x, k, along).numpy(), expected), (k, along)


def test_a_black_picture_is_blank(model: torch.nn.Module) -> None:
    """A large plain black picture (a photo taken with the lens covered) is blank, as
    black, grey and white pictures of any size are."""
    for level in (0.0, 0.5, 1.0):
        seen = MNISTPreprocess().inspect(torch.full((3, 1500, 2000), level))
        assert not seen.found
        assert seen.reason is not None
        assert "blank" in seen.reason
