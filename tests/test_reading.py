"""Digits as people give them: photos, canvases, scans and prints are read; pictures without
one digit are answered "no digit" (read_digits, MNISTPreprocess.inspect).

The pictures are made here from the ten sample digits that ship with tp3nets (never from
the MNIST test images): each digit's ink is enlarged, then drawn as pen on lit paper, as
strokes on a transparent canvas, and so on.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torch import Tensor

import tp3nets
from _support import sample_ink
from tp3nets import MNISTPreprocess, read_digits
from tp3nets.reading import DEFAULT_MIN_CONFIDENCE

WEIGHTS = tp3nets.ConvNet4_Weights.DEFAULT


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tp3nets.convnet4(weights=WEIGHTS).eval()


def _jpeg(img: Image.Image, quality: int = 75) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def _lit_paper(h: int, w: int, rng: np.random.Generator, shadow: bool = True) -> np.ndarray:
    """Grey, grainy paper lit unevenly: a ramp across the sheet and a shadow wedge."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    light = 0.55 + 0.4 * xx + 0.1 * yy
    if shadow:
        light = np.where(yy > 0.25 + 0.6 * xx, light * 0.55, light)
    paper = 0.85 * light + rng.normal(0.0, 0.015, (h, w))
    return np.clip(paper, 0.0, 1.0)


def photo(label: int, rng: np.random.Generator, ink_rgb: tuple[float, ...] = (0.1, 0.1, 0.45)
          ) -> Image.Image:
    """A phone photo: pen on grey paper under uneven light, off-centre, blurred, JPEG."""
    h, w = 300, 400
    paper = _lit_paper(h, w, rng)
    side = 110
    ink = np.zeros((h, w))
    top, left = 40, 230  # off-centre, partly in the shadow
    ink[top:top + side, left:left + side] = sample_ink(label, side)
    rgb = np.stack([paper * (1 - ink + ink * c) for c in ink_rgb], axis=-1)
    img = Image.fromarray((rgb * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    return _jpeg(img, 70)


def canvas(label: int, background: str) -> Image.Image:
    """A 280x280 sketchpad export: thick strokes, white or black or coloured, on a
    transparent, black or white ground."""
    ink = (sample_ink(label, 200) > 0.35).astype(np.float32)
    alpha = np.zeros((280, 280), np.float32)
    alpha[30:230, 60:260] = ink  # off-centre
    a8 = (alpha * 255).astype(np.uint8)
    if background == "transparent-white":
        return Image.merge("RGBA", [Image.fromarray(a8)] * 3 + [Image.fromarray(a8)])
    if background == "transparent-black":
        zero = Image.new("L", (280, 280), 0)
        return Image.merge("RGBA", [zero, zero, zero, Image.fromarray(a8)])
    if background == "transparent-red":
        r = Image.new("L", (280, 280), 220)
        z = Image.new("L", (280, 280), 30)
        return Image.merge("RGBA", [r, z, z, Image.fromarray(a8)])
    if background == "white-on-black":
        return Image.fromarray(a8).convert("RGB")
    return Image.fromarray(255 - a8).convert("RGB")  # black on white


def printed_page(labels: list[int], rng: np.random.Generator) -> Image.Image:
    """Dark digits side by side on white paper, as a written number."""
    h, w = 160, 100 * len(labels) + 40
    page = np.ones((h, w))
    for i, label in enumerate(labels):
        page[30:120, 30 + i * 100:120 + i * 100] -= 0.9 * sample_ink(label, 90)
    page += rng.normal(0.0, 0.01, page.shape)
    return Image.fromarray((np.clip(page, 0, 1) * 255).astype(np.uint8))


def _status(model: torch.nn.Module, pictures: list[Image.Image]) -> list[tuple[str, str | None]]:
    return [(r.status, r.label) for r in read_digits(model, pictures, weights=WEIGHTS)]


@pytest.mark.parametrize("label", range(10))
def test_phone_photos_under_uneven_light_are_read(model: torch.nn.Module, label: int) -> None:
    """A pen digit photographed on grey paper, across a shadow's edge and a lighting ramp,
    off-centre, JPEG: read as that digit (one background level for the sheet failed)."""
    rng = np.random.default_rng(label)
    assert _status(model, [photo(label, rng)]) == [("digit", str(label))]


@pytest.mark.parametrize("ink_rgb", [(0.05, 0.05, 0.05), (0.1, 0.15, 0.7), (0.8, 0.1, 0.1)])
def test_coloured_ink_is_read(model: torch.nn.Module, ink_rgb: tuple[float, ...]) -> None:
    """Black, blue and red ink all read as ink."""
    rng = np.random.default_rng(1)
    assert _status(model, [photo(3, rng, ink_rgb)]) == [("digit", "3")]


@pytest.mark.parametrize("background", ["transparent-white", "transparent-black",
                                        "transparent-red", "white-on-black", "black-on-white"])
def test_canvas_exports_are_read(model: torch.nn.Module, background: str) -> None:
    """Sketchpad strokes of any colour on a transparent ground (the opaque part is the ink),
    and opaque canvases of either polarity, are read for every digit."""
    pictures = [canvas(label, background) for label in range(10)]
    assert _status(model, pictures) == [("digit", str(k)) for k in range(10)]


def test_transparent_strokes_are_not_blank() -> None:
    """White strokes on a transparent ground give the strokes, not an empty picture."""
    seen = MNISTPreprocess().inspect(canvas(7, "transparent-white"))
    assert seen.found
    assert float(seen.image.sum()) > 20


BLANKS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "white page": lambda rng: Image.new("L", (200, 150), 250),
    "grey page": lambda rng: Image.new("RGB", (300, 200), (128, 128, 128)),
    "dark page": lambda rng: Image.new("L", (120, 90), 20),
    "lighting ramp": lambda rng: Image.fromarray(
        (np.tile(np.linspace(60, 240, 320), (240, 1))).astype(np.uint8)),
    "photographed blank sheet": lambda rng: _jpeg(Image.fromarray(
        (_lit_paper(240, 320, rng) * 255).astype(np.uint8)), 60),
    "transparent canvas": lambda rng: Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
}


@pytest.mark.parametrize("kind", sorted(BLANKS))
def test_blank_pictures_are_no_digit(model: torch.nn.Module, kind: str) -> None:
    """Blank pages (white, grey, dark, a lighting ramp, a photographed empty sheet, an empty
    canvas) are answered "no digit", never a confident class."""
    (reading,) = read_digits(model, [BLANKS[kind](np.random.default_rng(0))], weights=WEIGHTS)
    assert reading.status == "no digit", reading
    assert reading.reason is not None
    assert reading.label is None


@pytest.mark.parametrize("labels", [[1, 2], [4, 0, 7], [3, 3, 8, 5]])
def test_several_digits_side_by_side_are_no_digit(
    model: torch.nn.Module, labels: list[int]
) -> None:
    """A number of two to four digits is not one digit."""
    rng = np.random.default_rng(len(labels))
    (reading,) = read_digits(model, [printed_page(labels, rng)], weights=WEIGHTS)
    assert reading.status == "no digit"
    assert reading.reason is not None
    assert "several" in reading.reason


def _ruled(h: int = 240, w: int = 320, squared: bool = False) -> np.ndarray:
    page = np.full((h, w), 0.95)
    page[20::30, :] = 0.55
    if squared:
        page[:, 15::30] = 0.55
    return page


@pytest.mark.parametrize("squared", [False, True])
def test_ruled_and_squared_paper_alone_is_no_digit(
    model: torch.nn.Module, squared: bool
) -> None:
    """Ruled or squared paper without a digit is "no digit"."""
    img = Image.fromarray((_ruled(squared=squared) * 255).astype(np.uint8))
    (reading,) = read_digits(model, [img], weights=WEIGHTS)
    assert reading.status == "no digit"


@pytest.mark.parametrize("label", [2, 5, 7])
def test_a_digit_on_ruled_paper_is_read_without_the_lines(
    model: torch.nn.Module, label: int
) -> None:
    """The lines of ruled paper are left out of the digit."""
    page = _ruled()
    page[45:195, 100:250] *= 1 - 0.9 * sample_ink(label, 150)
    img = Image.fromarray((page * 255).astype(np.uint8))
    assert _status(model, [img]) == [("digit", str(label))]


def test_textures_are_no_digit(model: torch.nn.Module) -> None:
    """Ink all over the picture (a random texture) is not a digit."""
    rng = np.random.default_rng(3)
    noise = torch.from_numpy(rng.random((1, 1, 30, 40))).float()
    texture = torch.nn.functional.interpolate(noise, size=(240, 320), mode="bicubic")[0, 0]
    img = Image.fromarray(((texture > 0.5).numpy() * 200 + 30).astype(np.uint8))
    (reading,) = read_digits(model, [img], weights=WEIGHTS)
    assert reading.status == "no digit"


def test_the_paper_edge_and_table_are_left_out(model: torch.nn.Module) -> None:
    """A dark table along the picture's edge (the sheet does not fill the photo) is not ink."""
    rng = np.random.default_rng(5)
    page = _lit_paper(300, 400, rng, shadow=False)
    page[:, :70] = 0.12  # the table
    page[60:200, 180:320] *= 1 - 0.9 * sample_ink(4, 140)
    img = _jpeg(Image.fromarray((page * 255).astype(np.uint8)))
    assert _status(model, [img]) == [("digit", "4")]


def _sheet_on_wood(seed: int, label: int | None = None) -> Image.Image:
    """A phone photo of a sheet (white or cream, lit unevenly) lying on a wooden table that
    fills a strip along one edge: wood-coloured, with wavy grain stripes; a digit on the
    sheet when ``label`` is given; blurred, JPEG."""
    rng = np.random.default_rng(seed)
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = rng.uniform(0, np.pi)
    noise = torch.from_numpy(rng.random((1, 1, 6, 6))).float()
    wave = torch.nn.functional.interpolate(noise, size=(h, w), mode="bicubic")[0, 0].numpy()
    grain = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) / rng.uniform(3, 8) + 6 * wave)
    base = np.array([rng.uniform(0.35, 0.55), rng.uniform(0.2, 0.35), rng.uniform(0.1, 0.2)])
    wood = base * (1 + 0.15 * grain[..., None])
    edge, depth, slope = int(rng.integers(4)), rng.uniform(0.12, 0.25), rng.uniform(-0.1, 0.1)
    across, along, n = [(yy, xx, h), (yy, xx, h), (xx, yy, w), (xx, yy, w)][edge]
    line = depth * n + slope * (along - along.mean())
    table = (across < line) if edge in (0, 2) else (across > n - line)
    light = (0.7 + 0.25 * xx / w + 0.1 * yy / h)[..., None]
    paper = np.array([0.93, 0.92, 0.86]) if rng.random() < 0.5 else np.array([0.9, 0.9, 0.9])
    sheet = paper * light + rng.normal(0, 0.012, (h, w, 1))
    if label is not None:
        ink = np.zeros((h, w))
        ink[95:205, 145:255] = sample_ink(label, 110)
        sheet = sheet * (1 - 0.85 * ink[..., None])
    rgb = np.where(table[..., None], wood * light, sheet)
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return _jpeg(img.filter(ImageFilter.GaussianBlur(0.8)))


def test_a_blank_sheet_on_a_wooden_table_is_no_digit(model: torch.nn.Module) -> None:
    """The wood's grain beside the sheet is no ink: it lies on another ground than the
    sheet (another colour, reaching the picture's border). Forty blank sheets are "no
    digit" (some were "unsure", or a digit, before); a digit on such a sheet is still read."""
    blanks = read_digits(model, [_sheet_on_wood(seed) for seed in range(40)], weights=WEIGHTS)
    assert [r.status for r in blanks] == ["no digit"] * 40
    digits = [_sheet_on_wood(100 + k, k % 10) for k in range(10)]
    assert _status(model, digits) == [("digit", str(k % 10)) for k in range(10)]


def _note_on_a_white_desk(label: int) -> Image.Image:
    """A yellow note filling the right three fifths of the photo, cut by its top, right and
    bottom edges, on a white desk brighter than it; the digit on the note."""
    rng = np.random.default_rng(label)
    h, w = 300, 400
    xx = np.mgrid[0:h, 0:w][1].astype(np.float64)
    light = (0.85 + 0.1 * xx / w)[..., None]
    note = xx >= 160
    rgb = np.where(note[..., None], np.array([0.97, 0.86, 0.38]), np.array([0.98, 0.98, 0.97]))
    ink = np.zeros((h, w))
    ink[90:200, 230:340] = sample_ink(label, 110)
    rgb = rgb * light * (1 - 0.85 * ink[..., None]) + rng.normal(0, 0.01, (h, w, 1))
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return _jpeg(img.filter(ImageFilter.GaussianBlur(0.8)))


def test_a_note_larger_than_the_desk_around_it_is_the_sheet(model: torch.nn.Module) -> None:
    """Ground of another colour is a table only when it takes less of the picture than the
    sheet: a coloured note filling most of the photo, on a brighter white desk, is read."""
    notes = [_note_on_a_white_desk(label) for label in range(10)]
    assert _status(model, notes) == [("digit", str(label)) for label in range(10)]


def _in_shadow(label: int) -> Image.Image:
    """A phone photo where the phone's shadow, soft-edged and deep, covers most of the sheet
    and its border; the digit is written in the lit corner."""
    rng = np.random.default_rng(label)
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    shadow = 1 / (1 + np.exp(-np.clip((xx + yy - 260) / np.sqrt(2) / 6.0, -30, 30)))
    paper = 0.9 * (1 - 0.6 * shadow) + rng.normal(0.0, 0.01, (h, w))
    ink = np.zeros((h, w))
    ink[20:120, 20:120] = sample_ink(label, 100)
    page = np.clip(paper * (1 - 0.8 * ink), 0, 1)
    img = Image.fromarray((page * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    return _jpeg(img)


@pytest.mark.parametrize("label", range(10))
def test_a_digit_beside_a_deep_soft_shadow_is_read(model: torch.nn.Module, label: int) -> None:
    """The shadow covers most of the border, so the border's level is the shadow's (not the
    paper's), and its soft edge is no ink: the digit is found, read, and the model sees it
    alone (its ink fits MNIST's 20x20 box)."""
    img = _in_shadow(label)
    seen = MNISTPreprocess().inspect(img)
    assert seen.found, seen.reason
    assert _status(model, [img]) == [("digit", str(label))]
    rows = torch.nonzero(seen.image[0].amax(1) > 0.1).flatten()
    cols = torch.nonzero(seen.image[0].amax(0) > 0.1).flatten()
    assert int(rows[-1] - rows[0] + 1) <= 21
    assert int(cols[-1] - cols[0] + 1) <= 21


def _low_resolution(label: int) -> Image.Image:
    """A digit scanned at 8x8 as the UCI digits were (a 32x32 bitmap, each pixel the share of
    a 4x4 block that is ink), on light paper, upscaled to 48x48 without smoothing."""
    bits = MNISTPreprocess()(tp3nets.data.samples.digit(label))[0].numpy() > 0.5
    ys, xs = np.nonzero(bits)
    crop = bits[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8) * 255
    k = 32 / max(crop.shape)
    fitted = Image.fromarray(crop).resize(
        (max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))),
        Image.Resampling.NEAREST)
    square = np.zeros((32, 32))
    top, left = (32 - fitted.height) // 2, (32 - fitted.width) // 2
    square[top:top + fitted.height, left:left + fitted.width] = np.asarray(fitted) > 127
    small = square.reshape(8, 4, 8, 4).mean(axis=(1, 3))
    img = Image.fromarray((240 - 220 * small).astype(np.uint8))
    return img.resize((48, 48), Image.Resampling.NEAREST)


def test_low_resolution_digits_keep_their_half_covered_pixels(model: torch.nn.Module) -> None:
    """An 8x8 digit's pixels are partly covered: all of its ink counts, not only what a
    threshold made for sharp strokes keeps, so every one is found and nearly all are read."""
    pictures = [_low_resolution(label) for label in range(10)]
    assert all(MNISTPreprocess().inspect(img).found for img in pictures)
    read = _status(model, pictures)
    assert sum(r == ("digit", str(label)) for label, r in enumerate(read)) >= 9


def test_a_blurred_bold_digit_is_ink_not_shade(model: torch.nn.Module) -> None:
    """Thick marker strokes with soft (blurred) edges are ink: a piece counts as shading only
    when it is much softer than the sharpest one, and here every piece is as soft."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    h, w = 260, 220
    yy, xx = np.mgrid[0:h, 0:w] / 260
    paper = 0.8 - 0.15 * xx - 0.1 * yy + rng.normal(0.0, 0.01, (h, w))
    pictures = []
    for label in range(10):
        ink = np.zeros((h, w))
        ink[20:220, 10:210] = ndimage.grey_dilation(sample_ink(label, 200), size=9)
        page = np.clip(paper * (1 - 0.7 * ink), 0, 1)
        pictures.append(_jpeg(Image.fromarray((page * 255).astype(np.uint8))))
    assert _status(model, pictures) == [("digit", str(label)) for label in range(10)]


def test_specks_far_from_the_digit_are_left_out() -> None:
    """Dust far from the digit does not widen its box: the digit fills the 20x20 box."""
    page = np.ones((200, 200))
    page[50:150, 50:150] -= 0.9 * sample_ink(1, 100)
    page[10:13, 185:188] = 0.0  # dust
    out = MNISTPreprocess()(Image.fromarray((page * 255).astype(np.uint8)))
    rows = torch.nonzero(out[0].amax(1) > 0.2).flatten()
    assert int(rows[-1] - rows[0] + 1) >= 19


def test_the_model_sees_what_inspect_returns(model: torch.nn.Module) -> None:
    """read_digits' image is inspect's, and the preprocessing's forward gives it too."""
    img = photo(6, np.random.default_rng(6))
    pre = WEIGHTS.transforms()
    seen = pre.inspect(img)
    (reading,) = read_digits(model, [img], weights=WEIGHTS)
    torch.testing.assert_close(reading.image, seen.image)
    torch.testing.assert_close(pre(img), seen.image)
    assert seen.image.shape == (1, 28, 28)


def test_unsure_below_the_threshold(model: torch.nn.Module) -> None:
    """Below min_confidence the answer is "unsure" with no label; None answers every digit."""
    img = tp3nets.data.samples.digit(7)
    (sure,) = read_digits(model, [img], weights=WEIGHTS, min_confidence=None)
    assert sure.status == "digit"
    assert sure.label == "7"
    (doubt,) = read_digits(model, [img], weights=WEIGHTS, min_confidence=1.0)
    if doubt.probability < 1.0:
        assert doubt.status == "unsure"
        assert doubt.label is None
    assert doubt.top[0][0] == "7"
    assert 0 < DEFAULT_MIN_CONFIDENCE < 1


def test_read_digits_takes_paths_arrays_and_tensors(model: torch.nn.Module) -> None:
    """Files, PIL images, NumPy arrays and tensors give the same answer."""
    path = tp3nets.data.samples.digit_path(3)
    img = tp3nets.data.samples.digit(3)
    array = np.asarray(img)
    tensor: Tensor = torch.from_numpy(array.copy())
    if tensor.dim() == 3:
        tensor = tensor.permute(2, 0, 1)
    readings = read_digits(model, [path, str(path), img, array, tensor], weights=WEIGHTS)
    assert {(r.status, r.label) for r in readings} == {("digit", "3")}


def test_read_digits_refuses_bad_arguments(model: torch.nn.Module) -> None:
    """Bad thresholds, top, a single picture not in a list, and no pictures say what is wrong."""
    img = tp3nets.data.samples.digit(1)
    with pytest.raises(ValueError, match=r"expects min_confidence to be a probability in \(0, 1\]"):
        read_digits(model, [img], min_confidence=0)
    with pytest.raises(ValueError, match=r"expects min_confidence to be a probability in \(0, 1\]"):
        read_digits(model, [img], min_confidence=1.5)
    with pytest.raises(ValueError, match=r"expects top to be an int in \[1, 10\]"):
        read_digits(model, [img], top=11)
    with pytest.raises(ValueError, match="wrap one picture in a list"):
        read_digits(model, img)
    with pytest.raises(ValueError, match="wrap one picture in a list"):
        read_digits(model, "digit.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no pictures"):
        read_digits(model, [])


@pytest.mark.parametrize("name", ["convnet2", "convnet3", "multinomial_logistic_regression"])
def test_no_digit_holds_for_every_bundled_model(name: str) -> None:
    """"No digit" comes from the picture, so every model's weights abstain on a blank page,
    not only ConvNet4's DEFAULT."""
    weights = tp3nets.get_model_weights(name).DEFAULT
    model = tp3nets.get_model(name, weights=weights).eval()
    blank = Image.new("RGBA", (280, 280), (255, 255, 255, 0))
    (reading,) = read_digits(model, [blank], weights=weights)
    assert reading.status == "no digit"


def test_a_4000x3000_photo_is_read(model: torch.nn.Module) -> None:
    """A 12-megapixel photo is read (worked on at a reduced size)."""
    small = photo(2, np.random.default_rng(2))
    big = small.resize((4000, 3000), Image.Resampling.BILINEAR)
    assert _status(model, [big]) == [("digit", "2")]


def test_inspect_takes_batches() -> None:
    """inspect() of an (N, C, H, W) batch gives one DigitImage per picture, in order."""
    batch = torch.full((3, 1, 60, 80), 240, dtype=torch.uint8)
    batch[1, 0, 10:50, 35:42] = 10  # a "1" in the middle picture only
    seen = MNISTPreprocess().inspect(batch)
    assert [s.found for s in seen] == [False, True, False]
    assert all(s.image.shape == (1, 28, 28) for s in seen)
    torch.testing.assert_close(torch.stack([s.image for s in seen]),
                               MNISTPreprocess()(batch))


@pytest.mark.mnist
def test_mnist_digits_are_found(mnist_root: Path) -> None:
    """Nearly every MNIST training digit is one digit to inspect() (the "no digit" tests do
    not refuse real digits); and each image passes unchanged."""
    from tp3nets.data import load_mnist

    images = load_mnist(mnist_root, train=True).tensors[0][:1000]
    seen = MNISTPreprocess().inspect(images)
    found = sum(s.found for s in seen)
    assert found >= 990, Counter(s.reason for s in seen if not s.found)
    torch.testing.assert_close(torch.stack([s.image for s in seen]), images.float() / 255)
