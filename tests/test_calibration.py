"""tp3nets.calibration: the ECE, the temperature fit and fold, the diagram, abstention."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tp3nets
from _support import DEVICES
from tp3nets import calibration
from tp3nets.calibration import (
    collect_logits,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
    reliability_diagram,
    temperature_from_logits,
    top_predictions,
)


def _naive_ece(probs: torch.Tensor, target: torch.Tensor, n_bins: int) -> float:
    """A loop over the bins, written from the definition (Guo et al. 2017, eq. 3)."""
    conf, pred = probs.double().max(1)
    total = 0.0
    for m in range(1, n_bins + 1):
        lo, hi = (m - 1) / n_bins, m / n_bins
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            acc = pred[inside].eq(target[inside]).double().mean()
            total += float(inside.sum()) / len(conf) * abs(float(acc - conf[inside].mean()))
    return total


def _sampled(n: int, classes: int, temperature: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Logits and labels drawn from softmax(logits / temperature): T is the right answer."""
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(n, classes, generator=g, dtype=torch.float64)
    target = torch.multinomial((logits / temperature).softmax(1), 1, generator=g).squeeze(1)
    return logits.float(), target


# --------------------------------------------------------------------------------------
# expected_calibration_error


def test_ece_of_a_calibrated_bin_is_zero() -> None:
    """Ten answers at confidence 0.8 of which eight are right: no calibration error."""
    probs = torch.tensor([[0.8, 0.2]] * 10)
    target = torch.tensor([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, target) == pytest.approx(0.0, abs=1e-7)


def test_ece_bins_are_closed_on_the_right() -> None:
    """A confidence of exactly m/M falls in the bin ((m-1)/M, m/M], not the next one."""
    probs = torch.tensor([[0.5, 0.5], [0.75, 0.25]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    # separate bins: (|1 - 0.5| + |0 - 0.75|) / 2; one shared bin would give 0.125
    assert expected_calibration_error(probs, target, n_bins=2) == pytest.approx(0.625)


@pytest.mark.parametrize("n_bins", [1, 5, 15, 40])
def test_ece_matches_the_definition_on_random_predictions(n_bins: int) -> None:
    """On random probabilities and labels the ECE equals a loop over the bins."""
    g = torch.Generator().manual_seed(n_bins)
    probs = (2 * torch.randn(500, 10, generator=g)).softmax(1)
    target = torch.randint(0, 10, (500,), generator=g)
    assert expected_calibration_error(probs, target, n_bins) == pytest.approx(
        _naive_ece(probs, target, n_bins), abs=1e-9)


def test_ece_of_an_over_confident_model() -> None:
    """Always 0.99 sure and right half the time: the ECE is 0.49."""
    probs = torch.tensor([[0.99, 0.01]] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.49)


@pytest.mark.parametrize(("probs", "target", "kwargs", "error", "match"), [
    (torch.tensor([[2.0, -1.0]]), torch.tensor([0]), {}, ValueError, r"\[0, 1\].*logits"),
    (torch.tensor([[0.3, 0.3]]), torch.tensor([0]), {}, ValueError,
     "sum to 1, got a row summing to 0.6"),
    (torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]), {}, ValueError, "finite"),
    (torch.tensor([0.5, 0.5]), torch.tensor([0]), {}, ValueError, r"shape \(N, C\).*\(2,\)"),
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), {}, ValueError, r"N, C >= 1"),
    (torch.tensor([[1, 0]]), torch.tensor([0]), {}, TypeError, "floating point"),
    ([[0.5, 0.5]], torch.tensor([0]), {}, TypeError, "got list"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]), {}, ValueError, r"shape \(1,\).*\(2,\)"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([2]), {}, ValueError,
     r"\[0, 1\], got values in \[2, 2\]"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]), {}, TypeError, "integer class indices"),
    (torch.tensor([[0.5, 0.5]]), [0], {}, TypeError, "got list"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0]), {"n_bins": 0}, ValueError, "n_bins.*got 0"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0]), {"n_bins": True}, ValueError, "n_bins"),
])
def test_ece_rejects_bad_input_saying_what_was_expected(
    probs: Any, target: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Logits, NaN, wrong shapes, dtypes, class indices or bin counts: a clear error."""
    with pytest.raises(error, match=match):
        expected_calibration_error(probs, target, **kwargs)


# --------------------------------------------------------------------------------------
# temperature


def test_temperature_of_a_two_class_case_is_the_analytic_optimum() -> None:
    """Logits (4, 0), right 3 times in 4: the NLL optimum is sigmoid(4/T) = 3/4."""
    logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
    t = temperature_from_logits(logits, torch.tensor([0, 1, 1, 1]))
    assert t == pytest.approx(4 / math.log(3), rel=1e-5)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_temperature_recovers_the_one_the_labels_were_drawn_with(true_t: float) -> None:
    """Labels sampled from softmax(z / T): the fitted T is that T, within 5 %."""
    logits, target = _sampled(20_000, 10, true_t, seed=int(true_t * 10))
    assert temperature_from_logits(logits, target) == pytest.approx(true_t, rel=0.05)


def test_ece_criterion_finds_a_lower_ece_than_the_nll_one() -> None:
    """criterion='ece' gives an ECE no higher than T=1's or the NLL optimum's."""
    logits, target = _sampled(3000, 10, 1.7, seed=3)
    t_ece = temperature_from_logits(logits, target, criterion="ece")
    t_nll = temperature_from_logits(logits, target)

    def ece(t: float) -> float:
        return expected_calibration_error((logits / t).softmax(1), target)

    assert ece(t_ece) <= ece(1.0)
    assert ece(t_ece) <= ece(t_nll) + 1e-12
    assert 0.05 <= t_ece <= 20.0


def test_temperature_refuses_data_without_errors_and_bad_options() -> None:
    """Separable logits (no error: T would go to 0), or an unknown criterion: ValueError."""
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    with pytest.raises(ValueError, match="no temperature fits"):
        temperature_from_logits(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="criterion must be one of nll, ece, got 'mse'"):
        temperature_from_logits(logits, torch.tensor([0, 1]), criterion="mse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_iter"):
        temperature_from_logits(logits, torch.tensor([0, 1]), max_iter=0)


class _Net(nn.Module):
    """Dropout, BatchNorm and a Linear head: modes matter for its output."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(x))
        return out


def _batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(64, 6, generator=g), torch.randint(0, 4, (64,), generator=g))
            for _ in range(4)]


def test_fit_temperature_uses_eval_mode_and_restores_every_mode() -> None:
    """The logits are eval-mode ones (no dropout); each submodule's mode comes back."""
    torch.manual_seed(0)
    model = _Net()
    model.body[1].eval()  # a mixed state, as after freezing BatchNorm
    modes = {name: m.training for name, m in model.named_modules()}
    loader = _batches()
    logits, target = collect_logits(model, loader)
    assert {name: m.training for name, m in model.named_modules()} == modes
    model.eval()
    with torch.no_grad():
        expected = torch.cat([model(x) for x, _ in loader])
    model.train()
    model.body[1].eval()
    torch.testing.assert_close(logits, expected)
    assert torch.equal(target, torch.cat([y for _, y in loader]))
    t = fit_temperature(model, loader)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert t == pytest.approx(temperature_from_logits(logits, target), rel=1e-6)


def test_fit_temperature_reads_dict_batches_and_a_custom_unpack() -> None:
    """Dict batches with image/label keys, or any layout through unpack=, give the same T."""
    torch.manual_seed(0)
    model = _Net()
    loader = _batches()
    t = fit_temperature(model, loader)
    assert fit_temperature(model, [{"image": x, "label": y} for x, y in loader]) == \
        pytest.approx(t, rel=1e-9)
    assert fit_temperature(model, [(y, x) for x, y in loader],
                           unpack=lambda b: (b[1], b[0])) == pytest.approx(t, rel=1e-9)
    with pytest.raises(ValueError, match="cannot find inputs and targets"):
        fit_temperature(model, [{"a": x} for x, _ in loader])
    with pytest.raises(ValueError, match="no batch"):
        fit_temperature(model, [])


@pytest.mark.parametrize("device", DEVICES)
def test_fit_temperature_runs_on_the_device_and_leaves_the_model_there(device: str) -> None:
    """device= runs there and the model stays there, as after evaluate and predict; the T
    is the CPU one."""
    torch.manual_seed(0)
    model = _Net()
    loader = _batches()
    on_cpu = fit_temperature(model, loader)
    assert fit_temperature(model, loader, device=device) == pytest.approx(on_cpu, rel=1e-3)
    assert all(p.device.type == torch.device(device).type for p in model.parameters())
    moved = _Net().to(device)
    moved.load_state_dict(model.state_dict())
    assert fit_temperature(moved, loader) == pytest.approx(on_cpu, rel=1e-3)
    assert all(p.device.type == torch.device(device).type for p in moved.parameters())


# --------------------------------------------------------------------------------------
# fold_temperature


@pytest.mark.parametrize("name", tp3nets.list_models())
def test_fold_divides_the_logits_and_keeps_the_argmax_and_the_state_dict(name: str) -> None:
    """Every zoo model: logits / T after folding, same argmax, same keys and shapes."""
    torch.manual_seed(0)
    model = tp3nets.get_model(name).eval()
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert fold_temperature(model, 0.4) is model
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before / 0.4, rtol=1e-5, atol=1e-6)
    assert torch.equal(after.argmax(1), before.argmax(1))
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes


def test_fold_uses_the_named_head_or_the_last_linear() -> None:
    """head= picks the layer; otherwise the last nn.Linear; a bias-free head works too."""
    torch.manual_seed(0)
    model = _Net().eval()
    x = torch.randn(5, 6)
    with torch.no_grad():
        before = model(x)
        fold_temperature(model, 2.0)
        torch.testing.assert_close(model(x), before / 2.0)
        fold_temperature(model, 0.5, head="head")
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)
    plain = nn.Sequential(nn.Linear(3, 2, bias=False))
    weight = plain[0].weight.detach().clone()
    fold_temperature(plain, 4.0)
    torch.testing.assert_close(plain[0].weight.detach(), weight / 4.0)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf"), True, "2"])
def test_fold_refuses_a_bad_temperature(temperature: Any) -> None:
    """T must be a finite number > 0."""
    with pytest.raises(ValueError,
                       match="fold_temperature expects temperature to be a finite number > 0"):
        fold_temperature(nn.Linear(2, 2), temperature)


def test_fold_refuses_a_model_without_a_linear_head() -> None:
    """A model without nn.Linear, or a head= that is not one, says what to do instead."""
    with pytest.raises(ValueError, match=r"needs a model whose last layer is an nn.Linear.*"
                       r"Conv2d has none; divide its logits"):
        fold_temperature(nn.Conv2d(1, 2, 3), 2.0)
    with pytest.raises(ValueError, match=r"head 'body\.2' must be an nn\.Linear, got ReLU"):
        fold_temperature(_Net(), 2.0, head="body.2")
    with pytest.raises(ValueError, match="_Net has no submodule 'fc'"):
        fold_temperature(_Net(), 2.0, head="fc")


# --------------------------------------------------------------------------------------
# reliability_diagram


def test_reliability_diagram_draws_each_bin_accuracy_and_the_ece() -> None:
    """One bar per filled bin at its accuracy; the legend gives the ECE; ax is reused."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    target = torch.tensor([0, 1, 0, 0])
    _, ax = plt.subplots()
    assert reliability_diagram(probs, target, ax, n_bins=10, label="toy") is ax
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [0.5, 1.0]  # the 0.9-1 bin: 1 of 2 right; the 0.5-0.6 bin: 2 of 2
    ece = expected_calibration_error(probs, target, 10)
    assert ax.get_legend().get_texts()[0].get_text() == f"toy, ECE {100 * ece:.2f} %"
    plt.close("all")


def test_reliability_diagram_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without matplotlib: an ImportError that says pip install 'tp3nets[plot]'."""
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"tp3nets\[plot\]"):
        reliability_diagram(torch.tensor([[0.6, 0.4]]), torch.tensor([0]))


# --------------------------------------------------------------------------------------
# top_predictions


def test_top_predictions_are_topk_and_flag_below_the_threshold() -> None:
    """probs and classes are torch.topk's; unsure where the top one is below the threshold."""
    g = torch.Generator().manual_seed(0)
    probs = (3 * torch.randn(50, 10, generator=g)).softmax(1)
    top = top_predictions(probs, k=3, min_confidence=0.7)
    values, classes = probs.topk(3, dim=1)
    assert torch.equal(top.probs, values)
    assert torch.equal(top.classes, classes)
    assert torch.equal(top.unsure, values[:, 0] < 0.7)
    assert 0 < int(top.unsure.sum()) < 50
    assert not top_predictions(probs).unsure.any()  # the default flags nothing
    at = top_predictions(torch.tensor([[0.7, 0.3]], dtype=torch.float64), min_confidence=0.7)
    assert not bool(at.unsure[0])  # exactly at the threshold is sure enough


def test_top_predictions_refuses_bad_options() -> None:
    """k beyond the class count, a threshold outside [0, 1], or logits: ValueError."""
    probs = torch.tensor([[0.6, 0.4]])
    with pytest.raises(ValueError, match=r"expects k to be an int in \[1, 2\] \(at most the "
                                         r"number of classes\), got 3"):
        top_predictions(probs, k=3)
    with pytest.raises(ValueError,
                       match=r"expects min_confidence to be a probability in \[0, 1\], got 1\.5"):
        top_predictions(probs, min_confidence=1.5)
    with pytest.raises(ValueError, match=r"expects k to be an int in \[1, "):
        top_predictions(probs, k=0)
    with pytest.raises(ValueError, match="logits"):
        top_predictions(torch.tensor([[3.0, -1.0]]))


def test_calibration_is_reachable_from_the_package() -> None:
    """tp3nets.calibration is the module, without its names in the top-level namespace."""
    assert tp3nets.calibration is calibration
    assert "expected_calibration_error" not in dir(tp3nets)


def test_temperature_scaling_calibrates_an_over_confident_model() -> None:
    """Logits sharpened 3x: ECE well above 2 %; after fitting and dividing, below 1 %."""
    logits, target = _sampled(20_000, 10, 1.0, seed=7)
    sharp = 3.0 * logits
    assert expected_calibration_error(sharp.softmax(1), target) > 0.02
    t = temperature_from_logits(sharp, target)
    assert expected_calibration_error((sharp / t).softmax(1), target) < 0.01
    assert F.cross_entropy(sharp / t, target) < F.cross_entropy(sharp, target)
