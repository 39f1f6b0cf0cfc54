"""MNISTPreprocess: any digit image in, an MNIST-like (1, 28, 28) tensor out."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.nn import functional as F

from tp3nets import MNISTPreprocess

HERE = Path(__file__).resolve().parent
DIGITS = sorted((HERE.parent / "examples" / "digits").glob("digit_*.png"))



from _support import DEVICES  # noqa: E402


def _paper(width: int = 90, height: int = 120, mode: str = "L") -> Image.Image:
    """A dark "7" drawn on white paper."""
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    draw.line([(0.2 * width, 0.2 * height), (0.8 * width, 0.2 * height)], fill=0,
              width=max(2, width // 10))
    draw.line([(0.8 * width, 0.2 * height), (0.4 * width, 0.85 * height)], fill=0,
              width=max(2, width // 10))
    return img.convert(mode)


def _pixels(img: Image.Image) -> Tensor:
    """The uint8 pixels of an "L" image, shaped (H, W)."""
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.height,
                                                                              img.width)


def _centre_of_mass(x: Tensor) -> tuple[float, float]:
    m = x[0]
    ys = torch.arange(m.shape[0], dtype=m.dtype)
    xs = torch.arange(m.shape[1], dtype=m.dtype)
    return float((m.sum(1) * ys).sum() / m.sum()), float((m.sum(0) * xs).sum() / m.sum())


def _box(x: Tensor, threshold: float = 0.15) -> tuple[int, int]:
    ink = x[0] > threshold
    rows = torch.nonzero(ink.any(1)).flatten()
    cols = torch.nonzero(ink.any(0)).flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def test_mnist_sized_light_on_dark_images_pass_unchanged() -> None:
    """A 28x28 light-on-dark uint8 image gives exactly ToTensor()'s x / 255."""
    torch.manual_seed(0)
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    image[:, 6:22, 10:18] = torch.randint(1, 256, (1, 16, 8), dtype=torch.uint8)
    out = MNISTPreprocess()(image)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, image.float() / 255, rtol=0, atol=0)
    pil = Image.frombytes("L", (28, 28), bytes(image.flatten().tolist()))
    torch.testing.assert_close(MNISTPreprocess()(pil), image.float() / 255, rtol=0, atol=0)


@pytest.mark.mnist
def test_real_mnist_images_pass_unchanged(mnist_root: Path) -> None:
    """On real MNIST test images the preprocessing is ToTensor(), bit for bit."""
    from tp3nets.data import load_mnist

    images = load_mnist(mnist_root, train=False).tensors[0][:256]
    out = MNISTPreprocess()(images)
    torch.testing.assert_close(out, images.float() / 255, rtol=0, atol=0)


@pytest.mark.mnist
def test_scanned_mnist_digits_come_back_as_mnist(mnist_root: Path) -> None:
    """MNIST digits enlarged 4x and printed dark on white come back close to the originals.

    The ink is centred where MNIST centres it (mass at pixel 14, not 13.5) and fitted to a
    20-pixel box, so the round trip keeps the digits nearly unchanged.
    """
    from tp3nets.data import load_mnist

    original = load_mnist(mnist_root, train=False).tensors[0][:300].float() / 255
    printed = 1.0 - F.interpolate(original, size=(112, 112), mode="bilinear", antialias=True)
    back = MNISTPreprocess()(printed)
    cosine = F.cosine_similarity(back.flatten(1), original.flatten(1))
    assert float(cosine.mean()) > 0.95
    assert float((back - original).abs().mean()) < 0.05
    centres = torch.tensor([_centre_of_mass(b) for b in back])
    reference = torch.tensor([_centre_of_mass(o) for o in original])
    assert (centres.mean(0) - reference.mean(0)).abs().max() < 0.1


@pytest.mark.parametrize("size", [(40, 40), (90, 120), (300, 200), (28, 60)])
def test_dark_ink_on_paper_becomes_an_mnist_digit(size: tuple[int, int]) -> None:
    """Dark ink on white paper of any size: inverted, fitted in a 20-pixel box, centred."""
    out = MNISTPreprocess()(_paper(*size))
    assert out.shape == (1, 28, 28)
    assert float(out.min()) == 0.0
    assert float(out.max()) > 0.9
    corners = out[0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert float(corners.max()) == 0.0  # the paper is MNIST's black background
    assert max(_box(out)) in (19, 20, 21)
    cy, cx = _centre_of_mass(out)
    assert abs(cy - 14) <= 0.6
    assert abs(cx - 14) <= 0.6


def test_grey_paper_and_specks_of_dust_are_ignored() -> None:
    """Grey paper becomes black; a dot of dust far from the digit does not shrink it."""
    clean = MNISTPreprocess()(_paper())
    grey = _paper()
    grey = Image.eval(grey, lambda v: 60 + v * 150 // 255)  # ink 60, paper 210
    dusty = grey.copy()
    ImageDraw.Draw(dusty).point([(2, 117), (3, 117), (87, 3)], fill=120)
    for image in (grey, dusty):
        out = MNISTPreprocess()(image)
        assert float(out[0, 0].max()) == 0.0
        assert _box(out) == _box(clean)
        assert float((out - clean).abs().mean()) < 0.02


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK"])
def test_every_pil_mode_gives_the_same_digit(mode: str) -> None:
    """Grayscale, colour, palette, bilevel, 16-bit, 32-bit and float images agree."""
    base = _paper()
    if mode == "1":
        base = base.point(lambda v: 255 if v > 127 else 0)
    expected = MNISTPreprocess()(base)
    if mode == "I;16":
        data = _pixels(base).to(torch.int32) * 257
        image = Image.new("I;16", base.size)
        image.putdata(data.flatten().tolist())
    elif mode == "F":
        image = base.convert("F").point(lambda v: v / 255)
    else:
        image = base.convert(mode)
    out = MNISTPreprocess()(image)
    assert out.shape == (1, 28, 28)
    torch.testing.assert_close(out, expected, rtol=0, atol=0.02)


def test_transparent_background_counts_as_white_paper() -> None:
    """A digit drawn on a transparent canvas (ink only, alpha 0 elsewhere) is read correctly."""
    base = _paper()
    rgba = Image.new("RGBA", base.size, (0, 0, 0, 0))  # transparent *black*
    ink = Image.eval(base, lambda v: 255 - v)
    rgba.putalpha(ink)
    out = MNISTPreprocess()(rgba)
    torch.testing.assert_close(out, MNISTPreprocess()(base), rtol=0, atol=0.02)
    tensor = torch.zeros(4, base.height, base.width)
    tensor[3] = _pixels(ink).float() / 255
    torch.testing.assert_close(MNISTPreprocess()(tensor), MNISTPreprocess()(base), rtol=0,
                               atol=0.02)


def test_exif_orientation_is_applied() -> None:
    """A JPEG stored sideways with an EXIF rotation tag is read upright."""
    upright = _paper(60, 90)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    sideways.save(buffer, format="JPEG", exif=exif, quality=95)
    loaded = Image.open(io.BytesIO(buffer.getvalue()))
    out = MNISTPreprocess()(loaded)
    expected = MNISTPreprocess()(upright)
    assert float((out - expected).abs().mean()) < 0.03


@pytest.mark.parametrize("shape", [(50, 70), (1, 50, 70), (3, 50, 70)])
def test_tensor_inputs(shape: tuple[int, ...]) -> None:
    """(H, W), (1, H, W) and (3, H, W) uint8 and float tensors give the same digit."""
    base = _pixels(_paper(70, 50))
    image = base.expand(shape) if len(shape) == 3 else base
    expected = MNISTPreprocess()(base)
    torch.testing.assert_close(MNISTPreprocess()(image), expected)
    torch.testing.assert_close(MNISTPreprocess()(image.float() / 255), expected)


def test_batches_are_processed_image_by_image() -> None:
    """An (N, C, H, W) batch gives the stack of the single results."""
    images = torch.stack([_pixels(_paper(70, 50))[None], _pixels(_paper(70, 50).rotate(180))[None]])
    out = MNISTPreprocess()(images)
    assert out.shape == (2, 1, 28, 28)
    for i in range(2):
        torch.testing.assert_close(out[i], MNISTPreprocess()(images[i]))


def test_numpy_arrays_as_totensor_takes_them(mnist_root: Path) -> None:
    """(H, W) and (H, W, C) arrays, uint8 or floats in [0, 1], as ToTensor reads them."""
    from tp3nets.data import load_mnist

    digit = load_mnist(mnist_root, train=False).tensors[0][0]  # (1, 28, 28) uint8
    expected = MNISTPreprocess()(digit)
    array = digit[0].numpy()
    torch.testing.assert_close(MNISTPreprocess()(array), expected)
    torch.testing.assert_close(MNISTPreprocess()(np.stack([array] * 3, axis=-1)), expected)
    torch.testing.assert_close(MNISTPreprocess()(array.astype(np.float32) / 255), expected)


def test_float_images_outside_0_1_are_refused() -> None:
    """0-255 floats (or normalised images) used to be clamped into an all-ink image."""
    with pytest.raises(ValueError, match=r"expects floating-point images in \[0, 1\] .* got "
                       r"values from 0 to 255; divide 0-255 values by 255"):
        MNISTPreprocess()(torch.linspace(0, 255, 28 * 28).reshape(1, 28, 28))
    with pytest.raises(ValueError, match=r"from -0\.4242"):
        MNISTPreprocess()(torch.full((1, 28, 28), -0.4242))


def test_an_empty_batch_gives_an_empty_batch() -> None:
    assert MNISTPreprocess()(torch.zeros(0, 1, 50, 40)).shape == (0, 1, 28, 28)


def test_scattered_specks_give_a_finite_digit() -> None:
    """Row and column spans chosen apart could miss each other's ink (a diagonal of dots):
    the crop held no ink and the centre of mass was NaN."""
    x = torch.zeros(1, 60, 60)
    for k in range(25):
        x[0, 2 * k, 58 - 2 * k] = 1.0
    out = MNISTPreprocess()(x)
    assert torch.isfinite(out).all()
    assert out.max() > 0
    g = torch.Generator().manual_seed(0)
    noise = (torch.rand(20, 3, 100, 300, generator=g) > 0.995).float()
    assert torch.isfinite(MNISTPreprocess()(noise)).all()


@pytest.mark.parametrize("device", DEVICES)
def test_tensors_on_any_device(device: str) -> None:
    """Tensors on each device are processed there, with the CPU's result."""
    image = _pixels(_paper())[None]
    out = MNISTPreprocess()(image.to(device))
    assert out.device.type == torch.device(device).type
    torch.testing.assert_close(out.cpu(), MNISTPreprocess()(image), rtol=0, atol=1e-5)


def test_forced_options() -> None:
    """invert forces the polarity, fit=False only resizes, fit=True refits 28x28 images."""
    paper = _paper(56, 56)
    negative = Image.eval(paper, lambda v: 255 - v)  # light ink on dark, like MNIST
    expected = MNISTPreprocess()(paper)
    torch.testing.assert_close(MNISTPreprocess(invert=True)(paper), expected)
    torch.testing.assert_close(MNISTPreprocess(invert=False)(negative), expected)
    torch.testing.assert_close(MNISTPreprocess()(negative), expected)
    # Forcing the wrong polarity reads the paper's gaps between strokes as the ink: not
    # the digit.
    wrong = MNISTPreprocess(invert=False)(paper)
    assert float((wrong - expected).abs().mean()) > 0.05
    resized = MNISTPreprocess(fit=False)(paper)
    assert resized.shape == (1, 28, 28)
    assert max(_box(resized)) > 20  # the digit kept its proportion of the page
    small = torch.zeros(1, 28, 28)
    small[0, 2:8, 2:5] = 1.0  # a small stroke in a corner
    refit = MNISTPreprocess(fit=True)(small)
    assert max(_box(refit)) == 20
    assert torch.equal(MNISTPreprocess()(small), small)  # "auto" leaves 28x28 alone
    assert MNISTPreprocess(size=56)(paper).shape == (1, 56, 56)


def test_blank_image_gives_a_blank_tensor() -> None:
    """An image without ink does not crash: it gives an all-zero MNIST image."""
    out = MNISTPreprocess()(Image.new("L", (64, 48), 255))
    assert out.shape == (1, 28, 28)
    assert float(out.abs().max()) == 0.0


def test_sample_digits_are_mnist_like() -> None:
    """The quickstart's sample images all become centred 20-pixel digits on black."""
    assert len(DIGITS) == 10
    for path in DIGITS:
        out = MNISTPreprocess()(Image.open(path))
        assert out.shape == (1, 28, 28), path.name
        assert max(_box(out)) in (19, 20, 21), path.name
        cy, cx = _centre_of_mass(out)
        assert abs(cy - 14) <= 1.0, path.name
        assert abs(cx - 14) <= 1.0, path.name


def test_bad_options_and_inputs_raise_clear_errors() -> None:
    """Bad sizes, options, types and shapes raise errors saying what was expected."""
    with pytest.raises(ValueError, match="size to be an int >= 4, got 2"):
        MNISTPreprocess(2)
    with pytest.raises(ValueError, match="size to be an int >= 4, got True"):
        MNISTPreprocess(True)
    with pytest.raises(ValueError, match="invert must be True, False or 'auto'"):
        MNISTPreprocess(invert="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fit must be True, False or 'auto'"):
        MNISTPreprocess(fit="never")  # type: ignore[arg-type]
    pre = MNISTPreprocess()
    with pytest.raises(TypeError, match="a PIL image, a NumPy array or a tensor, got str"):
        pre("digit.png")
    with pytest.raises(ValueError, match=r"shape \(H, W\), \(C, H, W\).*got \(2, 28, 28\)"):
        pre(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match=r"got \(1, 1, 1, 28, 28\)"):
        pre(torch.zeros(1, 1, 1, 28, 28))
    with pytest.raises(TypeError, match=r"uint8 or floating-point image tensors, got torch\.int64"):
        pre(torch.zeros(28, 28, dtype=torch.int64))


# --------------------------------------------------------------------------------------
# non-finite values (issue 18)


def _with(value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.full((1, 40, 30), 0.25, dtype=dtype)
    x[0, 7, 9] = value
    return x


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
def test_non_finite_tensors_are_refused(value: float, dtype: torch.dtype) -> None:
    """One NaN or infinite pixel in a float tensor, alone or in a batch, is refused with the
    count (the [0, 1] check cannot see NaN: every comparison with it is false)."""
    kind = "NaN" if value != value else "infinite"
    with pytest.raises(ValueError, match=rf"an image tensor with 1 {kind} value \(of 1,200\)"):
        MNISTPreprocess()(_with(value, dtype))
    batch = torch.stack([_with(0.5), _with(value)]).to(dtype)
    with pytest.raises(ValueError, match=rf"with 1 {kind} value \(of 2,400\)"):
        MNISTPreprocess()(batch)


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
def test_non_finite_arrays_and_float_images_are_refused(value: float) -> None:
    """The same for NumPy arrays and for float (mode ``F``) PIL images such as float TIFFs."""
    from PIL import Image

    array = _with(value)[0].numpy()
    kind = "NaN" if value != value else "infinite"
    with pytest.raises(ValueError, match=rf"an image array with 1 {kind} value"):
        MNISTPreprocess()(array)
    image = Image.fromarray(array, mode="F")
    with pytest.raises(ValueError, match=rf"an image \(mode F\) with 1 {kind} value"):
        MNISTPreprocess()(image)


def test_finite_float_images_still_pass() -> None:
    """Finite float tensors, arrays and mode-F images are unchanged by the new check."""
    from PIL import Image

    x = _with(0.75)
    out = MNISTPreprocess()(x)
    assert out.shape == (1, 28, 28)
    assert bool(torch.isfinite(out).all())
    assert MNISTPreprocess()(Image.fromarray(x[0].numpy(), mode="F")).shape == (1, 28, 28)
