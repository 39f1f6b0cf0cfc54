"""Preprocessing that turns any digit image into what the MNIST weights expect."""

from __future__ import annotations

import sys
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MNISTPreprocess"]


def _pil_to_gray_float(img: Any) -> Tensor:
    """PIL image → float tensor (1, H, W) in [0, 1], upright, transparency on white."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
    if img.mode in ("RGBA", "LA", "PA", "P", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        # 16- and 32-bit images: convert("L") would clip them at 255; scale by their range.
        f32 = img.convert("F")  # native-endian float32 samples
        data = torch.frombuffer(bytearray(f32.tobytes()), dtype=torch.float32)
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "F" and float(data.max()) <= 1.0:
            top = 1.0
        else:
            top = max(float(data.max()), 1.0)
        _check_finite(data, f"image (mode {img.mode})")
        x = (data / top).clamp_(0.0, 1.0)
        return x.reshape(1, img.height, img.width)
    gray = img.convert("L")
    data8 = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8)
    return data8.reshape(1, gray.height, gray.width).float().div_(255)


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


def _to_gray_float(img: Any) -> Tensor:
    """PIL image, NumPy array or tensor → float tensor (…, 1, H, W) in [0, 1]."""
    source: str | None = None
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(img, numpy.ndarray):
        source = "image array"
        # ToTensor's convention: (H, W) or (H, W, C), uint8 in [0, 255] or floats in [0, 1].
        array = torch.from_numpy(numpy.ascontiguousarray(img))
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
        return _pil_to_gray_float(img)
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
    if x.shape[-3] == 4:
        # Composite on white paper, as for PIL images with transparency.
        alpha = x[..., 3:4, :, :]
        x = x[..., :3, :, :] * alpha + (1.0 - alpha)
    if x.shape[-3] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        x = (x * weights.view(3, 1, 1)).sum(dim=-3, keepdim=True)
    return x.clamp(0.0, 1.0)


def _stretch(x: Tensor) -> Tensor:
    """Map the background (the border's median) to 0 and the strongest ink to 1.

    Photographed or scanned paper is rarely pure white: without this, grey paper becomes a
    grey MNIST background and the whole image looks like ink.
    """
    border = torch.cat([x[0, 0], x[0, -1], x[0, :, 0], x[0, :, -1]])
    background = float(border.median())
    top = float(x.max())
    if top - background < 1e-3:
        return x.clamp(0.0, 1.0)
    return ((x - background) / (top - background)).clamp(0.0, 1.0)


def _span(mass: Tensor, min_share: float = 0.05) -> tuple[int, int]:
    """First and last index of the ink along one axis, ignoring specks of dust.

    ``mass`` is the ink per row (or column). Runs of inked rows separated by blank ones
    that hold less than ``min_share`` of the ink are dropped, so a dot of dust far from
    the digit does not stretch its bounding box.
    """
    inked = torch.nonzero(mass > 0).flatten().tolist()
    runs: list[tuple[int, int]] = []
    start = prev = inked[0]
    for i in inked[1:]:
        if i != prev + 1:
            runs.append((start, prev))
            start = i
        prev = i
    runs.append((start, prev))
    total = float(mass.sum())
    weights = [float(mass[a : b + 1].sum()) for a, b in runs]
    kept = [r for r, w in zip(runs, weights, strict=True) if w >= min_share * total]
    if not kept:
        kept = [runs[weights.index(max(weights))]]
    return kept[0][0], kept[-1][1]


def _fit_mnist_box(x: Tensor, size: int) -> Tensor:
    """Crop one (1, H, W) digit to its ink, fit it in a 20/28 box, centre its mass."""
    x = _stretch(x)
    x = torch.where(x < 0.1, torch.zeros_like(x), x)  # MNIST's background is exactly 0
    ink = x[0] > 0.15
    if not bool(ink.any()):
        return F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True)[0]
    inked = x[0] * ink
    top_row, bottom_row = _span(inked.sum(dim=1))
    left_col, right_col = _span(inked.sum(dim=0))
    crop = x[:, top_row : bottom_row + 1, left_col : right_col + 1]
    if not bool((crop[0] > 0.15).any()):
        # Scattered specks: the row and column spans, chosen apart, can miss each other's
        # ink. Fall back to the bounding box of all the ink.
        rows = torch.nonzero(ink.any(dim=1)).flatten()
        cols = torch.nonzero(ink.any(dim=0)).flatten()
        crop = x[:, int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
    box = max(1, round(size * 20 / 28))
    h, w = crop.shape[-2:]
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = F.interpolate(crop[None], size=(nh, nw), mode="bilinear", antialias=True)[0]
    small = small.clamp(0.0, 1.0)
    out = x.new_zeros(1, size, size)
    # Centre of mass to pixel (size/2, size/2): where it lies in MNIST (14.0 at 28, not 13.5).
    total = small.sum()
    ys = torch.arange(nh, dtype=x.dtype, device=x.device)
    xs = torch.arange(nw, dtype=x.dtype, device=x.device)
    if bool(total > 0):
        cy = float((small[0].sum(dim=1) * ys).sum() / total)
        cx = float((small[0].sum(dim=0) * xs).sum() / total)
    else:  # the ink vanished in the resize: centre the box itself
        cy, cx = (nh - 1) / 2, (nw - 1) / 2
    top = min(max(round(size / 2 - cy), 0), size - nh)
    left = min(max(round(size / 2 - cx), 0), size - nw)
    out[:, top : top + nh, left : left + nw] = small
    return out


class MNISTPreprocess(nn.Module):
    """Turn digit images into float tensors in [0, 1] shaped like MNIST (light ink on dark).

    This is the preprocessing every bundled MNIST weight set was trained with
    (``weights.transforms()``): on MNIST images it equals torchvision's ``ToTensor()``, the
    reference lab's own preprocessing, so the weights also work in pipelines built on it.
    Other images are made to look like MNIST: turned upright (EXIF orientation), composited
    on white where transparent, converted to grayscale, inverted when the background is
    light (dark ink on white paper), and, unless they already are 28×28, stretched so that
    the paper is black and the ink white, cropped to the ink, fitted in a 20×20 box and
    centred by their centre of mass, as the MNIST digits were.

    Args:
        size: output side.
        invert: ``"auto"`` inverts images whose border is mostly light; ``True``/``False``
            force it.
        fit: ``"auto"`` crops and centres images that are not already ``size``×``size``;
            ``True`` always, ``False`` only resizes.

    Raises:
        ValueError: a size, ``invert`` or ``fit`` option out of range, an image tensor of
            another shape, floating-point images outside [0, 1], or images holding NaN or
            infinite values (tensors, arrays and float PIL images alike).
        TypeError: an input that is neither a PIL image, a NumPy array nor a uint8/float
            tensor.

    Shape:
        PIL image, tensor (H, W) or (C, H, W), NumPy (H, W) or (H, W, C) → (1, size, size);
        (N, C, H, W) → (N, 1, size, size)

    Example:
        >>> import torch
        >>> pre = MNISTPreprocess()
        >>> digit = torch.full((3, 100, 60), 255, dtype=torch.uint8)  # white paper
        >>> digit[:, 20:80, 25:35] = 0  # a dark stroke: a "1"
        >>> out = pre(digit)
        >>> out.shape, float(out.max()), float(out[0, 0, 0])
        (torch.Size([1, 28, 28]), 1.0, 0.0)
    """

    def __init__(
        self,
        size: int = 28,
        *,
        invert: bool | Literal["auto"] = "auto",
        fit: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 4:
            raise ValueError(f"MNISTPreprocess expects size to be an int >= 4, got {size!r}")
        if invert not in (True, False, "auto"):
            raise ValueError(f"invert must be True, False or 'auto', got {invert!r}")
        if fit not in (True, False, "auto"):
            raise ValueError(f"fit must be True, False or 'auto', got {fit!r}")
        self.size = size
        self.invert = invert
        self.fit = fit

    def _one(self, x: Tensor) -> Tensor:  # (1, H, W) → (1, size, size)
        if self.invert == "auto":
            border = torch.cat([x[0, 0], x[0, -1], x[0, :, 0], x[0, :, -1]])
            flip = float(border.mean()) > 0.5
        else:
            flip = bool(self.invert)
        if flip:
            x = 1.0 - x
        same = tuple(x.shape[-2:]) == (self.size, self.size)
        if self.fit is True or (self.fit == "auto" and not same):
            return _fit_mnist_box(x, self.size)
        if same:
            return x
        return F.interpolate(
            x[None], size=(self.size, self.size), mode="bilinear", antialias=True
        )[0].clamp(0.0, 1.0)

    def forward(self, img: Any) -> Tensor:
        x = _to_gray_float(img)
        if x.dim() == 4:
            if x.shape[0] == 0:
                return x.new_zeros(0, 1, self.size, self.size)
            return torch.stack([self._one(s) for s in x])
        return self._one(x)

    def extra_repr(self) -> str:
        return f"size={self.size}, invert={self.invert!r}, fit={self.fit!r}"
