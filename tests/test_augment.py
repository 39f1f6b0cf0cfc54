"""The photometric batch augmentations: what each does, its randomness, its bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tp3nets import seed_everything
from tp3nets.augment import dilate, erode
from tp3nets.data import (
    BatchGaussianNoise,
    BatchRandomAffine,
    BatchRandomContrast,
    BatchRandomStrokeWidth,
    TensorLoader,
)


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
    with pytest.raises(ValueError, match="BatchRandomContrast: factor must be a pair"):
        BatchRandomContrast(factor=factor)  # type: ignore[arg-type]


@pytest.mark.parametrize("sigma", [(0.3, 0.1), (-0.1, 0.2), (0.0, 1.5), None])
def test_bad_noise_range_is_refused(sigma: object) -> None:
    with pytest.raises(ValueError, match="BatchGaussianNoise: sigma must be a pair"):
        BatchGaussianNoise(sigma=sigma)  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [-0.1, 1.1, float("nan"), True, "0.5"])
def test_bad_probability_is_refused(p: object) -> None:
    for cls in (BatchRandomContrast, BatchGaussianNoise):
        with pytest.raises(ValueError, match="p must be a probability"):
            cls(p=p)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="p must be a probability"):
        BatchRandomStrokeWidth(p_thin=p)  # type: ignore[arg-type]


def test_stroke_probabilities_must_add_up_to_at_most_one() -> None:
    with pytest.raises(ValueError, match="p_thin \\+ p_thick must be at most 1"):
        BatchRandomStrokeWidth(0.6, 0.5)
