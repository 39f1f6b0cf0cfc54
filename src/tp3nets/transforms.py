"""Preprocessing that turns any digit image into what the MNIST weights expect."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MNISTPreprocess"]


def _to_gray_float(img: Any) -> Tensor:
    """PIL image or tensor → float tensor (…, 1, H, W) in [0, 1]."""
    if not isinstance(img, Tensor):
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - pillow is a dependency
            raise TypeError("MNISTPreprocess needs Pillow to read PIL images") from exc
        if not isinstance(img, Image.Image):
            raise TypeError(
                f"MNISTPreprocess expects a PIL image or a tensor, got {type(img).__name__}"
            )
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        gray = img.convert("L")
        data = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8)
        return data.reshape(1, gray.height, gray.width).float().div_(255)
    x = img
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() not in (3, 4) or x.shape[-3] not in (1, 3, 4):
        raise ValueError(
            "MNISTPreprocess expects an image tensor of shape (H, W), (C, H, W) or "
            f"(N, C, H, W) with C in (1, 3, 4), got {tuple(img.shape)}"
        )
    x = x.float().div(255) if not x.is_floating_point() else x.float()
    if x.shape[-3] == 4:
        x = x[..., :3, :, :]
    if x.shape[-3] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        x = (x * weights.view(3, 1, 1)).sum(dim=-3, keepdim=True)
    return x.clamp(0.0, 1.0)


def _fit_mnist_box(x: Tensor, size: int) -> Tensor:
    """Crop one (1, H, W) digit to its ink, fit it in a 20/28 box, centre its mass."""
    ink = x[0] > 0.1 * float(x.max())
    if not bool(ink.any()):
        return F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True)[0]
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
    # Centre of mass to the centre of the canvas, as the MNIST images were made.
    total = small.sum()
    ys = torch.arange(nh, dtype=x.dtype)
    xs = torch.arange(nw, dtype=x.dtype)
    cy = float((small[0].sum(dim=1) * ys).sum() / total)
    cx = float((small[0].sum(dim=0) * xs).sum() / total)
    top = min(max(round(size / 2 - 0.5 - cy), 0), size - nh)
    left = min(max(round(size / 2 - 0.5 - cx), 0), size - nw)
    out[:, top : top + nh, left : left + nw] = small
    return out


class MNISTPreprocess(nn.Module):
    """Turn digit images into float tensors in [0, 1] shaped like MNIST (light ink on dark).

    This is the preprocessing every bundled MNIST weight set was trained with
    (``weights.transforms()``): on MNIST images it equals torchvision's ``ToTensor()``, the
    reference lab's own preprocessing, so the weights also work in pipelines built on it.
    Other images are made to look like MNIST: converted to grayscale, inverted when the
    background is light (dark ink on white paper), and, unless they already are 28×28,
    cropped to the ink, fitted in a 20×20 box and centred by their centre of mass.

    Args:
        size: output side.
        invert: ``"auto"`` inverts images whose border is mostly light; ``True``/``False``
            force it.
        fit: ``"auto"`` crops and centres images that are not already ``size``×``size``;
            ``True`` always, ``False`` only resizes.

    Shape:
        PIL image, (H, W), (C, H, W) → (1, size, size); (N, C, H, W) → (N, 1, size, size)

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
            return torch.stack([self._one(s) for s in x])
        return self._one(x)

    def extra_repr(self) -> str:
        return f"size={self.size}, invert={self.invert!r}, fit={self.fit!r}"
