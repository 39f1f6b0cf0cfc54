"""The photometric batch augmentations: what each does, its randomness, its bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tp3nets import seed_everything
from tp3nets.data import (
    AUGMENTATIONS,
    BatchElasticDistortion,
    BatchGaussianNoise,
    BatchRandomAffine,
    BatchRandomContrast,
    BatchRandomStrokeWidth,
    TensorLoader,
    augmentation,
)
from tp3nets.data._augment import dilate, erode


def images(n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 28, 28, generator=g) > 0.7).float() * torch.rand(
        n, 1, 1, 1, generator=g)


def test_contrast_scales_about_each_image_mean() -> None:
    x = images()
    out = BatchRandomContrast(factor=(0.3, 0.3), p=1.0)(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, (mean + 0.3 * (x - mean)).clamp(0, 1))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))


def test_p_chooses_images_and_zero_leaves_all() -> None:
    x = images(2000)
    torch.manual_seed(0)
    out = BatchRandomContrast(factor=(0.1, 0.1), p=0.3)(x)
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.25 < changed < 0.35
    for aug in (BatchRandomContrast(p=0.0), BatchGaussianNoise(p=0.0),
                BatchRandomStrokeWidth(0.0, 0.0)):
        assert torch.equal(aug(x), x)


def test_noise_has_the_asked_strength_and_stays_in_range() -> None:
    x = torch.full((200, 1, 28, 28), 0.5)
    out = BatchGaussianNoise(sigma=(0.1, 0.1), p=1.0)(x)
    assert out.min() >= 0.0
    assert out.max() <= 1.0
    assert (out - x).std().item() == pytest.approx(0.1, rel=0.02)
    faint = BatchGaussianNoise(sigma=(0.0, 0.0), p=1.0)(x)
    assert torch.equal(faint, x)


def test_stroke_width_erodes_and_dilates_by_a_cross() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[..., 1:4, 1:4] = 1.0
    assert int(erode(x).sum()) == 1  # the 3x3 square keeps its centre
    assert int(dilate(x).sum()) == 21  # 5x5 without the corners
    assert torch.equal(BatchRandomStrokeWidth(1.0, 0.0)(x), erode(x))
    assert torch.equal(BatchRandomStrokeWidth(0.0, 1.0)(x), dilate(x))
    torch.manual_seed(0)
    batch = x.expand(3000, 1, 5, 5).contiguous()
    out = BatchRandomStrokeWidth(0.2, 0.3)(batch)
    sums = out.flatten(1).sum(1)
    assert (sums == 1).float().mean().item() == pytest.approx(0.2, abs=0.03)
    assert (sums == 21).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert (sums == 9).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_the_draws_follow_the_global_seed_and_compose_in_a_loader() -> None:
    x = images(32)
    aug = nn.Sequential(BatchRandomAffine(), BatchRandomStrokeWidth(), BatchRandomContrast(),
                        BatchGaussianNoise())
    ds = torch.utils.data.TensorDataset((x * 255).to(torch.uint8), torch.zeros(32).long())
    runs = []
    for _ in range(2):
        seed_everything(3)
        runs.append([b[0] for b in TensorLoader(ds, 8, transform=aug)])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
        assert a.min() >= 0
        assert a.max() <= 1


def test_empty_batches_pass_through() -> None:
    empty = torch.zeros(0, 1, 28, 28)
    for aug in (BatchRandomContrast(), BatchGaussianNoise(), BatchRandomStrokeWidth()):
        assert aug(empty).shape == empty.shape


@pytest.mark.parametrize("factor", [(0.5, 0.2), (-0.1, 1.0), 0.5, (0.1, float("nan")),
                                    (0.1, 11.0), ("a", 1), (0.1, 0.2, 0.3)])
def test_bad_contrast_range_is_refused(factor: object) -> None:
    with pytest.raises(ValueError, match="BatchRandomContrast expects factor to be a pair"):
        BatchRandomContrast(factor=factor)  # type: ignore[arg-type]


@pytest.mark.parametrize("sigma", [(0.3, 0.1), (-0.1, 0.2), (0.0, 1.5), None])
def test_bad_noise_range_is_refused(sigma: object) -> None:
    with pytest.raises(ValueError, match="BatchGaussianNoise expects sigma to be a pair"):
        BatchGaussianNoise(sigma=sigma)  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [-0.1, 1.1, float("nan"), True, "0.5"])
def test_bad_probability_is_refused(p: object) -> None:
    for cls in (BatchRandomContrast, BatchGaussianNoise):
        with pytest.raises(ValueError, match="expects p to be a probability"):
            cls(p=p)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expects p_thin to be a probability"):
        BatchRandomStrokeWidth(p_thin=p)  # type: ignore[arg-type]


def test_stroke_probabilities_must_add_up_to_at_most_one() -> None:
    with pytest.raises(ValueError, match="p_thin \\+ p_thick must be at most 1"):
        BatchRandomStrokeWidth(0.6, 0.5)


def _gaussian_conv(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """An independent reference: the separable Gaussian, cut at 3 sigma, by conv2d."""
    r = int(torch.tensor(3 * sigma).ceil())
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    n, c, h, w = field.shape
    out = torch.nn.functional.conv2d(field.reshape(n * c, 1, h, w), k.view(1, 1, -1, 1),
                                     padding=(r, 0))
    out = torch.nn.functional.conv2d(out, k.view(1, 1, 1, -1), padding=(0, r))
    return out.view(n, c, h, w)


def test_elastic_smoothing_is_the_gaussian_convolution() -> None:
    aug = BatchElasticDistortion(sigma=4.0)
    field = torch.rand(3, 2, 28, 20, generator=torch.Generator().manual_seed(0))
    mh, mw = aug._smoothing(28, torch.device("cpu")), aug._smoothing(20, torch.device("cpu"))
    torch.testing.assert_close(mh @ field @ mw.T, _gaussian_conv(field, 4.0))


def test_elastic_moves_pixels_by_the_asked_amount() -> None:
    # A horizontal ramp reads each pixel's x coordinate: the output minus the input is the
    # x displacement (inside the image, where no zero from outside is read).
    ramp = torch.linspace(0, 27, 28).view(1, 1, 1, 28).expand(400, 1, 28, 28).contiguous()
    torch.manual_seed(0)
    shift = BatchElasticDistortion(alpha=34.0, sigma=4.0, p=1.0)(ramp) - ramp
    k = torch.exp(-0.5 * (torch.arange(-12, 13.0) / 4.0) ** 2)
    k2 = (k / k.sum()) ** 2
    expected = 34.0 * (k2.sum() ** 2 / 3).sqrt().item()  # std of U(-1, 1) smoothed, scaled
    inner = shift[..., 12:16, 12:16]
    assert inner.std().item() == pytest.approx(expected, rel=0.1)
    assert abs(inner.mean().item()) < 0.1
    torch.manual_seed(0)
    half = BatchElasticDistortion(alpha=17.0, sigma=4.0, p=1.0)(ramp) - ramp
    torch.testing.assert_close(half[..., 12:16, 12:16], inner / 2, atol=1e-4, rtol=1e-4)


def test_elastic_p_chooses_images_and_the_others_keep_their_pixels() -> None:
    x = images(2000)
    torch.manual_seed(1)
    out = BatchElasticDistortion(p=0.3)(x)
    changed = (out != x).flatten(1).any(1)
    assert 0.25 < changed.float().mean().item() < 0.35
    assert torch.equal(out[~changed], x[~changed])
    assert out.dtype == x.dtype
    assert out.min() >= 0
    assert out.max() <= 1
    assert torch.equal(BatchElasticDistortion(p=0.0)(x), x)
    torch.testing.assert_close(BatchElasticDistortion(alpha=0.0, p=1.0)(x), x)
    empty = torch.zeros(0, 1, 28, 28)
    assert BatchElasticDistortion()(empty).shape == empty.shape


def test_elastic_follows_the_seed_and_keeps_a_digit_whole() -> None:
    x = torch.zeros(16, 1, 28, 28)
    x[..., 6:22, 12:16] = 1.0  # a bar, well inside the image
    aug = BatchElasticDistortion(p=1.0)
    seed_everything(5)
    a = aug(x)
    seed_everything(5)
    assert torch.equal(aug(x), a)
    assert not torch.equal(aug(x), a)
    # bent, not destroyed: every bar changes, its ink stays near where it was (the
    # field stretches and squeezes locally, so the amount of ink varies more)
    assert (a - x).abs().flatten(1).sum(1).min() > 1.0
    ink = a.flatten(1).sum(1) / x.flatten(1).sum(1)
    assert ink.min() > 0.4
    assert ink.max() < 1.8
    rows = torch.arange(28.0).view(1, 1, 28, 1)
    cols = torch.arange(28.0).view(1, 1, 1, 28)
    centre = torch.stack([(a * rows).flatten(1).sum(1), (a * cols).flatten(1).sum(1)], 1)
    centre = centre / a.flatten(1).sum(1, keepdim=True)
    assert (centre - torch.tensor([13.5, 13.5])).abs().max() < 3.0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"alpha": -1.0}, "alpha to be a finite number >= 0"),
    ({"alpha": float("inf")}, "alpha to be a finite number >= 0"),
    ({"alpha": True}, "alpha to be a finite number >= 0"),
    ({"alpha": "34"}, "alpha to be a finite number >= 0"),
    ({"sigma": 0.0}, "sigma to be a finite number > 0"),
    ({"sigma": float("nan")}, "sigma to be a finite number > 0"),
    ({"sigma": None}, "sigma to be a finite number > 0"),
    ({"p": 1.5}, "p to be a probability"),
])
def test_bad_elastic_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=f"BatchElasticDistortion expects {match}"):
        BatchElasticDistortion(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("x", "got"), [
    (torch.zeros(28, 28), r"shape \(28, 28\), dtype torch.float32"),
    (torch.zeros(1, 28, 28), r"shape \(1, 28, 28\), dtype torch.float32"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), r"shape \(2, 1, 28, 28\), dtype torch.uint8"),
    (torch.zeros(0, 1, 28, 28, dtype=torch.int64), r"shape \(0, 1, 28, 28\), dtype torch.int64"),
    ([[0.0]], "list"),
])
def test_every_augmentation_refuses_what_is_not_a_float_batch(x: object, got: str) -> None:
    for aug in (BatchRandomAffine(), BatchElasticDistortion(), BatchRandomStrokeWidth(),
                BatchRandomContrast(), BatchGaussianNoise(), BatchRandomContrast(p=0.0)):
        name = type(aug).__name__
        with pytest.raises(ValueError, match=rf"{name} expects a float batch \(N, C, H, W\) "
                           rf"with pixels in \[0, 1\].*divide uint8 images by 255\); got {got}"):
            aug(x)


def test_the_elastic_scan_augmentation_is_scan_with_the_distortion_after_the_affine() -> None:
    scan, elastic = augmentation("scan"), augmentation("elastic-scan")
    assert [type(m) for m in elastic] == [type(scan[0]), BatchElasticDistortion,
                                          *(type(m) for m in scan[1:])]
    assert repr(elastic[1]) == "BatchElasticDistortion(alpha=34.0, sigma=4.0, p=0.5)"
    assert "elastic-scan" in AUGMENTATIONS
