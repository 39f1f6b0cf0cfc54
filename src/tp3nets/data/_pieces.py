"""Connected pieces of ink, and the frames among them (a printed box, a row of boxes, a
circle around the digit): shared by the ink's measure (:mod:`._ink`: a frame's thin lines
are not the digit's strokes) and the digit's search (:mod:`._locate`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import torch
from torch import Tensor
from torch.nn import functional as F

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__: list[str] = []


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


def _border_labels(labels: NDArray[Any]) -> set[int]:
    """The labels (not 0) of a labelled array's regions that touch its border."""
    import numpy as np

    ring = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return {int(r) for r in np.unique(ring) if r}


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


def _runs_along_edge(part: _Part, labels: Tensor) -> bool:
    """Whether a piece runs along an edge of the picture for a quarter of it or more."""
    h, w = labels.shape
    edges = ((labels[0], w), (labels[-1], w), (labels[:, 0], h), (labels[:, -1], h))
    return any(int((edge == part.label).sum()) >= 0.25 * side for edge, side in edges)


#: What a frame holds is at least this share of its height: a digit fills most of its box
#: or circle, where the dot in a typeface's dotted zero is a quarter of the zero.
HELD: Final = 0.35
#: A frame runs around what it holds over at least this share of the turn (a circle drawn
#: by hand is often left open by a quarter).
AROUND: Final = 0.7


def _surrounds(frame: _Part, part: _Part, labels: Tensor) -> bool:
    """Whether ``frame`` runs around ``part``: ``part``'s box lies inside ``frame``'s, and
    seen from ``part``'s centre, ``frame``'s ink covers at least :data:`AROUND` of the turn
    (in 10-degree sectors)."""
    if not (frame.top < part.top and part.bottom < frame.bottom
            and frame.left < part.left and part.right < frame.right):
        return False
    ys, xs = torch.nonzero(labels[frame.top:frame.bottom, frame.left:frame.right]
                           == frame.label, as_tuple=True)
    cy = (part.top + part.bottom - 1) / 2 - frame.top
    cx = (part.left + part.right - 1) / 2 - frame.left
    angles = torch.atan2(ys.float() - cy, xs.float() - cx)
    sectors = ((angles + math.pi) / (2 * math.pi) * 36).long().clamp(0, 35)
    return int(torch.unique(sectors).numel()) >= AROUND * 36


def _frames(labels: Tensor, slices: list[Any], masses: Callable[[], NDArray[Any]]) -> set[int]:
    """The labels of the pieces that run all around another piece of some size: a printed
    box or a row of boxes on a form, a circle drawn around the digit. A "0" with a speck or
    a typeface's dot in it keeps its ring: what a frame holds must be at least
    :data:`HELD` of its height and of some mass (a twentieth of the heaviest piece's, as
    the frame). What runs along the picture's edges (a table around the sheet) is the
    edges' business, not a frame.

    Pairs are first screened by their boxes alone, for all pieces at once: a photo's
    noise makes hundreds of pieces, and most pictures have no frame."""
    import numpy as np

    if len(slices) < 2:
        return set()
    box = np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) if s is not None
                    else (0, 0, 0, 0) for s in slices])
    height, width = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    big = np.flatnonzero(np.maximum(height, width) >= 4)
    if len(big) < 2:
        return set()
    b, h, w = box[big], height[big], width[big]
    inside = ((b[:, None, 0] > b[None, :, 0]) & (b[:, None, 2] < b[None, :, 2])
              & (b[:, None, 1] > b[None, :, 1]) & (b[:, None, 3] < b[None, :, 3]))
    sized = (h[:, None] >= HELD * h[None, :]) & (w[:, None] >= 0.05 * w[None, :])
    pairs = np.argwhere(inside & sized)  # (held, frame) rows, indices into big
    if not len(pairs):
        return set()
    mass = masses()[big]
    heavy = mass >= 0.05 * mass.max()
    parts = {int(k): _Part(int(big[k]) + 1, int(b[k, 0]), int(b[k, 1]), int(b[k, 2]),
                           int(b[k, 3]), float(mass[k]), 0)
             for k in np.unique(pairs)}
    frames: set[int] = set()
    for held, frame in pairs.tolist():
        outer = parts[frame]
        if (outer.label not in frames and heavy[held] and heavy[frame]
                and not _runs_along_edge(outer, labels)
                and _surrounds(outer, parts[held], labels)):
            frames.add(outer.label)
    return frames


def _frame_region(weak: Tensor, ink: Tensor) -> Tensor:
    """Where the frames (:func:`_frames`) among the pieces of the ``weak`` ink are, grown by
    two pixels (their soft edge). They are found on the ink down to half the threshold: a
    printed box is often fainter than the pen, and one of its sides, below the threshold,
    would leave it open. The region is then no ink, as shading is: a black box around a
    pencil digit does not set how dark the digit must be, and once cleared, a row of
    boxes across the picture is not taken for ruled lines."""
    import numpy as np
    from scipy import ndimage

    lab, _count = ndimage.label(weak.numpy(), structure=np.ones((3, 3), dtype=bool))
    labels = torch.from_numpy(lab.astype(np.int64))
    slices = ndimage.find_objects(lab)
    ink_np = ink.numpy()
    summed: list[NDArray[Any]] = []

    def masses() -> NDArray[Any]:  # each piece's ink, summed once and only if asked
        if not summed:
            summed.append(np.atleast_1d(ndimage.sum_labels(ink_np, lab,
                                                           np.arange(1, len(slices) + 1))))
        return summed[0]

    frames = _frames(labels, slices, masses)
    region = _touching_frames(lab, ink_np, frames, slices, masses)
    if frames:
        region = np.isin(lab, list(frames)) if region is None else (
            region | np.isin(lab, list(frames)))
    if region is None:
        return torch.zeros_like(weak)
    grown = F.max_pool2d(torch.from_numpy(region)[None, None].float(), 5, stride=1, padding=2)
    return grown[0, 0] > 0


#: A frame the digit touches holds at least this share of their piece's ink in the digit:
#: a "0" written over itself, or a thick "0" with a stroke inside, holds less.
TOUCHING_HELD: Final = 0.3
#: ... and touches the digit along at most this share of its length (a few points).
TOUCHING: Final = 0.15
#: A frame's outline, filled, overlaps the ellipse or the rectangle of its own second
#: moments by at least this share (intersection over union): a circle, an oval, a box
#: (turned or not) do, at 0.86-1.0; a scribble's outer loop does not, at 0.84 and less.
REGULAR: Final = 0.9


def _regular(filled: NDArray[Any]) -> bool:
    """Whether a filled shape is an ellipse or a rectangle, at any turn (:data:`REGULAR`):
    the ellipse of its own second moments, and the rectangle of its second moments along
    each turn in steps of 3 degrees (a square's moments give no axes of their own)."""
    import numpy as np

    ys, xs = np.nonzero(filled)
    yy, xx = np.mgrid[0:filled.shape[0], 0:filled.shape[1]]
    yy, xx = yy - ys.mean(), xx - xs.mean()
    inside = filled.astype(bool)

    def overlap(shape: NDArray[Any]) -> float:
        return float((shape & inside).sum()) / float((shape | inside).sum())

    variances, axes = np.linalg.eigh(np.cov(np.stack([yy[inside], xx[inside]]), bias=True))
    if variances.min() <= 0:
        return False
    u = np.tensordot(axes.T, np.stack([yy, xx]), axes=1)
    best = overlap((u[0] ** 2 / variances[0] + u[1] ** 2 / variances[1]) <= 4)
    for turn in np.deg2rad(np.arange(0, 90, 3)):
        a = np.cos(turn) * yy + np.sin(turn) * xx
        b = np.cos(turn) * xx - np.sin(turn) * yy
        best = max(best, overlap((np.abs(a) <= np.sqrt(3 * np.mean(a[inside] ** 2)))
                                 & (np.abs(b) <= np.sqrt(3 * np.mean(b[inside] ** 2)))))
    return best >= REGULAR


def _touching_frames(lab: NDArray[Any], ink: NDArray[Any], skip: set[int], slices: list[Any],
                     masses: Callable[[], NDArray[Any]]) -> NDArray[Any] | None:
    """Where the frames lie that the digit touches (one piece with it, so
    :func:`_frames` cannot part them): a circle drawn tight around the digit, a box it
    reaches. Such a frame is the band of the piece along the outside of its filled shape
    (holes filled), as deep as one and a half of the piece's strokes; it is taken for a
    frame when what lies inside the band holds at least :data:`TOUCHING_HELD` of the
    piece's ink and :data:`HELD` of its height, when the band runs around it
    (:data:`AROUND` of the turn) and touches it along at most :data:`TOUCHING` of the
    band, and when its outline is an ellipse or a rectangle (:func:`_regular`: a scribble's
    outer loop is neither). A "0", a "6", a "9" or a closed "4" has nothing inside its
    outline's band; an "8" only its small crossing. Pieces reaching the picture's border,
    pieces much wider than tall (a row of boxes: its dividers lie inside) and pieces
    lighter than a fifth of the heaviest are not looked at. ``None`` where there is none."""
    import numpy as np
    from scipy import ndimage

    out = None
    candidates = [(i, s) for i, s in enumerate(slices) if s is not None and i + 1 not in skip
                  and min(s[0].stop - s[0].start, s[1].stop - s[1].start) >= 12
                  and s[1].stop - s[1].start <= 1.6 * (s[0].stop - s[0].start)
                  and s[0].start > 0 and s[1].start > 0
                  and s[0].stop < lab.shape[0] and s[1].stop < lab.shape[1]]
    if not candidates:
        return None
    eight = np.ones((3, 3), dtype=bool)
    for i, s in candidates:
        h = s[0].stop - s[0].start
        piece = np.pad(lab[s] == i + 1, 1)
        filled = ndimage.binary_fill_holes(piece)
        if filled.sum() < 1.2 * piece.sum():  # no paper inside
            continue
        stroke = 2 * float(np.median(ndimage.distance_transform_edt(piece)[piece]))
        band = piece & (ndimage.distance_transform_edt(filled) <= 1.5 * stroke + 1)
        inner = piece & ~band
        weights = np.pad(ink[s], 1) * piece
        if not inner.any() or weights[inner].sum() < TOUCHING_HELD * weights.sum():
            continue
        rows, cols = np.flatnonzero(inner.any(axis=1)), np.flatnonzero(inner.any(axis=0))
        if rows[-1] - rows[0] + 1 < HELD * h or masses()[i] < 0.2 * float(np.max(masses())):
            continue
        cy, cx = (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2
        ys, xs = np.nonzero(band)
        sectors = ((np.arctan2(ys - cy, xs - cx) + math.pi) / (2 * math.pi) * 36).astype(int)
        touch = band & ndimage.binary_dilation(inner, structure=eight)
        if (len(np.unique(np.clip(sectors, 0, 35))) >= AROUND * 36
                and touch.sum() <= TOUCHING * band.sum() and _regular(filled)):
            out = np.zeros(lab.shape, dtype=bool) if out is None else out
            out[s] |= band[1:-1, 1:-1]
    return out
