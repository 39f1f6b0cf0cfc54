"""Digit pictures as people give them: a deterministic generator of realistic inputs.

The bundled weights read MNIST at 99.6 % but the pictures people give a digit reader are
not MNIST: phone photos of a digit written on paper, canvas or sketchpad exports, printed
digits, low-resolution scans, and pictures that hold no digit at all. This module makes
such pictures, seeded, from sources anyone can get:

* handwriting: the MNIST **training-set** images only (``train-images-idx3-ubyte``; the
  10,000 test images are never read), cut by the project's seeded split
  (:func:`tp3nets.data.train_val_split`, seed 42, 5,000 validation images), and for the
  ``"bench"`` split scikit-learn's bundled UCI 8×8 digits
  (:func:`sklearn.datasets.load_digits`, no network needed; optional);
* print: the TrueType/OpenType fonts of Debian's font packages (see :data:`FONT_PACKAGES`).

Splits (:data:`SPLITS`) keep training, validation and the benchmark apart: each draws its
handwriting and its fonts from its own part.

========= ======================================= ======================================
split     handwriting                             fonts
========= ======================================= ======================================
``train`` the 55,000 training images of the split font set A
``val``   the first 2,500 of the 5,000 validation font set B
``bench`` the other 2,500 validation images, and   font set C
          the UCI 8×8 digits (``lowres`` only)
========= ======================================= ======================================

Fonts are listed in sorted path order under :data:`FONT_DIRS`; a font is kept when it
renders the ten digits as ten distinct glyphs, has the Latin letters, and is no
symbol/dingbat/emoji/math font. Fonts whose digits render identically to an earlier one are
dropped. Fonts are grouped into *families* by design, metric clones together (Nimbus Sans,
TeX Gyre Heros, FreeSans and Liberation Sans are all Helvetica/Arial; see
:data:`FONT_DESIGNS`), and each family goes to set A, B or C by a stable hash of its name
(SHA-256 of ``"real_inputs:" + family``, modulo 3): the same design never serves two splits
(hashing each file name instead would put DejaVu Sans in one split and DejaVu Sans Bold in
another).

Kinds of picture (:data:`DIGIT_KINDS`, labelled 0-9; :data:`NON_DIGIT_KINDS`, label
``None``), one function each, all of the form ``kind(rng, sources) -> (image, label)``:

``photo``
    a phone photo (RGB, JPEG quality 60-95) of a digit written in black, blue or pencil
    on off-white, grey or cream paper: the digit placed off-centre, uneven lighting
    (gradient, vignette, sometimes a strong cast shadow with a soft edge), sometimes a
    table along one edge, ruled or squared paper, a small rotation, an EXIF orientation;
    blur and sensor noise.
``canvas``
    a browser canvas / sketchpad export (200-400 px, mostly 280×280): round strokes
    12-30 px wide along the digit's skeleton, white on black or black on white (RGB), or
    white, black or coloured strokes on a fully transparent background (RGBA, whose
    transparent pixels hold black, white or any colour).
``printed``
    a font digit scanned: grayscale ``"L"``, dark on white or light paper, various sizes,
    positions and weights, slight blur, noise and rotation.
``lowres``
    a low-resolution scan upscaled (nearest or bilinear) to 32-64 px, ``"L"``: the UCI
    8×8 digits for ``"bench"``, MNIST digits shrunk to 10-14 px for the other splits.
``form``
    a digit written on a form (:data:`FORM_MARKS`): in a printed box (black, grey or a
    light drop-out colour, sometimes touching the digit), in one box of a row of boxes that
    may run past the picture's edges, circled by hand (sometimes left open), or underlined;
    a phone photo as for ``photo`` (sometimes turned up to 4 degrees), or a grayscale scan.
``page``
    a digit small on a large picture: a page photographed whole (1200-2400 px, the digit
    2.5-8 % of the longer side) or scanned (grayscale, the digit 40-100 px tall amid 6-12
    times its height of paper).
``blank``, ``letters``, ``several_digits``, ``ruled``, ``scribble``, ``texture``, ``symbols``
    no single digit: a blank page or photographed blank sheet; a letter (printed or
    handwritten-looking) from :data:`LETTERS`; 2-4 digits side by side; ruled or squared
    paper; pen scribbles; wood, cloth, noise or pattern textures; symbols from
    :data:`SYMBOLS`.

Every picture is drawn from a :class:`numpy.random.Generator` seeded by
``(seed, kind, split, index)``, so the same seed gives byte-identical pictures (on the same
fonts, NumPy and Pillow), and picture ``i`` does not depend on how many are made.

Example::

    from real_inputs import make_set
    pictures = make_set("photo", "val", 100, seed=0, data="../shared/datasets")
    image, label = pictures[0]

Dependencies: NumPy and Pillow (FreeType); scikit-learn for the UCI digits (optional);
``tp3nets`` (and so torch) only to read the seeded split's row order.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import math
import re
import string
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "DIGIT_KINDS",
    "EXCLUDED_LETTERS",
    "FONT_DESIGNS",
    "FONT_DIRS",
    "FONT_PACKAGES",
    "FORM_MARKS",
    "KINDS",
    "LETTERS",
    "MAKERS",
    "NON_DIGIT_KINDS",
    "SPLITS",
    "SYMBOLS",
    "Sources",
    "Truth",
    "blank",
    "canvas",
    "font_family",
    "font_sets",
    "form",
    "letters",
    "load_sources",
    "lowres",
    "make_one",
    "make_one_with_truth",
    "make_set",
    "page",
    "photo",
    "printed",
    "read_mnist_training_set",
    "ruled",
    "scribble",
    "several_digits",
    "split_rows",
    "symbols",
    "texture",
]

Array: TypeAlias = NDArray[np.float32]
RGB: TypeAlias = tuple[float, float, float]
Label: TypeAlias = "int | None"

SPLITS: Final = ("train", "val", "bench")
DIGIT_KINDS: Final = ("photo", "canvas", "printed", "lowres", "form", "page")
NON_DIGIT_KINDS: Final = (
    "blank", "letters", "several_digits", "ruled", "scribble", "texture", "symbols",
)
KINDS: Final = DIGIT_KINDS + NON_DIGIT_KINDS

#: Folders searched for ``.ttf``/``.otf`` files (sorted paths). TeX Gyre's Debian package
#: installs under texmf, not /usr/share/fonts.
FONT_DIRS: Final = ("/usr/share/fonts", "/usr/share/texmf/fonts/opentype")
#: The Debian packages the font sets are made from (``apt-get install`` them all for the
#: same pictures; with fewer, the sets are smaller and the pictures differ).
FONT_PACKAGES: Final = (
    "fonts-dejavu-core", "fonts-dejavu-extra", "fonts-liberation", "fonts-freefont-ttf",
    "fonts-urw-base35", "fonts-texgyre", "fonts-crosextra-caladea",
    "fonts-crosextra-carlito", "fonts-noto-core", "fonts-noto-mono",
)
#: Font designs whose files share a family (metric clones and derivatives), by file-name
#: prefix (lower case, letters and digits only). Other fonts: the name before the first
#: ``-`` with style words removed.
FONT_DESIGNS: Final = (
    ("helvetica", ("nimbussans", "texgyreheros", "freesans", "liberationsans")),
    ("times", ("nimbusroman", "texgyretermes", "freeserif", "liberationserif")),
    ("courier", ("nimbusmono", "texgyrecursor", "freemono")),
    ("century-schoolbook", ("c059", "texgyreschola")),
    ("palatino", ("p052", "texgyrepagella")),
    ("bookman", ("urwbookman", "texgyrebonum")),
    ("avant-garde", ("urwgothic", "texgyreadventor")),
    ("zapf-chancery", ("z003", "texgyrechorus")),
    ("dejavu-sans", ("dejavusans",)),
    ("dejavu-serif", ("dejavuserif",)),
    ("noto-sans", ("notosans", "notomono")),
    ("noto-serif", ("notoserif",)),
)
_NOT_TEXT: Final = re.compile(r"symbol|dingbat|emoji|math|d050000l|braille|ornament|numerals",
                              re.IGNORECASE)
_STYLE: Final = re.compile(
    r"(regular|roman|book|medium|light|extralight|demi|bold|italic|oblique|bdita|condensed|"
    r"narrow|cn|display)+$"
)

#: Letters that look like no digit: A-Z and a-z without :data:`EXCLUDED_LETTERS`, which read
#: as digits: O o D (0), l I i j (1, their dot lost in a small picture), Z z (2), S s (5),
#: G b (6), B (8), g q (9).
EXCLUDED_LETTERS: Final = "OoDlIijZzSsGbBgq"
LETTERS: Final = "".join(c for c in string.ascii_letters if c not in EXCLUDED_LETTERS)
#: Symbols that look like no digit (left out: ``/ \\ | ! ? ( ) [ ] { } $ § ° ∞``, which
#: read as a 1, 2, 5, 8 or 0 once cropped).
SYMBOLS: Final = "+-=%#@&*<>~×÷€£"

#: Where the seeded split comes from (tp3nets.data.train_val_split's defaults).
SPLIT_SEED: Final = 42
VAL_SIZE: Final = 5000

Maker: TypeAlias = Callable[[np.random.Generator, "Sources"], tuple[Image.Image, "int | None"]]


# --------------------------------------------------------------------------------------
# Sources: MNIST training images, fonts, UCI digits
# --------------------------------------------------------------------------------------


def _mnist_raw(data: str | Path) -> Path:
    folder = Path(data).expanduser()
    for candidate in (folder / "MNIST" / "raw", folder / "raw", folder):
        if any((candidate / f"train-images-idx3-ubyte{s}").exists() for s in ("", ".gz")):
            return candidate
    raise FileNotFoundError(
        f"no MNIST training files (train-images-idx3-ubyte) under {str(folder)!r}: pass the "
        f"folder that holds MNIST/raw/ (torchvision's layout)"
    )


def _read_idx(path: Path) -> NDArray[np.uint8]:
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.lru_cache(maxsize=2)
def read_mnist_training_set(data: str) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The 60,000 MNIST training images ``(N, 28, 28)`` uint8 and labels, read with NumPy.

    Only ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` are read, never the
    test files. ``data`` is the folder holding ``MNIST/raw/`` (or that folder itself).
    """
    raw = _mnist_raw(data)
    images = _read_idx(raw / "train-images-idx3-ubyte")
    labels = _read_idx(raw / "train-labels-idx1-ubyte").astype(np.int64)
    return images, labels


@functools.lru_cache(maxsize=2)
def split_rows(n: int = 60_000) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rows of the training set in the project's seeded split: ``(train, validation)``.

    The same rows, in the same order, as ``tp3nets.data.train_val_split(ds, 5000,
    seed=42)`` (torch's ``randperm``; torch is imported here only).
    """
    import torch

    from tp3nets.data import train_val_split

    parts = train_val_split((torch.arange(n),), VAL_SIZE, seed=SPLIT_SEED)
    train, val = (np.asarray(part.tensors[0].numpy(), np.int64).copy() for part in parts)
    return train, val


def font_family(path: str | Path) -> str:
    """The family (design) a font file belongs to, for splitting fonts between splits.

    Example:
        >>> font_family("/usr/share/fonts/truetype/freefont/FreeSansBoldOblique.ttf")
        'helvetica'
        >>> font_family("/x/Carlito-BoldItalic.ttf")
        'carlito'
    """
    stem = Path(path).stem
    flat = re.sub(r"[^a-z0-9]", "", stem.lower())
    for design, prefixes in FONT_DESIGNS:
        if flat.startswith(prefixes):
            return design
    base = re.sub(r"[^a-z0-9]", "", stem.split("-")[0].lower())
    return _STYLE.sub("", base) or base


def _family_split(family: str) -> str:
    digest = hashlib.sha256(f"real_inputs:{family}".encode()).digest()
    return SPLITS[int.from_bytes(digest[:8], "big") % 3]


@functools.lru_cache(maxsize=1024)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def _glyph_signature(font: ImageFont.FreeTypeFont, char: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(char)
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=65536)
def _has_glyph(path: str, char: str) -> bool:
    font = _font(path, 40)
    sig = _glyph_signature(font, char)
    return sig[0][0] > 0 and sig[0][1] > 0 and sig != _glyph_signature(font, "\uffff")


def _digit_signature(path: str) -> bytes | None:
    """The ten digits' rendering if ``path`` is a text font with ten distinct digits."""
    if _NOT_TEXT.search(Path(path).name):
        return None
    try:
        font = _font(path, 40)
        notdef = _glyph_signature(font, "\uffff")
        digits = [_glyph_signature(font, d) for d in string.digits]
        letters = [_glyph_signature(font, c) for c in string.ascii_letters]
    except OSError:
        return None
    if len(set(digits)) < 10 or any(
        s == notdef or 0 in s[0] or not any(s[1]) for s in digits + letters
    ):
        return None
    return b"".join(bytes(str(s[0]), "ascii") + s[1] for s in digits)


@functools.lru_cache(maxsize=4)
def font_sets(font_dirs: tuple[str, ...] = FONT_DIRS) -> dict[str, tuple[tuple[str, ...], ...]]:
    """The fonts of each split: ``{split: (family's paths, ...)}``, families sorted by name.

    Fonts are listed in sorted path order, checked (ten distinct digit glyphs, Latin
    letters, not a symbol font), those rendering their digits exactly as an earlier one
    dropped, grouped by :func:`font_family` and given to a split by a stable hash of the
    family's name.
    """
    paths: list[str] = []
    for folder in font_dirs:
        root = Path(folder)
        if root.is_dir():
            paths += [str(p) for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
    seen: set[bytes] = set()
    families: dict[str, list[str]] = {}
    for path in sorted(set(paths)):
        sig = _digit_signature(path)
        if sig is None or sig in seen:
            continue
        seen.add(sig)
        families.setdefault(font_family(path), []).append(path)
    sets: dict[str, list[tuple[str, ...]]] = {s: [] for s in SPLITS}
    for family in sorted(families):
        sets[_family_split(family)].append(tuple(families[family]))
    return {s: tuple(v) for s, v in sets.items()}


def _uci_digits() -> tuple[Array, NDArray[np.int64]] | None:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    bunch = load_digits()
    return (np.asarray(bunch.images, np.float32) / 16.0,
            np.asarray(bunch.target, np.int64))


@dataclass(frozen=True)
class Sources:
    """What one split draws from.

    Attributes:
        split: ``"train"``, ``"val"`` or ``"bench"``.
        digits: MNIST training-set images of the split, ``(N, 28, 28)`` uint8.
        labels: their labels ``(N,)``.
        fonts: the split's font families, each a tuple of font file paths.
        uci: the UCI 8×8 digits (floats in [0, 1], labels) for ``"bench"`` when
            scikit-learn is importable, else ``None``.
    """

    split: str
    digits: NDArray[np.uint8]
    labels: NDArray[np.int64]
    fonts: tuple[tuple[str, ...], ...]
    uci: tuple[Array, NDArray[np.int64]] | None = None


@functools.lru_cache(maxsize=8)
def _load_sources(split: str, data: str, font_dirs: tuple[str, ...]) -> Sources:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    images, labels = read_mnist_training_set(data)
    train, val = split_rows(len(images))
    half = len(val) // 2
    rows = {"train": train, "val": val[:half], "bench": val[half:]}[split]
    fonts = font_sets(font_dirs)[split]
    if not fonts:
        raise RuntimeError(
            f"no usable fonts for split {split!r} under {font_dirs}: install the Debian "
            f"packages {' '.join(FONT_PACKAGES)}"
        )
    uci = _uci_digits() if split == "bench" else None
    return Sources(split, np.ascontiguousarray(images[rows]), labels[rows], fonts, uci)


def load_sources(
    split: str, data: str | Path, *, font_dirs: Sequence[str] = FONT_DIRS
) -> Sources:
    """The :class:`Sources` of ``split`` (cached): its MNIST rows, fonts and UCI digits."""
    return _load_sources(split, str(Path(data).expanduser().resolve()), tuple(font_dirs))


# --------------------------------------------------------------------------------------
# Ink: masks (float32 in [0, 1], 1 = ink) and strokes
# --------------------------------------------------------------------------------------


def _u8(a: NDArray[np.floating]) -> NDArray[np.uint8]:
    out: NDArray[np.uint8] = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return out


def _to_mask(img: Image.Image) -> Array:
    out: Array = np.asarray(img, np.float32) * np.float32(1 / 255)
    return out


def _from_mask(mask: Array) -> Image.Image:
    return Image.fromarray(_u8(mask * 255))


def _resize_mask(mask: Array, w: int, h: int) -> Array:
    return _to_mask(_from_mask(mask).resize((max(1, w), max(1, h)), Image.Resampling.BILINEAR))


def _rotate_mask(mask: Array, degrees: float) -> Array:
    return _to_mask(_from_mask(mask).rotate(degrees, Image.Resampling.BILINEAR, expand=True))


def _trim(mask: Array, pad: int = 1) -> Array:
    rows = np.flatnonzero(mask.max(axis=1) > 0.02)
    cols = np.flatnonzero(mask.max(axis=0) > 0.02)
    if not len(rows):
        return mask
    out = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return np.pad(out, pad)


def _thin(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Zhang-Suen thinning: the one-pixel skeleton of a binary mask."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p2, p3, p4 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:]
            p5, p6, p7 = img[2:, 2:], img[2:, 1:-1], img[2:, :-2]
            p8, p9 = img[1:-1, :-2], img[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9)
            count = sum(r.astype(np.int8) for r in ring)
            turns = sum(((ring[i] == 0) & (ring[(i + 1) % 8] == 1)).astype(np.int8)
                        for i in range(8))
            first, second = (p2 & p4 & p6, p4 & p6 & p8) if step == 0 else (
                p2 & p4 & p8, p2 & p6 & p8)
            keep = first | second
            drop = (img[1:-1, 1:-1] == 1) & (count >= 2) & (count <= 6) & (turns == 1) & (
                keep == 0
            )
            if drop.any():
                img[1:-1, 1:-1][drop] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


@dataclass(frozen=True)
class _Strokes:
    """A drawing as a graph: points ``(P, 2)`` (x, y; the larger extent is 1) and edges
    ``(E, 2)`` between them (an edge ``(i, i)`` is a dot)."""

    points: Array
    edges: NDArray[np.int64]

    def width(self) -> float:
        return float(np.ptp(self.points[:, 0])) if len(self.points) else 0.0

    def height(self) -> float:
        return float(np.ptp(self.points[:, 1])) if len(self.points) else 0.0


def _normalise(points: Array) -> Array:
    points = points - points.min(axis=0)
    return (points / max(float(points.max()), 1e-6)).astype(np.float32)


def _skeleton_strokes(mask: NDArray[np.bool_]) -> _Strokes:
    """The skeleton of a binary mask as strokes between 8-connected pixels."""
    sk = _thin(mask)
    ys, xs = np.nonzero(sk)
    if not len(ys):
        return _Strokes(np.zeros((1, 2), np.float32), np.zeros((1, 2), np.int64))
    index = np.full((sk.shape[0] + 2, sk.shape[1] + 2), -1, np.int64)
    index[ys + 1, xs + 1] = np.arange(len(ys))
    here = index[1:-1, 1:-1]
    h, w = sk.shape
    edges = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        there = index[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        both = (here >= 0) & (there >= 0)
        edges.append(np.stack([here[both], there[both]], axis=1))
    graph = np.concatenate(edges)
    lonely = np.setdiff1d(np.arange(len(ys)), graph.ravel())
    graph = np.concatenate([graph, np.stack([lonely, lonely], axis=1)])
    points = np.stack([xs, ys], axis=1).astype(np.float32)
    real = graph[graph[:, 0] != graph[:, 1]]
    degree = np.ones(len(points), np.float32)
    np.add.at(degree, real.ravel(), 1)
    for _ in range(2):  # smooth away the pixel staircase: each point to its neighbours' mean
        total = points.copy()
        np.add.at(total, real[:, 0], points[real[:, 1]])
        np.add.at(total, real[:, 1], points[real[:, 0]])
        points = total / degree[:, None]
    return _Strokes(_normalise(points), graph)


def _mnist_strokes(img: NDArray[np.uint8]) -> _Strokes:
    big = np.asarray(Image.fromarray(img).resize((56, 56), Image.Resampling.BILINEAR))
    return _skeleton_strokes(big >= 100)


def _glyph_strokes(path: str, text: str) -> _Strokes:
    return _skeleton_strokes(_text_mask(path, text, 64) > 0.5)


def _join(parts: Sequence[_Strokes], offsets: Sequence[tuple[float, float]],
          scales: Sequence[float]) -> _Strokes:
    points, edges, base = [], [], 0
    for part, (ox, oy), s in zip(parts, offsets, scales, strict=True):
        points.append(part.points * s + np.array([ox, oy], np.float32))
        edges.append(part.edges + base)
        base += len(part.points)
    return _Strokes(_normalise(np.concatenate(points)), np.concatenate(edges))


def _warp(strokes: _Strokes, rng: np.random.Generator, amount: float) -> _Strokes:
    """Handwriting's variety: a random slant, rotation, aspect and smooth wobble."""
    p = strokes.points - strokes.points.mean(axis=0)
    angle = rng.normal(0.0, 0.08 * amount)
    shear = rng.normal(0.0, 0.15 * amount)
    aspect = math.exp(rng.normal(0.0, 0.12 * amount))
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.array([[c, -s], [s, c]], np.float32) @ np.array(
        [[aspect, shear], [0.0, 1.0]], np.float32
    )
    p = p @ matrix.T
    for axis in (0, 1):
        freq = rng.uniform(0.5, 2.0, size=2)
        phase = rng.uniform(0, 2 * math.pi)
        p[:, axis] += 0.035 * amount * np.sin(2 * math.pi * (p @ freq) + phase)
    return _Strokes(_normalise(p.astype(np.float32)), strokes.edges)


def _draw_strokes(strokes: _Strokes, size: float, pen: float) -> Array:
    """Draw strokes ``size`` px across (their larger extent) with a round pen ``pen`` px
    wide, anti-aliased; the mask is tight around the ink (plus a pixel)."""
    ss = 4 if pen < 3 else 2
    pad = pen / 2 + 1.5
    pts = (strokes.points * size + pad) * ss
    w = math.ceil(float(pts[:, 0].max()) / ss + pad) + 1
    h = math.ceil(float(pts[:, 1].max()) / ss + pad) + 1
    im = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(im)
    width = max(1, round(pen * ss))
    xy = [(float(x), float(y)) for x, y in pts]
    for i, j in strokes.edges.tolist():
        if i != j:
            draw.line([xy[i], xy[j]], fill=255, width=width)
    r = pen * ss / 2
    if r >= 1.5:
        for x, y in xy:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    else:
        for i, j in strokes.edges.tolist():
            if i == j:
                draw.point(xy[i], fill=255)
    return _to_mask(im.reduce(ss))


@functools.lru_cache(maxsize=4096)
def _digit_height_ratio(path: str) -> float:
    box = _font(path, 100).getbbox("0123456789")
    return max(box[3] - box[1], 1) / 100


def _text_mask(path: str, text: str, height: float, bold: int = 0) -> Array:
    """``text`` in the font at ``path``, sized so that its digits are ``height`` px tall."""
    size = max(6, round(height / _digit_height_ratio(path)))
    font = _font(path, size)
    box = font.getbbox(text, stroke_width=bold)
    w, h = math.ceil(box[2] - box[0]) + 4, math.ceil(box[3] - box[1]) + 4
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).text((2 - box[0], 2 - box[1]), text, font=font, fill=255,
                            stroke_width=bold, stroke_fill=255)
    return _to_mask(im)


def _pick_font(rng: np.random.Generator, src: Sources, chars: str = "") -> str:
    """A font of the split: a family uniformly, then one of its files, with ``chars``."""
    path = src.fonts[0][0]
    for _ in range(30):
        family = src.fonts[int(rng.integers(len(src.fonts)))]
        path = family[int(rng.integers(len(family)))]
        if all(_has_glyph(path, c) for c in chars):
            return path
    return path


def _soft_ink(img: NDArray[np.uint8], height: float, rng: np.random.Generator) -> Array:
    """An MNIST digit upscaled smoothly and thresholded softly into pen strokes."""
    rows = np.flatnonzero(img.max(axis=1) > 30)
    cols = np.flatnonzero(img.max(axis=0) > 30)
    crop = img[max(rows[0] - 1, 0) : rows[-1] + 2, max(cols[0] - 1, 0) : cols[-1] + 2]
    scale = height / max(len(rows), 1)
    w, h = round(crop.shape[1] * scale), round(crop.shape[0] * scale)
    big = _to_mask(Image.fromarray(crop).resize((max(w, 1), max(h, 1)),
                                                Image.Resampling.BICUBIC))
    level = rng.uniform(0.3, 0.75)
    soft = rng.uniform(0.04, 0.12)
    out: Array = np.clip((big - level) / soft + 0.5, 0.0, 1.0).astype(np.float32)
    return out


def _handwritten(rng: np.random.Generator, src: Sources, height: float,
                 *, allow_font: bool = True) -> tuple[Array, int]:
    """A handwritten (or, a fifth of the time, font) digit ``height`` px tall, and its
    label: soft-thresholded MNIST, MNIST's skeleton drawn with a pen, or a font glyph."""
    how = rng.random()
    if allow_font and how < 0.2:
        label = int(rng.integers(10))
        path = _pick_font(rng, src)
        return _text_mask(path, str(label), height, bold=int(rng.integers(0, 2))), label
    i = int(rng.integers(len(src.digits)))
    label = int(src.labels[i])
    if how < 0.6:
        return _soft_ink(src.digits[i], height, rng), label
    strokes = _warp(_mnist_strokes(src.digits[i]), rng, 0.6)
    pen = height * rng.uniform(0.03, 0.1)
    return _draw_strokes(strokes, height / max(strokes.height(), 0.3), max(pen, 1.2)), label


# --------------------------------------------------------------------------------------
# Rendering: phone photo, canvas export, scan
# --------------------------------------------------------------------------------------


@dataclass
class _Scene:
    """A photographed sheet: picture size, the sheet's extent and where to write."""

    h: int
    w: int
    sheet: Array | None  # 1 on the sheet, 0 on the table; None: the sheet fills the picture
    box: tuple[int, int, int, int]  # top, left, bottom, right of the free part of the sheet


def _scene(rng: np.random.Generator, size: tuple[int, int] | None = None) -> _Scene:
    w, h = size if size is not None else (int(rng.integers(240, 481)), int(rng.integers(240, 481)))
    margin = max(4, round(min(h, w) * 0.03))
    box = [margin, margin, h - margin, w - margin]
    sheet = None
    if rng.random() < 0.3:  # a table along one edge
        edge = int(rng.integers(4))
        depth = rng.uniform(0.08, 0.28)
        slope = math.tan(rng.uniform(-0.12, 0.12))
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        along, across, n = (xx, yy, h) if edge < 2 else (yy, xx, w)
        line = depth * n + slope * (along - (w if edge < 2 else h) / 2)
        dist = (across - line) if edge % 2 == 0 else ((n - 1 - across) - line)
        sheet = (1.0 / (1.0 + np.exp(-np.clip(dist, -30, 30) / 0.8))).astype(np.float32)
        reach = math.ceil(depth * n + abs(slope) * max(h, w) / 2) + margin
        if edge == 0:
            box[0] = reach
        elif edge == 1:
            box[2] = h - reach
        elif edge == 2:
            box[1] = reach
        else:
            box[3] = w - reach
    return _Scene(h, w, sheet, (box[0], box[1], box[2], box[3]))


def _place(rng: np.random.Generator, scene: _Scene, mask: Array) -> Array:
    """``mask`` at a random place inside the scene's free box (shrunk to fit), as a full
    picture-sized mask."""
    top, left, bottom, right = scene.box
    bh, bw = max(bottom - top, 8), max(right - left, 8)
    h, w = mask.shape
    if h > bh or w > bw:
        k = min(bh / h, bw / w)
        mask = _resize_mask(mask, int(w * k), int(h * k))
        h, w = mask.shape
    y = top + int(rng.integers(0, bh - h + 1))
    x = left + int(rng.integers(0, bw - w + 1))
    out = np.zeros((scene.h, scene.w), np.float32)
    out[y : y + h, x : x + w] = mask[: scene.h - y, : scene.w - x]
    return out


def _paper_colour(rng: np.random.Generator) -> NDArray[np.float32]:
    r = rng.random()
    if r < 0.55:  # off-white
        base = np.full(3, rng.uniform(225, 252)) + rng.normal(0, 2, 3)
    elif r < 0.8:  # grey (recycled paper, or white paper in dim light)
        base = np.full(3, rng.uniform(170, 220)) + rng.normal(0, 2, 3)
    else:  # cream
        base = np.array([246, 238, 212]) + rng.normal(0, 5, 3)
    return np.clip(base, 0, 255).astype(np.float32)


def _ink_colour(rng: np.random.Generator) -> tuple[NDArray[np.float32], float, float]:
    """An ink's colour, opacity and graininess: black or blue pen, or pencil."""
    r = rng.random()
    if r < 0.5:  # black pen or marker
        colour = np.full(3, rng.uniform(15, 60)) + rng.normal(0, 4, 3)
        return np.clip(colour, 0, 255).astype(np.float32), rng.uniform(0.85, 1.0), 0.0
    if r < 0.8:  # blue ballpoint
        colour = np.array([rng.uniform(20, 70), rng.uniform(35, 90), rng.uniform(110, 190)])
        return colour.astype(np.float32), rng.uniform(0.8, 1.0), 0.0
    grey = rng.uniform(70, 125)  # pencil: grey, grainy, not opaque
    return np.full(3, grey, np.float32), rng.uniform(0.55, 0.85), rng.uniform(0.3, 0.6)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> Array:
    """Unit-ish noise varying over about ``cell`` pixels."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2), dtype=np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BILINEAR),
                      np.float32)


def _table(rng: np.random.Generator, h: int, w: int) -> Array:
    """A table top: wood, or a dark desk."""
    if rng.random() < 0.6:
        base = np.array([rng.uniform(80, 150), rng.uniform(50, 100), rng.uniform(25, 60)],
                        np.float32)
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        theta = rng.uniform(0, math.pi)
        u = xx * math.cos(theta) + yy * math.sin(theta)
        grain = np.sin(u / rng.uniform(3, 9) + 2.5 * _smooth_noise(rng, h, w, 24))
        return (base[None, None, :] * (1 + 0.15 * grain[..., None])).astype(np.float32)
    base = np.full(3, rng.uniform(25, 90), np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    return np.broadcast_to(base, (h, w, 3)).astype(np.float32)


def _lighting(rng: np.random.Generator, h: int, w: int) -> Array:
    """Uneven light: brightness, a gradient, a vignette and sometimes a cast shadow."""
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    light = rng.uniform(0.6, 1.12) + rng.uniform(-0.25, 0.25) * xx + rng.uniform(-0.25, 0.25) * yy
    light = light * (1 - rng.uniform(0, 0.35) * (xx * xx + yy * yy) / 2)
    if rng.random() < 0.4:  # a shadow (a hand, the phone): a wedge with a soft edge
        px, py = rng.uniform(-1.3, 1.3), rng.uniform(-1.3, 1.3)
        gx, gy = (xx - px) * (w / 2), (yy - py) * (h / 2)
        a1 = rng.uniform(0, 2 * math.pi)
        a2 = a1 + rng.uniform(0.5, 2.2)
        d1 = gx * math.sin(a1) - gy * math.cos(a1)
        d2 = -(gx * math.sin(a2) - gy * math.cos(a2))
        inside = np.minimum(d1, d2) if rng.random() < 0.6 else d1
        soft = rng.uniform(2, 25)
        shadow = 1 / (1 + np.exp(-np.clip(inside / soft, -30, 30)))
        light = light * (1 - rng.uniform(0.3, 0.65) * shadow)
    return np.asarray(light, np.float32)


def _lines(rng: np.random.Generator, h: int, w: int) -> list[tuple[Array, NDArray[np.float32]]]:
    """Ruled or squared paper: line masks and their colours."""
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    width = int(rng.integers(1, 3))
    step = rng.uniform(12, 40)
    angle = rng.normal(0, 0.02)
    y0, x0 = rng.uniform(0, step), rng.uniform(0, step)
    for k in range(-2, int(h / step) + 3):
        y = y0 + k * step
        draw.line([(0, y), (w, y + angle * w)], fill=255, width=width)
    if rng.random() < 0.5:  # squared
        for k in range(-2, int(w / step) + 3):
            x = x0 + k * step
            draw.line([(x, 0), (x - angle * h, h)], fill=255, width=width)
    colour = (np.array([rng.uniform(90, 160), rng.uniform(140, 190), rng.uniform(190, 240)])
              if rng.random() < 0.7 else np.full(3, rng.uniform(120, 190)))
    layers = [(_to_mask(im) * np.float32(rng.uniform(0.35, 0.8)), colour.astype(np.float32))]
    if rng.random() < 0.3:  # a red margin line
        margin = Image.new("L", (w, h), 0)
        x = rng.uniform(0.08, 0.3) * w
        ImageDraw.Draw(margin).line([(x, 0), (x, h)], fill=255, width=width + 1)
        layers.append((_to_mask(margin) * np.float32(0.7),
                       np.array([220, 80, 90], np.float32)))
    return layers


def _jpeg(rng: np.random.Generator, img: Image.Image, quality: tuple[int, int] = (60, 96),
          exif: bool = True) -> Image.Image:
    """Saved as a phone saves it (sometimes turned, with an EXIF orientation) and reloaded."""
    buf = io.BytesIO()
    options: dict[str, object] = {"quality": int(rng.integers(*quality))}
    if exif and rng.random() < 0.1:  # stored sideways; EXIF says how to turn it upright
        orientation = 6 if rng.random() < 0.5 else 8
        img = img.transpose(Image.Transpose.ROTATE_90 if orientation == 6
                            else Image.Transpose.ROTATE_270)
        tags = Image.Exif()
        tags[0x0112] = orientation
        options["exif"] = tags.tobytes()
    img.save(buf, "JPEG", **options)
    out = Image.open(io.BytesIO(buf.getvalue()))
    out.load()
    return out


def _blur(mask: Array, radius: float) -> Array:
    return _to_mask(_from_mask(mask).filter(ImageFilter.GaussianBlur(radius)))


def _shoot(rng: np.random.Generator, scene: _Scene,
           layers: Sequence[tuple[Array, NDArray[np.float32], float]]) -> Image.Image:
    """Photograph the sheet: paper, ink layers (mask, colour, grain), table, lighting,
    white balance, blur (of the ink and the sheet's edge; the rest is smooth), sensor
    noise, JPEG."""
    h, w = scene.h, scene.w
    paper = _paper_colour(rng)
    grain = (_smooth_noise(rng, h, w, 6) * rng.uniform(1.5, 5)
             + _smooth_noise(rng, h, w, 40) * rng.uniform(1, 5))
    blur = rng.uniform(0.3, 1.5)
    img = paper * (1 + grain * np.float32(1 / 255))[..., None]
    for mask, colour, graininess in layers:
        m = mask
        if graininess > 0:
            fibres = np.abs(_smooth_noise(rng, h, w, 2))
            m = m * np.clip(1 - graininess * fibres, 0, 1)
        m = _blur(m, blur)
        rows = np.flatnonzero(m.max(axis=1))
        cols = np.flatnonzero(m.max(axis=0))
        if len(rows):  # only where the ink is
            part = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            img[part] += m[part][..., None] * (colour - img[part])
    if scene.sheet is not None:
        table = _table(rng, h, w)
        img = table + _blur(scene.sheet, blur)[..., None] * (img - table)
    gains = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    img *= _lighting(rng, h, w)[..., None] * gains
    img += (rng.standard_normal((h, w), dtype=np.float32)
            * np.float32(rng.uniform(1.0, 6.0)))[..., None]
    return _jpeg(rng, Image.fromarray(_u8(img)))


def _photo_of(rng: np.random.Generator, mask: Array | None, *,
              size: tuple[int, int] | None = None, ruled: float = 0.0) -> Image.Image:
    """A phone photo of ``mask`` written on a sheet (``None``: a blank sheet)."""
    scene = _scene(rng, size)
    layers: list[tuple[Array, NDArray[np.float32], float]] = []
    if rng.random() < ruled:
        layers += [(m, c, 0.0) for m, c in _lines(rng, scene.h, scene.w)]
    if mask is not None:
        if rng.random() < 0.35:
            mask = _rotate_mask(mask, rng.uniform(-12, 12))
        colour, opacity, graininess = _ink_colour(rng)
        placed = _place(rng, scene, mask) * np.float32(opacity)
        _note(ink=placed, dark_ink=True, ink_kind=_ink_name(colour, graininess))
        layers.append((placed, colour, graininess))
    return _shoot(rng, scene, layers)


def _ink_name(colour: NDArray[np.float32], graininess: float) -> str:
    return "pencil" if graininess > 0 else "blue" if colour[2] > colour[0] + 40 else "black"


def _photo_height(rng: np.random.Generator, size: tuple[int, int] | None) -> float:
    """A written digit's height in a photo: 60-200 px on a 240-480 px picture."""
    scale = 1.0 if size is None else min(size) / 360
    return float(np.exp(rng.uniform(math.log(60), math.log(200)))) * scale


def _canvas_of(rng: np.random.Generator, strokes: _Strokes, *, max_fill: float = 0.9,
               mode: str | None = None) -> Image.Image:
    """A canvas export of ``strokes`` drawn with a thick round pen."""
    r = rng.random()
    if r < 0.5:
        w = h = 280
    elif r < 0.8:
        w = h = int(rng.integers(200, 401))
    else:
        w, h = int(rng.integers(200, 401)), int(rng.integers(200, 401))
    pen = rng.uniform(12, 30) * min(w, h) / 280
    extent = rng.uniform(0.3, max_fill) * min(w, h)
    strokes = _warp(strokes, rng, 0.4)
    # a brush no wider than a fifth of the writing's height (small writing: a thinner brush)
    pen = min(pen, max(3.0, extent * max(strokes.height(), 0.05) / 5))
    mask = _draw_strokes(strokes, max(extent - pen, pen), pen)
    if mask.shape[0] > h - 2 or mask.shape[1] > w - 2:
        k = min((h - 2) / mask.shape[0], (w - 2) / mask.shape[1])
        mask = _resize_mask(mask, int(mask.shape[1] * k), int(mask.shape[0] * k))
    full = np.zeros((h, w), np.float32)
    y = int(rng.integers(0, h - mask.shape[0] + 1))
    x = int(rng.integers(0, w - mask.shape[1] + 1))
    full[y : y + mask.shape[0], x : x + mask.shape[1]] = mask
    kinds = ("rgb-white-on-black", "rgb-black-on-white", "rgba-white", "rgba-black",
             "rgba-colour")
    mode = mode or kinds[int(rng.integers(len(kinds)))]
    # (A transparent export's ink is its alpha channel: light on dark, whatever its colour.)
    _note(dark_ink=mode == "rgb-black-on-white", ink_kind=mode)
    if mode.startswith("rgb-"):
        value = full * 255 if mode == "rgb-white-on-black" else 255 - full * 255
        return Image.fromarray(_u8(np.repeat(value[..., None], 3, axis=2)), "RGB")
    if mode == "rgba-white":
        stroke = np.array([255, 255, 255], np.float32)
    elif mode == "rgba-black":
        stroke = np.array([0, 0, 0], np.float32)
    else:
        stroke = np.array(rng.integers(0, 256, 3), np.float32)
        stroke[int(rng.integers(3))] = rng.uniform(150, 255)  # a vivid colour
    r = rng.random()
    if r < 0.5:
        background = np.zeros(3, np.float32)
    elif r < 0.75:
        background = np.full(3, 255, np.float32)
    else:
        background = rng.integers(0, 256, 3).astype(np.float32)
    rgba = np.empty((h, w, 4), np.float32)
    rgba[..., :3] = np.where(full[..., None] > 0, stroke, background)
    rgba[..., 3] = full * 255
    return Image.fromarray(_u8(rgba), "RGBA")


def _scan_of(rng: np.random.Generator, mask: Array, *, margin: tuple[float, float] = (0.1, 2.0),
             mode: str = "L") -> Image.Image:
    """A scan of ``mask`` printed dark on light paper, with margins of ``margin`` times
    the ink's height on each side: slight gradient, blur, noise, specks, rotation."""
    mh, mw = mask.shape
    top, bottom, left, right = (int(rng.uniform(*margin) * mh) + 2 for _ in range(4))
    h, w = mh + top + bottom, mw + left + right
    full = np.zeros((h, w), np.float32)
    full[top : top + mh, left : left + mw] = mask
    paper = rng.uniform(205, 255)
    ink = rng.uniform(0, 70)
    _note(dark_ink=True)
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    page = paper + rng.uniform(-6, 6) * yy + np.zeros((1, w), np.float32)
    img = page - (page - ink) * full
    if rng.random() < 0.2:  # dust specks
        for _ in range(int(rng.integers(1, 6))):
            sy, sx = int(rng.integers(h)), int(rng.integers(w))
            img[max(sy - 1, 0) : sy + 1, max(sx - 1, 0) : sx + 1] = ink + 40
    pic = Image.fromarray(_u8(img))
    if rng.random() < 0.3:
        pic = pic.rotate(rng.uniform(-3, 3), Image.Resampling.BILINEAR, fillcolor=int(paper))
    radius = rng.uniform(0, 1.0)
    if radius > 0.2:
        pic = pic.filter(ImageFilter.GaussianBlur(radius))
    arr = np.asarray(pic, np.float32)
    arr = arr + rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(rng.uniform(0, 5))
    out = Image.fromarray(_u8(arr))
    return out.convert(mode) if mode != "L" else out


# --------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------


def photo(rng: np.random.Generator, src: Sources, *,
          size: tuple[int, int] | None = None) -> tuple[Image.Image, int]:
    """A phone photo (RGB JPEG) of a digit written on paper; ``size`` (w, h) overrides
    the picture's 240-480 px sides (the digit scales with it)."""
    height = _photo_height(rng, size)
    mask, label = _handwritten(rng, src, height)
    return _photo_of(rng, mask, size=size, ruled=0.2), label


def canvas(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, int]:
    """A canvas/sketchpad export (RGB or RGBA) of a digit drawn with thick round strokes."""
    if rng.random() < 0.15:
        label = int(rng.integers(10))
        strokes = _glyph_strokes(_pick_font(rng, src), str(label))
    else:
        i = int(rng.integers(len(src.digits)))
        label = int(src.labels[i])
        strokes = _mnist_strokes(src.digits[i])
    return _canvas_of(rng, strokes), label


def printed(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, int]:
    """A printed digit in one of the split's fonts, scanned: grayscale ``"L"``."""
    label = int(rng.integers(10))
    path = _pick_font(rng, src)
    height = float(np.exp(rng.uniform(math.log(14), math.log(140))))
    bold = int(rng.integers(1, max(2, round(height / 25)) + 1)) if rng.random() < 0.2 else 0
    return _scan_of(rng, _trim(_text_mask(path, str(label), height, bold))), label


#: The marks of :func:`form` around or under the digit, with their shares.
FORM_MARKS: Final = (("box", 0.3), ("row", 0.3), ("circle", 0.2), ("underline", 0.2))


def _form_colour(rng: np.random.Generator) -> tuple[NDArray[np.float32], float]:
    """A form's printed lines: black or grey, or a light "drop-out" colour (red, blue,
    green) that scanners of forms filter out; and their opacity."""
    r = rng.random()
    if r < 0.4:
        return np.full(3, rng.uniform(0, 60), np.float32), rng.uniform(0.7, 1.0)
    if r < 0.6:
        return np.full(3, rng.uniform(90, 160), np.float32), rng.uniform(0.6, 1.0)
    colours = ([235, 120, 120], [120, 160, 230], [120, 200, 140])
    return np.array(colours[int(rng.integers(3))], np.float32), rng.uniform(0.5, 0.9)


def _form_marks(rng: np.random.Generator, shape: tuple[int, int],
                box: tuple[int, int, int, int], pen: float) -> tuple[Array, str]:
    """A mask, picture-sized, of what a form draws around the digit whose ink lies in
    ``box`` (top, left, bottom, right): a printed box, one box of a row of boxes (which
    may run past the picture's edges), a circle drawn by hand (sometimes left open), or an
    underline (printed, or by hand). Returns the mask and the mark's name."""
    h, w = shape
    top, left, bottom, right = box
    dh, dw = bottom - top, right - left
    names = [name for name, _ in FORM_MARKS]
    name = names[int(rng.choice(len(names), p=[share for _, share in FORM_MARKS]))]
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    line = max(1, round(rng.uniform(0.006, 0.016) * max(h, w)))
    if name in ("box", "row"):
        # Room around the digit: most people keep inside the box, some touch it.
        close = rng.random() < 0.1
        pads = rng.uniform(0.0, 0.06, 4) if close else rng.uniform(0.1, 0.45, 4)
        y0, y1 = top - pads[0] * dh, bottom + pads[1] * dh
        cell = max(dw, 0.6 * dh) * (1 + pads[2] + pads[3])
        x0 = left - pads[2] * max(dw, 0.6 * dh)
        before, after = ((int(rng.integers(0, 5)), int(rng.integers(0, 5))) if name == "row"
                         else (0, 0))
        for k in range(-before, after + 1):
            a = x0 + k * cell
            draw.rectangle([a, y0, a + cell, y1], outline=255, width=line)
    elif name == "circle":
        grow = rng.uniform(0.12, 0.4)
        cy, cx = (top + bottom) / 2, (left + right) / 2
        ry = dh * (0.5 + grow)
        rx = max(dw, 0.7 * dh) * (0.5 + grow)
        start = rng.uniform(0, 360)
        sweep = 360 if rng.random() < 0.6 else rng.uniform(300, 345)
        draw.arc([cx - rx, cy - ry, cx + rx, cy + ry], start, start + sweep, fill=255,
                 width=max(1, round(pen)))
    else:
        gap = rng.uniform(0.05, 0.3) * dh
        extra = rng.uniform(-0.1, 0.4) * dw
        y = bottom + gap
        tilt = rng.normal(0, 0.03) * dw
        width = line if rng.random() < 0.5 else max(1, round(pen))
        draw.line([(left - extra, y - tilt), (right + extra, y + tilt)], fill=255, width=width)
    return _to_mask(im), name


def form(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, int]:
    """A digit written on a form, in a printed box, in one box of a row of boxes, circled,
    or underlined (:data:`FORM_MARKS`): a phone photo (RGB JPEG, slightly turned) or a
    grayscale scan."""
    if rng.random() < 0.65:
        scene = _scene(rng)
        height = min(_photo_height(rng, None), 0.45 * min(scene.h, scene.w))
        mask, label = _handwritten(rng, src, height, allow_font=False)
        colour, opacity, graininess = _ink_colour(rng)
        top, left, bottom, right = scene.box
        margin_y, margin_x = round(0.3 * mask.shape[0]), round(0.3 * mask.shape[1])
        inner = _Scene(scene.h, scene.w, scene.sheet,
                       (top + margin_y, left + margin_x, bottom - margin_y, right - margin_x))
        placed = _place(rng, inner, mask)
        rows, cols = np.flatnonzero(placed.max(axis=1)), np.flatnonzero(placed.max(axis=0))
        pen = max(1.2, float(placed.sum()) / max(len(rows), 1) / 4)
        marks, name = _form_marks(rng, placed.shape,
                                  (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1), pen)
        if name in ("box", "row") or rng.random() < 0.3:
            mark_colour, mark_opacity = _form_colour(rng)
            mark_grain = 0.0
        else:  # drawn by hand with the same pen
            mark_colour, mark_opacity, mark_grain = colour, opacity, graininess
        turn = rng.uniform(-4, 4) if rng.random() < 0.5 else 0.0
        if turn:
            placed = _turn_in_place(placed, turn)
            marks = _turn_in_place(marks, turn)
        placed = placed * np.float32(opacity)
        _note(ink=placed, dark_ink=True, ink_kind=_ink_name(colour, graininess))
        return _shoot(rng, scene, [(marks * np.float32(mark_opacity), mark_colour, mark_grain),
                                   (placed, colour, graininess)]), label
    height = float(np.exp(rng.uniform(math.log(24), math.log(120))))
    mask, label = _handwritten(rng, src, height, allow_font=False)
    pad = round(2.5 * max(mask.shape))
    full = np.pad(mask, pad)
    pen = max(1.2, float(mask.sum()) / mask.shape[0] / 4)
    marks, _name = _form_marks(rng, full.shape,
                               (pad, pad, pad + mask.shape[0], pad + mask.shape[1]), pen)
    level = rng.uniform(0.4, 1.0)
    both = np.maximum(full, marks * np.float32(level))
    return _scan_of(rng, _trim(both), margin=(0.1, 0.8)), label


def page(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, int]:
    """A digit small on a large picture: a page photographed whole (RGB JPEG, 1200-2400 px
    on the longer side, the digit 2.5-8 % of it) or scanned (grayscale, the digit 40-100 px
    tall with 6-12 times its height of paper on each side)."""
    if rng.random() < 0.6:
        longer = int(rng.integers(1200, 2401))
        shorter = int(longer * rng.uniform(0.7, 0.8))
        size = (longer, shorter) if rng.random() < 0.5 else (shorter, longer)
        mask, label = _handwritten(rng, src, longer * rng.uniform(0.025, 0.08))
        return _photo_of(rng, mask, size=size), label
    mask, label = _handwritten(rng, src, float(rng.uniform(40, 100)))
    return _scan_of(rng, _trim(mask), margin=(6.0, 12.0)), label


def _turn_in_place(mask: Array, degrees: float) -> Array:
    """``mask`` turned about its centre, same size: a sheet photographed slightly askew."""
    return _to_mask(_from_mask(mask).rotate(degrees, Image.Resampling.BILINEAR))


_uci_warned: list[bool] = []


def lowres(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, int]:
    """A low-resolution scan upscaled to 32-64 px (``"L"``): the UCI 8×8 digits for
    ``"bench"``, MNIST digits shrunk to 10-14 px for the other splits."""
    if src.split == "bench" and src.uci is None and not _uci_warned:
        _uci_warned.append(True)
        warnings.warn("scikit-learn is not importable: the bench split's lowres pictures "
                      "are shrunk MNIST digits instead of the UCI 8x8 digits", stacklevel=2)
    if src.split == "bench" and src.uci is not None:
        images, labels = src.uci
        i = int(rng.integers(len(images)))
        small, label = images[i], int(labels[i])
        pads = rng.integers(0, 2, 4)
        small = np.pad(small, ((pads[0], pads[1]), (pads[2], pads[3])))
    else:
        i = int(rng.integers(len(src.digits)))
        label = int(src.labels[i])
        ink = _trim(src.digits[i].astype(np.float32) / 255, pad=2)
        side = int(rng.integers(10, 15))
        k = side / max(ink.shape)
        small = _to_mask(_from_mask(ink).resize(
            (max(1, round(ink.shape[1] * k)), max(1, round(ink.shape[0] * k))),
            Image.Resampling.BOX))
    target = int(rng.integers(32, 65))
    k = target / max(small.shape)
    resample = Image.Resampling.NEAREST if rng.random() < 0.5 else Image.Resampling.BILINEAR
    big = _to_mask(_from_mask(small).resize(
        (max(1, round(small.shape[1] * k)), max(1, round(small.shape[0] * k))), resample))
    dark = rng.random() < 0.75
    _note(dark_ink=dark)
    if dark:  # dark ink on light paper
        paper, ink_value = rng.uniform(200, 255), rng.uniform(0, 60)
        value = paper - (paper - ink_value) * big
    else:  # light on dark, as the datasets store them
        value = big * rng.uniform(200, 255)
    value = value + rng.standard_normal(value.shape, dtype=np.float32) * np.float32(
        rng.uniform(0, 4))
    return Image.fromarray(_u8(value)), label


def blank(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, None]:
    """No ink: a uniform page of any size and colour, or a photographed blank sheet."""
    if rng.random() < 0.5:
        return _photo_of(rng, None, ruled=0.0), None
    w, h = (int(np.exp(rng.uniform(math.log(16), math.log(800)))) for _ in range(2))
    r = rng.random()
    if r < 0.35:
        colour = (255, 255, 255)
    elif r < 0.6:
        grey = int(rng.integers(0, 256))
        colour = (grey, grey, grey)
    else:
        red, green, blue = (int(c) for c in rng.integers(0, 256, 3))
        colour = (red, green, blue)
    mode = ("L", "RGB", "RGBA", "RGBA-transparent")[int(rng.integers(4))]
    if mode == "L":
        return Image.new("L", (w, h), colour[0]), None
    if mode == "RGB":
        return Image.new("RGB", (w, h), colour), None
    alpha = 0 if mode == "RGBA-transparent" else 255
    return Image.new("RGBA", (w, h), (*colour, alpha)), None


def _handwritten_looking(rng: np.random.Generator, src: Sources, text: str,
                         size: float, pen: float) -> Array:
    """``text`` as if written by hand: a font's glyph skeleton, slanted and wobbled, drawn
    with a round pen (or, for script fonts, the glyph itself)."""
    path = _pick_font(rng, src, text)
    if font_family(path) == "zapf-chancery" and rng.random() < 0.5:
        return _trim(_text_mask(path, text, size))
    strokes = _warp(_glyph_strokes(path, text), rng, 1.0)
    return _draw_strokes(strokes, size, pen)


def _character(rng: np.random.Generator, src: Sources, chars: str) -> Image.Image:
    """One character of ``chars``: printed and scanned, or handwritten-looking in a photo
    or a canvas."""
    ch = chars[int(rng.integers(len(chars)))]
    r = rng.random()
    if r < 0.4:
        path = _pick_font(rng, src, ch)
        height = float(np.exp(rng.uniform(math.log(14), math.log(140))))
        return _scan_of(rng, _trim(_text_mask(path, ch, height)))
    if r < 0.7:
        size = _photo_height(rng, None)
        mask = _handwritten_looking(rng, src, ch, size, max(1.2, size * rng.uniform(0.03, 0.1)))
        return _photo_of(rng, mask, ruled=0.2)
    path = _pick_font(rng, src, ch)
    return _canvas_of(rng, _warp(_glyph_strokes(path, ch), rng, 0.8))


def letters(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, None]:
    """A letter (:data:`LETTERS`), printed or handwritten-looking."""
    return _character(rng, src, LETTERS), None


def symbols(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, None]:
    """A symbol (:data:`SYMBOLS`), printed or handwritten-looking."""
    return _character(rng, src, SYMBOLS), None


def several_digits(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, None]:
    """2-4 digits side by side, as in a written number: handwritten or printed."""
    count = int(rng.integers(2, 5))
    if rng.random() < 0.6:
        parts, offsets, scales, x = [], [], [], 0.0
        for _ in range(count):
            strokes = _mnist_strokes(src.digits[int(rng.integers(len(src.digits)))])
            s = rng.uniform(0.85, 1.15)
            parts.append(strokes)
            offsets.append((x, rng.normal(0, 0.06)))
            scales.append(s)
            x += strokes.width() * s + rng.uniform(0.08, 0.4)
        joined = _join(parts, offsets, scales)
        if rng.random() < 0.5:
            return _canvas_of(rng, joined, max_fill=0.95), None
        height = _photo_height(rng, None) * 0.8
        width = height / max(joined.height(), 0.1)
        mask = _draw_strokes(_warp(joined, rng, 0.3), width,
                             max(1.2, height * rng.uniform(0.03, 0.1)))
        return _photo_of(rng, mask, ruled=0.2), None
    text = "".join(str(int(d)) for d in rng.integers(0, 10, count))
    path = _pick_font(rng, src)
    height = float(np.exp(rng.uniform(math.log(14), math.log(100))))
    mask = _trim(_text_mask(path, text, height))
    if rng.random() < 0.6:
        return _scan_of(rng, mask, margin=(0.1, 1.5)), None
    return _photo_of(rng, _resize_mask(mask, mask.shape[1] * 2, mask.shape[0] * 2)
                     if height < 40 else mask), None


def ruled(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, None]:
    """Ruled or squared paper with no writing: flat (a scan) or photographed."""
    if rng.random() < 0.5:
        scene = _scene(rng)
        layers = [(m, c, 0.0) for m, c in _lines(rng, scene.h, scene.w)]
        return _shoot(rng, scene, layers), None
    w, h = int(rng.integers(100, 600)), int(rng.integers(100, 600))
    page = np.empty((h, w, 3), np.float32)
    page[:] = _paper_colour(rng)
    for mask, colour in _lines(rng, h, w):
        page = page * (1 - mask[..., None]) + colour * mask[..., None]
    page += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(0, 3))
    pic = Image.fromarray(_u8(page))
    return (pic.convert("L") if rng.random() < 0.3 else pic), None


def _scribble_strokes(rng: np.random.Generator) -> _Strokes:
    """1-3 smooth random curves (Catmull-Rom through random points), crossing each other."""
    points, edges, base = [], [], 0
    for _ in range(int(rng.integers(1, 4))):  # enough turns that no digit comes out
        ctrl = rng.uniform(0, 1, (int(rng.integers(9, 16)), 2))
        ctrl = np.concatenate([ctrl[:1], ctrl, ctrl[-1:]])
        t = np.linspace(0, 1, 10, dtype=np.float64)[:-1, None]
        curve = []
        for i in range(1, len(ctrl) - 2):
            p0, p1, p2, p3 = ctrl[i - 1], ctrl[i], ctrl[i + 1], ctrl[i + 2]
            curve.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
        pts = np.concatenate(curve).astype(np.float32)
        points.append(pts)
        idx = np.arange(base, base + len(pts) - 1)
        edges.append(np.stack([idx, idx + 1], axis=1))
        base += len(pts)
    return _Strokes(_normalise(np.concatenate(points)), np.concatenate(edges))


def scribble(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, None]:
    """Random smooth pen scribbles that cross: in a photo, a canvas or a scan."""
    strokes = _scribble_strokes(rng)
    r = rng.random()
    if r < 0.4:
        size = _photo_height(rng, None) * 1.2
        pen = max(1.2, size * rng.uniform(0.01, 0.05))
        return _photo_of(rng, _draw_strokes(strokes, size, pen), ruled=0.2), None
    if r < 0.75:
        return _canvas_of(rng, strokes), None
    size = rng.uniform(30, 200)
    return _scan_of(rng, _draw_strokes(strokes, size, max(1.0, size * rng.uniform(0.01, 0.05))),
                    margin=(0.05, 0.5)), None


def _value_noise(rng: np.random.Generator, h: int, w: int) -> Array:
    total = np.zeros((h, w), np.float32)
    for octave in range(4):
        cell = max(2, int(min(h, w) / 2 ** (octave + 1)))
        total += _smooth_noise(rng, h, w, cell) / 2**octave
    return total


def texture(rng: np.random.Generator, src: Sources) -> tuple[Image.Image, None]:
    """A texture or pattern: wood, cloth, noise, stripes, checks, dots or static."""
    w, h = int(rng.integers(64, 513)), int(rng.integers(64, 513))
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = rng.uniform(0, 255, 3).astype(np.float32)
    kind = int(rng.integers(7))
    t: NDArray[np.floating]
    if kind == 0:  # wood
        c1 = np.array([rng.uniform(120, 200), rng.uniform(80, 140), rng.uniform(40, 90)],
                      np.float32)
        c2 = c1 * np.float32(rng.uniform(0.5, 0.8))
        cx, cy = rng.uniform(-2 * w, 3 * w), rng.uniform(-4 * h, -h)
        r = np.sqrt((xx - cx) ** 2 * rng.uniform(0.05, 0.3) + (yy - cy) ** 2)
        t = 0.5 + 0.5 * np.sin(r / rng.uniform(3, 10) + 3 * _value_noise(rng, h, w))
    elif kind == 1:  # cloth: a weave of two thread directions
        p = rng.uniform(3, 9)
        warp_t = np.sin(2 * math.pi * xx / p) * np.sign(np.sin(math.pi * yy / p))
        t = 0.5 + 0.25 * warp_t + 0.15 * _smooth_noise(rng, h, w, 2)
    elif kind == 2:  # smooth noise (clouds, stains)
        t = _value_noise(rng, h, w)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    elif kind == 3:  # stripes
        angle = rng.uniform(0, math.pi)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        t = (np.sin(2 * math.pi * u / rng.uniform(4, 40)) > 0).astype(np.float32)
    elif kind == 4:  # checks
        p = rng.uniform(4, 40)
        t = ((np.floor(xx / p) + np.floor(yy / p)) % 2).astype(np.float32)
    elif kind == 5:  # dots
        p = rng.uniform(8, 40)
        dx, dy = (xx % p) - p / 2, (yy % p) - p / 2
        t = (dx * dx + dy * dy < (p * rng.uniform(0.15, 0.4)) ** 2).astype(np.float32)
    else:  # static
        t = rng.uniform(0, 1, (h, w)).astype(np.float32)
    t = np.broadcast_to(t, (h, w))[..., None]
    img = Image.fromarray(_u8(c2 * t + c1 * (1 - t)))
    if rng.random() < 0.3:
        img = img.convert("L")
    if rng.random() < 0.5:
        return _jpeg(rng, img.convert("RGB"), exif=False), None
    return img, None


#: The picture maker of each kind.
MAKERS: Final[dict[str, Maker]] = {
    "photo": photo,
    "canvas": canvas,
    "printed": printed,
    "lowres": lowres,
    "form": form,
    "page": page,
    "blank": blank,
    "letters": letters,
    "several_digits": several_digits,
    "ruled": ruled,
    "scribble": scribble,
    "texture": texture,
    "symbols": symbols,
}


def _rng(seed: int, kind: str, split: str, index: int) -> np.random.Generator:
    key = [seed, zlib.crc32(kind.encode()), zlib.crc32(split.encode()), index]
    return np.random.default_rng(np.random.SeedSequence(key))


def make_one(kind: str, index: int, sources: Sources, *, seed: int) -> tuple[Image.Image, Label]:
    """Picture ``index`` of ``kind`` from ``sources`` (the same for the same arguments)."""
    if kind not in MAKERS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return MAKERS[kind](_rng(seed, kind, sources.split, index), sources)


@dataclass
class Truth:
    """What a picture holds, as its maker drew it (for telling why a reader got it wrong).

    Attributes:
        dark_ink: whether the ink is darker than its ground (``None``: not recorded).
        ink: for photos, the ink's opacity ``(H, W)`` in the upright picture's pixels
            (before lighting, blur and noise); ``None`` otherwise.
        ink_kind: for photos, ``"black"``, ``"blue"`` or ``"pencil"``; for canvas exports,
            their mode; ``None`` otherwise.
    """

    dark_ink: bool | None = None
    ink: Array | None = None
    ink_kind: str | None = None


_truth: list[Truth] = []  # the picture being made with make_one_with_truth, if any


def _note(*, dark_ink: bool, ink: Array | None = None, ink_kind: str | None = None) -> None:
    """Record what the picture being made holds (only within :func:`make_one_with_truth`;
    it draws nothing from the generator, so pictures stay the same)."""
    if _truth:
        _truth[-1] = Truth(dark_ink, ink if ink is not None else _truth[-1].ink,
                           ink_kind or _truth[-1].ink_kind)


def make_one_with_truth(kind: str, index: int, sources: Sources, *,
                        seed: int) -> tuple[Image.Image, Label, Truth]:
    """:func:`make_one`'s picture (the same one) with what its maker drew: the ink's
    polarity, and for photos where the ink lies."""
    _truth[:] = [Truth()]
    try:
        image, label = make_one(kind, index, sources, seed=seed)
        return image, label, _truth[-1]
    finally:
        _truth.clear()


def make_set(
    kind: str, split: str, n: int, *, seed: int, data: str | Path,
    font_dirs: Sequence[str] = FONT_DIRS,
) -> list[tuple[Image.Image, int | None]]:
    """``n`` pictures of ``kind`` from ``split``'s sources: ``[(image, label), ...]``.

    Args:
        kind: one of :data:`KINDS`.
        split: ``"train"``, ``"val"`` or ``"bench"`` (disjoint handwriting and fonts).
        n: how many.
        seed: picture ``i`` is drawn from a generator seeded by ``(seed, kind, split, i)``.
        data: the folder holding ``MNIST/raw/`` (only the training files are read).
        font_dirs: where to look for fonts.

    Returns:
        The pictures with their labels (0-9 for :data:`DIGIT_KINDS`, ``None`` otherwise).
    """
    sources = load_sources(split, data, font_dirs=font_dirs)
    return [make_one(kind, i, sources, seed=seed) for i in range(n)]
