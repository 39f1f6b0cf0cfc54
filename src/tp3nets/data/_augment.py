"""Augmentations of whole image batches on the tensor, for :class:`~tp3nets.data.TensorLoader`.

Each transform is an :class:`~torch.nn.Module` that takes a float batch ``(N, C, H, W)``
with pixels in [0, 1] (what a :class:`~tp3nets.data.TensorLoader` gives) and draws each
image's parameters from the global torch generator, so :func:`tp3nets.seed_everything`
and resumed checkpoints reproduce them. They compose with :class:`~torch.nn.Sequential`::

    augment = nn.Sequential(BatchRandomAffine(), BatchRandomStrokeWidth(),
                            BatchRandomContrast(), BatchGaussianNoise())
    loader = TensorLoader(train, 128, shuffle=True, transform=augment)

:class:`BatchRandomAffine` and :class:`BatchElasticDistortion` are geometric; the others
change what a scan changes: stroke width (pen, erosion and dilation), contrast (a faint
scan) and sensor noise.
"""

from __future__ import annotations

import math
import numbers
from typing import Final

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._util._checks import check_positive, check_probability, value_error

__all__ = [
    "AUGMENTATIONS",
    "BatchElasticDistortion",
    "BatchGaussianNoise",
    "BatchRandomAffine",
    "BatchRandomContrast",
    "BatchRandomStrokeWidth",
    "augmentation",
]

#: The names :func:`augmentation` knows.
AUGMENTATIONS: Final = ("affine", "scan", "elastic-scan")


def _real(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _range(who: str, name: str, value: object, low: float, high: float) -> tuple[float, float]:
    """``value`` as ``(a, b)`` with ``low <= a <= b <= high``."""
    what = f"a pair (a, b) of numbers with {low} <= a <= b <= {high}"
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_real, value))):
        raise value_error(who, name, what, value)
    if not low <= value[0] <= value[1] <= high:
        raise value_error(who, name, what, value)
    return float(value[0]), float(value[1])


def _check_batch(module: nn.Module, x: object) -> None:
    """Refuse what is not a float image batch, before torch fails deeper with less to say."""
    if isinstance(x, Tensor) and x.dim() == 4 and x.is_floating_point():
        return
    got = (f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor)
           else type(x).__name__)
    raise ValueError(
        f"{type(module).__name__} expects a float batch (N, C, H, W) with pixels in [0, 1] "
        f"(what a TensorLoader gives; divide uint8 images by 255); got {got}"
    )


def _chosen(x: Tensor, p: float) -> Tensor:
    """One boolean per image, true with probability ``p``, shaped to broadcast over x."""
    mask = torch.rand(x.shape[0], device=x.device) < p
    return mask.view(-1, *([1] * (x.dim() - 1)))


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One number per image, uniform in [low, high], shaped to broadcast over x."""
    u = torch.empty(x.shape[0], device=x.device, dtype=x.dtype).uniform_(low, high)
    return u.view(-1, *([1] * (x.dim() - 1)))


class BatchRandomAffine(nn.Module):
    """Random rotation, scaling and translation of a whole image batch in one resampling.

    Each image gets its own transform, drawn from the global torch generator (so
    :func:`tp3nets.seed_everything` and resumed checkpoints reproduce it). Applied as the
    ``transform`` of a :class:`TensorLoader`, it costs one ``grid_sample`` per batch instead
    of a PIL call per image.

    Args:
        degrees: maximal rotation, either way.
        translate: maximal shift as a fraction of the image side (one number for both
            axes).
        scale: range of the zoom factor, ``(low, high)``.

    Raises:
        ValueError: a value that is not a finite number in its range.

    Example:
        >>> import torch
        >>> aug = BatchRandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1))
        >>> aug(torch.rand(5, 1, 28, 28)).shape
        torch.Size([5, 1, 28, 28])
    """

    def __init__(
        self,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: tuple[float, float] = (0.9, 1.1),
    ) -> None:
        super().__init__()
        pair = isinstance(scale, (tuple, list)) and len(scale) == 2 and all(map(_real, scale))
        if not (
            _real(degrees) and degrees >= 0 and _real(translate) and 0 <= translate < 1
            and pair and 0 < scale[0] <= scale[1]
        ):
            raise ValueError(
                "BatchRandomAffine expects finite numbers: degrees >= 0 (the largest rotation "
                "either way), 0 <= translate < 1 (the largest shift, one fraction for both "
                f"axes) and scale = (low, high) with 0 < low <= high; got degrees={degrees!r}, "
                f"translate={translate!r}, scale={scale!r}"
            )
        self.degrees = float(degrees)
        self.translate = float(translate)
        self.scale = (float(scale[0]), float(scale[1]))

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        n = x.shape[0]
        if n == 0:
            return x
        dev, f32 = x.device, torch.float32
        angle = (torch.rand(n, device=dev, dtype=f32) * 2 - 1) * math.radians(self.degrees)
        zoom = torch.empty(n, device=dev, dtype=f32).uniform_(*self.scale)
        shift = (torch.rand(n, 2, device=dev, dtype=f32) * 2 - 1) * (2 * self.translate)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # A rotation of the pixels, written in affine_grid's coordinates, which run from -1
        # to 1 along each side: on a non-square image the off-diagonal terms carry the
        # aspect ratio (without it the rotation shears). For a square image it is 1.
        ratio = x.shape[-2] / x.shape[-1]  # H / W
        theta = torch.stack(
            [torch.stack([cos, -sin * ratio, shift[:, 0]], 1),
             torch.stack([sin / ratio, cos, shift[:, 1]], 1)],
            1,
        )  # (N, 2, 3): output → input coordinates
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        out: Tensor = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                    align_corners=False)
        return out

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}"


class BatchElasticDistortion(nn.Module):
    """Elastic distortion of each image of a batch (Simard, Steinkraus and Platt, 2003).

    Each pixel is moved by a random displacement field: uniform noise in [-1, 1] per pixel
    and axis, smoothed by a Gaussian of standard deviation ``sigma`` pixels and scaled by
    ``alpha`` pixels, then the image is resampled bilinearly (what lies outside reads 0).
    The field bends strokes locally, as handwriting varies, where an affine transform moves
    the digit as a whole. Each image is distorted with probability ``p``, and keeps its
    pixels exactly otherwise. With ``sigma = 4`` a displacement has a standard deviation of
    about ``0.04 · alpha`` pixels (1.4 pixels at the default ``alpha = 34``, the paper's
    MNIST setting). The random draws come from the global torch generator, a fixed number
    per batch shape, so :func:`tp3nets.seed_everything` and resumed checkpoints reproduce
    them.

    Args:
        alpha: scale of the displacements, in pixels (0 leaves every image as it is).
        sigma: smoothness of the field, the Gaussian's standard deviation in pixels.
        p: probability that an image is distorted.

    Raises:
        ValueError: ``alpha`` not a finite number >= 0, ``sigma`` not a finite number > 0
            or ``p`` not a probability.

    Example:
        >>> import torch
        >>> aug = BatchElasticDistortion(alpha=34.0, sigma=4.0, p=0.5)
        >>> aug(torch.rand(5, 1, 28, 28)).shape
        torch.Size([5, 1, 28, 28])
    """

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0, p: float = 0.5) -> None:
        super().__init__()
        who = type(self).__name__
        self.alpha = check_positive(alpha, "alpha", who=who, allow_zero=True,
                                    what="a finite number >= 0 (pixels)")
        self.sigma = check_positive(sigma, "sigma", who=who, what="a finite number > 0 (pixels)")
        self.p = check_probability(p, "p", who=who)

    def _smoothing(self, size: int, device: torch.device) -> Tensor:
        """``(size, size)``: the normalised Gaussian (cut at 3 sigma) as a matrix, so that
        ``m @ v`` is ``v`` convolved with it, zero-padded (a border moves less)."""
        t = torch.arange(size, device=device, dtype=torch.float32)
        d = t.view(-1, 1) - t.view(1, -1)
        radius = math.ceil(3 * self.sigma)
        k = torch.exp(-0.5 * (d / self.sigma) ** 2) * (d.abs() <= radius)
        norm = torch.exp(-0.5 * (torch.arange(-radius, radius + 1.0, device=device)
                                 / self.sigma) ** 2).sum()
        return k / norm

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        n, _, h, w = x.shape
        if n == 0 or h == 0 or w == 0:
            return x
        dev, f32 = x.device, torch.float32
        chosen = torch.rand(n, device=dev) < self.p
        field = torch.rand(n, 2, h, w, device=dev, dtype=f32) * 2 - 1  # (N, 2: dx dy, H, W)
        # Separable Gaussian smoothing: along the columns, then along the rows.
        field = self._smoothing(h, dev) @ field @ self._smoothing(w, dev).T * self.alpha
        # Pixels → grid_sample's coordinates, which run from -1 to 1 across each side.
        scale = torch.tensor([2 / w, 2 / h], device=dev, dtype=f32).view(1, 2, 1, 1)
        identity = torch.eye(2, 3, device=dev, dtype=f32).expand(n, 2, 3)
        grid = F.affine_grid(identity, [n, 1, h, w], align_corners=False)
        grid = grid + (field * scale).permute(0, 2, 3, 1)
        out = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return torch.where(chosen.view(n, 1, 1, 1), out, x)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, sigma={self.sigma}, p={self.p}"


class BatchRandomContrast(nn.Module):
    """Contrast scaled about each image's mean grey level, as in a faint or a hard scan.

    With probability ``p`` an image becomes ``mean + f * (x - mean)``, ``f`` uniform in
    ``factor``, clamped to [0, 1]; the other images are left as they are.

    Args:
        factor: the range of the contrast factor, ``(low, high)``, within [0, 10].
        p: the probability that an image is changed.

    Raises:
        ValueError: a range or probability out of bounds.

    Example:
        >>> import torch
        >>> x = torch.rand(4, 1, 28, 28)
        >>> out = BatchRandomContrast(factor=(0.3, 0.3), p=1.0)(x)
        >>> bool((out.std(dim=(1, 2, 3)) < x.std(dim=(1, 2, 3))).all())
        True
    """

    def __init__(self, factor: tuple[float, float] = (0.2, 1.0), p: float = 0.5) -> None:
        super().__init__()
        self.factor = _range("BatchRandomContrast", "factor", factor, 0.0, 10.0)
        self.p = check_probability(p, "p", who="BatchRandomContrast")

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        if x.shape[0] == 0 or self.p == 0:
            return x
        mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        f = _uniform(x, *self.factor)
        out = (mean + f * (x - mean)).clamp(0.0, 1.0)
        return torch.where(_chosen(x, self.p), out, x)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, p={self.p}"


class BatchGaussianNoise(nn.Module):
    """Additive Gaussian noise of a random strength per image, clamped to [0, 1].

    With probability ``p`` an image gets ``sigma * N(0, 1)`` on every pixel, ``sigma``
    uniform in ``sigma`` (the range); the other images are left as they are.

    Args:
        sigma: the range of the noise's standard deviation, within [0, 1] (pixels in
            [0, 1]).
        p: the probability that an image is changed.

    Raises:
        ValueError: a range or probability out of bounds.

    Example:
        >>> import torch
        >>> x = torch.zeros(2, 1, 28, 28)
        >>> out = BatchGaussianNoise(sigma=(0.2, 0.2), p=1.0)(x)
        >>> bool(out.min() >= 0) and bool(out.max() > 0)
        True
    """

    def __init__(self, sigma: tuple[float, float] = (0.0, 0.3), p: float = 0.5) -> None:
        super().__init__()
        self.sigma = _range("BatchGaussianNoise", "sigma", sigma, 0.0, 1.0)
        self.p = check_probability(p, "p", who="BatchGaussianNoise")

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        if x.shape[0] == 0 or self.p == 0:
            return x
        s = _uniform(x, *self.sigma) * _chosen(x, self.p)
        return (x + s * torch.randn_like(x)).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, p={self.p}"


def _cross(x: Tensor, fill: float) -> Tensor:
    """Each pixel and its four neighbours, stacked: ``(5, N, C, H, W)``."""
    padded = F.pad(x, (1, 1, 1, 1), value=fill)
    h, w = x.shape[-2:]
    return torch.stack([padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                        for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))])


def erode(x: Tensor) -> Tensor:
    """Grey-level erosion by a 3×3 cross: light strokes on a dark ground lose about a
    pixel of width."""
    return _cross(x, 1.0).amin(0)


def dilate(x: Tensor) -> Tensor:
    """Grey-level dilation by a 3×3 cross: strokes gain about a pixel of width."""
    return _cross(x, 0.0).amax(0)


class BatchRandomStrokeWidth(nn.Module):
    """Thinner or thicker strokes: grey-level erosion or dilation by a 3×3 cross.

    Each image is eroded with probability ``p_thin``, dilated with probability
    ``p_thick``, and otherwise left as it is (light strokes on a dark ground, as MNIST).

    Args:
        p_thin: the probability of an erosion.
        p_thick: the probability of a dilation; ``p_thin + p_thick <= 1``.

    Raises:
        ValueError: a probability out of bounds.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 1, 5, 5); x[..., 2, 2] = 1.0
        >>> int(BatchRandomStrokeWidth(p_thin=0.0, p_thick=1.0)(x).sum())
        5
    """

    def __init__(self, p_thin: float = 0.15, p_thick: float = 0.15) -> None:
        super().__init__()
        self.p_thin = check_probability(p_thin, "p_thin", who="BatchRandomStrokeWidth")
        self.p_thick = check_probability(p_thick, "p_thick", who="BatchRandomStrokeWidth")
        if self.p_thin + self.p_thick > 1:
            raise ValueError(
                f"BatchRandomStrokeWidth: p_thin + p_thick must be at most 1; got "
                f"{p_thin!r} + {p_thick!r}"
            )

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, x)
        if x.shape[0] == 0 or self.p_thin + self.p_thick == 0:
            return x
        u = torch.rand(x.shape[0], device=x.device).view(-1, *([1] * (x.dim() - 1)))
        out = torch.where(u < self.p_thin, erode(x), x)
        return torch.where((u >= self.p_thin) & (u < self.p_thin + self.p_thick),
                           dilate(x), out)

    def extra_repr(self) -> str:
        return f"p_thin={self.p_thin}, p_thick={self.p_thick}"


def augmentation(name: str) -> nn.Module:
    """The batch augmentation the bundled weights were trained with, by name.

    ``"affine"``: :class:`BatchRandomAffine` ``(degrees=10, translate=0.1, scale=(0.9,
    1.1))``, the CNNs' MNIST_V1 weights. ``"scan"``: the same, then
    :class:`BatchRandomStrokeWidth` ``(0.15, 0.15)``, :class:`BatchRandomContrast`
    ``((0.2, 1.0), p=0.3)`` and :class:`BatchGaussianNoise` ``((0.0, 0.3), p=0.3)``, the
    MNIST_V2 weights (trained to keep their accuracy on thin, faint and noisy digits).
    ``"elastic-scan"``: ``"scan"`` with a :class:`BatchElasticDistortion` ``(alpha=34,
    sigma=4, p=0.5)`` after the affine stage (tried for ConvNet4's bundled weights, as
    recipe version 5, and not taken: see ``recipes/results/SELECTION.md``).
    ``tp3nets train --augment [affine|scan|elastic-scan]`` uses the same.

    Raises:
        ValueError: an unknown name.

    Example:
        >>> augmentation("scan")[0]
        BatchRandomAffine(degrees=10.0, translate=0.1, scale=(0.9, 1.1))
    """
    affine = BatchRandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1))
    if name == "affine":
        return affine
    scan = [BatchRandomStrokeWidth(p_thin=0.15, p_thick=0.15),
            BatchRandomContrast(factor=(0.2, 1.0), p=0.3),
            BatchGaussianNoise(sigma=(0.0, 0.3), p=0.3)]
    if name == "scan":
        return nn.Sequential(affine, *scan)
    if name == "elastic-scan":
        return nn.Sequential(affine, BatchElasticDistortion(alpha=34.0, sigma=4.0, p=0.5), *scan)
    raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}")
