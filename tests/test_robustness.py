"""recipes/robustness.py: seeded, reproducible perturbations, and the figures it recorded."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

import tp3nets

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("robustness", RECIPES / "robustness.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rb = _load()


def _digits(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Blob 'digits' in [0, 1] away from the border, (n, 1, 28, 28)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 8:20, 10:18] = torch.rand(n, 1, 12, 8, generator=g) * 0.5 + 0.5
    return x


@pytest.mark.parametrize("name", sorted(rb.PERTURBATIONS))
def test_each_perturbation_is_seeded_reproducible_and_keeps_the_range(name: str) -> None:
    """Same index, same images; in [0, 1], same shape; and it does change the images."""
    x = _digits()
    a = rb.perturbed(x, name, 3)
    assert torch.equal(a, rb.perturbed(x, name, 3))
    assert a.shape == x.shape
    assert float(a.min()) >= 0.0
    assert float(a.max()) <= 1.0
    assert not torch.allclose(a, x, atol=1e-3)


def test_shift_by_whole_pixels_moves_the_image() -> None:
    """A shift of exactly (+2, -1) pixels is a roll of the image (zeros come in)."""
    x = _digits(2)
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2 * 2.0 / 28
    theta[:, 1, 2] = -2 * -1.0 / 28
    moved = rb._affine(x, theta)
    torch.testing.assert_close(moved, torch.roll(x, shifts=(-1, 2), dims=(2, 3)),
                               atol=1e-5, rtol=0)


def test_rotation_stays_within_fifteen_degrees() -> None:
    """A 90° rotation is never drawn: every rotated image is closer to the original."""
    x = _digits(20)
    rotated = rb.rotation(x, torch.Generator().manual_seed(1))
    quarter = torch.rot90(x, 1, dims=(2, 3))
    near = (rotated - x).flatten(1).norm(dim=1)
    far = (quarter - x).flatten(1).norm(dim=1)
    assert bool((near < far).all())
    zero = rb.rotation(x, torch.Generator().manual_seed(1), degrees=0.0)
    torch.testing.assert_close(zero, x, atol=1e-5, rtol=0)


def test_stroke_thickness_orders_thin_image_thick() -> None:
    """Erosion <= the image <= dilation, pixel by pixel; the ink shrinks and grows."""
    x = _digits()
    g = torch.Generator()
    thin, thick = rb.thin(x, g), rb.thick(x, g)
    assert bool((thin <= x).all())
    assert bool((x <= thick).all())
    assert float(thin.sum()) < float(x.sum()) < float(thick.sum())


def test_blur_keeps_the_ink_and_contrast_keeps_the_mean() -> None:
    """The blur kernel sums to 1 (ink away from the border is kept); contrast keeps the mean."""
    x = _digits()
    g = torch.Generator()
    torch.testing.assert_close(rb.blur(x, g).sum(), x.sum(), rtol=1e-5, atol=1e-3)
    faint = rb.contrast(x, g)
    torch.testing.assert_close(faint.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(faint - mean, 0.3 * (x - mean))
    noisy = rb.noise(torch.full((1, 1, 200, 200), 0.5), torch.Generator().manual_seed(0))
    assert float(noisy.std()) == pytest.approx(0.25, rel=0.05)
    assert float(F.mse_loss(noisy, torch.full_like(noisy, 0.5))) > 0


def test_recorded_robustness_covers_every_model_and_perturbation() -> None:
    """results/robustness.json: each bundled model, clean plus every perturbation; its clean
    figure is the recorded test accuracy; meta carries the perturbed figures. Every bundled
    fp32 weights (MNIST_V1, MNIST_V2 …) has its row."""
    record = json.loads((RECIPES / "results" / "robustness.json").read_text())
    bundled = {key: member for name in tp3nets.list_models()
               for key, member in rb.bundled_weights(name)}
    assert set(record["models"]) == set(bundled)
    assert set(record["perturbations"]) == set(rb.PERTURBATIONS)
    for name, row in record["models"].items():
        meta = bundled[name].meta
        assert row["clean"]["acc@1"] == pytest.approx(meta["metrics"]["MNIST"]["acc@1"], abs=0.005)
        assert set(row) == {"clean", *rb.PERTURBATIONS}
        assert meta["metrics"]["MNIST-perturbed"] == {k: v["acc@1"] for k, v in row.items()
                                                       if k != "clean"}


@pytest.mark.mnist
def test_the_recipe_runs_on_a_slice_and_writes_nothing(
    mnist_root: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--limit runs the same code on the first test images and writes nothing."""
    assert rb.main(["--data", str(mnist_root), "--models", "multinomial_logistic_regression",
                    "--limit", "300", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| MultinomialLogisticRegression_Weights.MNIST_V1 |" in out
    assert "nothing written" in out
    assert not list(tmp_path.iterdir())


def test_a_run_on_some_models_keeps_the_rows_of_the_others(tmp_path: Path) -> None:
    """robustness.py --models convnet4 replaces ConvNet4's rows and keeps the earlier rows of
    the other bundled weights (in the table's order), drops rows of weights no longer
    bundled, and keeps nothing measured on other perturbations."""
    row = {c: {"acc@1": 50.0} for c in ["clean", *rb.PERTURBATIONS]}
    new = {c: {"acc@1": 99.0} for c in ["clean", *rb.PERTURBATIONS]}
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps({"perturbations": rb.DESCRIPTIONS, "seed": rb.SEED, "models": {
        "convnet4": row, "convnet2": row, "convnet9": row}}))
    merged = rb._with_earlier_rows(path, {"convnet4": new})
    assert list(merged) == ["convnet2", "convnet4"]
    assert merged["convnet4"] == new
    assert merged["convnet2"] == row
    path.write_text(json.dumps({"perturbations": {**rb.DESCRIPTIONS, "noise": "sigma 0.5"},
                                "seed": rb.SEED, "models": {"convnet2": row}}))
    assert rb._with_earlier_rows(path, {"convnet4": new}) == {"convnet4": new}
    assert rb._with_earlier_rows(tmp_path / "absent.json", {"convnet4": new}) == {
        "convnet4": new}
