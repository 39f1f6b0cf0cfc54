"""Finding the one digit in a real picture: the engine behind :class:`~tp3nets.MNISTPreprocess`.

A phone photo, a scan or a canvas export is turned into an *ink map* (0 where the paper
is, 1 where the ink is darkest) in five steps, each for one way real pictures differ
from MNIST:

1. **Polarity.** Light ink on a dark ground (a canvas, chalk) or dark ink on light paper,
   told from where the picture's border (the paper) or, when a shadow or a table makes
   the border uneven, the picture's median lies in its brightness range (:func:`light_ink`).
2. **The paper's own brightness, divided out.** A morphological closing (a maximum then a
   minimum filter, wider than any pen stroke) keeps the paper and fills the ink; dividing
   by it removes lighting ramps, vignettes and the edge of a cast shadow, which one
   background level for the whole sheet cannot (closings keep ramps and steps as they are).
   Colour ink on colour paper is read per channel, so blue ink or a yellow marker counts.
3. **A robust ink threshold.** The noise level of the paper (its median absolute
   deviation) and the strongest ink set it; pencil on grey paper and marker on white
   both work, and a picture whose strongest "ink" is no stronger than paper grain is
   blank. Ink must also be darker than the paper by more than its noise in absolute terms
   (the noise of a dark table, divided by little, is not ink).
4. **Shading is not ink.** Pieces with a soft outline (much softer than the sharpest
   piece) or without brighter paper around them (a strip along a table, a shadow's tip)
   are left out, and the threshold is taken again without them.
5. **The digit's own strokes.** Connected components of the ink, rather than every dark
   pixel: ruled and squared paper lines, paper edges and table along the border, and
   specks are left out; several digits side by side, textures and ink only at the edges are
   reported as *not one digit*.

Everything is computed on a working copy whose longer side is at most :data:`WORK_SIDE`
pixels, so a 12-megapixel photo costs milliseconds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["Located", "locate_digit"]

#: The longer side of the working copy of a picture (pixels).
WORK_SIDE: Final = 384
#: Pictures whose longer side is at most this are taken as crops of one digit (padded).
SMALL_SIDE: Final = 96
#: Ink weaker than this (a fraction of the paper's brightness) is no ink at all.
MIN_CONTRAST: Final = 0.15
#: Pieces whose outline is softer than this (the brightness gradient across it over their
#: darkness, in 1/pixel: an edge about 1/SOFT_EDGE pixels wide) are shading, not ink.
SOFT_EDGE: Final = 0.1
#: Pieces with more than this share of a ring just outside them no brighter than their
#: ink are the edge of something darker (a table, a shadow), not ink on paper.
OPEN_OUTLINE: Final = 0.35
#: Pieces fainter than this share of the darkest piece (in absolute terms) are grain.
FAINT: Final = 0.4
#: Reasons for "no digit", as :attr:`Located.reason` gives them.
BLANK: Final = "blank: no ink on the picture"
EDGES_ONLY: Final = "ink only along the picture's edges (paper edge, table, shadow)"
LINES_ONLY: Final = "only ruled or squared lines, no digit"
SEVERAL: Final = "several marks side by side (a number of several digits, or text)"
TOO_WIDE: Final = "a mark much wider than a digit (a line, a word)"
TEXTURE: Final = "ink all over the picture (a texture or pattern), no single digit"
SPECKS: Final = "only specks, no stroke of a digit"
SHADE: Final = "only shadows or shading (soft edges), no ink"


@dataclass(frozen=True)
class Located:
    """What :func:`locate_digit` found.

    Attributes:
        ink: ``(1, h, w)`` float tensor in [0, 1], MNIST polarity (ink light on black),
            cropped to the digit's strokes; the whole ink map (all zero when blank) when
            no single digit was found.
        found: whether one digit was found.
        reason: why not, when ``found`` is false.
    """

    ink: Tensor
    found: bool
    reason: str | None = None


def luminance(x: Tensor) -> Tensor:
    """(C, H, W) with C in (1, 3) → (H, W) luminance (ITU-R 601, as Pillow's ``L``)."""
    if x.shape[0] == 1:
        return x[0]
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * weights.view(3, 1, 1)).sum(dim=0)


def to_working_size(x: Tensor, side: int = WORK_SIDE) -> Tensor:
    """Shrink (C, H, W) so that its longer side is at most ``side`` (area averaging)."""
    h, w = x.shape[-2:]
    if max(h, w) <= side:
        return x
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x[None], size=size, mode="area")[0]


def light_ink(lum: Tensor) -> bool:
    """Whether the ink is lighter than the ground (a canvas, chalk, MNIST itself).

    The ground is the median of the picture's border, where the border is of one level.
    Near the darkest end of the picture's range, the ink is light; near the brightest,
    dark. Otherwise (a shadow or a table along the border) the picture's own median is
    the ground when it lies near one end. In between, the picture's shading (a local
    median) is taken away and the ink is whichever tail of what remains reaches farther:
    a shadow's edge adds to both tails, sparse ink to one. Light ink must reach clearly
    farther (a deep shadow lifts the light tail), and a tie (a blank page) reads as dark.
    """
    h, w = lum.shape
    band = max(1, round(0.03 * min(h, w)))
    border = torch.cat([lum[:band].flatten(), lum[-band:].flatten(),
                        lum[:, :band].flatten(), lum[:, -band:].flatten()])
    ground = float(border.median())
    low, high = _quantiles(lum, (0.002, 0.998))
    if high - low < 1e-3:
        return False
    place = (ground - low) / (high - low)
    quartiles = _quantiles(border, (0.25, 0.75))
    # (A border half in a shadow or on a table is no one level: then it does not decide.)
    if (place < 0.25 or place > 0.75) and quartiles[1] - quartiles[0] < 0.3 * (high - low):
        return place < 0.25
    # A shadow or a table along the border: the picture's own median is the ground where
    # the ink covers less than half of it (a big, bold digit can cover much of the border).
    place = (float(_quantiles(lum, (0.5,))[0]) - low) / (high - low)
    if place < 0.2 or place > 0.65:
        return place < 0.2
    from scipy import ndimage

    step = max(1, min(h, w) // 32)  # a median filter's cost grows with its window
    small = F.avg_pool2d(lum[None, None], step, stride=step, ceil_mode=True) if step > 1 \
        else lum[None, None]
    k = max(3, (min(small.shape[-2:]) // 4) | 1)
    # A local median, not a mean: it is the ground's level wherever the ground is most of
    # the window, so the ink stands out on one side only, even for thick strokes (a mean
    # pulled towards thick ink puts the paper beside it in the other tail).
    shading = torch.from_numpy(ndimage.median_filter(small[0, 0].numpy(), size=k,
                                                     mode="nearest"))[None, None]
    shading = F.interpolate(shading, size=(h, w), mode="bilinear", align_corners=False)
    low, high = _quantiles(lum - shading[0, 0], (0.002, 0.998))
    # A deep shadow over much of a window puts its median at the shadow's level and the lit
    # paper beside it in the light tail: light ink must reach clearly farther to count.
    # (Dark ink on light paper is what photos of writing hold.)
    return high > 1.5 * -low + 1e-3


def _quantiles(x: Tensor, qs: tuple[float, ...]) -> list[float]:
    flat = x.flatten().float()
    if flat.numel() > 1 << 16:  # quantile's cost grows with n; a strided sample is enough
        flat = flat[:: flat.numel() // (1 << 16) + 1]
    values: list[float] = torch.quantile(flat, torch.tensor(qs)).tolist()
    return values


def _closing(x: Tensor, k: int, along: int | None = None) -> Tensor:
    """Grey-level closing of (C, H, W) with a k×k square: maximum, then minimum; with
    ``along`` 1 (0), a k×1 column (1×k row) instead.

    scipy's filters run a square as a row pass and a column pass at a cost per pixel that
    does not grow with k. The picture's edge pixels continue outside it (``nearest``): a
    closing then keeps a lighting ramp that reaches the edge, where a window cut short by
    the edge would brighten it.
    """
    from scipy import ndimage

    size = (1, k, k) if along is None else (1, k, 1) if along == 1 else (1, 1, k)
    array = x.detach().cpu().float().numpy()
    closed = ndimage.grey_closing(array, size=size, mode="nearest")
    return torch.from_numpy(closed)


def paper_brightness(x: Tensor, stroke: float | None = None) -> Tensor:
    """The paper's brightness under each pixel of (C, H, W), dark ink on light paper.

    A first estimate comes from a copy shrunk by a maximum filter (which keeps the paper,
    not the ink) to a shorter side of about 64, closed with a window of a third of it and
    enlarged back: it fills any stroke, but blurs the edge of a shadow. Given the strokes'
    width, a closing at full size with a window a little wider than a stroke follows the
    shadow's edge exactly, and the darker of the two is the paper.
    """
    _c, h, w = x.shape
    step = max(1, min(h, w) // 64)
    small = F.max_pool2d(x[None], step, stride=step, ceil_mode=True)[0] if step > 1 else x
    k = max(3, (min(small.shape[-2:]) // 3) | 1)
    coarse = _closing(small, k)
    coarse = F.avg_pool2d(coarse[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    if coarse.shape[-2:] != (h, w):
        coarse = F.interpolate(coarse[None], size=(h, w), mode="bilinear",
                               align_corners=False)[0]
    if stroke is None:
        return coarse
    fine = _closing(x, max(3, round(2.5 * stroke + 2) | 1))
    return torch.minimum(coarse, fine)


def stroke_width(mask: Tensor) -> float:
    """The strokes' width in pixels: twice the area of the largest piece of ink over its
    outline's length, once ruled lines are taken out (their hairlines would make every
    stroke look thin, and a closing narrower than a stroke loses the stroke)."""
    import numpy as np
    from scipy import ndimage

    mask, _ = _remove_ruled_lines(mask)
    labels, count = ndimage.label(mask.numpy(), structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return 1.0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = torch.from_numpy(labels == int(sizes.argmax()))
    area = int(largest.sum())
    inner = -F.max_pool2d(-largest[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    outline = area - int((largest & inner).sum())
    return max(1.0, 2.0 * area / max(outline, 1))


def ink_map(x: Tensor, invert: bool | None = None) -> Tensor:
    """(C, H, W) picture in [0, 1], C in (1, 3) → (H, W) ink strength in [0, 1].

    ``invert``: ``True`` for dark ink on light paper, ``False`` for light ink on dark,
    ``None`` to tell from the picture. Two passes: the first finds the strokes against a
    coarse estimate of the paper, the second divides by a paper estimate that follows
    shadows' edges, made with the strokes' width.
    """
    return _ink(x, invert).ink


@dataclass(frozen=True)
class _Ink:
    """An ink map and what it was measured on."""

    ink: Tensor  # (H, W) ink strength: 1 - picture / paper, in [0, 1]
    drop: Tensor  # (H, W) paper - picture, unclamped: the ink's darkness in absolute terms
    source: Tensor  # (C, H, W) the picture as read (dark ink), whose edges tell ink from shade


def _ink(x: Tensor, invert: bool | None = None) -> _Ink:
    lum = luminance(x)
    dark_ink = not light_ink(lum) if invert is None else invert
    if not dark_ink:
        x = 1.0 - x
    if x.shape[0] == 3:
        # Luminance is what cameras and JPEG keep sharpest; the colour channels (half the
        # resolution in a JPEG) are read only for ink that luminance hardly sees (a yellow
        # marker, a light colour on paper of another colour).
        gray = lum[None] if dark_ink else 1.0 - lum[None]
        first = _darkness(gray, paper_brightness(gray))
        if _threshold(first)[1] >= 0.3:
            x = gray
        else:
            first = _darkness(x, paper_brightness(x))
    else:
        first = _darkness(x, paper_brightness(x))
    # The strokes' width is measured on the strongest ink only: a shadow's edge (weaker
    # than a pen) would make a wide "stroke" and a closing too wide to follow it.
    threshold, level = _threshold(first)
    # (The noise threshold is capped: a dark table's grain, divided by little, can lift it
    # above the strongest ink and leave no stroke to measure.)
    mask = first > max(min(threshold, 0.8 * level), 0.6 * level)
    paper = paper_brightness(x, stroke_width(mask))
    return _Ink(_darkness(x, paper), _drop(paper, x), x)


def _drop(paper: Tensor, x: Tensor) -> Tensor:
    """(H, W) paper - picture: the ink's darkness in absolute terms (3x3 mean on photos)."""
    drop = paper - x
    drop = drop.amax(dim=0) if drop.shape[0] > 1 else drop[0]
    return _mean3(drop) if max(drop.shape) > 2 * SMALL_SIDE else drop


def _mean3(x: Tensor) -> Tensor:
    """(H, W) averaged over 3×3 windows, the same size."""
    return F.avg_pool2d(x[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]


def _darkness(x: Tensor, paper: Tensor) -> Tensor:
    ink = (1.0 - x / paper.clamp_min(0.02)).clamp_(0.0, 1.0)
    ink = ink.amax(dim=0) if ink.shape[0] > 1 else ink[0]
    if max(ink.shape) <= 2 * SMALL_SIDE:
        return ink
    # A 3x3 mean on photo-sized pictures: sensor noise, strongest where dark paper was
    # divided by little, falls by three; strokes two pixels wide and more keep their core.
    return _mean3(ink)


def _threshold(ink: Tensor, where: Tensor | None = None) -> tuple[float, float]:
    """The ink threshold and the strongest ink's level of an ink map.

    The threshold clears the paper's grain (six robust standard deviations above its
    median) and a third of the strongest ink; the level is the 99.9th percentile, so a
    few hot pixels do not set it. With ``where``, the level is that of the pixels it
    marks (the others count as no ink).
    """
    flat = ink.flatten()
    sample = flat[:: flat.numel() // (1 << 16) + 1] if flat.numel() > 1 << 16 else flat
    median = float(sample.median())
    spread = float((sample - median).abs().median()) * 1.4826
    if where is not None:
        flat = torch.where(where.flatten(), flat, torch.zeros_like(flat))
        sample = flat[:: flat.numel() // (1 << 16) + 1] if flat.numel() > 1 << 16 else flat
    level = float(torch.quantile(flat.float() if flat.numel() <= 1 << 24 else sample,
                                 0.999))
    return max(median + 6.0 * spread, 0.35 * level, 0.08), level


@dataclass
class _Part:
    """One connected piece of ink."""

    label: int
    top: int
    left: int
    bottom: int  # exclusive
    right: int  # exclusive
    mass: float
    pixels: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def _remove_ruled_lines(mask: Tensor) -> tuple[Tensor, bool]:
    """Clear rows (and columns) crossed by long straight lines, when there are at least two
    of them (ruled or squared paper); a single long stroke, such as a cropped "7"'s bar, is
    left alone. Returns the mask and whether any line was removed."""
    h, w = mask.shape
    removed = False
    out = mask.clone()
    for axis, length in ((1, w), (0, h)):
        if length < 40:
            continue
        counts = mask.sum(dim=axis).float()
        full = counts >= 0.7 * length
        # Bands of adjacent line rows count once.
        starts = int((full[1:] & ~full[:-1]).sum()) + int(full[0])
        if starts < 2:
            continue
        near = counts >= 0.3 * length
        lines = full.clone()
        lines[1:] |= full[:-1] & near[1:]
        lines[:-1] |= full[1:] & near[:-1]
        if axis == 1:
            out[lines, :] = False
        else:
            out[:, lines] = False
        # A digit's strokes cross the lines: where ink lies just above and below a cleared
        # row (left and right of a cleared column), the stroke goes on through it.
        bridged = _closing(out[None].float(), 7, along=axis)[0] > 0
        if axis == 1:
            out[lines, :] = mask[lines, :] & bridged[lines, :]
        else:
            out[:, lines] = mask[:, lines] & bridged[:, lines]
        removed = True
    return out, removed


def _parts(mask: Tensor, ink: Tensor) -> tuple[Tensor, list[_Part]]:
    """Label the 8-connected pieces of ``mask``, with their boxes and ink mass."""
    import numpy as np
    from scipy import ndimage

    m = mask.cpu().numpy()
    labels_np, count = ndimage.label(m, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return torch.from_numpy(labels_np.astype(np.int64)), []
    ink_np = ink.cpu().numpy()
    index = np.arange(1, count + 1)
    masses = ndimage.sum_labels(ink_np, labels_np, index)
    pixels = ndimage.sum_labels(m, labels_np, index)
    parts = [
        _Part(i + 1, s[0].start, s[1].start, s[0].stop, s[1].stop, float(masses[i]),
              int(pixels[i]))
        for i, s in enumerate(ndimage.find_objects(labels_np))
        if s is not None
    ]
    return torch.from_numpy(labels_np.astype(np.int64)), parts


def _noise_floor(drop: Tensor) -> float:
    """The darkness (paper - picture, absolute) that the paper's own noise and grain reach:
    six robust standard deviations above its median. Dividing by the paper makes the noise
    of a dark table or a deep shadow as strong as ink; in absolute terms it stays small."""
    flat = drop.flatten()
    sample = flat[:: flat.numel() // (1 << 16) + 1] if flat.numel() > 1 << 16 else flat
    median = float(sample.median())
    spread = float((sample - median).abs().median()) * 1.4826
    return max(median + 6.0 * spread, 0.02)


def _edge_sharpness(labels: Tensor, parts: list[_Part], source: Tensor,
                    drop: Tensor) -> dict[int, float]:
    """Per piece: how steep the picture is across its outline, for its darkness (the
    median, over a band of three pixels along the outline, of the brightness gradient over
    the piece's median darkness; 1 / the edge's width in pixels).

    Ink is laid on paper with an edge as sharp as the lens and the pen make it (one to
    three pixels); a shadow's or a lighting ramp's edge is soft, and where the paper's
    estimate fills the narrow tip of a shadow, that piece's outline runs on into the shadow
    with no edge at all. A piece that is not brighter-bounded (much of a ring just outside
    it is no brighter than it) scores -1: it is the edge of a table or a shadow."""
    import numpy as np
    from scipy import ndimage

    if not parts:
        return {}
    img = source.mean(dim=0) if source.shape[0] > 1 else source[0]
    if max(img.shape) > 2 * SMALL_SIDE:
        img = _mean3(img)
    a = img.numpy()
    gy = np.zeros_like(a)
    gx = np.zeros_like(a)
    gy[1:-1] = (a[2:] - a[:-2]) / 2
    gx[:, 1:-1] = (a[:, 2:] - a[:, :-2]) / 2
    grad = np.hypot(gx, gy)
    lab = labels.numpy()
    outer = ndimage.grey_dilation(lab, size=3)
    inner = ndimage.grey_erosion(lab, size=3)
    band = np.where(outer != inner, outer, 0)
    index = np.array([p.label for p in parts])
    # (Medians of the labelled pixels only: ndimage.median sorts the whole picture.)
    on_band, on_ink = band > 0, lab > 0
    edge = np.atleast_1d(ndimage.median(grad[on_band], band[on_band], index))
    dark = np.atleast_1d(ndimage.median(drop.numpy()[on_ink], lab[on_ink], index))
    # Ink lies on paper: two pixels outside its outline the picture is brighter all around
    # it. Where much of that ring is no brighter than the piece, the piece is the light
    # edge of something darker (a strip along a table, a shadow's tip) or a part of it.
    level = np.atleast_1d(ndimage.median(a[on_ink], lab[on_ink], index))
    near = ndimage.grey_dilation(lab, size=5)
    ring = (near > 0) & (outer == 0)
    bright = np.zeros(int(lab.max()) + 1, dtype=np.float64)
    bright[index] = level + 0.3 * dark
    dim = (a < bright[near]) & ring
    counts = np.bincount(near[ring], minlength=len(bright))
    open_part = np.bincount(near[dim], minlength=len(bright)) / np.maximum(counts, 1)
    return {int(i): -1.0 if open_part[i] > OPEN_OUTLINE else float(e) / max(float(d), 1e-3)
            for i, e, d in zip(index, edge, dark, strict=True)}


def _darker_than_grain(parts: list[_Part], labels: Tensor, drop: Tensor) -> list[_Part]:
    """The pieces whose darkness in absolute terms (the median of paper - picture) is at
    least :data:`FAINT` of the darkest sizeable piece's. Dividing by the paper makes the
    grain of a dark table as strong as ink on the sheet; the ink's own darkness does not
    vary so much within one digit."""
    from scipy import ndimage

    if len(parts) < 2:
        return parts
    lab = labels.numpy()
    on = lab > 0
    index = [p.label for p in parts]
    dark = dict(zip(index, ndimage.median(drop.numpy()[on], lab[on], index).tolist(),
                    strict=True))
    biggest = max(p.mass for p in parts)
    darkest = max(dark[p.label] for p in parts if p.mass >= 0.1 * biggest)
    return [p for p in parts if dark[p.label] >= FAINT * darkest]


def _touches_edges(part: _Part, labels: Tensor) -> bool:
    """Whether a piece is the picture's edge rather than a digit: it runs along an edge for
    a quarter of a side or more (a paper edge, a table, a shadow), or reaches from one side
    to the opposite one (a margin line, the edge of a sheet), where a digit touches the edge
    at a point. Small pictures are padded first (:func:`locate_digit`), so a tightly cropped
    digit never counts as an edge."""
    h, w = labels.shape
    if (part.top == 0 and part.bottom == h) or (part.left == 0 and part.right == w):
        return True
    edges = ((labels[0], w), (labels[-1], w), (labels[:, 0], h), (labels[:, -1], h))
    return any(int((edge == part.label).sum()) >= 0.25 * side for edge, side in edges)


def _pad_with_border(x: Tensor) -> Tensor:
    """(C, H, W) with a margin of a quarter of its longer side, filled with the median colour
    of its border."""
    h, w = x.shape[-2:]
    border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
    colour = border.median(dim=1).values
    m = max(2, max(h, w) // 4)
    out = colour.view(-1, 1, 1).expand(-1, h + 2 * m, w + 2 * m).clone()
    out[:, m : m + h, m : m + w] = x
    return out


def _edge_parts(parts: list[_Part], labels: Tensor, mask: Tensor) -> list[_Part]:
    """The pieces that belong to the picture's edge (:func:`_touches_edges`), judged on
    blobs of pieces joined across small gaps: a table's grain or a textured margin breaks
    into pieces that each touch the edge at a point only."""
    import numpy as np
    from scipy import ndimage

    h, w = mask.shape
    reach = max(1, round(0.015 * max(h, w)))
    joined = ndimage.binary_dilation(mask.numpy(), iterations=reach)
    blobs_np, count = ndimage.label(joined, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    blobs = torch.from_numpy(blobs_np.astype(np.int64))
    edge_blobs = set()
    for s, label in zip(ndimage.find_objects(blobs_np), range(1, count + 1), strict=True):
        if s is None:
            continue
        blob = _Part(label, s[0].start, s[1].start, s[0].stop, s[1].stop, 0.0, 0)
        if _touches_edges(blob, blobs):
            edge_blobs.add(label)
    if not edge_blobs:
        return [p for p in parts if _touches_edges(p, labels)]
    return [p for p in parts
            if _touches_edges(p, labels) or _in_blobs(p, labels, blobs, edge_blobs)]


def _in_blobs(part: _Part, labels: Tensor, blobs: Tensor, chosen: set[int]) -> bool:
    window = labels[part.top:part.bottom, part.left:part.right] == part.label
    ids = blobs[part.top:part.bottom, part.left:part.right][window]
    return bool(ids.numel()) and int(ids[0]) in chosen


def _groups(parts: list[_Part]) -> list[list[_Part]]:
    """Pieces whose columns overlap and that lie close above one another (the bar and body
    of a "5", a "4" in two strokes) form one group; groups side by side, or far apart, are
    separate marks."""
    groups: list[list[_Part]] = []
    for part in sorted(parts, key=lambda p: p.left):
        for group in groups:
            top, left, bottom, right = _box(group)
            overlap = min(right, part.right) - max(left, part.left)
            gap = max(top - part.bottom, part.top - bottom, 0)
            if overlap >= 0.3 * min(part.width, right - left) and gap <= 0.3 * max(
                    part.height, bottom - top):
                group.append(part)
                break
        else:
            groups.append([part])
    return groups


def _spans(box: tuple[int, int, int, int], h: int, w: int) -> bool:
    top, left, bottom, right = box
    return (top == 0 and bottom == h) or (left == 0 and right == w)


def _box(group: list[_Part]) -> tuple[int, int, int, int]:
    return (min(p.top for p in group), min(p.left for p in group),
            max(p.bottom for p in group), max(p.right for p in group))


def locate_digit(x: Tensor, invert: bool | None = None) -> Located:
    """Find the one digit in a (C, H, W) picture in [0, 1] (C in 1, 3), any size.

    Args:
        x: the picture (already composited or turned into ink for transparent pictures).
        invert: ``True`` for dark ink on light paper, ``False`` for light ink on a dark
            ground, ``None`` to tell from the picture.

    Returns:
        A :class:`Located` with the digit's ink cropped to its strokes, or why there is no
        single digit.
    """
    import numpy as np

    work = to_working_size(x.float())
    small = max(work.shape[-2:]) <= SMALL_SIDE
    if small:
        # A small picture is a crop of one digit (a low-resolution scan, a cut-out box of a
        # form): its strokes may touch its edges. A margin of its own border's colour lets
        # the closing see paper around them and keeps them from counting as the edge.
        work = _pad_with_border(work)
    measured = _ink(work, invert)
    ink = measured.ink
    h, w = ink.shape
    # Ink is darker than the paper by more than the paper's noise, in absolute terms: a
    # dark table's or a deep shadow's noise, divided by little paper, is not.
    allowed = measured.drop > _noise_floor(measured.drop)
    threshold, level = _threshold(ink, allowed)
    if level < MIN_CONTRAST:
        return Located(torch.zeros(1, h, w), False, BLANK)
    shaded = False
    for _ in range(2):
        mask = (ink > threshold) & allowed
        mask, had_lines = _remove_ruled_lines(mask)
        labels, parts = _parts(mask, ink)
        sharpness = _edge_sharpness(labels, parts, measured.source, measured.drop)
        # Soft, and much softer than the sharpest piece: a blurred photo of a thick
        # marker has soft edges all over, and then every piece is as soft.
        sharpest = max(sharpness.values(), default=0.0)
        shade = [p.label for p in parts
                 if sharpness[p.label] < min(SOFT_EDGE, 0.5 * sharpest)]
        if not shade:
            break
        # Shading (a shadow's soft edge, the tip of a shadow the paper's estimate filled)
        # is not ink: the threshold and the strongest ink's level are taken again without
        # it, so a shadow's depth does not set how dark the digit must be.
        shaded = True
        region = torch.from_numpy(np.isin(labels.numpy(), shade))
        region = F.max_pool2d(region[None, None].float(), 5, stride=1, padding=2)[0, 0] > 0
        allowed = allowed & ~region
        threshold, level = _threshold(ink, allowed)
        if level < MIN_CONTRAST:
            return Located(ink.clamp(0.0, 1.0)[None], False, SHADE)
    parts = [p for p in parts if p.label not in shade]
    parts = _darker_than_grain(parts, labels, measured.drop)
    # Hysteresis: a piece is ink only if it holds some strong ink.
    strong = 0.5 * level
    if parts:
        with_strong = set(np.unique(labels.numpy()[ink.numpy() >= strong]).tolist())
        parts = [p for p in parts if p.label in with_strong]
    whole = ink.clamp(0.0, 1.0)[None]
    if sum(p.pixels for p in parts) > 0.35 * h * w:
        return Located(whole, False, TEXTURE)
    edge_parts = _edge_parts(parts, labels, mask)
    parts = [p for p in parts if p not in edge_parts]
    if not parts:
        reason = (LINES_ONLY if had_lines else EDGES_ONLY if edge_parts else SHADE if shaded
                  else BLANK)
        return Located(torch.zeros_like(whole) if reason == BLANK else whole, False, reason)
    biggest = max(p.mass for p in parts)
    significant = [p for p in parts if p.mass >= 0.1 * biggest]
    groups = _groups(significant)
    # A group reaching from one side of the picture to the other is an edge (a table's
    # strip cut into grain, a margin line), not a digit.
    groups = [g for g in groups if not _spans(_box(g), h, w)]
    if not groups:
        return Located(whole, False, EDGES_ONLY)
    masses = [sum(p.mass for p in g) for g in groups]
    main = groups[masses.index(max(masses))]
    top, left, bottom, right = _box(main)
    comparable = sum(m >= 0.3 * max(masses) for m in masses)
    if comparable >= 6:
        return Located(whole, False, TEXTURE)
    tallest = max(_box(g)[2] - _box(g)[0] for g in groups)
    marks = sorted((g for g, m in zip(groups, masses, strict=True)
                    if m >= 0.15 * max(masses) and _box(g)[2] - _box(g)[0] >= 0.5 * tallest),
                   key=lambda g: _box(g)[1])
    # Marks side by side are the digits of a number when a gap parts them and together they
    # are wider than a digit, or the gap is wide: the halves of a "0" or an "8" broken in a
    # blocky scan are parted by a gap but no wider together than one digit.
    together = (_box([p for g in marks for p in g])[3] - _box([p for g in marks for p in g])[1]
                if marks else 0)
    apart = [(gap := _box(b)[1] - _box(a)[3]) >= 0.03 * tallest
             and (together >= 0.9 * tallest or gap >= 0.25 * tallest)
             for a, b in itertools.pairwise(marks)]
    # Marks too close to be digits of a number are pieces of this one (the bowl and bar of
    # a thin serif "5", a "4" whose strokes part): they join the digit.
    if main in marks and not any(apart):
        main = [p for g in marks for p in g]
        top, left, bottom, right = _box(main)
    # Small pieces near the digit belong to it (a dot, a broken stroke); far ones are specks.
    grow_y, grow_x = round(0.15 * (bottom - top)) + 1, round(0.15 * (right - left)) + 1
    chosen = [p for p in parts if p in main or (
        p.top >= top - grow_y and p.bottom <= bottom + grow_y
        and p.left >= left - grow_x and p.right <= right + grow_x)]
    top, left, bottom, right = _box(chosen)
    keep = torch.zeros(h, w, dtype=torch.bool)
    for p in chosen:
        keep[top:bottom, left:right] |= labels[top:bottom, left:right] == p.label
    # Keep the soft edge of the strokes (anti-aliasing) around the thresholded ink.
    keep = F.max_pool2d(keep[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    core = ink[keep & (ink > threshold)]
    full = float(torch.quantile(core.float(), 0.9)) if core.numel() else level
    if small:
        # A low-resolution digit (an 8x8 scan, upscaled): a pixel half covered by a stroke
        # is half as dark, and a threshold made for sharp strokes would cut the strokes
        # where they cross pixel boundaries. All the ink in the digit's box counts, down to
        # the paper's noise.
        strokes = torch.where(allowed, ink, torch.zeros_like(ink))
        floor = 0.1 * full
    else:
        strokes = torch.where(keep, ink, torch.zeros_like(ink))
        # Ink from the threshold's half (the soft edge of a stroke, blur between strokes) up
        # to the strokes' core maps to 0..1: MNIST's strokes are saturated with a thin edge.
        floor = 0.5 * threshold
    crop = ((strokes[top:bottom, left:right] - floor) / max(full - floor, 1e-3)).clamp(0, 1)
    crop = torch.where(crop < 0.1, torch.zeros_like(crop), crop)[None]
    height, width = bottom - top, right - left
    if any(apart):
        return Located(crop, False, SEVERAL)
    if width > 2.5 * height and width > 4:
        return Located(crop, False, TOO_WIDE)
    if max(height, width) < max(3, 0.02 * max(h, w)):
        return Located(crop, False, SPECKS)
    return Located(crop, True, None)
