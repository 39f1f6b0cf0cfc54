"""Render the sample digit images of the quickstart: ``python examples/digits/make_digits.py``.

The images are drawn here with a TrueType font, dark ink on light paper, at several sizes,
slants and paper shades, like photographs or scans of written digits; none comes from
MNIST. ``digit_<label>.png`` holds the digit ``<label>``. Try them with::

    tp3nets predict convnet4 examples/digits/*.png

The output is deterministic for a given Pillow version and font. The same files are written
into ``src/tp3nets/samples/digits/``, the copy the package ships (``tp3nets.data.samples``).
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
# The package ships the same files (tp3nets.data.samples); tests/test_samples.py checks the copies.
PACKAGE_COPY = HERE.parents[1] / "src" / "tp3nets" / "samples" / "digits"
# A bold sans-serif is closest to pen strokes; Pillow's own scalable font is the fallback.
FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "DejaVuSans-Bold.ttf",
)

# (digit, (width, height), paper grey, ink colour, rotation in degrees)
SPECS: list[tuple[int, tuple[int, int], int, tuple[int, int, int], float]] = [
    (0, (64, 64), 255, (20, 20, 20), 0.0),
    (1, (80, 100), 245, (30, 30, 30), -6.0),
    (2, (120, 120), 235, (10, 10, 60), 4.0),
    (3, (200, 150), 250, (40, 40, 40), -3.0),
    (4, (96, 128), 225, (25, 25, 25), 5.0),
    (5, (150, 150), 255, (20, 40, 140), -4.0),  # blue ballpoint
    (6, (72, 90), 240, (0, 0, 0), 2.0),
    (7, (128, 96), 248, (50, 50, 50), -2.0),
    (8, (110, 140), 230, (15, 15, 15), 3.0),
    (9, (180, 120), 252, (60, 20, 20), -5.0),
]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in FONTS:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def render(
    digit: int,
    size: tuple[int, int],
    paper: int,
    ink: tuple[int, int, int],
    angle: float,
    rng: random.Random,
) -> Image.Image:
    """One digit, about 70% of the image's height, slightly rotated, on uneven paper."""
    width, height = size
    side = 2 * max(width, height)
    glyph = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(glyph)
    font = _font(int(0.7 * height))
    draw.text((side // 2, side // 2), str(digit), fill=255, font=font, anchor="mm")
    glyph = glyph.rotate(angle, resample=Image.Resampling.BICUBIC)
    left, top = (side - width) // 2, (side - height) // 2
    mask = glyph.crop((left, top, left + width, top + height))
    mask = mask.filter(ImageFilter.GaussianBlur(0.6))
    # Paper: a shade darkening towards one corner (uneven light) and a few specks of dust.
    shade = Image.linear_gradient("L").resize(size).rotate(rng.choice((0, 90, 180, 270)))
    paper_grey = shade.point(lambda v: paper - (255 - paper) * v // 255 // 2)
    specks = ImageDraw.Draw(paper_grey)
    for _ in range(rng.randint(0, 4)):
        x, y = rng.randrange(width), rng.randrange(height)
        specks.point((x, y), fill=max(0, paper - rng.randint(30, 90)))
    page = Image.merge("RGB", (paper_grey, paper_grey, paper_grey))
    page.paste(Image.new("RGB", size, ink), (0, 0), mask)
    if len(set(ink)) == 1:
        return page.convert("L")  # grey ink: store a one-channel PNG
    return page


def main() -> int:
    rng = random.Random(0)
    for digit, size, paper, ink, angle in SPECS:
        image = render(digit, size, paper, ink, angle, rng)
        for folder in (HERE, PACKAGE_COPY):
            target = folder / f"digit_{digit}.png"
            image.save(target, optimize=True)
        print(f"wrote {target.name} ({image.width}x{image.height}, {image.mode}) in "
              f"{HERE.name}/ and {PACKAGE_COPY.relative_to(HERE.parents[1])}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
