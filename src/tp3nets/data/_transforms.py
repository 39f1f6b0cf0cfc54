"""Preprocessing that turns any digit image into what the MNIST weights expect."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._util._checks import check_int
from . import _ink, _locate
from ._images import standard_mode

__all__ = ["DigitImage", "MNISTPreprocess"]


def _pil_to_float(img: Any) -> tuple[Tensor, _locate.Finer | None]:
    """PIL image → float tensor (C, H, W) in [0, 1], upright; C is 1 or 3, plus a last
    alpha channel where the image has transparency. A phone photo comes shrunk, with the
    picture at its own resolution beside it (:class:`~._locate.Finer`) for a closer look."""
    from PIL import ImageOps

    if img.getexif().get(0x0112, 1) != 1:  # phone photos store their rotation in EXIF
        img = ImageOps.exif_transpose(img)  # (a copy, so only when there is one to apply)
    mode = img.mode
    img = standard_mode(img)  # every Pillow mode: L, LA, RGB, RGBA, or F in [0, 1]
    if img.mode == "F":  # 16- and 32-bit images, scaled by their depth, not clipped
        data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.float32)
        _check_finite(data, f"image (mode {mode})")
        return data.reshape(1, img.height, img.width), None
    finer = None
    if max(img.size) >= 2 * _locate.WORK_SIDE and len(img.mode) in (1, 3):
        # A phone photo: shrink it by whole factors (box averaging, in Pillow's C code)
        # before making floats of 12 Mpixels; _locate brings it to its working size, and
        # takes a small digit's closer look from the picture itself.
        finer = _locate.Finer((img.height, img.width), _pil_taker(img))
        img = img.reduce(max(img.size) // _locate.WORK_SIDE)
    return _pil_bytes(img).float().div_(255), finer


def _pil_bytes(img: Any) -> Tensor:
    """A PIL image of 8-bit channels → uint8 tensor (C, H, W)."""
    channels = len(img.mode)
    data8 = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data8.reshape(img.height, img.width, channels).permute(2, 0, 1)


def _pil_taker(img: Any) -> _ink.Take:
    """:attr:`~._locate.Finer.take` for a PIL image: a part of it, shrunk by whole factors
    to no less than the side asked (box averaging, in Pillow's C code), as uint8."""

    def take(box: tuple[int, int, int, int] | None, side: int | None) -> Tensor:
        part = img if box is None else img.crop((box[1], box[0], box[3], box[2]))
        if side is not None and max(part.size) >= 2 * side:
            part = part.reduce(max(part.size) // side)
        return _pil_bytes(part)

    return take


def _check_finite(x: Tensor, what: str) -> None:
    """Refuse NaN and infinite values: the [0, 1] range check cannot see NaN (every
    comparison with it is false), and one NaN pixel makes every probability NaN."""
    if x.is_floating_point() or x.is_complex():
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            kinds = []
            if bool(torch.isnan(x).any()):
                kinds.append("NaN")
            if bool(torch.isinf(x).any()):
                kinds.append("infinite")
            raise ValueError(
                f"MNISTPreprocess got an {what} with {bad:,} {' and '.join(kinds)} "
                f"value{'s' if bad != 1 else ''} (of {x.numel():,}); images must hold "
                f"finite values"
            )


def _to_float(img: Any) -> tuple[Tensor, _locate.Finer | None]:
    """PIL image, NumPy array or tensor → float tensor (…, C, H, W) in [0, 1], C in 1 to 4
    (gray, gray and alpha, RGB, RGBA), and for a PIL photo shrunk on the way, the picture
    at its own resolution."""
    source: str | None = None
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(img, numpy.ndarray):
        source = "image array"
        # ToTensor's convention: (H, W) or (H, W, C), uint8 in [0, 255] or floats in [0, 1].
        contiguous = numpy.ascontiguousarray(img)
        if not contiguous.flags.writeable:  # np.asarray(pil_image) is read-only
            contiguous = contiguous.copy()
        array = torch.from_numpy(contiguous)
        if array.dim() == 3 and array.shape[-1] in (1, 3, 4):
            array = array.permute(2, 0, 1)
        img = array
    if not isinstance(img, Tensor):
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - pillow is a dependency
            raise TypeError("MNISTPreprocess needs Pillow to read PIL images") from exc
        if not isinstance(img, Image.Image):
            raise TypeError(
                f"MNISTPreprocess expects a PIL image, a NumPy array or a tensor, got "
                f"{type(img).__name__}"
            )
        if img.width < 1 or img.height < 1:
            raise ValueError(f"MNISTPreprocess got an empty image of size {img.size}")
        return _pil_to_float(img)
    x = img
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() not in (3, 4) or x.shape[-3] not in (1, 3, 4) or x.shape[-1] < 1 or (
        x.shape[-2] < 1
    ):
        raise ValueError(
            "MNISTPreprocess expects an image tensor of shape (H, W), (C, H, W) or "
            f"(N, C, H, W) with C in (1, 3, 4), got {tuple(img.shape)}"
        )
    if x.dtype == torch.bool:
        x = x.float()
    elif not x.is_floating_point():
        if x.dtype != torch.uint8:
            raise TypeError(
                f"MNISTPreprocess expects uint8 or floating-point image tensors, got {x.dtype}"
            )
        x = x.float().div(255)
    else:
        x = x.float()
        _check_finite(x, "image tensor" if source is None else source)
        low, high = (float(x.min()), float(x.max())) if x.numel() else (0.0, 1.0)
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"MNISTPreprocess expects floating-point images in [0, 1] (as ToTensor gives), "
                f"got values from {low:g} to {high:g}; divide 0-255 values by 255, and give "
                f"images before any Normalize"
            )
    return x, None


def _resolve_alpha(x: Tensor) -> tuple[Tensor, bool | None]:
    """(C, H, W) with an alpha channel last (C 2 or 4) → (C - 1, H, W) without, and whether
    the ink is dark on light when the alpha channel tells it (``False``: the alpha channel
    itself is the ink, light on dark).

    A canvas or sketchpad export draws strokes, of any colour, on a transparent ground: the
    opaque part is the ink, whatever its colour, so the ink is the alpha channel itself
    (light on dark, as MNIST). A picture that is mostly opaque (a photo with transparent
    margins) is laid on a ground of the opposite brightness to its opaque part, so that the
    margins read as paper.
    """
    alpha = x[-1:]
    colour = x[:-1]
    if float(alpha.min()) >= 0.98:
        return colour, None
    if float(alpha.mean()) < 0.5:
        return alpha.clone(), False
    content = float((colour.mean(0, keepdim=True) * alpha).sum() / alpha.sum().clamp_min(1e-6))
    ground = 0.0 if content > 0.5 else 1.0
    return colour * alpha + ground * (1.0 - alpha), None


def _mnist_box(crop: Tensor, size: int) -> Tensor:
    """Fit a (1, h, w) ink crop in a 20/28 box and centre its mass, as MNIST's digits were."""
    box = max(1, round(size * 20 / 28))
    h, w = crop.shape[-2:]
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = F.interpolate(crop[None], size=(nh, nw), mode="bilinear", antialias=True)[0]
    small = small.clamp(0.0, 1.0)
    out = crop.new_zeros(1, size, size)
    # Centre of mass to pixel (size/2, size/2): where it lies in MNIST (14.0 at 28, not 13.5).
    total = small.sum()
    ys = torch.arange(nh, dtype=crop.dtype, device=crop.device)
    xs = torch.arange(nw, dtype=crop.dtype, device=crop.device)
    if bool(total > 0):
        cy = float((small[0].sum(dim=1) * ys).sum() / total)
        cx = float((small[0].sum(dim=0) * xs).sum() / total)
    else:  # the ink vanished in the resize: centre the box itself
        cy, cx = (nh - 1) / 2, (nw - 1) / 2
    top = min(max(round(size / 2 - cy), 0), size - nh)
    left = min(max(round(size / 2 - cx), 0), size - nw)
    out[:, top : top + nh, left : left + nw] = small
    return out


@dataclass(frozen=True)
class DigitImage:
    """One picture as the model sees it, and whether it holds one digit.

    What :meth:`MNISTPreprocess.inspect` returns for each picture.

    Attributes:
        image: the ``(1, size, size)`` tensor the model is given (MNIST-like: light ink
            on black, the digit in a 20×20 box centred by its mass).
        found: whether the picture holds one digit. ``False`` for a blank picture, several
            digits side by side, ruled lines or a texture only, ink only along the edges:
            the model's answer for it means nothing.
        reason: why no digit was found, in words (``None`` when one was).
    """

    image: Tensor = field(repr=False)
    found: bool = True
    reason: str | None = None


class MNISTPreprocess(nn.Module):
    """Turn digit pictures into float tensors in [0, 1] shaped like MNIST (light ink on dark).

    This is the preprocessing of every bundled MNIST weight set (``weights.transforms()``):
    on MNIST images it equals torchvision's ``ToTensor()``, the reference lab's own
    preprocessing, so the weights also work in pipelines built on it. Pictures of any other
    size (phone photos, scans, canvas exports) are made to look like MNIST:

    * turned upright (EXIF orientation); a transparent picture (a canvas or sketchpad
      export) reads its opaque part as the ink, whatever its colour;
    * light ink on a dark ground or dark ink on light paper, told from the picture;
    * the paper's own brightness estimated locally and divided out, so lighting ramps and
      shadows are not ink; coloured ink on coloured paper read per channel;
    * the digit's own strokes kept (connected ink), leaving out ruled lines, paper edges
      and specks; then fitted in a 20×20 box and centred by its centre of mass in 28×28, as
      the MNIST digits were.

    :meth:`inspect` also tells whether a picture holds one digit at all (not a blank page,
    a number of several digits, ruled paper or a texture); :func:`tp3nets.read_digits`
    answers "no digit" for those.

    Args:
        size: output side.
        invert: ``"auto"`` tells light ink on dark from dark ink on light from the picture;
            ``True`` takes the ink as dark on light paper (and inverts it), ``False`` as
            light on dark. Transparent pictures read their opaque part as ink either way.
        fit: ``"auto"`` finds, crops and centres the digit in pictures that are not already
            ``size``×``size``; ``True`` always, ``False`` only resizes.

    Raises:
        ValueError: a size, ``invert`` or ``fit`` option out of range, an image tensor of
            another shape, floating-point images outside [0, 1], or images holding NaN or
            infinite values (tensors, arrays and float PIL images alike).
        TypeError: an input that is neither a PIL image, a NumPy array nor a uint8/float
            tensor.

    Shape:
        PIL image, tensor (H, W) or (C, H, W), NumPy (H, W) or (H, W, C) → (1, size, size);
        (N, C, H, W) → (N, 1, size, size); C is 1 (gray), 3 (RGB) or 4 (RGBA)

    Example:
        >>> import torch
        >>> pre = MNISTPreprocess()
        >>> digit = torch.full((3, 100, 60), 255, dtype=torch.uint8)  # white paper
        >>> digit[:, 20:80, 25:35] = 0  # a dark stroke: a "1"
        >>> out = pre(digit)
        >>> out.shape, float(out.max()), float(out[0, 0, 0])
        (torch.Size([1, 28, 28]), 1.0, 0.0)
        >>> pre.inspect(torch.full((3, 100, 60), 200, dtype=torch.uint8)).reason
        'blank: no ink on the picture'
    """

    def __init__(
        self,
        size: int = 28,
        *,
        invert: bool | Literal["auto"] = "auto",
        fit: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        size = check_int(size, "size", who="MNISTPreprocess", minimum=4)
        if invert not in (True, False, "auto"):
            raise ValueError(f"invert must be True, False or 'auto', got {invert!r}")
        if fit not in (True, False, "auto"):
            raise ValueError(f"fit must be True, False or 'auto', got {fit!r}")
        self.size = size
        self.invert = invert
        self.fit = fit

    def _one(self, x: Tensor, judge: bool,  # (C, H, W) → (1, size, size)
             finer: _locate.Finer | None = None) -> DigitImage:
        x = x.cpu() if x.device.type != "cpu" else x
        dark_ink: bool | None = None if self.invert == "auto" else bool(self.invert)
        if x.shape[0] in (2, 4):
            x, polarity = _resolve_alpha(x)
            if polarity is not None:
                dark_ink = polarity
        same = tuple(x.shape[-2:]) == (self.size, self.size)
        fit = self.fit is True or (self.fit == "auto" and not same)
        if not fit:
            # MNIST-sized (or fit=False): the picture as it is, only made light-on-dark and
            # resized; the search for a digit still says whether there is one.
            gray = _locate.luminance(x)
            flip = (not _locate.light_ink(gray)) if dark_ink is None else dark_ink
            plain = (1.0 - gray if flip else gray)[None]
            if not same:
                plain = F.interpolate(plain[None], size=(self.size, self.size),
                                      mode="bilinear", antialias=True)[0].clamp(0.0, 1.0)
            if not judge:
                return DigitImage(plain, True)
            found = _locate.locate_digit(x, dark_ink, finer)
            return DigitImage(plain, found.found, found.reason)
        found = _locate.locate_digit(x, dark_ink, finer)
        # Without one digit, the model still sees what was found (the largest mark, or the
        # whole ink map): its answer is what read_digits reports beside "no digit".
        image = (x.new_zeros(1, self.size, self.size) if found.reason == _locate.BLANK
                 else _mnist_box(found.ink, self.size))
        return DigitImage(image, found.found, found.reason)

    def _all(self, img: Any, judge: bool) -> list[DigitImage] | DigitImage:
        x, finer = _to_float(img)
        if x.dim() == 4:
            return [self._one(s, judge) for s in x]
        return self._one(x, judge, finer)

    def inspect(self, img: Any) -> Any:
        """Preprocess a picture (or a batch) and say whether it holds one digit.

        Returns:
            A :class:`DigitImage` for one picture; a list of them for an ``(N, C, H, W)``
            batch.

        Example:
            >>> import torch
            >>> paper = torch.full((1, 120, 200), 230, dtype=torch.uint8)
            >>> paper[0, 30:90, 40:48] = 20; paper[0, 30:90, 140:148] = 20  # "1 1"
            >>> MNISTPreprocess().inspect(paper).found
            False
        """
        return self._all(img, judge=True)

    def forward(self, img: Any) -> Tensor:
        result = self._all(img, judge=False)
        if isinstance(result, list):
            if not result:
                return torch.zeros(0, 1, self.size, self.size)
            return torch.stack([r.image for r in result])
        return result.image

    def extra_repr(self) -> str:
        return f"size={self.size}, invert={self.invert!r}, fit={self.fit!r}"
