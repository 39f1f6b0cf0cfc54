"""Finding the one digit in a real picture: the engine behind :class:`~tp3nets.MNISTPreprocess`.

A phone photo, a scan or a canvas export is first turned into an *ink map* (0 where the
paper is, 1 where the ink is darkest; :mod:`._ink`: the ink's polarity, the paper's own
brightness divided out, a robust threshold, ruled lines). Then, each step for one way
real pictures differ from MNIST:

1. **What runs along the picture's edges is not the digit's ink.** A table, the sheet's
   edge or a shadow from the border, divided by the sheet's brightness, is far stronger
   than pencil on the sheet: the strongest ink's level, and so the threshold, are taken
   without it, and it does not count as the darkest or sharpest ink a digit is judged by.
2. **Shading is not ink.** Pieces with a soft outline (much softer than the sharpest
   piece) or without brighter paper around them (a strip along a table, a shadow's tip,
   also where the picture's edge cuts it) are left out, and the threshold is taken again
   without them. Pencil's grain is judged with the fainter ink between its specks.
3. **The digit's own strokes.** Connected components of the ink, rather than every dark
   pixel: ruled and squared paper lines, a margin line, paper edges and table along the
   border, and specks are left out; several digits side by side, textures, straight
   hairlines (pieces of ruled lines) and ink only at the edges are reported as *not one
   digit*. Marks around or under the digit are not its strokes either: a frame (a form's
   box, a row of boxes, a circle; :mod:`._pieces`) is no ink, as shading is, and an
   underline is left out of the digit's group.

Everything is computed on a working copy whose longer side is at most :data:`WORK_SIDE`
pixels, so a 12-megapixel photo costs milliseconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Final

import torch
from torch import Tensor
from torch.nn import functional as F

from ._ink import (
    SMALL_SIDE,
    Finer,
    _beside_the_sheet,
    _has_marks,
    _ink,
    _keeping_ink,
    _mean3,
    _noise_floor,
    _quantiles,
    _remove_ruled_lines,
    _threshold,
    to_working_size,
)

# (MNISTPreprocess and the old path tp3nets._locate read these here.)
from ._ink import WORK_SIDE as WORK_SIDE
from ._ink import light_ink as light_ink
from ._ink import luminance as luminance
from ._pieces import _border_labels, _frame_region, _Part, _parts, _runs_along_edge

__all__ = ["Finer", "Located", "locate_digit"]

#: A digit found smaller than this (its longer side, in pixels of the working copy) in a
#: picture shrunk for the work is looked at again at the picture's own resolution.
ZOOM_BELOW: Final = 40
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
#: A piece is straight when its pixels' spread (variance) across their main direction is
#: at most this share of their spread along it: a bar at least seven times as long as wide.
STRAIGHT: Final = 0.02
#: A straight piece whose line, drawn on beyond its ends, runs over ink for at least this
#: share of the way is a piece of a longer line (:func:`_on_a_line`).
ON_A_LINE: Final = 0.6
#: Reasons for "no digit", as :attr:`Located.reason` gives them.
BLANK: Final = "blank: no ink on the picture"
EDGES_ONLY: Final = "ink only along the picture's edges (paper edge, table, shadow)"
LINES_ONLY: Final = "only ruled or squared lines, no digit"
SEVERAL: Final = "several marks side by side (a number of several digits, or text)"
TOO_WIDE: Final = "a mark much wider than a digit (a line, a word)"
TEXTURE: Final = "ink all over the picture (a texture or pattern), no single digit"
SPECKS: Final = "only specks, no stroke of a digit"
HAIRLINE: Final = "a straight hairline (a piece of a ruled line), no stroke of a digit"
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
    #: Where the digit lies (top, left, bottom, right), when found: in the picture's own
    #: pixels (those of ``finer``, where :func:`locate_digit` was given one).
    box: tuple[int, int, int, int] | None = None
    #: Whether the ink was read as dark on light.
    dark: bool | None = None


def _edge_sharpness(labels: Tensor, parts: list[_Part], source: Tensor,
                    drop: Tensor, weak: Tensor | None = None) -> dict[int, float]:
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
    # The ring is drawn around the piece grown into the ``weak`` ink next to it: pencil's
    # grain breaks a stroke into specks whose gaps hold fainter ink, no brighter than the
    # specks, where a table's or a shadow's edge runs on into what is dark without ink.
    blobs = lab
    if weak is not None:
        blobs, _count = ndimage.label(weak.numpy() | on_ink, structure=np.ones((3, 3), bool))
    of_piece = np.atleast_1d(ndimage.maximum(blobs[on_ink], lab[on_ink], index)).astype(int)
    ids = np.unique(of_piece)
    level = np.atleast_1d(ndimage.median(a[on_ink], blobs[on_ink], ids))
    blob_dark = np.atleast_1d(ndimage.median(drop.numpy()[on_ink], blobs[on_ink], ids))
    near = ndimage.grey_dilation(blobs, size=5)
    ring = (near > 0) & (ndimage.grey_dilation(blobs, size=3) == 0)
    bright = np.full(int(blobs.max()) + 1, -np.inf)
    bright[ids] = level + 0.3 * blob_dark
    dim = (a < bright[near]) & ring
    counts = np.bincount(near[ring], minlength=len(bright))
    dims = np.bincount(near[dim], minlength=len(bright))
    open_part = dims / np.maximum(counts, 1)
    # Where a piece runs into the picture's edge, what lies beyond is unknown: that stretch
    # of its outline counts as open. A shadow's tip cut by the edge is open along its whole
    # base; a digit touches the edge with a stroke's end. (Pieces along the edges are the
    # edges' business: _touches_edges.)
    cut = np.bincount(np.concatenate([blobs[0], blobs[-1], blobs[1:-1, 0], blobs[1:-1, -1]]),
                      minlength=len(bright))
    cut_open = (dims + cut) / np.maximum(counts + cut, 1)
    return {int(p.label): -1.0 if open_part[b] > OPEN_OUTLINE or (
                cut_open[b] > OPEN_OUTLINE and not _touches_edges(p, labels))
            else float(e) / max(float(d), 1e-3)
            for p, b, e, d in zip(parts, of_piece, edge, dark, strict=True)}


def _from_the_edge(parts: list[_Part], labels: Tensor, faint: Tensor) -> list[int]:
    """The labels of ``parts`` whose ``faint`` ink (connected, 8-neighbours) reaches the
    picture's border."""
    import numpy as np
    from scipy import ndimage

    blobs, _count = ndimage.label(faint.numpy() | (labels.numpy() > 0),
                                  structure=np.ones((3, 3), bool))
    border = _border_labels(blobs)
    out = []
    for p in parts:
        window = labels[p.top:p.bottom, p.left:p.right] == p.label
        ids = blobs[p.top:p.bottom, p.left:p.right][window.numpy()]
        if ids.size and int(ids[0]) in border:
            out.append(p.label)
    return out


def _one_bold_mark(parts: list[_Part], labels: Tensor) -> bool:
    """Whether the ink is one mark with at most two holes (an "8" has two), holding nine
    tenths of the ink's pixels: a bold digit drawn large covers much of its picture, as a
    texture does, but a texture is many pieces, or one with many holes (a mesh)."""
    import numpy as np
    from scipy import ndimage

    total = sum(p.pixels for p in parts)
    biggest = max(parts, key=lambda p: p.pixels, default=None)
    if biggest is None or biggest.pixels < 0.9 * total:
        return False
    box = labels[biggest.top:biggest.bottom, biggest.left:biggest.right] == biggest.label
    _, regions = ndimage.label(np.pad(~box.numpy(), 1, constant_values=True))
    return int(regions) - 1 <= 2  # the outside, and each hole


def _darker_than_grain(parts: list[_Part], labels: Tensor, drop: Tensor,
                       edges: list[_Part]) -> list[_Part]:
    """The pieces whose darkness in absolute terms (the median of paper - picture) is at
    least :data:`FAINT` of the darkest sizeable piece's. Dividing by the paper makes the
    grain of a dark table as strong as ink on the sheet; the ink's own darkness does not
    vary so much within one digit.

    The darkest piece is sought among the pieces off the picture's ``edges`` where there
    are any: the edge of a dark table, divided by the sheet's brightness, is far darker
    than any ink, and would make faint pencil on the sheet count as grain."""
    from scipy import ndimage

    if len(parts) < 2:
        return parts
    lab = labels.numpy()
    on = lab > 0
    index = [p.label for p in parts]
    dark = dict(zip(index, ndimage.median(drop.numpy()[on], lab[on], index).tolist(),
                    strict=True))
    inner = [p for p in parts if p not in edges] or parts
    biggest = max(p.mass for p in inner)
    darkest = max(dark[p.label] for p in inner if p.mass >= 0.1 * biggest)
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
    return _runs_along_edge(part, labels)


def _plain_border(x: Tensor) -> bool:
    """Whether the picture's outermost ring of pixels is nine tenths one level (of 256,
    exactly): the plain ground of a canvas export or a clean render, which a digit's
    strokes may touch here and there. A photo's or a scan's border has grain; a shadow or a
    table takes more of it."""
    lum = luminance(x)
    ring = torch.cat([lum[0], lum[-1], lum[1:-1, 0], lum[1:-1, -1]])
    levels = (ring * 255).round().long().clamp(0, 255)
    return float(torch.bincount(levels, minlength=256).max()) >= 0.9 * levels.numel()


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
    edge_blobs: set[int] = set()
    for s, label in zip(ndimage.find_objects(blobs_np), range(1, count + 1), strict=True):
        if s is None:
            continue
        blob = _Part(label, s[0].start, s[1].start, s[0].stop, s[1].stop, 0.0, 0)
        if _touches_edges(blob, blobs):
            edge_blobs.add(label)
    lining = _lining(parts, labels)
    return [p for p in parts if p.label in lining or _touches_edges(p, labels)
            or (edge_blobs and _in_blobs(p, labels, blobs, edge_blobs))]


def _lining(parts: list[_Part], labels: Tensor) -> set[int]:
    """The pieces touching an edge of the picture where the pieces touching it together
    run along a quarter of it or more: a wooden table's grain, in stripes that each touch
    the edge for a short stretch, too far apart to join as a blob."""
    ids = torch.tensor([p.label for p in parts])
    out: set[int] = set()
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        on = edge[torch.isin(edge, ids)]
        if on.numel() >= 0.25 * edge.numel():
            out |= set(on.tolist())
    return out


def _in_blobs(part: _Part, labels: Tensor, blobs: Tensor, chosen: set[int]) -> bool:
    window = labels[part.top:part.bottom, part.left:part.right] == part.label
    ids = blobs[part.top:part.bottom, part.left:part.right][window]
    return bool(ids.numel()) and int(ids[0]) in chosen


def _is_rule(part: _Part, labels: Tensor) -> bool:
    """Whether a piece is a straight line lying nearly flat (within about 10 degrees): its
    pixels' spread across their main direction is a small fraction of their spread along
    it. An underline, the top or bottom of a printed box; no stroke of a digit is one."""
    if part.width < 3 * part.height:
        return False
    _points, _direction, small, large = _main_axis(part, labels)
    return small <= STRAIGHT * large


def _main_axis(part: _Part, labels: Tensor) -> tuple[Tensor, Tensor, float, float]:
    """A piece's pixels as (2, n) (y, x) in the picture, the direction of their main spread
    (a unit (y, x) vector), and their spreads (variances) across and along it. Under three
    pixels, the spreads are equal (no direction)."""
    ys, xs = torch.nonzero(labels[part.top:part.bottom, part.left:part.right] == part.label,
                           as_tuple=True)
    points = torch.stack([ys + part.top, xs + part.left]).double()
    if points.shape[1] <= 2:
        return points, torch.tensor([1.0, 0.0], dtype=torch.float64), 1.0, 1.0
    values, vectors = torch.linalg.eigh(torch.cov(points))
    return points, vectors[:, 1], float(values[0]), float(values[1])


def _on_a_line(part: _Part, labels: Tensor, weak: Tensor) -> bool:
    """Whether a piece (the pixels of ``labels`` equal to its label) is a piece of a longer
    straight line: straight and thin (:data:`STRAIGHT`), and its line, drawn on across the
    picture beyond the piece's ends, runs over the ``weak`` ink for at least
    :data:`ON_A_LINE` of that stretch, a stretch at least half the piece's own length.

    A margin line or a grid line cut where the ruled rows were cleared or broken by a
    photo's noise, a fold, a table's straight edge: each piece would read as a "1". A
    stroke of a digit ends where the digit ends; where it is cropped tight, there is no
    stretch to judge, and it stays."""
    if max(part.height, part.width) < 8:
        return False
    points, direction, small, large = _main_axis(part, labels)
    if points.shape[1] < 8 or large <= 0.0 or small > STRAIGHT * large:
        return False
    centre = points.mean(dim=1)
    along = direction @ (points - centre[:, None])
    first, last = float(along.min()), float(along.max())
    h, w = weak.shape
    steps = torch.arange(-math.hypot(h, w), math.hypot(h, w) + 1, dtype=torch.float64)
    steps = steps[(steps < first - 2) | (steps > last + 2)]
    y = centre[0] + steps * direction[0]
    x = centre[1] + steps * direction[1]
    inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
    if int(inside.sum()) < 0.5 * (last - first + 1):
        return False
    # Within the line's half-width and two pixels of it, across the line.
    reach = max(2, math.ceil(math.sqrt(12.0 * max(small, 0.0)) / 2) + 1)
    across = torch.arange(-reach, reach + 1, dtype=torch.float64)
    yy = (y[inside, None] - across[None] * direction[1]).round().long().clamp(0, h - 1)
    xx = (x[inside, None] + across[None] * direction[0]).round().long().clamp(0, w - 1)
    return float(weak[yy, xx].any(dim=1).double().mean()) >= ON_A_LINE


def _without_underlines(parts: list[_Part], labels: Tensor) -> list[_Part]:
    """The pieces without underlines: a flat straight line (:func:`_is_rule`) just below
    other ink and at least half as wide, which would join the digit's group. A "5"'s
    flag lies above its body, and a "7"'s or a "2"'s bars are joined to their strokes."""
    if len(parts) < 2:
        return parts
    biggest = max(p.mass for p in parts)
    sizeable = [p for p in parts if p.mass >= 0.05 * biggest]
    rules = [p for p in sizeable if _is_rule(p, labels)]
    under: set[int] = set()
    for rule in rules:
        for above in sizeable:
            if above in rules:
                continue
            overlap = min(rule.right, above.right) - max(rule.left, above.left)
            gap = rule.top - above.bottom
            if (overlap >= 0.5 * above.width and rule.width >= 0.5 * above.width
                    and -0.1 * above.height <= gap <= 0.5 * above.height):
                under.add(rule.label)
                break
    return [p for p in parts if p.label not in under] if under else parts


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


#: The side of the second look's copy (:func:`locate_digit`), which keeps thin strokes.
LOOK_AGAIN: Final = 2 * WORK_SIDE


def locate_digit(x: Tensor, invert: bool | None = None, finer: Finer | None = None) -> Located:
    """Find the one digit in a (C, H, W) picture in [0, 1] (C in 1, 3), any size.

    The search runs on a working copy of at most :data:`WORK_SIDE` pixels a side. A digit
    found smaller than :data:`ZOOM_BELOW` pixels there, in a picture that was shrunk for
    it (a page photographed whole, a scanned form), is looked at again at the picture's
    own resolution, in a crop three times its size: shrunk to a dozen pixels, its strokes
    are a pixel wide and the model would read a blur.

    Args:
        x: the picture (already composited or turned into ink for transparent pictures).
        invert: ``True`` for dark ink on light paper, ``False`` for light ink on a dark
            ground, ``None`` to tell from the picture.
        finer: the picture at its own resolution, when ``x`` is a shrunk copy of it.

    Returns:
        A :class:`Located` with the digit's ink cropped to its strokes, or why there is no
        single digit.
    """
    h, w = x.shape[-2:]
    full_h, full_w = finer.size if finer is not None else (h, w)

    def take(box: tuple[int, int, int, int] | None, side: int | None) -> Tensor:
        if finer is not None:
            return finer.take(box, side)
        return x if box is None else x[:, box[0]:box[2], box[1]:box[3]]

    found = _in_picture(_locate_once(x, invert), full_h / h, full_w / w)
    looked_again = False
    if (not found.found and found.reason in (BLANK, SHADE, SPECKS, EDGES_ONLY)
            and max(full_h, full_w) >= 2 * WORK_SIDE and _has_marks(x, MIN_CONTRAST)):
        # A small digit's thin strokes average away in the working copy: a second look, on
        # a copy twice as large that keeps them (:func:`_keeping_ink`), before saying there
        # is no ink, or ink only along the edges (a table, a shadow's edge, which stay
        # strong when averaged). What it finds is read from the picture itself (below).
        dark = invert if invert is not None else not light_ink(luminance(to_working_size(x)))
        larger = _keeping_ink(take(None, 2 * LOOK_AGAIN), LOOK_AGAIN, dark)
        again = _locate_once(larger, dark, LOOK_AGAIN)
        if again.found:
            ky, kx = full_h / larger.shape[-2], full_w / larger.shape[-1]
            found, looked_again = _in_picture(again, ky, kx), True
    if not found.found or found.box is None or max(full_h, full_w) <= WORK_SIDE:
        return found
    top, left, bottom, right = found.box
    side = max(bottom - top, right - left)
    if side * WORK_SIDE / max(full_h, full_w) >= ZOOM_BELOW and not looked_again:
        return found
    box = (max(0, top - side), max(0, left - side), min(full_h, bottom + side),
           min(full_w, right + side))
    crop = take(box, None)
    crop = crop if crop.is_floating_point() else crop.float().div_(255)
    closer = _locate_once(crop, found.dark)
    return _in_picture(closer, 1.0, 1.0, (box[0], box[1])) if closer.found else found


def _in_picture(found: Located, ky: float, kx: float, at: tuple[int, int] = (0, 0)) -> Located:
    """``found``, from a search of a copy of the picture, with its box scaled by ``ky``,
    ``kx`` and moved by ``at``: in the picture's own pixels."""
    if found.box is None:
        return found
    top, left, bottom, right = found.box
    return dataclasses.replace(found, box=(at[0] + int(top * ky), at[1] + int(left * kx),
                                           at[0] + math.ceil(bottom * ky),
                                           at[1] + math.ceil(right * kx)))


def _locate_once(x: Tensor, invert: bool | None, side: int = WORK_SIDE) -> Located:
    """:func:`locate_digit` on one working copy, of at most ``side`` pixels a side."""
    import numpy as np

    work = to_working_size(x.float(), side)
    small = max(work.shape[-2:]) <= SMALL_SIDE
    # A picture whose border is one plain level (a canvas export, a clean render) has no
    # grain, and no table, shadow or paper edge along its border: there, ink that touches
    # or runs along the picture's edge is the digit's (drawn up to the canvas's border),
    # and a bold digit drawn large may cover much of the picture (its spread is no grain,
    # and one bold mark is no texture).
    plain = _plain_border(work)
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
    allowed = measured.drop > _noise_floor(measured.drop, plain)
    # The paper's grain is measured on the brighter half of the paper: a dark table or a
    # deep shadow, divided by little, has a grain many times the lit sheet's, and would set
    # the threshold above pencil on the sheet. (There, the ink must also be darker than
    # the paper's noise in absolute terms: ``allowed``.)
    lit = measured.paper >= float(_quantiles(measured.paper, (0.5,))[0])
    threshold, level = _threshold(ink, allowed, lit, plain)
    if level < MIN_CONTRAST:
        return Located(torch.zeros(1, h, w), False, BLANK)
    shaded = False
    # What runs along the picture's edges (a table, the sheet's edge, a shadow from the
    # border) is left out of the strongest ink's level, as shading is: divided by the
    # sheet's brightness, a dark table is far stronger than pencil on the sheet, and would
    # set the threshold and the hysteresis above the digit. It stays in the mask, so that
    # the grain next to it is judged with it (as part of the edge).
    along = torch.zeros_like(allowed)
    for _ in range(3):
        # Frames around the digit (a form's boxes, a circle) are no ink either.
        framed = _frame_region((ink > 0.5 * threshold) & allowed, ink)
        if bool(framed.any()):
            allowed = allowed & ~framed
            threshold, level = _threshold(ink, allowed & ~along, lit, plain)
        mask = (ink > threshold) & allowed
        mask, had_lines = _remove_ruled_lines(mask)
        labels, parts = _parts(mask, ink)
        sharpness = _edge_sharpness(labels, parts, measured.source, measured.drop,
                                    (ink > 0.5 * threshold) & allowed)
        # Soft, and much softer than the sharpest piece: a blurred photo of a thick
        # marker has soft edges all over, and then every piece is as soft.
        # (The sharpest off the picture's edges where there is any: a table's edge is
        # sharper than any pencil.)
        inner = [sharpness[p.label] for p in parts if not _touches_edges(p, labels)]
        sharpest = max(inner or sharpness.values(), default=0.0)
        shade = [p.label for p in parts
                 if sharpness[p.label] < min(SOFT_EDGE, 0.5 * sharpest)]
        # A soft piece joined to the picture's edge by fainter ink is the tip of a shadow
        # cast from outside the picture, even with nothing sharper beside it.
        soft = [p for p in parts if 0.0 <= sharpness[p.label] < SOFT_EDGE
                and p.label not in shade]
        if soft and not plain:
            shade += _from_the_edge(soft, labels, ink > 0.25 * threshold)
        edges = [] if plain else [p.label for p in _edge_parts(
            [p for p in parts if p.label not in shade], labels, mask)]
        edge_region = torch.from_numpy(np.isin(labels.numpy(), edges)) & ~along
        if not shade and not bool(edge_region.any()):
            break
        # Shading (a shadow's soft edge, the tip of a shadow the paper's estimate filled)
        # is not ink: the threshold and the strongest ink's level are taken again without
        # it, so a shadow's depth does not set how dark the digit must be.
        if shade:
            shaded = True
            region = torch.from_numpy(np.isin(labels.numpy(), shade))
            region = F.max_pool2d(region[None, None].float(), 5, stride=1, padding=2)[0, 0] > 0
            allowed = allowed & ~region
        along = along | (F.max_pool2d(edge_region[None, None].float(), 5, stride=1,
                                      padding=2)[0, 0] > 0)
        threshold, level = _threshold(ink, allowed & ~along, lit, plain)
        if level < MIN_CONTRAST:
            reason = SHADE if shaded and not bool(along.any()) else EDGES_ONLY
            return Located(ink.clamp(0.0, 1.0)[None], False, reason)
    parts = _without_underlines([p for p in parts if p.label not in shade], labels)
    # (What lies along the edges is judged on every piece, before fainter ones are left
    # out: a table's grain is the more pieces the more of it there is.)
    along_edges = [] if plain else _edge_parts(parts, labels, mask)
    parts = _darker_than_grain(parts, labels, measured.drop, along_edges)
    # Hysteresis: a piece is ink only if it holds some strong ink.
    strong = 0.5 * level
    if parts:
        with_strong = set(np.unique(labels.numpy()[ink.numpy() >= strong]).tolist())
        parts = [p for p in parts if p.label in with_strong]
    whole = ink.clamp(0.0, 1.0)[None]
    if sum(p.pixels for p in parts) > 0.35 * h * w and not (plain and _one_bold_mark(parts,
                                                                                    labels)):
        return Located(whole, False, TEXTURE)
    edge_parts = [p for p in parts if p in along_edges]
    if not plain and not small and measured.dark and work.shape[0] == 3 and parts:
        beside = _beside_the_sheet(work, lit, labels, parts)
        edge_parts += [p for p in parts if p.label in beside and p not in edge_parts]
    parts = [p for p in parts if p not in edge_parts]
    # Pieces of longer straight lines (what is left of a margin line once the ruled rows
    # are cleared, a fold, a table's straight edge) are lines, as the cleared ones are;
    # so is a digit made of such pieces (a line broken by noise, its pieces joined).
    weak = ink > 0.5 * threshold
    on_lines = [p for p in parts if _on_a_line(p, labels, weak)]
    if on_lines:
        parts = [p for p in parts if p not in on_lines]
        had_lines = True
    for _ in range(3):
        if not parts:
            reason = (LINES_ONLY if had_lines else EDGES_ONLY if edge_parts else SHADE if shaded
                      else BLANK)
            return Located(torch.zeros_like(whole) if reason == BLANK else whole, False, reason)
        biggest = max(p.mass for p in parts)
        significant = [p for p in parts if p.mass >= 0.1 * biggest]
        groups = _groups(significant)
        # A group reaching from one side of the picture to the other is an edge (a table's
        # strip cut into grain, a margin line), not a digit.
        groups = [g for g in groups if plain or not _spans(_box(g), h, w)]
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
        chosen_labels = torch.tensor([p.label for p in chosen])
        region = labels[top:bottom, left:right]
        digit = _Part(1, top, left, bottom, right, 0.0, 0)
        joined = torch.zeros_like(labels)
        joined[top:bottom, left:right] = torch.isin(region, chosen_labels).long()
        if len(chosen) < 2 or not _on_a_line(digit, joined, weak):
            break
        parts = [p for p in parts if p not in chosen]
        had_lines = True
    else:
        return Located(whole, False, LINES_ONLY)
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
    if not small and width < 0.03 * height:
        # Thinner than a thirtieth of its height, and as straight: no pen writes a digit
        # so; a ruled line's piece does (where the threshold kept only part of a line).
        return Located(crop, False, HAIRLINE)
    if max(height, width) < max(3, 0.02 * max(h, w)):
        return Located(crop, False, SPECKS)
    sy, sx = x.shape[-2] / h, x.shape[-1] / w
    box = None if small else (int(top * sy), int(left * sx), math.ceil(bottom * sy),
                              math.ceil(right * sx))
    return Located(crop, True, None, box, measured.dark)
