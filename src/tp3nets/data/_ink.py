"""The ink map of a picture: which way the ink goes, the paper divided out, a threshold.

The first half of finding a digit in a real picture (:mod:`._locate` is the second), in
three steps, each for one way real pictures differ from MNIST:

1. **Polarity.** Light ink on a dark ground (a canvas, chalk) or dark ink on light paper,
   told from where the picture's border (the paper) or, when a shadow or a table makes
   the border uneven, the picture's median lies in its brightness range; a ground in the
   middle of the range is paper under uneven light, with dark ink (:func:`light_ink`).
2. **The paper's own brightness, divided out.** A morphological closing (a maximum then a
   minimum filter, wider than any pen stroke) keeps the paper and fills the ink; dividing
   by it removes lighting ramps, vignettes and the edge of a cast shadow, which one
   background level for the whole sheet cannot (closings keep ramps and steps as they are).
   Colour ink on colour paper is read per channel, so blue ink or a yellow marker counts.
3. **A robust ink threshold.** The grain of the paper (its median absolute deviation, on
   the brighter half of the paper) and the strongest ink set it; pencil on grey paper and
   marker on white both work, and a picture whose strongest "ink" is no stronger than
   paper grain is blank. Ink must also be darker than the paper by more than its noise in
   absolute terms (the noise of a dark table, divided by little, is not ink).

Ruled and squared lines, and a margin line, are cleared from a mask of the ink here too:
the strokes' width is measured without them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

import torch
from torch import Tensor
from torch.nn import functional as F

from ._pieces import _border_labels, _frame_region, _Part

#: The longer side of the working copy of a picture (pixels).
WORK_SIDE: Final = 384
#: Pictures whose longer side is at most this are taken as crops of one digit (padded).
SMALL_SIDE: Final = 96
#: A picture whose brightness spans less than this between its 0.2 % darkest and lightest
#: pixels is paper alone there: its ink, if any, is fewer pixels than that.
MIN_RANGE: Final = 0.1
#: How many of the strongest pixels make a mark: a stroke's worth, more than a few hot
#: pixels (the strongest ink's level and the ink's polarity on a large page).
STRONGEST: Final = 24


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


#: ``take(box, side)`` of :class:`Finer`.
Take: TypeAlias = Callable[[tuple[int, int, int, int] | None, int | None], Tensor]


@dataclass(frozen=True)
class Finer:
    """The picture at its own resolution, where the tensor searched is a copy shrunk when
    the picture was read (a phone photo read from a file is shrunk by whole factors before
    it is made floats, for speed): :func:`locate_digit` takes its second look and its
    closer look from here, as it would from a full-size tensor.

    Attributes:
        size: the picture's own ``(H, W)``.
        take: ``take(box, side)``: the part of the picture in ``box`` (top, left, bottom,
            right, in the picture's own pixels; ``None``: all of it), shrunk by whole
            factors to no less than ``side`` pixels on its longer side (``None``: not
            shrunk), as a ``(C, H, W)`` tensor with the channels of the searched copy:
            uint8, or floats in [0, 1].
    """

    size: tuple[int, int]
    take: Take


def _keeping_ink(x: Tensor, side: int, dark: bool) -> Tensor:
    """(C, H, W), uint8 or float, shrunk to at most ``side`` pixels a side so that strokes
    thinner than the shrink keep their darkness: the darkest pixel of each block (the
    lightest, for light ink), as floats in [0, 1]. Area averaging would spread a one-pixel
    stroke over its block, as pale as the paper's noise. A float picture larger than twice
    ``side`` is first averaged over whole blocks down to that (against the pixel noise), as
    a PIL picture is when :attr:`Finer.take` shrinks it."""
    if x.is_floating_point():
        f = max(x.shape[-2:]) // (2 * side)
        if f >= 2:
            x = F.avg_pool2d(x[None], f, ceil_mode=True)[0]
    k = math.ceil(max(x.shape[-2:]) / side)
    out = x[:, ::k, ::k].clone()
    pick = torch.minimum if dark else torch.maximum
    for i, j in itertools.product(range(k), repeat=2):
        if i or j:  # strided slices: one pass over the picture, in place of a pooling
            block = x[:, i::k, j::k]
            out = out[:, :block.shape[1], :block.shape[2]]
            pick(out, block[:, :out.shape[1], :out.shape[2]], out=out)
    return out if out.is_floating_point() else out.float().div_(255)


def _has_marks(x: Tensor, contrast: float) -> bool:
    """Whether the working copy's two dozen darkest and lightest pixels differ by more
    than a third of ``contrast`` (the least the strongest ink must reach): a plain picture
    (a black frame, an empty white page) has nothing a larger copy could show."""
    low, high = extremes(luminance(to_working_size(x.float())))
    return high - low > contrast / 3


def light_ink(lum: Tensor) -> bool:
    """Whether the ink is lighter than the ground (a canvas, chalk, MNIST itself).

    Light ink lies on a ground at the dark end of the picture's range, with nothing but
    noise below it. The ground is the median of the picture's border where the border is
    of one level: near the brightest end, the ink is dark; at the darkest end, with a
    border as even as a plain ground (not a shadow's ramp), light. Otherwise (a shadow or a
    table along the border) the picture's own median is the ground when it lies near one
    end: within a tenth of the darkest, light; in the upper third, dark. A ground anywhere
    else is paper under uneven light (a sheet half in a deep shadow, beside a table), whose
    shadows and table are darker than it and whose lit part is lighter: the ink is dark,
    as it is in photos of writing (a blank page reads as dark too).
    """
    h, w = lum.shape
    band = max(1, round(0.03 * min(h, w)))
    border = torch.cat([lum[:band].flatten(), lum[-band:].flatten(),
                        lum[:, :band].flatten(), lum[:, -band:].flatten()])
    ground = float(border.median())
    low, high = _quantiles(lum, (0.002, 0.998))
    if high - low < MIN_RANGE:
        # Ink under 0.2 % of the picture (a small digit on a large page): that range is
        # the paper's noise, and the ink lies among the few most extreme pixels.
        low, high = extremes(lum)
    if high - low < 1e-3:
        return False
    place = (ground - low) / (high - low)
    quartiles = _quantiles(border, (0.25, 0.75))
    spread = (quartiles[1] - quartiles[0]) / (high - low)
    # (A border half in a shadow or on a table is no one level: then it does not decide.
    # A shadow's ramp along the border can sit low in the range, as a dark ground does,
    # but it is not even.)
    if place > 0.75 and spread < 0.3:
        return False
    if place < 0.25 and spread < 0.1:
        return True
    # A shadow or a table along the border: the picture's own median is the ground where
    # the ink covers less than half of it (a big, bold digit can cover much of the border).
    place = (float(_quantiles(lum, (0.5,))[0]) - low) / (high - low)
    return place < 0.1


def extremes(x: Tensor) -> tuple[float, float]:
    """The values of the :data:`STRONGEST`-th lowest and highest pixels of ``x``: its range
    without a few hot pixels, however few pixels its marks cover."""
    flat = x.flatten().float()
    k = min(STRONGEST, flat.numel())
    return float(flat.topk(k, largest=False).values[-1]), float(flat.topk(k).values[-1])


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

    # A window over twice the picture's side reaches every pixel of its row from any pixel
    # (the edges continue): wider gives the same closing, at a cost that grows with it
    # (a plain picture is all "ink" and measures strokes as wide as the picture).
    k = min(k, 2 * max(x.shape[-2:]) + 1)
    size = (1, k, k) if along is None else (1, k, 1) if along == 1 else (1, 1, k)
    array = x.detach().cpu().float().numpy()
    closed = ndimage.grey_closing(array, size=size, mode="nearest")
    return torch.from_numpy(closed)


def coarse_paper(x: Tensor) -> Tensor:
    """:func:`paper_brightness`'s first estimate, at its own small size: (C, H, W) shrunk by
    a maximum filter to a shorter side of about 64, closed with a window of a third of it,
    and smoothed."""
    h, w = x.shape[-2:]
    step = max(1, min(h, w) // 64)
    small = F.max_pool2d(x[None], step, stride=step, ceil_mode=True)[0] if step > 1 else x
    k = max(3, (min(small.shape[-2:]) // 3) | 1)
    coarse = _closing(small, k)
    return F.avg_pool2d(coarse[None], 3, stride=1, padding=1, count_include_pad=False)[0]


def paper_brightness(x: Tensor, stroke: float | None = None) -> Tensor:
    """The paper's brightness under each pixel of (C, H, W), dark ink on light paper.

    A first estimate comes from a copy shrunk by a maximum filter (which keeps the paper,
    not the ink) to a shorter side of about 64, closed with a window of a third of it and
    enlarged back: it fills any stroke, but blurs the edge of a shadow. Given the strokes'
    width, a closing at full size with a window a little wider than a stroke follows the
    shadow's edge exactly, and the darker of the two is the paper.
    """
    _c, h, w = x.shape
    coarse = coarse_paper(x)
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
    stroke look thin, and a closing narrower than a stroke loses the stroke).

    Where nothing but lines is left (the sharp edge of a table can look like a margin
    line), the lines are what is measured."""
    import numpy as np
    from scipy import ndimage

    cleared, _ = _remove_ruled_lines(mask)
    mask = cleared if bool(cleared.any()) else mask
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
    source: Tensor  # (1, H, W) the picture as read (dark ink; its inked channel), whose edges
    # tell ink from shade
    paper: Tensor  # (H, W) the paper's brightness under each pixel (its brightest channel)
    dark: bool  # whether the ink was read as dark on light


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
            # Only the channels in which the ink is darker than the paper: a magenta stroke
            # on green paper is light in green, where the paper's estimate (a closing, which
            # keeps light strokes) takes the stroke's light for paper and makes a halo of
            # false ink around it.
            dark = [c for c in range(3) if not light_ink(x[c])]
            if dark and len(dark) < 3:
                x = x[dark]
            first = _darkness(x, paper_brightness(x))
    else:
        first = _darkness(x, paper_brightness(x))
    # The strokes' width is measured on the strongest ink only: a shadow's edge (weaker
    # than a pen) would make a wide "stroke" and a closing too wide to follow it.
    threshold, level = _threshold(first)
    # (The noise threshold is capped: a dark table's grain, divided by little, can lift it
    # above the strongest ink and leave no stroke to measure.)
    mask = first > max(min(threshold, 0.8 * level), 0.6 * level)
    # A frame around the digit (a form's box, a circle) is no stroke of it: its lines, the
    # darkest ink where the box is printed black around pencil, would give a closing
    # narrower than the digit's strokes. Measured without it, on the strongest of the rest.
    framed = _frame_region(first > 0.5 * threshold, first)
    if bool(framed.any()):
        threshold, level = _threshold(first, ~framed)
        mask = (first > max(min(threshold, 0.8 * level), 0.6 * level)) & ~framed
    paper = paper_brightness(x, stroke_width(mask))
    return _Ink(_darkness(x, paper), _drop(paper, x), _inked_channel(x, paper),
                paper.amax(dim=0), dark_ink)


#: How far (the largest of the three channels' shares) the ground's colour under a piece may
#: be from the lit sheet's before the piece is on another surface (a table).
OTHER_SURFACE: Final = 0.08


def _beside_the_sheet(work: Tensor, lit: Tensor, labels: Tensor,
                      parts: list[_Part]) -> set[int]:
    """The labels of the pieces that lie on another surface than the sheet: where the
    ground's colour (the paper's coarse estimate, per channel, as shares of their sum)
    differs from the lit sheet's by more than :data:`OTHER_SURFACE`, in a region of that
    ground that reaches the picture's border and covers less than half of it (a wooden
    table beside the sheet, whose grain reads as ink), widened by 3 % of the picture's
    longer side. A shadow dims the sheet without changing its colour's shares.

    The ground's colour changes slowly: it is judged on the coarse estimate's own small
    copy (a shorter side of about 64), and only the result is brought to full size."""
    import numpy as np
    from scipy import ndimage

    h, w = labels.shape
    ground = coarse_paper(work)  # (3, h', w'), h' about 64
    small = ground.shape[-2:]
    shares = ground / ground.sum(dim=0, keepdim=True).clamp_min(1e-3)
    sheet_lit = F.interpolate(lit[None, None].float(), size=small, mode="nearest")[0, 0] > 0.5
    if not bool(sheet_lit.any()):
        return set()
    sheet = shares[:, sheet_lit].median(dim=1).values
    other = (shares - sheet[:, None, None]).abs().amax(dim=0) > OTHER_SURFACE
    regions, count = ndimage.label(other.numpy())
    if count == 0:
        return set()
    # A table lies beside the sheet and takes less of the picture than it: a region as
    # large as half the picture is the sheet itself (a coloured note on a white desk).
    sizes = np.bincount(regions.ravel())
    border = {r for r in _border_labels(regions) if sizes[r] < 0.5 * regions.size}
    if not border:
        return set()
    # The coarse estimate blurs the sheet's edge over a few hundredths of the picture: the
    # edge's own dark line lies there, half on each ground.
    reach = 2 * max(1, round(0.03 * max(small))) + 1
    off_small = ndimage.maximum_filter(np.isin(regions, list(border)), size=reach)
    off = F.interpolate(torch.from_numpy(off_small)[None, None].float(), size=(h, w),
                        mode="nearest")[0, 0] > 0.5
    out = set()
    for p in parts:
        window = labels[p.top:p.bottom, p.left:p.right] == p.label
        if float(off[p.top:p.bottom, p.left:p.right][window].float().mean()) > 0.5:
            out.add(p.label)
    return out


def _inked_channel(x: Tensor, paper: Tensor) -> Tensor:
    """The channel of (C, H, W) ``x`` in which the ink is darkest below its ``paper`` (its
    :data:`STRONGEST`-th darkest pixel), as (1, H, W): where colour ink is read on colour
    paper, the channel that shows it, whose edges are judged. In the channels' mean, a
    stroke dark in one channel and light in another can be lighter than the paper, and its
    edges would read as the light edge of something darker (shading), not ink."""
    if x.shape[0] == 1:
        return x
    drop = (paper - x).flatten(1)
    darkest = drop.topk(min(STRONGEST, drop.shape[1]), dim=1).values[:, -1]
    channel = int(darkest.argmax())
    return x[channel:channel + 1]


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


def _threshold(ink: Tensor, where: Tensor | None = None,
               grain: Tensor | None = None, plain: bool = False) -> tuple[float, float]:
    """The ink threshold and the strongest ink's level of an ink map.

    The threshold clears the paper's grain (six robust standard deviations above its
    median) and a third of the strongest ink; the level is the 99.9th percentile, so a
    few hot pixels do not set it; where that is under half the :data:`STRONGEST`-th
    strongest pixel's value, that value: a digit small in a large picture (a page
    photographed whole, a scanned form) covers less than a thousandth of it, and the
    percentile falls on the paper. With ``where``, the level is that of the pixels it
    marks (the others count as no ink); with ``grain``, the grain is measured on the
    pixels it marks; ``plain``: the ground has no grain (a canvas export, where a bold
    digit drawn large would make the ink's own spread the grain's).
    """
    flat = ink.flatten()
    if grain is not None and bool(grain.any()):
        flat = flat[grain.flatten()]
    sample = flat[:: flat.numel() // (1 << 16) + 1] if flat.numel() > 1 << 16 else flat
    median = 0.0 if plain else float(sample.median())
    spread = 0.0 if plain else float((sample - median).abs().median()) * 1.4826
    flat = ink.flatten()
    if where is not None:
        flat = torch.where(where.flatten(), flat, torch.zeros_like(flat))
        sample = flat[:: flat.numel() // (1 << 16) + 1] if flat.numel() > 1 << 16 else flat
    level = float(torch.quantile(flat.float() if flat.numel() <= 1 << 24 else sample,
                                 0.999))
    if flat.numel() > 1000 * STRONGEST:
        strongest = float(flat.float().topk(STRONGEST).values[-1])
        level = strongest if level < 0.5 * strongest else level
    return max(median + 6.0 * spread, 0.35 * level, 0.08), level


def _remove_ruled_lines(mask: Tensor) -> tuple[Tensor, bool]:
    """Clear rows (and columns) crossed by long straight lines, when there are at least two
    of them (ruled or squared paper), or one thin line that runs from one side of the
    picture to the other (a margin line); a single long stroke, such as a cropped "7"'s
    bar, is left alone. Returns the mask and whether any line was removed."""
    h, w = mask.shape
    removed = False
    out = mask.clone()
    cleared: dict[int, Tensor] = {}
    for axis, length in ((1, w), (0, h)):
        if length < 40:
            continue
        counts = mask.sum(dim=axis).float()
        full = counts >= 0.7 * length
        # A ruled line is thin: a band of full rows (columns) thicker than a margin line may
        # be is a stroke, such as the sides of a bold "8" or "0" as tall as the picture.
        thick = max(3, round(0.025 * counts.numel()))
        for start, stop in _runs(full):
            if stop - start > thick:
                full[start:stop] = False
        # Bands of adjacent line rows count once.
        starts = int((full[1:] & ~full[:-1]).sum()) + int(full[0])
        if starts < 2 and not (starts == 1 and _margin_line(mask, full, axis)):
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
        cleared[axis] = lines
        if axis == 1:
            sides = _box_sides(mask, lines)
            if bool(sides.any()):
                # The same bridging as for the rows: a stroke crossing a box's side.
                out &= ~sides
                bridged = _closing(out[None].float(), 7, along=0)[0] > 0
                out |= mask & sides & bridged
                cleared[0] = sides.any(dim=0)
    return (_without_crumbs(out, cleared) if cleared else out), removed


def _runs(flags: Tensor) -> list[tuple[int, int]]:
    """The (start, stop) of each run of true values in a 1-D bool tensor."""
    padded = torch.cat([torch.zeros(1, dtype=torch.bool), flags, torch.zeros(1, dtype=torch.bool)])
    change = torch.nonzero(padded[1:] != padded[:-1]).flatten().tolist()
    return list(zip(change[::2], change[1::2], strict=True))


def _box_sides(mask: Tensor, rows: Tensor) -> Tensor:
    """The sides of boxes between two cleared ``rows``: thin columns of ``mask`` filled
    from one row to the next, two or more of them (a row of boxes on a form, a table's
    columns). Once the rows are cleared they stand as separate upright strokes and would
    read as several "1"s. A printed side is straight to the pixel; a hand-written "1" as
    tall as the gap is not, and a lone one stays."""
    h, w = mask.shape
    sides = torch.zeros_like(mask)
    thin = max(3, round(0.025 * w))
    for (_, above), (below, _) in itertools.pairwise(_runs(rows)):
        if below - above < 5:
            continue
        filled = mask[above:below].float().mean(dim=0) >= 0.95
        runs = [(a, b) for a, b in _runs(filled) if b - a <= thin]
        if len(runs) < 2:
            continue
        top, bottom = max(0, above - 3), min(h, below + 3)
        for a, b in runs:
            sides[top:bottom, max(0, a - 2):min(w, b + 2)] = True
    return sides & mask


def _without_crumbs(mask: Tensor, cleared: dict[int, Tensor]) -> Tensor:
    """``mask`` without the pieces that lie within three pixels of a cleared line (rows:
    ``cleared[1]``, columns: ``cleared[0]``): what is left of a line once cleared (its soft
    edge, the bridges where other lines cross it), aligned along it, would read as a "1".
    A stroke that crosses the line reaches beyond it and stays."""
    import numpy as np
    from scipy import ndimage

    labels, count = ndimage.label(mask.numpy(), structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    near = {axis: F.max_pool1d(lines[None, None].float(), 7, stride=1, padding=3)[0, 0] > 0
            for axis, lines in cleared.items()}
    crumbs = [
        label for label, box in enumerate(ndimage.find_objects(labels), start=1)
        if box is not None and any(
            bool(band[box[0] if axis == 1 else box[1]].all()) for axis, band in near.items())
    ]
    if not crumbs:
        return mask
    return mask & ~torch.from_numpy(np.isin(labels, crumbs))


def _margin_line(mask: Tensor, full: Tensor, axis: int) -> bool:
    """Whether the one band of ``full`` rows (``axis`` 1; columns, ``axis`` 0) of ``mask``
    is a thin line from one side of the picture to the other: a margin line, or one rule
    of a form. A digit touching it would otherwise span the picture with it and count as
    the picture's edge. (A stroke of a digit that thin, that straight and from side to
    side, within two pixels, is an edge of the picture too.)"""
    across = mask.shape[0] if axis == 1 else mask.shape[1]
    thickness = int(full.sum())
    if thickness > max(3, round(0.025 * across)):
        return False
    line = mask[full] if axis == 1 else mask[:, full].T  # (thickness, length)
    return bool(line[:, :2].any()) and bool(line[:, -2:].any())


def _noise_floor(drop: Tensor, plain: bool = False) -> float:
    """The darkness (paper - picture, absolute) that the paper's own noise and grain reach:
    six robust standard deviations above its median, and at least 0.02. Dividing by the
    paper makes the noise of a dark table or a deep shadow as strong as ink; in absolute
    terms it stays small. ``plain``: the ground has no grain (its minimum, as
    :func:`_threshold`'s ``plain``)."""
    if plain:
        return 0.02
    flat = drop.flatten()
    sample = flat[:: flat.numel() // (1 << 16) + 1] if flat.numel() > 1 << 16 else flat
    median = float(sample.median())
    spread = float((sample - median).abs().median()) * 1.4826
    return max(median + 6.0 * spread, 0.02)
