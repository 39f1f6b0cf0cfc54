"""The models: shapes, devices, determinism, faithfulness to the TP3 reference, snapshots,
export paths (TorchScript, FX, torch.export, torch.compile), input checks and heads.

Every test is parametrized over every registered model (``tp3nets.list_models()``) and,
where a device matters, over every available device.

The expected-output snapshots live in ``tests/snapshots/logits.json``. After an intended
change of an architecture or of its initialisation, regenerate them with::

    TP3NETS_REGEN_SNAPSHOTS=1 python -m pytest tests/test_models.py -k snapshot

and commit the new file with the change that explains it.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import math
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn import functional as F

import tp3nets
from tp3nets import ConvNet2, ConvNet3, ConvNet4, MultinomialLogisticRegression

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:FutureWarning",
    "ignore:`torch.jit.save` is deprecated:FutureWarning",
    "ignore:`torch.jit.load` is deprecated:FutureWarning",
)


HERE = Path(__file__).resolve().parent



import reference_tp3 as ref  # noqa: E402
from _support import DEVICES  # noqa: E402

MODELS = tp3nets.list_models()
MLR = "multinomial_logistic_regression"
SNAPSHOTS = HERE / "snapshots" / "logits.json"

# The reference class of each registered model and the arguments the lab built it with.
REFERENCE: dict[str, tuple[Callable[..., nn.Module], tuple[Any, ...]]] = {
    "convnet2": (ref.ConvNet2, ()),
    "convnet3": (ref.ConvNet3, ()),
    "convnet4": (ref.ConvNet4, ()),
    MLR: (ref.MultinomialLogisticRegression, (784, 10)),
}

# Non-default configurations: (builder kwargs, shape of one input sample, num_classes).
CONFIGS: dict[str, list[tuple[dict[str, Any], tuple[int, ...], int]]] = {
    "convnet2": [
        ({"num_classes": 3, "in_channels": 3, "input_size": 32}, (3, 32, 32), 3),
        ({"input_size": (20, 36)}, (1, 20, 36), 10),
        ({"input_size": 29, "hidden": 16}, (1, 29, 29), 10),
        ({"input_size": 2, "num_classes": 1}, (1, 2, 2), 1),
    ],
    "convnet3": [
        ({"num_classes": 7, "in_channels": 2, "input_size": (16, 40)}, (2, 16, 40), 7),
        ({"input_size": 8}, (1, 8, 8), 10),
        ({"input_size": 31}, (1, 31, 31), 10),
    ],
    "convnet4": [
        ({"num_classes": 2, "in_channels": 3, "width": 8}, (3, 28, 28), 2),
        ({"width": 8}, (1, 4, 4), 10),
        ({"width": 8}, (1, 4, 9), 10),
        ({"width": 8}, (1, 30, 17), 10),
        ({"width": 8, "num_classes": 100}, (1, 64, 48), 100),
    ],
    MLR: [
        ({"input_size": 64, "output_size": 5}, (64,), 5),
        ({"input_size": 64, "num_classes": 5}, (1, 8, 8), 5),
        ({"input_size": 48}, (3, 4, 4), 10),
    ],
}

# Keyword arguments that switch every dropout of a model off.
NO_DROPOUT: dict[str, dict[str, float]] = {
    "convnet2": {"dropout": 0.0},
    "convnet3": {"dropout": 0.0},
    "convnet4": {"dropout": 0.0, "classifier_dropout": 0.0},
    MLR: {},
}

CONFIG_CASES = [
    pytest.param(name, kwargs, shape, classes, id=f"{name}-{i}")
    for name in MODELS
    for i, (kwargs, shape, classes) in enumerate(CONFIGS.get(name, []))
]


def _seeded(name: str, seed: int = 0, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)
    return tp3nets.get_model(name, **kwargs)


def _input(model: nn.Module, batch: int = 3, seed: int = 1, device: str = "cpu") -> Tensor:
    """A random float batch of the model's nominal input shape."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *model.input_shape, generator=g).to(device)


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _exercise_buffers(model: nn.Module, x: Tensor) -> None:
    """Move the BatchNorm running statistics away from their initial (0, 1)."""
    was_training = model.training
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(x * 3 + 1)
    model.train(was_training)


def test_every_registered_model_is_covered() -> None:
    """Every registered model has a reference class, configurations and dropout settings."""
    assert set(MODELS) == set(REFERENCE) == set(CONFIGS) == set(NO_DROPOUT)


# --------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", MODELS)
def test_default_output_shape(name: str, batch: int, train: bool) -> None:
    """A default model maps a (N, 1, 28, 28) float batch to finite (N, 10) float logits."""
    model = _seeded(name).train(train)
    out = model(_input(model, batch))
    assert out.shape == (batch, 10)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_nominal_input_shape_is_mnist(name: str) -> None:
    """Every default model advertises and accepts the MNIST sample shape (1, 28, 28)."""
    model = tp3nets.get_model(name)
    assert tuple(model.input_shape) == (1, 28, 28)
    assert model.num_classes == 10


@pytest.mark.parametrize("name", MODELS)
def test_empty_batch(name: str) -> None:
    """An empty batch (N = 0) gives empty (0, num_classes) logits instead of an error."""
    model = _seeded(name).eval()
    assert model(_input(model, 0)).shape == (0, 10)


@pytest.mark.parametrize(("name", "kwargs", "shape", "classes"), CONFIG_CASES)
@pytest.mark.parametrize("batch", [1, 4])
def test_configured_output_shape(
    name: str, kwargs: dict[str, Any], shape: tuple[int, ...], classes: int, batch: int
) -> None:
    """Non-default num_classes, in_channels and input sizes give (N, num_classes) logits."""
    model = _seeded(name, **kwargs).eval()
    assert model.num_classes == classes
    out = model(torch.randn(batch, *shape))
    assert out.shape == (batch, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("cls", "input_size", "in_features"),
    [
        (ConvNet2, 28, 8 * 14 * 14),
        (ConvNet2, 29, 8 * 14 * 14),
        (ConvNet2, (20, 36), 8 * 10 * 18),
        (ConvNet2, 2, 8),
        (ConvNet3, 28, 64 * 3 * 3),
        (ConvNet3, (16, 40), 64 * 2 * 5),
        (ConvNet3, 8, 64),
        (ConvNet3, 63, 64 * 7 * 7),
    ],
)
def test_flatten_size_follows_input_size(
    cls: type[nn.Module], input_size: Any, in_features: int
) -> None:
    """ConvNet2/3 size their first Linear layer from input_size, as the pooling floors it."""
    model = cls(input_size=input_size)
    first_linear = next(m for m in model.classifier if isinstance(m, nn.Linear))
    assert first_linear.in_features == in_features
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    assert model.eval()(torch.randn(2, 1, h, w)).shape == (2, 10)


def test_convnet4_takes_any_size_from_4() -> None:
    """ConvNet4 pools globally: one model takes 4×4, 28×28 and non-square images alike."""
    model = ConvNet4(width=4).eval()
    for h, w in [(4, 4), (5, 4), (4, 33), (28, 28), (40, 13)]:
        assert model(torch.randn(2, 1, h, w)).shape == (2, 10)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(h=st.integers(4, 40), w=st.integers(4, 40), channels=st.integers(1, 3))
def test_convnet4_any_size_property(h: int, w: int, channels: int) -> None:
    """For any H, W >= 4 and any channel count, ConvNet4 gives (N, num_classes) logits."""
    model = ConvNet4(num_classes=3, in_channels=channels, width=2).eval()
    assert model(torch.randn(2, channels, h, w)).shape == (2, 3)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    cls=st.sampled_from([ConvNet2, ConvNet3]),
    h=st.integers(8, 48),
    w=st.integers(8, 48),
)
def test_convnet2_3_any_input_size_property(cls: type[nn.Module], h: int, w: int) -> None:
    """ConvNet2/3 built for any (H, W) take exactly that size and no other."""
    model = cls(input_size=(h, w)).eval()
    assert model(torch.randn(1, 1, h, w)).shape == (1, 10)
    with pytest.raises(ValueError, match=re.escape(f"(N, 1, {h}, {w}), got (1, 1, {h + 1}, {w})")):
        model(torch.randn(1, 1, h + 1, w))


def test_mlr_takes_flat_and_image_batches_alike() -> None:
    """MLR gives the same logits for a (N, 784) batch and the same pixels as (N, 1, 28, 28)."""
    model = _seeded(MLR).eval()
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(model(x), model(x.reshape(4, 784)), rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Dropout


def _dropout_pairs(model: nn.Module, x: Tensor) -> list[tuple[Tensor, Tensor, float]]:
    """(input, output, p) of every dropout applied during one forward pass of ``model``."""
    pairs: list[tuple[Tensor, Tensor, float]] = []
    handles = []
    for m in model.modules():
        if isinstance(m, nn.Dropout):

            def hook(mod: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
                assert isinstance(mod, nn.Dropout)
                pairs.append((args[0].detach().clone(), out.detach().clone(), mod.p))

            handles.append(m.register_forward_hook(hook))
    if isinstance(model, ConvNet4):  # its last dropout is functional, before lin1
        pooled: list[Tensor] = []
        handles.append(
            model.features[-1].register_forward_hook(
                lambda mod, args, out: pooled.append(torch.flatten(out, 1).detach().clone())
            )
        )
        handles.append(
            model.lin1.register_forward_pre_hook(
                lambda mod, args: pairs.append(
                    (pooled[-1], args[0].detach().clone(), model.classifier_dropout)
                )
            )
        )
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return pairs


DROPOUT_CASES = [
    pytest.param("convnet2", {"dropout": 0.2}, 4, [0.2], id="convnet2-0.2"),
    pytest.param("convnet2", {"dropout": 0.7}, 4, [0.7], id="convnet2-0.7"),
    pytest.param("convnet3", {"dropout": 0.3}, 32, [0.3, 0.3], id="convnet3-0.3"),
    pytest.param(
        "convnet4",
        {"width": 16, "dropout": 0.25, "classifier_dropout": 0.6},
        16,
        [0.25, 0.25, 0.6],
        id="convnet4-0.25-0.6",
    ),
    pytest.param("convnet4", {"width": 16}, 16, [0.4, 0.4, 0.5], id="convnet4-default"),
    pytest.param("convnet2", {}, 4, [0.5], id="convnet2-default"),
    pytest.param("convnet3", {}, 32, [0.5, 0.5], id="convnet3-default"),
]


@pytest.mark.parametrize(("name", "kwargs", "batch", "rates"), DROPOUT_CASES)
def test_dropout_rates_are_respected(
    name: str, kwargs: dict[str, Any], batch: int, rates: list[float]
) -> None:
    """In train mode each dropout zeroes about the asked fraction and rescales by 1/(1-p)."""
    model = _seeded(name, **kwargs).train()
    torch.manual_seed(2)
    pairs = _dropout_pairs(model, _input(model, batch))
    assert [p for _, _, p in pairs] == pytest.approx(rates)
    for before, after, p in pairs:
        live = before != 0
        dropped = (after == 0) & live
        fraction = dropped.sum().item() / live.sum().item()
        assert live.sum().item() > 500  # enough values for the fraction to mean something
        assert abs(fraction - p) < 0.06, (p, fraction)
        kept = live & ~dropped
        torch.testing.assert_close(after[kept], before[kept] / (1 - p))


@pytest.mark.parametrize("name", MODELS)
def test_dropout_is_off_in_eval_mode(name: str) -> None:
    """In eval mode no dropout acts: repeated calls give identical logits."""
    model = _seeded(name).eval()
    x = _input(model)
    torch.manual_seed(3)
    a = model(x)
    torch.manual_seed(4)
    b = model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_zero_dropout_train_mode_is_deterministic(name: str) -> None:
    """With every dropout at 0, train-mode logits do not depend on the random state."""
    model = _seeded(name, **NO_DROPOUT[name]).train()
    x = _input(model, 4)
    torch.manual_seed(5)
    a = model(x)
    torch.manual_seed(6)
    b = model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in MODELS if NO_DROPOUT[n]])
def test_default_dropout_makes_train_mode_stochastic(name: str) -> None:
    """With their default dropout, two train-mode calls under different seeds differ."""
    model = _seeded(name).train()
    x = _input(model, 4)
    torch.manual_seed(5)
    a = model(x)
    torch.manual_seed(6)
    b = model(x)
    assert not torch.allclose(a, b)


def test_convnet2_without_dropout_is_the_base_convnet() -> None:
    """ConvNet2(dropout=0.0), the lab's base ConvNet, keeps ConvNet2's keys and has no noise."""
    torch.manual_seed(0)
    base = ConvNet2(dropout=0.0)
    torch.manual_seed(0)
    full = ConvNet2()
    assert base.classifier[0].p == 0.0
    assert _state_equal(base, full)  # same layers, keys and initial weights
    x = _input(base, 4)
    torch.manual_seed(7)
    train_a = base.train()(x)
    torch.manual_seed(8)
    train_b = base(x)
    eval_out = base.eval()(x)
    torch.testing.assert_close(train_a, train_b, rtol=0, atol=0)
    torch.testing.assert_close(train_a, eval_out, rtol=0, atol=0)
    torch.testing.assert_close(full.eval()(x), eval_out, rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Devices and dtypes


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODELS)
def test_to_device_puts_params_and_outputs_there(name: str, device: str) -> None:
    """model.to(device) moves every parameter and buffer; the logits come out on that device."""
    cpu_model = _seeded(name).eval()
    model = copy.deepcopy(cpu_model).to(device)
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors
    assert all(t.device.type == device for t in tensors)
    x = _input(model)
    out = model(x.to(device))
    assert out.device.type == device
    # Off the CPU, cuDNN's default TF32 convolutions round to about 1e-3.
    tol = 1e-5 if device == "cpu" else 5e-3
    torch.testing.assert_close(out.cpu(), cpu_model(x), rtol=10 * tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODELS)
def test_build_under_device_context(name: str, device: str) -> None:
    """Building inside ``with torch.device(d)`` creates every parameter on d directly."""
    with torch.device(device):
        model = tp3nets.get_model(name)
    assert all(t.device.type == device for t in [*model.parameters(), *model.buffers()])
    assert model.eval()(_input(model, device=device)).device.type == device


@pytest.mark.parametrize("name", MODELS)
def test_build_on_meta_device(name: str) -> None:
    """Construction on the meta device allocates nothing and gives meta params and logits."""
    with torch.device("meta"):
        model = tp3nets.get_model(name)
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    out = model.eval()(torch.empty(2, *model.input_shape, device="meta"))
    assert out.is_meta
    assert out.shape == (2, 10)


@pytest.mark.parametrize("name", MODELS)
def test_meta_model_materialises_and_loads(name: str) -> None:
    """A meta-built model, materialised with to_empty and loaded, equals the real one."""
    real = _seeded(name).eval()
    with torch.device("meta"):
        model = tp3nets.get_model(name)
    model.to_empty(device="cpu")
    model.load_state_dict(real.state_dict(), strict=True)
    x = _input(real)
    torch.testing.assert_close(model.eval()(x), real(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_float64(name: str) -> None:
    """A model converted with .double() computes in float64 and agrees with float32."""
    model = _seeded(name).eval()
    x = _input(model)
    out = copy.deepcopy(model).double()(x.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), model(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------
# Determinism


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_initial_weights(name: str) -> None:
    """The same seed gives identical initial weights; another seed gives different ones."""
    assert _state_equal(_seeded(name, 123), _seeded(name, 123))
    a, b = _seeded(name, 123).state_dict(), _seeded(name, 124).state_dict()
    assert all(not torch.equal(a[k], b[k]) for k in a if k.endswith("weight") and a[k].dim() > 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_train_mode_outputs(name: str, device: str) -> None:
    """Same seed, same weights: train-mode logits (dropout and batch statistics) repeat."""
    a = _seeded(name, 9).to(device).train()
    b = _seeded(name, 9).to(device).train()
    x = _input(a, 4, device=device)
    torch.manual_seed(10)
    out_a = a(x)
    torch.manual_seed(10)
    out_b = b(x)
    tol = 0.0 if device == "cpu" else 1e-6
    torch.testing.assert_close(out_a, out_b, rtol=tol, atol=tol)
    assert _state_equal(a, b)  # BatchNorm running statistics moved the same way


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODELS)
def test_eval_mode_is_repeatable(name: str, device: str) -> None:
    """In eval mode repeated calls give identical logits and leave the state untouched."""
    model = _seeded(name).to(device).eval()
    before = copy.deepcopy(model)
    x = _input(model, 4, device=device)
    outs = [model(x) for _ in range(3)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=0, atol=0)
    assert _state_equal(model, before)


# --------------------------------------------------------------------------------------
# Faithfulness to the reference lab


def test_reference_fixture_is_verbatim() -> None:
    """tests/reference_tp3.py holds the report's code blocks unchanged (where it is present)."""
    report = HERE.parent.parent / "shared" / "reference" / "tp3-report.md"
    if not report.is_file():
        pytest.skip(f"the reference report is not at {report}")
    blocks = re.findall(r"```\n(.*?)```", report.read_text(encoding="utf-8"), re.S)
    code = [b.strip("\n") for b in blocks if "class " in b or "def batch_relu" in b]
    assert len(code) == 4  # MLR; ConvNet2; ConvNet3; batch_relu with ConvNet4
    fixture = (HERE / "reference_tp3.py").read_text(encoding="utf-8")
    for block in code:
        assert block in fixture


@pytest.mark.parametrize("name", MODELS)
def test_reference_constructor_arguments_work(name: str) -> None:
    """The tp3nets classes take the reference's arguments and match its state_dict layout."""
    ref_cls, args = REFERENCE[name]
    cls = type(tp3nets.get_model(name))
    model, reference = cls(*args), ref_cls(*args)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    assert list(model.state_dict()) == list(reference.state_dict())  # same order too


@pytest.mark.parametrize("name", MODELS)
def test_reference_layer_sequence(name: str) -> None:
    """Same layers in the same order as the reference (AvgPool2d(7) → global average)."""
    ref_cls, args = REFERENCE[name]

    def kinds(m: nn.Module) -> list[str]:
        names = [type(x).__name__ for x in m.modules() if not list(x.children())]
        return ["GlobalAvgPool" if n in ("AvgPool2d", "AdaptiveAvgPool2d") else n for n in names]

    assert kinds(tp3nets.get_model(name)) == kinds(ref_cls(*args))


@pytest.mark.parametrize("name", MODELS)
def test_reference_checkpoint_loads_and_agrees(name: str, tmp_path: Path) -> None:
    """A checkpoint saved by the reference loads with strict=True and gives the same logits."""
    ref_cls, args = REFERENCE[name]
    torch.manual_seed(0)
    reference = ref_cls(*args)
    x = torch.randn(4, 1, 28, 28)
    _exercise_buffers(reference, x)
    torch.save(reference.state_dict(), tmp_path / "reference.pt")
    state = torch.load(tmp_path / "reference.pt", weights_only=True)

    torch.manual_seed(1)  # different initial weights, so the load must do the work
    model = tp3nets.get_model(name)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys
    torch.testing.assert_close(model.eval()(x), reference.eval()(x), rtol=1e-5, atol=1e-6)

    built = tp3nets.get_model(name, weights=str(tmp_path / "reference.pt")).eval()
    torch.testing.assert_close(built(x), reference(x), rtol=1e-5, atol=1e-6)


class _BaseConvNet(nn.Module):
    """The lab's base "ConvNet", which the report describes as ConvNet2 without the Dropout
    its code marks "#NEW DROPOUT": the classifier's Linear layers are its items 0 and 2."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 8, kernel_size=5, stride=[1, 1], padding=2),
                                    nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.classifier = nn.Sequential(nn.Linear(14 * 14 * 8, 500), nn.ReLU(),
                                        nn.Linear(500, 10))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.layer1(x).reshape(x.size(0), -1))
        return out


def test_the_base_convnet_checkpoint_loads_into_convnet2(tmp_path: Path) -> None:
    """ConvNet2(dropout=0.0) is the base ConvNet; its checkpoints (classifier.0/.2) load by
    weights= and by load_state_dict, and give its logits."""
    torch.manual_seed(0)
    base = _BaseConvNet().eval()
    torch.save(base.state_dict(), tmp_path / "convnet.pt")
    x = torch.randn(4, 1, 28, 28)
    built = tp3nets.convnet2(weights=str(tmp_path / "convnet.pt"), dropout=0.0).eval()
    torch.testing.assert_close(built(x), base(x), rtol=1e-5, atol=1e-6)
    model = tp3nets.ConvNet2(dropout=0.0)
    result = model.load_state_dict(base.state_dict(), strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys
    torch.testing.assert_close(model.eval()(x), base(x), rtol=1e-5, atol=1e-6)
    assert sorted(model.state_dict()) == sorted(tp3nets.ConvNet2().state_dict())


def test_a_convnet2_subclass_with_its_own_classifier_reloads_its_state() -> None:
    """The base-ConvNet renaming applies to ConvNet2's own layout only."""

    class Plain(tp3nets.ConvNet2):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = nn.Sequential(nn.Linear(1568, 500), nn.ReLU(), nn.Linear(500, 10))

    state = Plain().state_dict()
    model = Plain()
    model.load_state_dict(state)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", MODELS)
def test_tp3nets_checkpoint_loads_into_reference(name: str, tmp_path: Path) -> None:
    """A tp3nets checkpoint loads into the reference class with strict=True, same logits."""
    ref_cls, args = REFERENCE[name]
    model = _seeded(name, 3)
    x = torch.randn(4, 1, 28, 28)
    _exercise_buffers(model, x)
    torch.save(model.state_dict(), tmp_path / "tp3nets.pt")
    torch.manual_seed(4)
    reference = ref_cls(*args)
    reference.load_state_dict(torch.load(tmp_path / "tp3nets.pt", weights_only=True), strict=True)
    torch.testing.assert_close(reference.eval()(x), model.eval()(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_reference_train_mode_agrees(name: str) -> None:
    """With the same weights and seed, train-mode logits and BatchNorm updates match too."""
    ref_cls, args = REFERENCE[name]
    torch.manual_seed(0)
    reference = ref_cls(*args)
    model = tp3nets.get_model(name)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(11)
    expected = reference.train()(x)
    torch.manual_seed(11)
    got = model.train()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_mlr_never_regroups_wrongly_sized_images() -> None:
    """The reference regroups 49 images of 32×32 into 64 rows; tp3nets raises instead."""
    x = torch.randn(49, 1, 32, 32)  # 49·1024 = 64·784 values
    assert ref.MultinomialLogisticRegression(784, 10)(x).shape == (64, 10)  # the lab's bug
    with pytest.raises(ValueError, match=re.escape("got (49, 1, 32, 32) (1024 values per")):
        MultinomialLogisticRegression(784, 10)(x)


def test_mlr_ignores_the_global_input_size() -> None:
    """tp3nets' MLR uses its own input_size, not a module global as the reference does."""
    model = MultinomialLogisticRegression(64, 10)
    assert model(torch.randn(3, 64)).shape == (3, 10)
    assert model.output_size == 10
    assert ref.input_size == 784  # the fixture's global is untouched


# --------------------------------------------------------------------------------------
# Snapshots


def _snapshot_input(shape: tuple[int, ...]) -> Tensor:
    n = 2 * math.prod(shape)
    return torch.sin(torch.arange(n, dtype=torch.float32) * 0.37).reshape(2, *shape)


def _snapshot(name: str) -> dict[str, Any]:
    model = _seeded(name, 0).eval()
    with torch.no_grad():
        logits = model(_snapshot_input(tuple(model.input_shape)))
    return {
        "num_params": sum(p.numel() for p in model.parameters()),
        "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()},
        "logits": [[float(v) for v in row] for row in logits],
    }


@pytest.mark.parametrize("name", MODELS)
def test_snapshot(name: str) -> None:
    """Seeded initial weights on a fixed input give the stored logits, keys and size."""
    if os.environ.get("TP3NETS_REGEN_SNAPSHOTS"):
        stored = json.loads(SNAPSHOTS.read_text()) if SNAPSHOTS.is_file() else {}
        stored[name] = _snapshot(name)
        SNAPSHOTS.parent.mkdir(exist_ok=True)
        text = json.dumps(dict(sorted(stored.items())), indent=1)
        # One line per innermost list (a shape, a row of logits): small, readable diffs.
        text = re.sub(r"\[\s+([^\[\]]*?)\s+\]", lambda m: f"[{' '.join(m[1].split())}]", text)
        SNAPSHOTS.write_text(text + "\n")
        pytest.skip(f"snapshot of {name} regenerated in {SNAPSHOTS}")
    stored = json.loads(SNAPSHOTS.read_text())
    assert name in stored, f"no snapshot for {name}: run with TP3NETS_REGEN_SNAPSHOTS=1"
    expected, got = stored[name], _snapshot(name)
    assert got["state_dict"] == expected["state_dict"]
    assert got["num_params"] == expected["num_params"]
    torch.testing.assert_close(
        torch.tensor(got["logits"]), torch.tensor(expected["logits"]), rtol=1e-4, atol=1e-5
    )


# --------------------------------------------------------------------------------------
# TorchScript, FX, torch.export, torch.compile


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_matches_eager(name: str) -> None:
    """torch.jit.script gives the eager logits, also after a save/load round trip."""
    model = _seeded(name).eval()
    scripted = torch.jit.script(model)
    x = _input(model)
    expected = model(x)
    torch.testing.assert_close(scripted(x), expected, rtol=1e-5, atol=1e-6)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.jit.load(buffer)(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_fx_trace_matches_eager(name: str) -> None:
    """torch.fx.symbolic_trace gives the eager logits and keeps the input check."""
    model = _seeded(name).eval()
    traced = torch.fx.symbolic_trace(model)
    x = _input(model)
    torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expects"):
        traced(torch.randn(2, 3, 28, 28))


@pytest.mark.parametrize("name", MODELS)
def test_export_matches_eager(name: str) -> None:
    """torch.export.export with a dynamic batch gives the eager logits for several N."""
    model = _seeded(name).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(
        model, (_input(model, 3),), dynamic_shapes={"x": {0: batch}}
    ).module()
    for n in (1, 3, 7):
        x = _input(model, n, seed=n)
        torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_compile_aot_eager_matches_eager(name: str) -> None:
    """torch.compile(fullgraph=True) traces the whole forward and gives the eager logits."""
    torch._dynamo.reset()
    model = _seeded(name).eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = _input(model)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", [MLR, "convnet3"])
def test_compile_inductor_matches_eager(name: str) -> None:
    """torch.compile with the default inductor backend (C++ on CPU) gives the eager logits."""
    torch._dynamo.reset()
    model = _seeded(name).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = _input(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------
# Training-related properties


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str) -> None:
    """One backward pass in train mode gives every parameter (BatchNorm too) a nonzero grad."""
    model = _seeded(name).train()
    x = _input(model, 4)
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for key, p in model.named_parameters():
        assert p.grad is not None, key
        assert torch.isfinite(p.grad).all(), key
        assert p.grad.abs().sum() > 0, key
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 1 for m in batchnorms)


@pytest.mark.parametrize("name", MODELS)
def test_deepcopy_is_independent_and_equal(name: str) -> None:
    """copy.deepcopy gives an equal model that shares no storage with the original."""
    model = _seeded(name).eval()
    clone = copy.deepcopy(model)
    assert _state_equal(model, clone)
    x = _input(model)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)
    assert not torch.allclose(clone(x), model(x))
    assert clone.num_classes == model.num_classes


@pytest.mark.parametrize("name", MODELS)
def test_pickle_round_trip(name: str) -> None:
    """A pickled and unpickled model has the same class, state, config and logits."""
    model = _seeded(name).eval()
    clone = pickle.loads(pickle.dumps(model))
    assert type(clone) is type(model)
    assert _state_equal(model, clone)
    assert tuple(clone.input_shape) == tuple(model.input_shape)
    x = _input(model)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Input checks

# (model, bad input shape, the exact message): channels, image size, flat vectors, no batch.
BAD_SHAPES: list[tuple[str, tuple[int, ...], str]] = (
    [
        (m, shape, f"{cls} expects inputs of shape (N, 1, 28, 28), got {shape_str}")
        for m, cls in (("convnet2", "ConvNet2"), ("convnet3", "ConvNet3"))
        for shape, shape_str in (
            ((2, 3, 28, 28), "(2, 3, 28, 28)"),
            ((2, 1, 32, 32), "(2, 1, 32, 32)"),
            ((2, 1, 28, 27), "(2, 1, 28, 27)"),
            ((2, 784), "(2, 784)"),
            ((1, 28, 28), "(1, 28, 28)"),
        )
    ]
    + [
        (
            "convnet4",
            shape,
            f"ConvNet4 expects inputs of shape (N, 1, H, W) with H, W >= 4, got {s}",
        )
        for shape, s in (
            ((2, 3, 28, 28), "(2, 3, 28, 28)"),
            ((2, 1, 3, 28), "(2, 1, 3, 28)"),
            ((2, 1, 28, 2), "(2, 1, 28, 2)"),
            ((2, 784), "(2, 784)"),
            ((1, 28, 28), "(1, 28, 28)"),
        )
    ]
    + [
        (
            MLR,
            shape,
            "MultinomialLogisticRegression expects a batch of shape (N, 784) or (N, C, H, W) "
            f"with C*H*W == 784, got {s}",
        )
        for shape, s in (
            ((2, 1, 32, 32), "(2, 1, 32, 32) (1024 values per sample)"),
            ((49, 1, 32, 32), "(49, 1, 32, 32) (1024 values per sample)"),
            ((2, 3, 28, 28), "(2, 3, 28, 28) (2352 values per sample)"),
            ((2, 783), "(2, 783) (783 values per sample)"),
            ((784,), "(784); add the batch dimension with x.unsqueeze(0)"),
        )
    ]
)
BAD_SHAPE_IDS = [f"{m}-{'x'.join(map(str, s))}" for m, s, _ in BAD_SHAPES]


@pytest.mark.parametrize(("name", "shape", "message"), BAD_SHAPES, ids=BAD_SHAPE_IDS)
def test_bad_shape_names_expected_and_received(
    name: str, shape: tuple[int, ...], message: str
) -> None:
    """A batch of the wrong shape raises ValueError naming the expected and received shape."""
    model = tp3nets.get_model(name).eval()
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.randn(*shape))


@pytest.mark.parametrize(("name", "shape", "message"), BAD_SHAPES, ids=BAD_SHAPE_IDS)
def test_bad_shape_under_torchscript(name: str, shape: tuple[int, ...], message: str) -> None:
    """A scripted model raises torch.jit.Error carrying the same ValueError message."""
    scripted = torch.jit.script(tp3nets.get_model(name).eval())
    with pytest.raises(torch.jit.Error, match=re.escape(f"ValueError: {message}")):
        scripted(torch.randn(*shape))


def test_configured_model_reports_its_own_shape() -> None:
    """The message of a configured model names its configured shape."""
    model = ConvNet2(in_channels=3, input_size=(20, 36)).eval()
    expected = "ConvNet2 expects inputs of shape (N, 3, 20, 36), got (2, 3, 36, 20)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        model(torch.randn(2, 3, 36, 20))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
@pytest.mark.parametrize("name", MODELS)
def test_integer_input_raises_type_error(name: str, dtype: torch.dtype) -> None:
    """A correctly shaped integer tensor raises TypeError saying to convert to float."""
    model = tp3nets.get_model(name).eval()
    x = torch.zeros(2, 1, 28, 28, dtype=dtype)
    message = "expects a floating-point tensor, got an integer tensor of shape (2, 1, 28, 28)"
    with pytest.raises(TypeError, match=re.escape(message)):
        model(x)
    scripted_message = f"TypeError: {type(model).__name__} {message}"
    with pytest.raises(torch.jit.Error, match=re.escape(scripted_message)):
        torch.jit.script(model)(x)


# --------------------------------------------------------------------------------------
# Classifier heads


@pytest.mark.parametrize("name", MODELS)
def test_get_classifier_is_the_last_layer(name: str) -> None:
    """get_classifier() returns the Linear layer whose output is the model's logits."""
    model = _seeded(name).eval()
    head = model.get_classifier()
    assert isinstance(head, nn.Linear)
    assert head.out_features == model.num_classes == 10
    seen: list[Tensor] = []
    handle = head.register_forward_hook(lambda mod, args, out: seen.append(out))
    x = _input(model)
    out = model(x)
    handle.remove()
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], out, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier(name: str, device: str) -> None:
    """reset_classifier(n) swaps in a fresh n-way head; keys, features, device, dtype stay."""
    dtype = torch.float16 if device == "mps" else torch.float64  # MPS has no float64
    model = _seeded(name).to(device=device, dtype=dtype).eval()
    x = _input(model, device=device).to(dtype)
    features_out: list[Tensor] = []
    old_head = model.get_classifier()
    handle = old_head.register_forward_pre_hook(lambda mod, args: features_out.append(args[0]))
    model(x)
    handle.remove()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head_keys = {k for k in before if k.rsplit(".", 1)[0] == model._head_path}
    assert len(head_keys) == 2

    model.reset_classifier(3)
    head = model.get_classifier()
    assert head is not old_head
    assert model.num_classes == 3
    assert head.weight.shape == (3, old_head.in_features)
    assert head.weight.device.type == device
    assert head.weight.dtype == dtype
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        if k not in head_keys:
            assert torch.equal(after[k], before[k]), k
    seen: list[Tensor] = []
    handle = head.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    out = model(x)
    handle.remove()
    assert out.shape == (3, 3)
    assert out.dtype == dtype
    torch.testing.assert_close(seen[0], features_out[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_same_size_reinitialises(name: str) -> None:
    """reset_classifier(10) keeps the head's shape but draws new weights."""
    model = _seeded(name)
    old = model.get_classifier().weight.detach().clone()
    model.reset_classifier(10)
    new = model.get_classifier().weight
    assert new.shape == old.shape
    assert not torch.equal(new, old)


@pytest.mark.parametrize("bad", [-1, -2, 2.5, True, "3", None])
@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_rejects_bad_sizes(name: str, bad: Any) -> None:
    """reset_classifier with a negative or non-int size raises ValueError, changes nothing."""
    model = tp3nets.get_model(name)
    head = model.get_classifier()
    message = f"num_classes to be a positive int, or 0 to remove the head, got {bad!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        model.reset_classifier(bad)
    assert model.get_classifier() is head
    assert model.num_classes == 10


def test_reset_classifier_on_meta_stays_meta() -> None:
    """On a meta-built model the new head is on the meta device too."""
    with torch.device("meta"):
        model = ConvNet4()
    model.reset_classifier(4)
    assert model.get_classifier().weight.is_meta
    assert model.get_classifier().weight.shape == (4, 256)


# --------------------------------------------------------------------------------------
# Constructor validation

_INT = "to be a positive int, got"
_PROB = "to be a probability in [0, 1), got"
_PAIR = "expects input_size to be an int or (H, W), got"

# (model, bad builder kwargs, the message after the class name).
BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("convnet2", {"num_classes": 0}, f"expects num_classes {_INT} 0"),
    ("convnet2", {"num_classes": 2.0}, f"expects num_classes {_INT} 2.0"),
    ("convnet2", {"in_channels": -1}, f"expects in_channels {_INT} -1"),
    ("convnet2", {"input_size": 1}, "expects input_size of at least 2x2, got 1"),
    ("convnet2", {"input_size": -28}, f"expects input_size {_INT} -28"),
    ("convnet2", {"input_size": (28,)}, f"{_PAIR} (28,)"),
    ("convnet2", {"input_size": "28"}, f"{_PAIR} '28'"),
    ("convnet2", {"dropout": 1.0}, f"expects dropout {_PROB} 1.0"),
    ("convnet2", {"dropout": -0.1}, f"expects dropout {_PROB} -0.1"),
    ("convnet2", {"hidden": 0}, f"expects hidden {_INT} 0"),
    ("convnet3", {"num_classes": True}, f"expects num_classes {_INT} True"),
    ("convnet3", {"input_size": 7}, "expects input_size of at least 8x8, got 7"),
    ("convnet3", {"input_size": (8, 7)}, "expects input_size of at least 8x8, got (8, 7)"),
    ("convnet3", {"dropout": 1.5}, f"expects dropout {_PROB} 1.5"),
    ("convnet4", {"width": 0}, f"expects width {_INT} 0"),
    ("convnet4", {"in_channels": 0}, f"expects in_channels {_INT} 0"),
    ("convnet4", {"dropout": "0.4"}, f"expects dropout {_PROB} '0.4'"),
    ("convnet4", {"classifier_dropout": 1.0}, f"expects classifier_dropout {_PROB} 1.0"),
    (MLR, {"input_size": 0}, f"expects input_size {_INT} 0"),
    (MLR, {"output_size": -1}, f"expects output_size {_INT} -1"),
    (MLR, {"num_classes": 0}, f"expects num_classes {_INT} 0"),
    (MLR, {"output_size": 10, "num_classes": 5}, "got output_size=10 and num_classes=5; give one"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "message"), BAD_CONFIGS, ids=[f"{n}-{k}" for n, k, _ in BAD_CONFIGS]
)
def test_bad_configuration_raises_value_error(
    name: str, kwargs: dict[str, Any], message: str
) -> None:
    """A bad constructor argument raises ValueError naming the argument and the value."""
    cls_name = type(tp3nets.get_model(name)).__name__
    with pytest.raises(ValueError, match=re.escape(f"{cls_name} {message}")):
        tp3nets.get_model(name, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "classes"),
    [({}, 10), ({"output_size": 4}, 4), ({"num_classes": 4}, 4),
     ({"output_size": 4, "num_classes": 4}, 4)],
)  # fmt: skip
def test_mlr_output_size_and_num_classes(kwargs: dict[str, Any], classes: int) -> None:
    """MLR takes its class count as output_size (the reference) or num_classes (the others)."""
    model = MultinomialLogisticRegression(784, **kwargs)
    assert model.num_classes == model.output_size == classes
    assert model(torch.randn(2, 784)).shape == (2, classes)


@pytest.mark.parametrize("name", MODELS)
def test_numpy_integers_are_ints(name: str) -> None:
    """np.int64 counts (from a dataset's label array) work as nn.Linear's do."""
    import numpy as np

    model = tp3nets.get_model(name, num_classes=np.int64(3))
    assert model.num_classes == 3
    assert type(model.num_classes) is int
    model.reset_classifier(np.int32(4))
    assert model.get_classifier().out_features == 4
    assert tp3nets.batch_relu(np.int64(1), np.int64(8))[0].out_channels == 8


# --------------------------------------------------------------------------------------
# Graph tools on traced models: TorchScript of fx graphs, feature extractors, graph passes

# The first bad shape of each model, with its message: the class of "the check survived".
FIRST_BAD = {name: (shape, message) for name, shape, message in reversed(BAD_SHAPES)}


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_of_fx_trace(name: str) -> None:
    """torch.jit.script(torch.fx.symbolic_trace(model)) compiles (no '_Tensor_' annotation),
    gives the eager logits and raises the model's own message for a wrong shape."""
    model = _seeded(name).eval()
    traced = torch.fx.symbolic_trace(model)
    assert "_Tensor_" not in traced.code
    scripted = torch.jit.script(traced)
    x = _input(model)
    torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-6)
    shape, message = FIRST_BAD[name]
    with pytest.raises(torch.jit.Error, match=re.escape(message)):
        scripted(torch.randn(*shape))


def _feature_node(name: str) -> str:
    return {"convnet2": "layer1", "convnet3": "layer1", "convnet4": "features"}.get(
        name, "reshape"
    )


@pytest.mark.parametrize("name", MODELS)
def test_feature_extractor_keeps_the_input_check(name: str) -> None:
    """create_feature_extractor's dead-code pass keeps the input check: a wrong shape raises
    the model's ValueError instead of being silently accepted."""
    from torchvision.models.feature_extraction import create_feature_extractor

    model = _seeded(name).eval()
    extractor = create_feature_extractor(model, {_feature_node(name): "feat"})
    x = _input(model)
    torch.testing.assert_close(extractor(x)["feat"], model.forward_features(x))
    shape, message = FIRST_BAD[name]
    with pytest.raises(ValueError, match=re.escape(message)):
        extractor(torch.randn(*shape))


@pytest.mark.parametrize("name", MODELS)
def test_feature_extractor_is_scriptable(name: str) -> None:
    """torch.jit.script of a feature extractor compiles, gives its features and keeps the
    input check (torchvision documents its extractors as scriptable)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    model = _seeded(name).eval()
    extractor = create_feature_extractor(model, {_feature_node(name): "feat"})
    scripted = torch.jit.script(extractor)
    x = _input(model)
    torch.testing.assert_close(scripted(x)["feat"], model.forward_features(x))
    shape, message = FIRST_BAD[name]
    with pytest.raises(torch.jit.Error, match=re.escape(message)):
        scripted(torch.randn(*shape))


@pytest.mark.parametrize("name", MODELS)
def test_dead_code_elimination_keeps_the_input_check(name: str) -> None:
    """Graph.eliminate_dead_code (run by convert_fx and other passes) keeps the check."""
    model = _seeded(name).eval()
    traced = torch.fx.symbolic_trace(model)
    traced.graph.eliminate_dead_code()
    traced.recompile()
    shape, message = FIRST_BAD[name]
    with pytest.raises(ValueError, match=re.escape(message)):
        traced(torch.randn(*shape))


@pytest.mark.parametrize("name", MODELS)
def test_export_refuses_a_wrong_shape(name: str) -> None:
    """An exported program does not silently accept an input of the wrong shape."""
    model = _seeded(name).eval()
    exported = torch.export.export(model, (_input(model, 3),)).module()
    shape, _ = FIRST_BAD[name]
    with pytest.raises((ValueError, RuntimeError, AssertionError)):
        exported(torch.randn(*shape))


# --------------------------------------------------------------------------------------
# timm's feature API

FEATURE_SHAPES = {
    "convnet2": ((8, 14, 14), 8, 500),
    "convnet3": ((64, 3, 3), 64, 256),
    "convnet4": ((256, 1, 1), 256, 256),  # the lab's features end with the global pool
    MLR: ((784,), 784, 784),
}


@pytest.mark.parametrize("name", MODELS)
def test_feature_api_shapes(name: str) -> None:
    """forward_features gives num_features channels; forward_head(pre_logits=True) gives
    head_hidden_size values; forward_head(forward_features(x)) equals forward(x)."""
    model = _seeded(name).eval()
    feat_shape, num_features, hidden = FEATURE_SHAPES[name]
    x = _input(model, 4)
    features = model.forward_features(x)
    assert features.shape == (4, *feat_shape)
    assert model.num_features == num_features == features.shape[1]
    assert model.head_hidden_size == hidden
    pre = model.forward_head(features, pre_logits=True)
    assert pre.shape == (4, hidden)
    torch.testing.assert_close(model.forward_head(features), model(x))
    torch.testing.assert_close(model.get_classifier()(pre), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_forward_features_checks_its_input(name: str) -> None:
    """forward_features raises the model's ValueError for a wrong shape."""
    model = _seeded(name).eval()
    shape, message = FIRST_BAD[name]
    with pytest.raises(ValueError, match=re.escape(message)):
        model.forward_features(torch.randn(*shape))


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_zero_gives_a_feature_extractor(name: str) -> None:
    """reset_classifier(0) swaps the head for Identity: the model returns the pre-logits,
    num_classes is 0, the head's keys leave the state dict, and a later reset_classifier(n)
    rebuilds an n-way head on the same device and dtype."""
    model = _seeded(name).eval().double()
    x = _input(model, 2).double()
    pre = model.forward_head(model.forward_features(x), pre_logits=True)
    head_keys = {k for k in model.state_dict() if k.startswith(model._head_path + ".")}
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model.num_classes == 0
    torch.testing.assert_close(model(x), pre)
    assert head_keys
    assert not head_keys & set(model.state_dict())
    model.reset_classifier(3)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear)
    assert (head.in_features, head.out_features) == (model.head_hidden_size, 3)
    assert head.weight.dtype == torch.float64
    assert model(x).shape == (2, 3)
    assert head_keys == {k for k in model.state_dict() if k.startswith(model._head_path + ".")}


@pytest.mark.parametrize("name", MODELS)
def test_feature_api_under_torchscript(name: str) -> None:
    """A scripted model exposes forward_features and forward_head with the eager values."""
    model = _seeded(name).eval()
    scripted = torch.jit.script(model)
    x = _input(model)
    torch.testing.assert_close(scripted.forward_features(x), model.forward_features(x))
    f = model.forward_features(x)
    torch.testing.assert_close(scripted.forward_head(f, True), model.forward_head(f, True))


# --------------------------------------------------------------------------------------
# Plain annotations in the model files (no postponed annotations, no decorator undoing them)

MODELS_DIR = Path(tp3nets.models.__file__).resolve().parent


def _decorator_name(node: ast.expr) -> str | None:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


@pytest.mark.parametrize(
    "path",
    sorted(MODELS_DIR.rglob("*.py")),
    ids=lambda p: p.relative_to(MODELS_DIR).as_posix(),
)
def test_model_files_keep_plain_annotations(path: Path) -> None:
    """No model file postpones its annotations (TorchScript and fx read them) or undoes that
    with an ``_eager_annotations`` decorator."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "__future__"
        ):
            names = [alias.name for alias in node.names]
            assert "annotations" not in names, (
                f"{path}:{node.lineno} postpones its annotations; model files keep plain ones"
            )
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            assert node.name != "_eager_annotations", f"{path}:{node.lineno}"
            for decorator in node.decorator_list:
                assert _decorator_name(decorator) != "_eager_annotations", (
                    f"{path}:{decorator.lineno} decorates {node.name} with _eager_annotations"
                )


@pytest.mark.parametrize(
    "cls",
    [
        ConvNet2,
        ConvNet3,
        ConvNet4,
        MultinomialLogisticRegression,
        tp3nets.models.quantization.QuantizableConvNet2,
        tp3nets.models.quantization.QuantizableConvNet3,
        tp3nets.models.quantization.QuantizableConvNet4,
    ],
)
def test_forward_annotations_are_types(cls: type[nn.Module]) -> None:
    """forward, forward_features and forward_head carry the class Tensor, not the string
    'Tensor' (fx copies the annotations into the code it writes, TorchScript reads them)."""
    for method in ("forward", "forward_features", "forward_head"):
        annotations = getattr(cls, method).__annotations__
        assert annotations["x"] is Tensor, (cls.__name__, method, annotations)
        assert annotations["return"] is Tensor, (cls.__name__, method, annotations)


@pytest.mark.parametrize(("name", "shape", "message"), BAD_SHAPES, ids=BAD_SHAPE_IDS)
def test_fx_trace_keeps_the_input_check(name: str, shape: tuple[int, ...], message: str) -> None:
    """A model traced by torch.fx.symbolic_trace holds its input check as one leaf call that
    torch._assert consumes, and raises the model's own ValueError for every wrong shape."""
    traced = torch.fx.symbolic_trace(tp3nets.get_model(name).eval())
    calls = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    checks = [t for t in calls if getattr(t, "__name__", "") in ("_check_images", "_check_flat")]
    assert len(checks) == 1, traced.code
    assert torch._assert in calls, traced.code
    with pytest.raises(ValueError, match=re.escape(message)):
        traced(torch.randn(*shape))


@pytest.mark.parametrize("name", MODELS)
def test_fx_trace_keeps_the_dtype_check(name: str) -> None:
    """A traced model given an integer tensor of the right shape raises the model's
    TypeError, as the eager model does."""
    model = tp3nets.get_model(name).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.zeros(2, *model.input_shape, dtype=torch.uint8)
    message = f"{type(model).__name__} expects a floating-point tensor, got an integer tensor"
    with pytest.raises(TypeError, match=re.escape(message)):
        traced(x)
