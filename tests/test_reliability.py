"""Every bad input answered: a matrix of wrong inputs, each with its exception and message.

Four groups: what a model is given (tensors of the wrong rank, channels, size or dtype,
lists and arrays), what :func:`tp3nets.fit` and its relatives are given (empty loaders,
bad epochs, targets that do not fit the loss, labels outside the classes, precisions,
optimizers and schedulers of another model), the files that weights and checkpoints are
read from (unknown names, tampered, truncated or foreign files, pickles that carry code)
and the ``tp3nets`` command line (missing, unknown and malformed options, missing folders,
unreadable and non-image files). Each case asserts the exception type *and* its message.

The defined behaviours for inputs that are not errors live here too: NaN and infinite
values propagate to the logits without an exception, empty batches give ``(0, classes)``
logits, and non-contiguous or channels-last inputs give the contiguous result.

Each case records ``bad_input`` (or ``defined_behaviour``) with its category through
pytest's ``record_property``; ``tests/_fault_report.py`` runs these tests and turns the
records into the table of ``docs/reliability.rst``.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import tp3nets
from _support import one_error_line as _one_error_line
from tp3nets import (
    CheckpointError,
    ConvNet2,
    ConvNet3,
    ConvNet4,
    EarlyStopping,
    MultinomialLogisticRegression,
    cli,
    evaluate,
    fit,
    load_state_dict,
    predict,
)
from tp3nets.data import TensorLoader
from tp3nets.engine import (
    accuracy,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
    train_one_epoch,
)
from tp3nets.weights import _api

pytestmark = pytest.mark.filterwarnings(
    "ignore:Using a target size:UserWarning",
    "ignore:Detected pickle protocol:UserWarning",
)

REPO = Path(__file__).resolve().parent.parent
DIGIT = REPO / "examples" / "digits" / "digit_3.png"
MODELS = tp3nets.list_models()
MLR = "multinomial_logistic_regression"
CLASS = {"convnet2": "ConvNet2", "convnet3": "ConvNet3", "convnet4": "ConvNet4",
         MLR: "MultinomialLogisticRegression"}
Recorder = Callable[[str, object], None]


def _expect(exc: type[BaseException], pattern: str, fn: Callable[[], object]) -> BaseException:
    """Run ``fn``; it must raise exactly ``exc`` (not a subclass of it) matching ``pattern``."""
    with pytest.raises(exc, match=pattern) as info:
        fn()
    assert type(info.value) is exc, f"raised {type(info.value).__name__}, not {exc.__name__}"
    return info.value


# --------------------------------------------------------------------------------------
# models: wrong inputs


def _expected(name: str) -> str:
    if name == MLR:
        return "(N, 784) or (N, C, H, W) with C*H*W == 784"
    if name == "convnet4":
        return "(N, 1, H, W) with H, W >= 4"
    return "(N, 1, 28, 28)"


def _shape_message(name: str, shape: tuple[int, ...]) -> str:
    shown = "(" + ", ".join(map(str, shape)) + ")"
    if name == MLR:
        return re.escape(f"MultinomialLogisticRegression expects a batch of shape "
                         f"{_expected(name)}, got {shown}")
    return re.escape(f"{CLASS[name]} expects inputs of shape {_expected(name)}, got {shown}")


# (id, model name, input factory, exception, message pattern)
MODEL_CASES: list[tuple[str, str, Callable[[], Any], type[BaseException], str]] = []
for _name in MODELS:
    _cls = CLASS[_name]
    _shapes = {
        "rank-2": (2, 28 * 28 + 1) if _name == MLR else (2, 784),
        "rank-3-no-batch": (28, 28) if _name == MLR else (1, 28, 28),
        "rank-5": (2, 1, 1, 28, 29) if _name == MLR else (2, 1, 1, 28, 28),
        "channels": (2, 2, 28, 28),
        "size": (2, 1, 3, 3) if _name == "convnet4" else (2, 1, 27, 28),
        "zero-width": (2, 1, 28, 0),
    }
    for _case, _shape in _shapes.items():
        if _name == MLR and _case == "rank-3-no-batch":
            _pattern = re.escape("(28, 28) (28 values per sample)")
        else:
            _pattern = _shape_message(_name, _shape)
        MODEL_CASES.append((f"{_name}-{_case}", _name,
                            lambda s=_shape: torch.zeros(s), ValueError, _pattern))
    for _dtype in (torch.uint8, torch.int32, torch.bool):
        MODEL_CASES.append((
            f"{_name}-{str(_dtype).removeprefix('torch.')}", _name,
            lambda d=_dtype: torch.zeros(2, 1, 28, 28, dtype=d), TypeError,
            re.escape(f"{_cls} expects a floating-point tensor, got an integer tensor of shape "
                      "(2, 1, 28, 28); convert uint8 images with x.float() / 255"),
        ))
    MODEL_CASES += [
        (f"{_name}-list", _name, lambda: [[0.0] * 784], TypeError,
         re.escape(f"{_cls} expects a torch.Tensor, got list; convert it with torch.as_tensor")),
        (f"{_name}-ndarray", _name, lambda: np.zeros((2, 1, 28, 28), np.float32), TypeError,
         re.escape(f"{_cls} expects a torch.Tensor, got ndarray")),
        # Another floating dtype than the weights': torch's own, explicit error.
        (f"{_name}-float64-into-float32", _name,
         lambda: torch.zeros(2, 1, 28, 28, dtype=torch.float64), RuntimeError,
         r"(should be the same|must have the same dtype)"),
    ]


@pytest.mark.parametrize(("name", "make", "exc", "pattern"),
                         [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_model_input_is_refused_clearly(
    record_property: Recorder, name: str, make: Callable[[], Any], exc: type[BaseException],
    pattern: str,
) -> None:
    """A model given the wrong rank, channels, size, dtype or a non-tensor says what it expects."""
    record_property("bad_input", "models")
    model = tp3nets.get_model(name).eval()
    with torch.no_grad():
        _expect(exc, pattern, lambda: model(make()))


# --------------------------------------------------------------------------------------
# models: defined behaviour for NaN/inf, empty batches and memory layouts


@pytest.fixture(scope="module")
def pretrained() -> dict[str, nn.Module]:
    return {name: tp3nets.get_model(name, weights="DEFAULT").eval() for name in MODELS}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")],
                         ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", MODELS)
def test_nan_and_inf_propagate_to_that_sample_only(
    record_property: Recorder, pretrained: dict[str, nn.Module], name: str, value: float
) -> None:
    """In eval mode one NaN/±inf pixel makes every logit of its sample non-finite, no exception;
    the other samples' logits are bitwise unchanged."""
    record_property("defined_behaviour", "models")
    model = pretrained[name]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g)
    bad = x.clone()
    bad[1, 0, 9, 17] = value
    with torch.no_grad():
        clean, out = model(x), model(bad)
    assert out.shape == (3, 10)
    assert not torch.isfinite(out[1]).any()
    assert torch.equal(out[[0, 2]], clean[[0, 2]])
    with torch.no_grad():
        assert not torch.isfinite(model(torch.full((2, 1, 28, 28), value))).any()


def test_nan_in_training_mode_spreads_through_batch_norm(record_property: Recorder) -> None:
    """In training mode BatchNorm's batch statistics carry one sample's NaN to the whole batch
    (ConvNet4); in eval mode it stays in its sample."""
    record_property("defined_behaviour", "models")
    torch.manual_seed(0)
    model = ConvNet4(width=8)
    x = torch.rand(4, 1, 28, 28)
    x[1, 0, 5, 5] = float("nan")
    with torch.no_grad():
        in_eval = (~torch.isfinite(model.eval()(x))).any(dim=1)
        in_training = (~torch.isfinite(model.train()(x))).any(dim=1)
    assert in_eval.tolist() == [False, True, False, False]
    assert in_training.tolist() == [True, True, True, True]
    # That training-mode pass also wrote NaN into the running statistics: from now on every
    # eval-mode output is NaN, until the model is reloaded (from its last checkpoint).
    assert model.features[1].running_mean.isnan().all()
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 1, 28, 28)).isnan().all()


def test_nan_inputs_through_the_engine(record_property: Recorder) -> None:
    """predict returns non-finite logits for a NaN sample; evaluate reports a NaN loss; fit
    stops with FloatingPointError (it never trains on NaN)."""
    record_property("defined_behaviour", "training")
    torch.manual_seed(0)
    model = MultinomialLogisticRegression(8, 3)
    x = torch.randn(8, 8)
    y = x[:, :3].argmax(dim=1)
    x[5, 2] = float("nan")
    logits = predict(model, x)
    assert not torch.isfinite(logits[5]).any()
    assert torch.isfinite(logits[:5]).all()
    assert np.isnan(evaluate(model, TensorLoader((x, y), 4))["loss"])
    _expect(FloatingPointError, r"^epoch 1: the training loss became nan at batch 2; lower the "
            r"learning "
            r"rate, clip the gradients .* check the data for NaN/inf",
            lambda: fit(model, TensorLoader((x, y), 4), epochs=1, progress=False,
                        optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", MODELS)
def test_empty_batch_gives_empty_logits(record_property: Recorder, name: str, train: bool) -> None:
    """An empty batch gives (0, num_classes) float logits in eval and training mode; in training
    mode it leaves the BatchNorm statistics finite and gradients flow (to zero)."""
    record_property("defined_behaviour", "models")
    torch.manual_seed(0)
    model = tp3nets.get_model(name, num_classes=7).train(train)
    out = model(torch.zeros(0, 1, 28, 28))
    assert out.shape == (0, 7)
    assert out.dtype == torch.float32
    if train:
        out.sum().backward()
        assert all(torch.isfinite(t).all() for t in model.state_dict().values())
        assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_predict_refuses_an_empty_tensor(record_property: Recorder) -> None:
    """predict on a (0, ...) tensor is a clear error rather than an empty result."""
    record_property("bad_input", "training")
    _expect(ValueError, re.escape("predict needs a non-empty batch, got shape (0, 1, 28, 28)"),
            lambda: predict(ConvNet2(), torch.zeros(0, 1, 28, 28)))


def _layouts(x: Tensor) -> dict[str, Tensor]:
    """The same values as ``x`` (N, C, H, W) in other memory layouts."""
    big = torch.zeros(x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3])
    big[:, :, ::2, ::2] = x
    return {
        "transposed": x.transpose(2, 3).contiguous().transpose(2, 3),
        "strided": big[:, :, ::2, ::2],
        "batch-strided": torch.stack([x, torch.zeros_like(x)], dim=1)[:, 0],
        "channels_last": x.contiguous(memory_format=torch.channels_last),
    }


LAYOUT_MODELS: dict[str, Callable[[], nn.Module]] = {
    "convnet2": lambda: ConvNet2(in_channels=3),
    "convnet3": lambda: ConvNet3(in_channels=3),
    "convnet4": lambda: ConvNet4(in_channels=3, width=8),
    MLR: lambda: MultinomialLogisticRegression(3 * 28 * 28, 10),
}


@pytest.mark.parametrize("model_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("layout", ["transposed", "strided", "batch-strided", "channels_last"])
@pytest.mark.parametrize("name", MODELS)
def test_memory_layout_does_not_change_the_logits(
    record_property: Recorder, name: str, layout: str, model_layout: str
) -> None:
    """Non-contiguous and channels-last inputs (and a channels-last model) give the contiguous
    logits: bitwise for strided views, within float32 rounding where channels-last convolution
    kernels sum in another order."""
    record_property("defined_behaviour", "models")
    torch.manual_seed(0)
    model = LAYOUT_MODELS[name]().eval()
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        expected = model(x)
        if model_layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        variant = _layouts(x)[layout]
        assert torch.equal(variant, x)
        got = model(variant)
    if layout == "channels_last" or model_layout == "channels_last":
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(got, expected)


# --------------------------------------------------------------------------------------
# training


class TinyNet(nn.Module):
    """8 features → 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.body(x))
        return out


class _TupleNet(TinyNet):
    """Returns its logits with a second output, as a tuple or a dict."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        self.as_dict = as_dict

    def forward(self, x: Tensor) -> Any:  # type: ignore[override]
        out = super().forward(x)
        return {"logits": out, "features": x} if self.as_dict else (out, x)


def _data(n: int = 8) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :3].argmax(dim=1)


def _fit(loader: Any = None, model: nn.Module | None = None, **kwargs: Any) -> Callable[[], Any]:
    """A fit call on a fresh TinyNet, by default over 8 good samples in batches of 4."""

    def call() -> Any:
        net = model if model is not None else TinyNet()
        options: dict[str, Any] = {"epochs": 1, "progress": False,
                                   "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}
        options.update(kwargs)
        return fit(net, loader if loader is not None else TensorLoader(_data(), 4), **options)

    return call


_X, _Y = _data()
_OTHER = TinyNet()
_NO_CUDA = "needs a machine without CUDA"
LABELS = r"labels must be class indices in \[0, 3\) for a model with 3 outputs, got labels from "
FP16 = re.escape("precision='16' (float16 with a gradient scaler) needs a CUDA device, got "
                 "'cpu'; use precision='bf16' on the CPU")

TRAINING_CASES: list[Any] = [
    ("empty-tensor-loader", _fit(TensorLoader((_X[:0], _Y[:0]), 4)), ValueError,
     re.escape("train_loader is empty (0 batches); check the dataset and batch_size")),
    ("empty-dataloader", _fit(DataLoader(TensorDataset(_X[:0], _Y[:0]), batch_size=4)),
     ValueError, re.escape("train_loader is empty (0 batches)")),
    ("empty-generator", _fit(iter([])), ValueError, "the training loader yielded no batch"),
    ("seed-too-large", lambda: tp3nets.seed_everything(2**64), ValueError,
     re.escape("seed must lie in [-2**63, 2**64), got 18446744073709551616")),
    ("split-val-size-bool", lambda: tp3nets.data.train_val_split(
        torch.utils.data.TensorDataset(_X, _Y), True), TypeError,
     re.escape("train_val_split expects val_size to be a count, or a fraction in (0, 1), "
               "got True")),
    ("generator-for-two-epochs", _fit((b for b in [(_X, _Y)]), epochs=2), ValueError,
     re.escape("train_loader is a one-shot iterator (generator), which would be empty from "
               "epoch 2 on")),
    ("empty-val-loader", _fit(val_loader=[]), ValueError, re.escape("val_loader is empty")),
    ("empty-evaluate", lambda: evaluate(TinyNet(), []), ValueError,
     re.escape("loader is empty (0 batches)")),
    ("not-iterable", _fit(5), TypeError,
     "train_loader must be an iterable of batches, got int"),
    ("bare-tensor-batches", _fit([_X]), ValueError,
     re.escape("expected batches of (inputs, target), got Tensor; pass unpack=")),
    ("dict-batch-keys", _fit([{"pixels": _X, "digits": _Y}]), ValueError,
     re.escape("cannot find inputs and targets in a batch with keys ['digits', 'pixels']")),
    *[(f"epochs={e!r}", _fit(epochs=e), ValueError,
       re.escape(f"fit expects epochs to be a positive int, got {e!r}"))
      for e in (0, -3, 2.0, "3", None, True)],
    ("target-2d", _fit(TensorLoader((_X, torch.zeros(8, 5)), 4)), ValueError,
     re.escape("CrossEntropyLoss cannot take model output (4, 3) with target (4, 5) float32")),
    ("target-float", _fit(TensorLoader((_X, _Y.float()), 4)), ValueError,
     re.escape("CrossEntropyLoss cannot take model output (4, 3) with target (4,) float32: ")
     + ".*" + re.escape("; class indices must be integers (int64): pass target.long()")),
    ("target-batch-size", _fit([(_X[:4], _Y[:3])]), ValueError,
     re.escape("CrossEntropyLoss cannot take model output (4, 3) with target (3,) int64: "
               "Expected input batch_size (4) to match target batch_size (3)")),
    ("target-mse", _fit(loss_fn=nn.MSELoss(), metrics={}), ValueError,
     re.escape("MSELoss cannot take model output (4, 3) with target (4,) int64")),
    ("target-bce", _fit(TensorLoader((_X, _Y.float()), 4), loss_fn=nn.BCEWithLogitsLoss(),
                        metrics={}), ValueError,
     re.escape("BCEWithLogitsLoss cannot take model output (4, 3) with target (4,) float32")),
    ("loss-not-scalar", _fit(loss_fn=nn.CrossEntropyLoss(reduction="none")), ValueError,
     re.escape("loss_fn must return a scalar tensor (use reduction='mean'), got shape (4,)")),
    ("labels-negative", _fit(TensorLoader((_X, _Y - 1), 4)), ValueError, LABELS + "-1 to 1"),
    ("labels-too-big", _fit(TensorLoader((_X, _Y + 3), 4)), ValueError, LABELS + "3 to 5"),
    ("labels-too-big-in-batch-2", _fit(TensorLoader((_X, torch.tensor([0, 1, 2, 0, 1, 2, 0, 9])),
                                                    4)), ValueError, LABELS + "0 to 9"),
    ("labels-nll", _fit(TensorLoader((_X, _Y + 3), 4), loss_fn=nn.NLLLoss()), ValueError,
     LABELS + "3 to 5"),
    ("labels-evaluate", lambda: evaluate(TinyNet(), TensorLoader((_X, _Y + 5), 4)), ValueError,
     LABELS + "5 to 7"),
    ("model-input-shape", _fit(TensorLoader((torch.randn(8, 1, 9, 9), _Y), 4),
                               model=ConvNet2(num_classes=3)), ValueError,
     re.escape("ConvNet2 expects inputs of shape (N, 1, 28, 28), got (4, 1, 9, 9)")),
    ("fp16-fit", _fit(precision="16"), ValueError, FP16),
    ("fp16-evaluate", lambda: evaluate(TinyNet(), TensorLoader(_data(), 4), precision="16"),
     ValueError, FP16),
    ("fp16-predict", lambda: predict(TinyNet(), _X, precision="16"), ValueError, FP16),
    ("fp16-train-one-epoch", lambda: (lambda m: train_one_epoch(
        m, TensorLoader(_data(), 4), optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
        precision="16"))(TinyNet()), ValueError, FP16),
    ("precision-64", _fit(precision="64"), ValueError,
     re.escape("precision must be one of 32, bf16, 16, got '64'")),
    ("optimizer-none", _fit(optimizer=None), TypeError,
     re.escape("optimizer must be a torch.optim.Optimizer or a callable params -> Optimizer, "
               "got NoneType")),
    ("optimizer-of-another-model", _fit(optimizer=torch.optim.SGD(_OTHER.parameters(), lr=0.1)),
     ValueError, re.escape("the optimizer holds 4 parameter tensor(s) that are not the "
                           "model's: it was built for another model")),
    ("scheduler-of-another-optimizer",
     _fit(scheduler=torch.optim.lr_scheduler.StepLR(
         torch.optim.SGD(_OTHER.parameters(), lr=0.1), 1)), ValueError,
     re.escape("the scheduler was built for another optimizer than the one given")),
    ("scheduler-factory-of-another-model",
     _fit(scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(
         torch.optim.SGD(_OTHER.parameters(), lr=0.1), 1)), ValueError,
     re.escape("the scheduler was built for another optimizer")),
    ("scheduler-string", _fit(scheduler="cosine"), TypeError,
     re.escape("scheduler must have a step() method (or be a callable optimizer -> scheduler), "
               "got str")),
    ("plateau-per-step", _fit(scheduler=lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o),
                              scheduler_interval="step"), ValueError,
     "ReduceLROnPlateau needs scheduler_interval='epoch'"),
    ("scheduler-interval", _fit(scheduler_interval="batch"), ValueError,
     "scheduler_interval must be 'epoch' or 'step', got 'batch'"),
    ("grad-clip-negative", _fit(grad_clip_norm=-1.0), ValueError,
     "fit expects grad_clip_norm to be a positive number, got -1.0"),
    ("accumulate-zero", _fit(accumulate_grad_batches=0), ValueError,
     "fit expects accumulate_grad_batches to be a positive int, got 0"),
    ("metrics-list", _fit(metrics=["acc"]), TypeError,
     "metrics must be a mapping name -> metric, got list"),
    ("metric-not-callable", _fit(metrics={"f1": 3}), TypeError,
     re.escape("metric 'f1' must be callable(preds, target) or have update and compute")),
    ("metric-named-loss", _fit(metrics={"loss": accuracy}), ValueError,
     "'loss' is always reported; give the metric another name"),
    *[(f"metric-named-{name}", _fit(metrics={name: accuracy}), ValueError,
       re.escape(f"metric name {name!r} is taken: every history row has 'epoch', 'lr', "
                 "'time' and 'val_' + each figure"))
      for name in ("epoch", "lr", "time", "val_acc")],
    ("metric-name-not-str", _fit(metrics={3: accuracy}), TypeError,
     "metric names must be non-empty strings, got 3"),
    ("callbacks-not-a-list", _fit(callbacks=EarlyStopping("loss")), TypeError,
     re.escape("callbacks must be a list of callbacks, got EarlyStopping; write "
               "callbacks=[...] even for one")),
    ("closure-optimizer-accumulating", _fit(optimizer=lambda p: torch.optim.LBFGS(p),
                                            accumulate_grad_batches=2), ValueError,
     "LBFGS evaluates the loss itself, through a closure, once or more a step: it takes "
     "accumulate_grad_batches=1"),
    *[(f"metric-returns-{kind}", _fit(metrics={"f1": lambda p, t, v=value: v}), TypeError,
       re.escape(f"metric 'f1' must return the batch's figure as a number or a one-element "
                 f"tensor, got {kind}"))
      for kind, value in (("a tensor of shape (3,)", torch.ones(3)), ("NoneType", None),
                          ("str", "good"))],
    ("model-returns-tuple", _fit(model=_TupleNet()), ValueError,
     re.escape("CrossEntropyLoss cannot take model output tuple with target (4,) int64: ")
     + ".*" + re.escape("; the model returns a tuple: pass a loss_fn that takes it, or wrap "
                        "the model to return the logits alone")),
    ("predict-model-returns-dict", lambda: predict(_TupleNet(as_dict=True), _X), TypeError,
     "predict needs a model that returns a tensor, got dict"),
    ("predict-unbatched-samples", lambda: predict(TinyNet(), list(_X)), ValueError,
     re.escape("the model's output (3,) does not start with the batch's size 8: predict "
               "needs batches (N, ...)")),
    ("predict-unpack-inputs-only", lambda: predict(
        TinyNet(), TensorLoader(_data(), 4), unpack=lambda b: b[0]), TypeError,
     re.escape("unpack must return (inputs, target) as for fit (the target may be None), "
               "got Tensor")),
    *[(f"split-val-size-{v}", lambda v=v: tp3nets.data.train_val_split(
        torch.utils.data.TensorDataset(_X, _Y), v), ValueError,
       f"expects val_size to be a count, or a fraction in \\(0, 1\\), got {v}")
      for v in (float("inf"), float("nan"))],
    ("grad-clip-nan", _fit(grad_clip_norm=float("nan")), ValueError,
     "fit expects grad_clip_norm to be a positive number, got nan"),
    ("epochs-numpy", _fit(epochs=np.int64(0)), ValueError,
     re.escape("fit expects epochs to be a positive int, got np.int64(0)")),
    ("one-epoch-grad-clip", lambda: train_one_epoch(
        _OTHER, TensorLoader(_data(), 4), optimizer=torch.optim.SGD(_OTHER.parameters(), lr=0.1),
        grad_clip_norm=-1.0), ValueError,
        "train_one_epoch expects grad_clip_norm to be a positive number, got -1.0"),
    ("one-epoch-foreign-optimizer", lambda: train_one_epoch(
        TinyNet(), TensorLoader(_data(), 4),
        optimizer=torch.optim.SGD(_OTHER.parameters(), lr=0.1)), ValueError,
     "the optimizer holds 4 parameter tensor.s. that are not the model's"),
    ("one-epoch-optimizer-factory", lambda: train_one_epoch(
        TinyNet(), TensorLoader(_data(), 4), optimizer=lambda p: torch.optim.SGD(p, lr=0.1)),
     TypeError, "optimizer must be a torch.optim.Optimizer, got function"),
    ("one-epoch-foreign-scheduler", lambda: train_one_epoch(
        _OTHER, TensorLoader(_data(), 4), optimizer=torch.optim.SGD(_OTHER.parameters(), lr=0.1),
        scheduler=torch.optim.lr_scheduler.StepLR(
            torch.optim.SGD(TinyNet().parameters(), lr=0.1), 1)), ValueError,
     "the scheduler was built for another optimizer"),
    ("resume-missing-file", _fit(resume_from="/nonexistent/last.pt"), FileNotFoundError,
     re.escape("checkpoint file not found: '/nonexistent/last.pt'")),
    ("loss-inf", _fit(TensorLoader((torch.where(torch.arange(8)[:, None] == 6, float("inf"), _X),
                                    _Y), 4)), FloatingPointError,
     r"the training loss became nan at batch 2; lower the learning rate"),
    ("loss-diverges", _fit(TensorLoader((_X * 1e30, _Y), 4), epochs=3,
                           optimizer=lambda p: torch.optim.SGD(p, lr=1e30)), FloatingPointError,
     r"the training loss became (nan|inf) at batch \d+; lower the learning rate"),
    ("tensor-loader-lengths", lambda: TensorLoader((_X, _Y[:5]), 4), ValueError,
     re.escape("TensorLoader tensors differ in their first dimension: (8, 8), (5,)")),
    ("tensor-loader-batch-size", lambda: TensorLoader((_X, _Y), 0), ValueError,
     "TensorLoader expects batch_size to be a positive int, got 0"),
    ("predict-batch-size", lambda: predict(TinyNet(), _X, batch_size=0), ValueError,
     "predict expects batch_size to be a positive int, got 0"),
    ("device-unknown", _fit(device="tpu"), ValueError, r"unknown device 'tpu'"),
    pytest.param(
        "device-cuda-missing", _fit(device="cuda"), ValueError, r"CUDA is not available",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason=_NO_CUDA)),
]


def _case_id(case: Any) -> str:
    return str(case.values[0] if hasattr(case, "values") else case[0])


@pytest.mark.parametrize(("case", "call", "exc", "pattern"), TRAINING_CASES,
                         ids=[_case_id(c) for c in TRAINING_CASES])
def test_training_input_is_refused_clearly(
    record_property: Recorder, case: str, call: Callable[[], Any], exc: type[BaseException],
    pattern: str,
) -> None:
    """fit, evaluate, predict and TensorLoader refuse each bad argument with a clear error."""
    record_property("bad_input", "training")
    _expect(exc, pattern, call)


class _CountingLoss(nn.CrossEntropyLoss):
    calls = 0

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        type(self).calls += 1
        return super().forward(input, target)


def test_labels_outside_the_classes_are_caught_before_the_loss(record_property: Recorder) -> None:
    """Bad labels of the first batch are refused before the loss runs (where, on a GPU, they
    would end the process with a device-side assert)."""
    record_property("bad_input", "training")
    _CountingLoss.calls = 0
    _expect(ValueError, LABELS + r"\d to \d",
            _fit(TensorLoader((_X, _Y + 3), 4), loss_fn=_CountingLoss()))
    assert _CountingLoss.calls == 0


def test_an_empty_batch_among_others_is_skipped(record_property: Recorder) -> None:
    """A 0-sample batch in a loader counts for nothing: evaluate and fit give the results of
    the same loader without it."""
    record_property("bad_input", "training")
    model = TinyNet()
    batches = [(_X[:4], _Y[:4]), (_X[:0], _Y[:0]), (_X[4:], _Y[4:])]
    without = [batches[0], batches[2]]
    assert evaluate(model, batches) == evaluate(model, without)
    _fit(batches, model=TinyNet())()


# --------------------------------------------------------------------------------------
# weights: names


WEIGHT_NAME_CASES: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    ("model-typo", lambda: tp3nets.get_model("convnet5"), ValueError,
     re.escape("unknown model 'convnet5'; did you mean convnet4, convnet3, convnet2? "
               "(available: convnet2, convnet3, convnet4, multinomial_logistic_regression)")),
    ("model-dash", lambda: tp3nets.get_model("ConvNet-4"), ValueError,
     re.escape("unknown model 'ConvNet-4'; did you mean convnet4")),
    ("model-unrelated", lambda: tp3nets.get_model("resnet50"), ValueError,
     re.escape("unknown model 'resnet50' (available: convnet2, convnet3, convnet4, "
               "multinomial_logistic_regression)")),
    ("model-weights-typo", lambda: tp3nets.get_model_weights("convnet44"), ValueError,
     re.escape("unknown model 'convnet44'; did you mean convnet4")),
    ("member-typo", lambda: tp3nets.convnet2(weights="MNIST-V1"), ValueError,
     re.escape("unknown weights 'MNIST-V1' for ConvNet2_Weights; available: MNIST_V1, "
               "MNIST_V2, DEFAULT; did you mean MNIST_V1, MNIST_V2?")),
    ("member-unrelated", lambda: tp3nets.convnet3(weights="IMAGENET1K_V1"), ValueError,
     re.escape("unknown weights 'IMAGENET1K_V1' for ConvNet3_Weights; available: MNIST_V1, "
               "MNIST_V2, DEFAULT")),
    ("qualified-typo", lambda: tp3nets.get_weight("ConvNet4_Weight.DEFAULT"), ValueError,
     re.escape("unknown weights 'ConvNet4_Weight.DEFAULT'; did you mean "
               "ConvNet4_Weights.DEFAULT")),
    ("qualified-member-typo", lambda: tp3nets.get_weight("ConvNet4_Weights.MNIST_V4"),
     ValueError, re.escape("unknown weights 'MNIST_V4' for ConvNet4_Weights; available: "
                           "MNIST_V1, MNIST_V2, MNIST_V3, MNIST_REAL_V8, DEFAULT; did you "
                           "mean MNIST_V3, MNIST_V2, MNIST_V1?")),
    ("unqualified", lambda: tp3nets.get_weight("DEFAULT"), ValueError,
     re.escape("unknown weights 'DEFAULT'; did you mean ConvNet2_Weights.DEFAULT, "
               "ConvNet3_Weights.DEFAULT, ConvNet4_Weights.DEFAULT?")),
    ("member-of-another-model", lambda: tp3nets.convnet2(weights=tp3nets.ConvNet4_Weights.DEFAULT),
     TypeError, re.escape("weights must be a ConvNet2_Weights member, got "
                          "ConvNet4_Weights.MNIST_REAL_V8 (weights of another model)")),
    ("weights-int", lambda: tp3nets.convnet4(weights=3), TypeError,
     re.escape("weights must be None, a ConvNet4_Weights member or its name, got 3")),
    *[(f"num-classes-{name}", lambda n=name: tp3nets.get_model(n, weights="DEFAULT",
                                                               num_classes=5),
       ValueError, re.escape(f"{CLASS[name]}_Weights."
                             f"{tp3nets.get_model_weights(name).DEFAULT.name} has 10 classes "
                             f"but num_classes=5 "
                             "was asked for; build with the pretrained head and call "
                             "model.reset_classifier(5) for a new task"))
      for name in MODELS],
]


@pytest.mark.parametrize(("call", "exc", "pattern"), [c[1:] for c in WEIGHT_NAME_CASES],
                         ids=[c[0] for c in WEIGHT_NAME_CASES])
def test_weight_name_is_refused_clearly(
    record_property: Recorder, call: Callable[[], Any], exc: type[BaseException], pattern: str
) -> None:
    """Unknown model and weight names suggest close matches; a conflicting class count says
    how to get a new head."""
    record_property("bad_input", "weights")
    _expect(exc, pattern, call)


def test_get_weight_ignores_case() -> None:
    """Qualified weight names match in any case, as model names and member names do."""
    assert tp3nets.get_weight("convnet4_weights.default") is (
        tp3nets.ConvNet4_Weights.MNIST_REAL_V8)
    assert tp3nets.get_weight("convnet4_weights.mnist_v1") is tp3nets.ConvNet4_Weights.MNIST_V1


# --------------------------------------------------------------------------------------
# weights: tampered bundled files


def _tamper(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "empty":
        return b""
    if how == "appended":
        return data + b"\x00"
    flipped = bytearray(data)
    flipped[9] ^= 0x20  # one bit of the safetensors header
    return bytes(flipped)


@pytest.mark.parametrize("how", ["truncated", "empty", "appended", "header-bit"])
@pytest.mark.parametrize("name", MODELS)
def test_tampered_bundled_weights_are_refused(
    record_property: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
    how: str,
) -> None:
    """A truncated, emptied, extended or bit-flipped copy of a bundled file fails its sha256
    check; the error names the file and both digests, and no model is built from it."""
    record_property("bad_input", "weights")
    member = tp3nets.get_model_weights(name).DEFAULT
    original = _api._weights_dir().joinpath(member.file).read_bytes()
    (tmp_path / member.file).write_bytes(_tamper(original, how))
    monkeypatch.setattr(_api, "_weights_dir", lambda: tmp_path)
    error = _expect(CheckpointError, re.escape(f"weights file {member.file!r}") +
                    r" \(.*\) is corrupt or was modified: its sha256 is [0-9a-f]{64}, expected " +
                    member.sha256 + "; reinstall tp3nets",
                    lambda: tp3nets.get_model(name, weights="DEFAULT"))
    assert str(tmp_path) in str(error)


# --------------------------------------------------------------------------------------
# weights: user files


def _small_state() -> dict[str, Tensor]:
    torch.manual_seed(0)
    return dict(MultinomialLogisticRegression(16, 3).state_dict())


def _write(state: dict[str, Tensor], path: Path) -> bytes:
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path.read_bytes()


NOT_READABLE = {
    ".safetensors": r"is not a readable safetensors file|is not a safetensors file",
    ".pt": r"is not a safe, readable state dict|is not a PyTorch \(torch\.save\) or "
           r"safetensors file",
}


@pytest.mark.parametrize("how", ["truncated-half", "truncated-header", "empty", "end-damaged"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_damaged_user_file_is_refused(
    record_property: Recorder, tmp_path: Path, suffix: str, how: str
) -> None:
    """A truncated, emptied or structurally damaged weights file gives a format error naming
    the file."""
    record_property("bad_input", "weights")
    path = tmp_path / f"net{suffix}"
    data = _write(_small_state(), path)
    if how == "truncated-half":
        data = data[: len(data) // 2]
    elif how == "truncated-header":
        data = data[:40]
    elif how == "empty":
        data = b""
    elif suffix == ".pt":  # the zip's central directory, at the end, zeroed
        data = data[:-20] + bytes(20)
    else:  # the last byte of the last tensor missing
        data = data[:-1]
    path.write_bytes(data)
    _expect(CheckpointError, re.escape(repr(str(path))) + f" ({NOT_READABLE[suffix]})",
            lambda: tp3nets.multinomial_logistic_regression(weights=str(path), input_size=16,
                                                            num_classes=3))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_bit_flip_in_user_file_data_is_caught_by_its_sha256(
    record_property: Recorder, tmp_path: Path, suffix: str
) -> None:
    """Neither format checksums its tensors, so a flipped bit in the data loads as a changed
    weight: load_state_dict(..., sha256=...) catches it and names the file and both digests."""
    import hashlib

    record_property("bad_input", "weights")
    state = _small_state()
    path = tmp_path / f"net{suffix}"
    data = bytearray(_write(state, path))
    digest = hashlib.sha256(data).hexdigest()
    raw = state["classifier.weight"].numpy().tobytes()
    at = bytes(data).find(raw)
    assert at > 0
    data[at + 5] ^= 0x04  # one bit of one weight
    path.write_bytes(bytes(data))
    loaded = load_state_dict(path)  # defined behaviour: no checksum without sha256
    assert not torch.equal(loaded["classifier.weight"], state["classifier.weight"])
    actual = hashlib.sha256(data).hexdigest()
    _expect(CheckpointError, re.escape(f"{str(path)!r} is corrupt or was modified: its sha256 is "
                                       f"{actual}, expected {digest}"),
            lambda: load_state_dict(path, sha256=digest))


PAIRS = [(a, b) for a in MODELS for b in MODELS if a != b]


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-into-{b}" for a, b in PAIRS])
def test_weights_of_another_architecture_list_what_differs(
    record_property: Recorder, tmp_path: Path, source: str, target: str
) -> None:
    """A weights file of another model names the missing, unexpected and mis-shaped keys."""
    record_property("bad_input", "weights")
    path = tmp_path / f"{source}.safetensors"
    save_file(dict(tp3nets.get_model(source).state_dict()), str(path))
    theirs = load_state_dict(path)  # in the file's order (safetensors sorts the keys)
    own = tp3nets.get_model(target).state_dict()
    error = _expect(CheckpointError, re.escape(f"{path} does not fit {CLASS[target]}: "),
                    lambda: tp3nets.get_model(target, weights=str(path)))
    message = str(error)
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    mismatched = [k for k in own if k in theirs and theirs[k].shape != own[k].shape]
    assert missing or unexpected or mismatched
    if missing:
        assert "missing keys: " + ", ".join(missing[:8]) in message
    if unexpected:
        assert "unexpected keys: " + ", ".join(unexpected[:8]) in message
    if mismatched:
        assert f"{mismatched[0]} {tuple(theirs[mismatched[0]].shape)} vs " in message


def test_head_of_another_size_points_to_num_classes(record_property: Recorder,
                                                     tmp_path: Path) -> None:
    """A file whose head has another class count says how many classes it has."""
    record_property("bad_input", "weights")
    path = tmp_path / "three.safetensors"
    save_file(dict(tp3nets.convnet3(num_classes=3).state_dict()), str(path))
    _expect(CheckpointError, r"the file has 3 classes; build the model with num_classes=3",
            lambda: tp3nets.convnet3(weights=str(path)))


# --------------------------------------------------------------------------------------
# pickles that carry code


class _Payload:
    """Unpickling it runs code that creates ``marker``: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Files that run the payload when unpickled, in each way a weights file can be written."""
    state: dict[str, Any] = dict(MultinomialLogisticRegression(16, 3).state_dict())
    state["classifier.bias"] = _Payload(marker)
    files = {}
    files["state-dict.pt"] = folder / "state.pt"
    torch.save(state, files["state-dict.pt"])
    files["legacy-format.pth"] = folder / "legacy.pth"
    torch.save(state, files["legacy-format.pth"], _use_new_zipfile_serialization=False)
    files["raw-pickle.bin"] = folder / "raw.bin"
    files["raw-pickle.bin"].write_bytes(pickle.dumps(state, protocol=2))
    files["named-safetensors"] = folder / "disguised.safetensors"
    torch.save(state, files["named-safetensors"])
    checkpoint = make_checkpoint(MultinomialLogisticRegression(16, 3), None, None, None, 1, None)
    checkpoint["history"] = _Payload(marker)
    files["training-checkpoint"] = folder / "last.pt"
    torch.save(checkpoint, files["training-checkpoint"])
    return files


EVIL = ["state-dict.pt", "legacy-format.pth", "raw-pickle.bin", "named-safetensors",
        "training-checkpoint"]


@pytest.mark.parametrize("kind", EVIL)
def test_pickle_that_carries_code_is_refused_and_never_runs(
    record_property: Recorder, tmp_path: Path, kind: str
) -> None:
    """A weights file or checkpoint whose pickle would run code is refused by every reader
    (load_state_dict, the builders, load_checkpoint, fit's resume_from); the code never runs."""
    record_property("bad_input", "weights")
    marker = tmp_path / "code-ran"
    path = _evil_files(tmp_path, marker)[kind]
    readers: list[Callable[[], Any]] = [
        lambda: load_state_dict(path),
        lambda: tp3nets.multinomial_logistic_regression(weights=str(path), input_size=16,
                                                        num_classes=3),
        lambda: load_checkpoint(path),
        _fit(TensorLoader((torch.randn(4, 16), torch.zeros(4, dtype=torch.long)), 2),
             model=MultinomialLogisticRegression(16, 3), resume_from=path),
    ]
    for read in readers:
        _expect(CheckpointError, re.escape(repr(str(path))) + " is not a", read)
    assert not marker.exists()


def test_the_payload_is_live(tmp_path: Path) -> None:
    """The files above do run code under an unsafe load: the refusal is what protects."""
    marker = tmp_path / "code-ran"
    path = _evil_files(tmp_path, marker)["state-dict.pt"]
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_refused_pickle_names_the_code_it_would_run(record_property: Recorder,
                                                    tmp_path: Path) -> None:
    """load_state_dict's error names the global the pickle asked for."""
    record_property("bad_input", "weights")
    path = _evil_files(tmp_path, tmp_path / "m")["state-dict.pt"]
    _expect(CheckpointError, r"never unpickles other objects.*GLOBAL (builtins\.)?exec",
            lambda: load_state_dict(path))


# --------------------------------------------------------------------------------------
# full training checkpoints


def _checkpoint_file(folder: Path) -> Path:
    torch.manual_seed(0)
    model = MultinomialLogisticRegression(16, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return save_checkpoint(make_checkpoint(model, opt, None, None, 1, None), folder / "last.pt")


CHECKPOINT_CASES: list[Any] = [
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
     r"is not a readable tp3nets checkpoint"),
    ("zip-end-zeroed", lambda p: p.write_bytes(p.read_bytes()[:-20] + bytes(20)),
     r"is not a readable tp3nets checkpoint"),
    ("safetensors", lambda p: save_file(dict(ConvNet2().state_dict()), str(p)),
     re.escape("is not a tp3nets training checkpoint")),
    ("bare-state-dict", lambda p: torch.save(ConvNet2().state_dict(), p),
     re.escape("is not a tp3nets training checkpoint (for bare weights use "
               "tp3nets.load_state_dict)")),
    pytest.param("safetensors-named-pt", lambda p: save_file(dict(ConvNet2().state_dict()),
                                                             str(p)),
                 r"is not a (PyTorch|tp3nets training checkpoint)"),
    pytest.param("text-file", lambda p: p.write_text("hello"),
                 r"is not a (PyTorch|tp3nets training checkpoint)"),
    pytest.param("empty-file", lambda p: p.write_bytes(b""),
                 r"is not a (PyTorch|tp3nets training checkpoint)"),
    pytest.param("pickled-code", lambda p: torch.save(
        {"format": "tp3nets.checkpoint/1", "x": _Payload(p.with_suffix(".ran"))}, p),
        r"is not a readable tp3nets checkpoint: .*GLOBAL (builtins\.)?exec"),
]


@pytest.mark.parametrize(("case", "damage", "pattern"), CHECKPOINT_CASES,
                         ids=[_case_id(c) for c in CHECKPOINT_CASES])
def test_bad_checkpoint_file_is_refused_clearly(
    record_property: Recorder, tmp_path: Path, case: str, damage: Callable[[Path], Any],
    pattern: str,
) -> None:
    """load_checkpoint (and so fit's resume_from) names the file and why it cannot be used."""
    record_property("bad_input", "checkpoints")
    path = _checkpoint_file(tmp_path)
    if case == "safetensors":  # a real .safetensors name: torch.load reads those itself
        path = path.with_suffix(".safetensors")
    damage(path)
    _expect(CheckpointError, re.escape(repr(str(path))) + " " + pattern,
            lambda: load_checkpoint(path))
    assert not path.with_suffix(".ran").exists()


@pytest.mark.parametrize("other", ["class", "num_classes"])
def test_resume_from_a_checkpoint_of_another_model(
    record_property: Recorder, tmp_path: Path, other: str
) -> None:
    """Resuming another architecture, or another class count, names what does not fit."""
    record_property("bad_input", "checkpoints")
    path = _checkpoint_file(tmp_path)
    model = TinyNet() if other == "class" else MultinomialLogisticRegression(16, 5)
    pattern = (re.escape(f"{path} was saved from a MultinomialLogisticRegression, not a TinyNet")
               if other == "class" else
               re.escape(f"{path} does not fit MultinomialLogisticRegression: shape mismatches "
                         "(file vs model): classifier.weight (3, 16) vs (5, 16)"))
    x = torch.randn(4, 16 if other != "class" else 8)
    _expect(CheckpointError, pattern,
            _fit(TensorLoader((x, torch.zeros(4, dtype=torch.long)), 2), model=model,
                 resume_from=path, epochs=2))


# --------------------------------------------------------------------------------------
# the command line


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bad files for the command line, made once."""
    d = tmp_path_factory.mktemp("cli")
    (d / "empty-dir").mkdir()
    (d / "a-file").write_text("not a folder")
    (d / "notes.png").write_text("not an image")
    (d / "empty.png").write_bytes(b"")
    (d / "cut.png").write_bytes(DIGIT.read_bytes()[:150])
    (d / "folder.png").mkdir()
    state = dict(tp3nets.convnet2().state_dict())
    save_file(state, str(d / "good.safetensors"))
    (d / "cut.safetensors").write_bytes((d / "good.safetensors").read_bytes()[:1000])
    (d / "garbage.pt").write_bytes(b"\x00\x01 definitely not a checkpoint")
    save_file(dict(tp3nets.convnet3().state_dict()), str(d / "c3.safetensors"))
    evil: dict[str, Any] = dict(state)
    evil["classifier.1.bias"] = _Payload(d / "code-ran")
    torch.save(evil, d / "evil.pt")
    torch.save(make_checkpoint(tp3nets.convnet3(), None, None, None, 1, None), d / "c3-ckpt.pt")
    return d


def _cli_cases(d: Path) -> list[tuple[str, list[str], list[str]]]:
    """(id, argv, needles of the one stderr line)."""
    digit = str(DIGIT)
    data = ["--data", str(d / "empty-dir")]
    return [
        ("no-command", [], ["a command is required"]),
        ("unknown-command", ["evalute"], ["unknown command 'evalute'", "did you mean evaluate"]),
        ("unknown-global-option", ["--bogus"], ["unrecognized arguments: --bogus"]),
        ("list-extra", ["list", "extra"], ["unrecognized arguments: extra"]),
        ("list-unknown-option", ["list", "--csv"], ["unrecognized arguments: --csv"]),
        ("info-missing-model", ["info"], ["the following arguments are required: NAME"]),
        ("info-unknown-model", ["info", "convnet5"], ["unknown model 'convnet5'"]),
        ("info-unknown-option", ["info", "convnet2", "--yaml"], ["unrecognized arguments"]),
        ("train-missing-model", ["train"], ["required: NAME"]),
        ("train-epochs-zero", ["train", "convnet2", "--epochs", "0"],
         ["--epochs", "expected a positive number, got '0'"]),
        ("train-epochs-float", ["train", "convnet2", "--epochs", "1.5"],
         ["--epochs", "expected an integer, got '1.5'"]),
        ("train-batch-size-text", ["train", "convnet2", "--batch-size", "abc"],
         ["--batch-size", "expected an integer, got 'abc'"]),
        ("train-lr-negative", ["train", "convnet2", "--lr", "-0.1"],
         ["--lr", "expected a positive number"]),
        ("train-weight-decay-negative", ["train", "convnet2", "--weight-decay", "-1"],
         ["--weight-decay", "expected a number >= 0, got '-1'"]),
        ("train-label-smoothing-nan", ["train", "convnet2", "--label-smoothing", "nan"],
         ["--label-smoothing", "expected a number >= 0, got 'nan'"]),
        ("train-val-size-negative", ["train", "convnet2", "--val-size", "-5"],
         ["--val-size", "expected an integer >= 0, got '-5'"]),
        ("train-seed-text", ["train", "convnet2", "--seed", "x"],
         ["--seed", "invalid int value: 'x'"]),
        ("train-optimizer", ["train", "convnet2", "--optimizer", "rmsprop"],
         ["invalid choice: 'rmsprop'"]),
        ("train-scheduler", ["train", "convnet2", "--scheduler", "linear"],
         ["invalid choice: 'linear'"]),
        ("train-precision", ["train", "convnet2", "--precision", "64"], ["invalid choice: '64'"]),
        ("train-missing-value", ["train", "convnet2", "--epochs"],
         ["argument --epochs: expected one argument"]),
        ("train-device", ["train", "convnet2", *data, "--device", "tpu"],
         ["unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"]),
        ("train-data-missing", ["train", "convnet2", "--data", str(d / "nope")],
         ["data folder", "nope", "does not exist"]),
        ("train-data-is-file", ["train", "convnet2", "--data", str(d / "a-file")],
         ["data folder", "is a file, not a folder"]),
        ("train-data-without-mnist", ["train", "convnet2", *data, "--scheduler", "constant"],
         ["MNIST not found in", "empty-dir"]),
        ("train-weights-unknown", ["train", "convnet2", *data, "--weights", "MNIST_V9"],
         ["unknown weights 'MNIST_V9'", "did you mean MNIST_V2, MNIST_V1"]),
        ("train-weights-truncated", ["train", "convnet2", *data, "--weights",
                                     str(d / "cut.safetensors")],
         ["cut.safetensors", "is not a readable safetensors file"]),
        ("train-resume-missing", ["train", "convnet2", *data, "--resume", str(d / "no.pt")],
         ["checkpoint to resume not found", "no.pt"]),
        ("train-resume-garbage", ["train", "convnet2", *data, "--resume",
                                  str(d / "garbage.pt")],
         ["garbage.pt", "is not a PyTorch file (torch.save)"]),
        ("train-output-dir", ["train", "convnet2", *data, "--output", str(d / "empty-dir")],
         ["--output", "is a directory; give a file name"]),
        ("train-output-under-file", ["train", "convnet2", *data, "--output",
                                     str(d / "a-file" / "last.pt")],
         ["--output", "cannot be written", "is a file, not a folder"]),
        ("train-weights-out-suffix", ["train", "convnet2", *data, "--weights-out", "w.pt"],
         ["--weights-out writes a .safetensors file"]),
        ("train-weights-out-under-file", ["train", "convnet2", *data, "--weights-out",
                                          str(d / "a-file" / "w.safetensors")],
         ["--weights-out", "is a file, not a folder"]),
        ("evaluate-missing-model", ["evaluate"], ["required: NAME"]),
        ("evaluate-split", ["evaluate", "convnet2", "--split", "train"],
         ["invalid choice: 'train'"]),
        ("evaluate-batch-size-zero", ["evaluate", "convnet2", "--batch-size", "0"],
         ["--batch-size", "expected a positive number"]),
        ("evaluate-limit-negative", ["evaluate", "convnet2", "--limit", "-3"],
         ["--limit", "expected a positive number"]),
        ("evaluate-data-missing", ["evaluate", "convnet2", "--data", str(d / "nope")],
         ["data folder", "does not exist"]),
        ("evaluate-data-without-mnist", ["evaluate", "convnet2", *data], ["MNIST not found"]),
        ("evaluate-weights-unknown", ["evaluate", "convnet2", *data, "--weights", "MNIST_V3"],
         ["unknown weights 'MNIST_V3'", "or give the path of a .safetensors or .pt file"]),
        ("evaluate-weights-missing", ["evaluate", "convnet2", *data, "--weights",
                                      str(d / "none.safetensors")],
         ["weights file not found", "none.safetensors"]),
        ("evaluate-weights-garbage", ["evaluate", "convnet2", *data, "--weights",
                                      str(d / "garbage.pt")],
         ["garbage.pt", "is not a PyTorch (torch.save) or safetensors file"]),
        ("evaluate-weights-text", ["evaluate", "convnet2", *data, "--weights",
                                   str(d / "notes.png")],
         ["notes.png", "is not a PyTorch (torch.save) or safetensors file"]),
        ("evaluate-weights-other-model", ["evaluate", "convnet2", *data, "--weights",
                                          str(d / "c3.safetensors")],
         ["does not fit ConvNet2", "missing keys", "unexpected keys"]),
        ("evaluate-weights-checkpoint-of-other-model",
         ["evaluate", "convnet2", *data, "--weights", str(d / "c3-ckpt.pt")],
         ["c3-ckpt.pt does not fit ConvNet2"]),
        ("predict-missing-image", ["predict", "convnet2"], ["required: IMAGE"]),
        ("predict-top-zero", ["predict", "convnet2", digit, "--top", "0"],
         ["--top", "expected a positive number"]),
        ("predict-top-text", ["predict", "convnet2", digit, "--top", "x"],
         ["--top", "expected an integer, got 'x'"]),
        ("predict-top-too-many", ["predict", "convnet2", digit, "--top", "11"],
         ["--top must be between 1 and 10, got 11"]),
        ("predict-image-missing", ["predict", "convnet2", digit, str(d / "absent.png")],
         ["image not found", "absent.png"]),
        ("predict-image-text", ["predict", "convnet2", str(d / "notes.png")],
         ["notes.png", "is not an image file that Pillow can read"]),
        ("predict-image-empty", ["predict", "convnet2", str(d / "empty.png")],
         ["empty.png", "is not an image file that Pillow can read"]),
        ("predict-image-truncated", ["predict", "convnet2", str(d / "cut.png")],
         ["cannot read image", "cut.png"]),
        ("predict-image-folder", ["predict", "convnet2", str(d / "folder.png")],
         ["folder.png", "is a directory, not an image file"]),
        ("predict-weights-member-of-other-model",
         ["predict", "convnet2", digit, "--weights", "ConvNet3_Weights.DEFAULT"],
         ["unknown weights 'ConvNet3_Weights.DEFAULT' for ConvNet2_Weights"]),
        ("predict-weights-pickled-code", ["predict", "convnet2", digit, "--weights",
                                          str(d / "evil.pt")],
         ["evil.pt", "never unpickles other objects", "GLOBAL exec"]),
        ("predict-device", ["predict", "convnet2", digit, "--device", "gpu"],
         ["unknown device 'gpu'"]),
        ("export-missing-output", ["export", "convnet2"], ["required: OUT"]),
        ("export-format", ["export", "convnet2", "x.onnx", "--format", "tflite"],
         ["invalid choice: 'tflite'"]),
        ("export-suffix", ["export", "convnet2", str(d / "model.bin")],
         ["cannot tell the format", "--format onnx"]),
        ("export-opset-text", ["export", "convnet2", "x.onnx", "--opset", "x"],
         ["--opset", "expected an integer, got 'x'"]),
        ("export-opset-unknown", ["export", MLR, str(d / "m.onnx"), "--opset", "999"],
         ["expects opset_version to be an int from 1 to", "got 999"]),
        ("export-method", ["export", "convnet2", "x.pt", "--method", "jit"],
         ["invalid choice: 'jit'"]),
        ("export-output-dir", ["export", "convnet2", str(d / "empty-dir"), "--format", "onnx"],
         ["is a directory"]),
        ("export-output-under-file", ["export", "convnet2", str(d / "a-file" / "m.pt")],
         ["cannot be written", "is a file, not a folder"]),
        ("export-weights-unknown", ["export", "convnet2", str(d / "m.pt"), "--weights", "V3"],
         ["unknown weights 'V3'"]),
    ]


CLI_IDS = [c[0] for c in _cli_cases(Path("/x"))]


@pytest.mark.parametrize("case", CLI_IDS)
def test_cli_error_is_one_line_and_status_2(
    record_property: Recorder, capsys: pytest.CaptureFixture[str], files: Path, case: str
) -> None:
    """Each bad command line gives exactly one 'tp3nets: error: …' line on stderr, nothing on
    stdout, no traceback, and exit status 2."""
    record_property("bad_input", "cli")
    argv, needles = next((a, n) for i, a, n in _cli_cases(files) if i == case)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert out == ""
    _one_error_line(err, *needles)
    assert not (files / "code-ran").exists()


def test_cli_unreadable_files(record_property: Recorder, capsys: pytest.CaptureFixture[str],
                              files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image or weights file that cannot be opened (permission denied) is one line, status 2.

    The tests may run as root, for whom file permissions do not apply: the refusal is made by
    ``open`` itself.
    """
    real_open = builtins.open
    locked = {str(DIGIT), str(files / "good.safetensors")}

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) in locked:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    real_os_open = os.open

    def guarded_os_open(file: Any, *args: Any, **kwargs: Any) -> int:
        if str(file) in locked:
            raise PermissionError(13, "Permission denied", str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: guarded_open(self, *a, **k))
    monkeypatch.setattr(os, "open", guarded_os_open)  # files read whole by tp3nets._io
    for argv, needles in (
        (["predict", "convnet2", str(DIGIT)], ["cannot read image", "Permission denied"]),
        (["predict", "convnet2", str(files / "notes.png"), "--weights",
          str(files / "good.safetensors")], ["Permission denied", "good.safetensors"]),
    ):
        record_property("bad_input", "cli")
        code = cli.main(argv)
        _out, err = capsys.readouterr()
        assert code == 2, err
        _one_error_line(err, *needles)


@pytest.mark.mnist
def test_cli_option_values_checked_against_the_data(
    record_property: Recorder, capsys: pytest.CaptureFixture[str], mnist_root: Path
) -> None:
    """A --val-size that leaves no training or no validation image is one clear line."""
    for argv in (["train", "convnet2", "--val-size", "60000"],
                 ["evaluate", "convnet2", "--split", "val", "--val-size", "0"]):
        record_property("bad_input", "cli")
        code = cli.main([*argv, "--data", str(mnist_root), "--device", "cpu"])
        _out, err = capsys.readouterr()
        assert code == 2
        _one_error_line(err, "val_size must leave both parts non-empty", "of 60000")


def test_cli_opset_the_exporter_cannot_write(record_property: Recorder,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    """An opset the exporter cannot convert to is one line (not a logged traceback and a file
    of another opset), and no file is left behind."""
    pytest.importorskip("onnxscript")
    record_property("bad_input", "cli")
    out_path = tmp_path / "m.onnx"
    code = cli.main(["export", MLR, str(out_path), "--opset", "3"])
    _out, err = capsys.readouterr()
    assert code == 2
    _one_error_line(err, "cannot write MultinomialLogisticRegression in opset 3",
                    "produced opset 18")
    assert not out_path.exists()


SUBPROCESS_CASES = [
    (["train", "convnet2", "--epochs", "many"], ["--epochs", "expected an integer"]),
    (["predict", "convnet3", "{notes}"], ["notes.png", "is not an image file"]),
    (["evaluate", "convnet2", "--weights", "{evil}", "--data", "{empty}"],
     ["evil.pt", "never unpickles other objects"]),
]


def test_cli_errors_reach_the_terminal_without_a_traceback(
    record_property: Recorder, files: Path
) -> None:
    """`python -m tp3nets …` as a real process: one stderr line, status 2, no traceback (the
    processes run side by side)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    names = {"notes": files / "notes.png", "evil": files / "evil.pt",
             "empty": files / "empty-dir"}
    procs = []
    for argv, needles in SUBPROCESS_CASES:
        record_property("bad_input", "cli")
        cmd = [sys.executable, "-m", "tp3nets", *(a.format(**names) for a in argv)]
        procs.append((subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True), needles))
    for proc, needles in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert out == ""
        _one_error_line(err, *needles)
    assert not (files / "code-ran").exists()



# --------------------------------------------------------------------------------------
# weights: files that lie (issue 18)


def _mlr_file(tmp_path: Path, name: str = "mlr.safetensors", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path = tmp_path / name
    _write(dict(MultinomialLogisticRegression().state_dict()), path)
    return path


def test_sha256_and_parse_read_the_same_bytes(
    record_property: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file swapped (atomically, by another process) right after its digest was computed
    still gives the weights that were verified, never the other version's."""
    import hashlib

    record_property("bad_input", "weights")
    path = _mlr_file(tmp_path, seed=0)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = load_state_dict(path)
    other = _mlr_file(tmp_path, "other.safetensors", seed=1)
    real_sha256 = hashlib.sha256
    swapped: list[bool] = []

    class Swapping:
        def __init__(self, *args: Any) -> None:
            self._h = real_sha256(*args)

        def update(self, data: Any) -> None:
            self._h.update(data)

        def hexdigest(self) -> str:
            value = self._h.hexdigest()
            if not swapped:  # the other version lands just after the first digest
                swapped.append(True)
                os.replace(other, path)
            return value

    monkeypatch.setattr(hashlib, "sha256", Swapping)
    got = load_state_dict(path, sha256=digest)
    assert swapped
    assert torch.equal(got["classifier.weight"], expected["classifier.weight"])


_MEMORY_SCRIPT = r"""
import os, resource, sys
import torch
import tp3nets
from tp3nets import CheckpointError, load_state_dict
path, mode = sys.argv[1], sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if mode == "sha256":
        load_state_dict(path, sha256="0" * 64)
    else:
        load_state_dict(path)
except CheckpointError as exc:
    message = str(exc)
else:
    message = "loaded"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, message)
"""


def _peak_mib(path: Path, mode: str) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(path), mode], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    mib, _, message = proc.stdout.strip().partition(" ")
    return int(mib), message


def test_sha256_of_a_large_file_is_hashed_in_chunks(
    record_property: Recorder, tmp_path: Path
) -> None:
    """``sha256=`` on a 384 MiB file (sparse: no disk used) that is not the one expected is
    refused with a few MiB of memory, not the file's size."""
    record_property("bad_input", "weights")
    path = tmp_path / "big.safetensors"
    with path.open("wb") as fh:
        fh.truncate(384 << 20)
    mib, message = _peak_mib(path, "sha256")
    assert "is corrupt or was modified" in message
    assert "0" * 64 in message
    assert mib < 64, f"{mib} MiB resident to hash a 384 MiB file"


def _zip_bomb(tmp_path: Path, inflated: int) -> Path:
    """A torch.save zip whose tensor record is replaced by ``inflated`` deflated zeros."""
    import zipfile

    small = tmp_path / "small.pt"
    torch.save({"classifier.weight": torch.zeros(4)}, small)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(small) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            if "/data/" in info.filename:
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                zeros = bytes(1 << 20)
                with dst.open(entry, "w", force_zip64=True) as out:
                    for _ in range(inflated >> 20):
                        out.write(zeros)
            else:
                dst.writestr(info, src.read(info))
    return bomb


def test_zip_bomb_is_refused_before_inflating(record_property: Recorder, tmp_path: Path) -> None:
    """A torch zip of about 0.5 MiB that declares a 512 MiB tensor record is refused from its
    directory, before anything is inflated: memory stays small, the message gives both
    sizes."""
    record_property("bad_input", "weights")
    bomb = _zip_bomb(tmp_path, 512 << 20)
    assert bomb.stat().st_size < 2 << 20
    mib, message = _peak_mib(bomb, "plain")
    assert "refused before inflating it" in message, message
    assert re.search(r"declare 536,87\d,\d{3} bytes once inflated \(the file is [\d,]+ "
                     r"bytes\), more than 16 times the file's size", message), message
    assert mib < 64, f"{mib} MiB resident to refuse a zip bomb"


def test_file_larger_than_the_model_needs_is_refused_unread(
    record_property: Recorder, tmp_path: Path
) -> None:
    """With ``model=``, a file far larger than the model's weights is refused before it is
    read (a sparse 1 GiB file for a 31 kB model)."""
    record_property("bad_input", "weights")
    path = tmp_path / "huge.pt"
    with path.open("wb") as fh:
        fh.truncate(1 << 30)
    _expect(CheckpointError, r"huge\.pt' is 1,073,741,824 bytes, more than the [\d,]+ expected "
            r"for MultinomialLogisticRegression \(31,400 bytes of weights\)",
            lambda: load_state_dict(path, model=MultinomialLogisticRegression()))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.uint8, torch.complex64],
                         ids=str)
def test_non_floating_weights_are_refused(
    record_property: Recorder, tmp_path: Path, dtype: torch.dtype
) -> None:
    """Weights stored as integers, booleans or complex numbers are refused by every loading
    path that knows the model, naming the tensor; nothing is cast silently."""
    record_property("bad_input", "weights")
    state = dict(MultinomialLogisticRegression().state_dict())
    state["classifier.weight"] = state["classifier.weight"].to(dtype)
    path = tmp_path / "cast.pt"
    torch.save(state, path)
    pattern = (r"holds tensors that are not floating-point where MultinomialLogisticRegression "
               rf"has floating-point ones: classifier\.weight \({re.escape(str(dtype))}\)")
    _expect(CheckpointError, pattern,
            lambda: tp3nets.multinomial_logistic_regression(weights=path))
    _expect(CheckpointError, pattern,
            lambda: load_state_dict(path, model=MultinomialLogisticRegression()))
    model = MultinomialLogisticRegression()
    before = model.classifier.weight.detach().clone()
    _expect(CheckpointError, pattern,
            lambda: _api.load_weights_into(model, state, source="cast.pt"))
    assert torch.equal(model.classifier.weight, before)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=str)
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_non_finite_weights_are_refused(
    record_property: Recorder, tmp_path: Path, value: float, suffix: str
) -> None:
    """A weights file with NaN or infinite values is refused, naming the tensor and the
    count, by load_state_dict and the builders (predict would print NaN probabilities)."""
    record_property("bad_input", "weights")
    state = dict(ConvNet2().state_dict())
    state["classifier.1.bias"] = state["classifier.1.bias"].clone()
    state["classifier.1.bias"][3] = value
    path = tmp_path / f"nan{suffix}"
    _write(state, path)
    count = state["classifier.1.bias"].numel()
    pattern = (r"holds non-finite values \(NaN or infinity\) in classifier\.1\.bias "
               rf"\(1 of {count} values\)")
    _expect(CheckpointError, pattern, lambda: load_state_dict(path))
    _expect(CheckpointError, pattern, lambda: tp3nets.convnet2(weights=path))
    _expect(CheckpointError, pattern,
            lambda: _api.load_weights_into(ConvNet2(), state, source=str(path)))


def _within(seconds: int, fn: Callable[[], Any]) -> Any:
    """``fn()``, failing the test (rather than hanging it) if it takes longer."""
    import signal

    def alarm(*_: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _special_file(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        path = tmp_path / "pipe.pt"
        os.mkfifo(path)
    elif kind == "symlink-loop":
        path = tmp_path / "loop.pt"
        os.symlink(tmp_path / "loop2.pt", path)
        os.symlink(path, tmp_path / "loop2.pt")
    elif kind == "device":
        path = Path("/dev/null")
    else:  # a dangling link
        path = tmp_path / "dangling.pt"
        os.symlink(tmp_path / "gone.pt", path)
    return path


SPECIAL_FILES = {
    "fifo": (CheckpointError, r"pipe\.pt' is a FIFO \(named pipe\), not a regular file"),
    "symlink-loop": (CheckpointError, r"loop\.pt' is a symbolic-link loop"),
    "device": (CheckpointError, r"'/dev/null' is a character device, not a regular file"),
    "dangling": (FileNotFoundError, r"dangling\.pt' is a broken symbolic link \(to '.*gone"),
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
@pytest.mark.parametrize("kind", list(SPECIAL_FILES))
def test_special_files_are_refused_in_their_own_words(
    record_property: Recorder, tmp_path: Path, kind: str
) -> None:
    """A FIFO, a symbolic-link loop, a device or a dangling link given as weights is named
    for what it is (not "not found") by load_state_dict and the builders; a FIFO never
    blocks."""
    record_property("bad_input", "weights")
    path = _special_file(tmp_path, kind)
    exc, pattern = SPECIAL_FILES[kind]
    _within(20, lambda: _expect(exc, pattern, lambda: load_state_dict(path)))
    _within(20, lambda: _expect(exc, pattern, lambda: tp3nets.convnet2(weights=path)))


_REWRITE_SCRIPT = r"""
import sys
path = sys.argv[1]
data = open(path, "rb").read()
print("ready", flush=True)
while True:
    with open(path, "r+b", buffering=0) as fh:  # the same file (inode), truncated, rewritten
        fh.truncate(4096)
        for start in range(0, len(data), 1 << 20):
            fh.seek(start)
            fh.write(data[start : start + (1 << 20)])
"""

_TRUNCATE_SCRIPT = r"""
import subprocess, sys
import torch
from safetensors.torch import save_file
from tp3nets import CheckpointError, load_state_dict
path, rewriter = sys.argv[1], sys.argv[2]
save_file({"w": torch.rand(1 << 22)}, path)  # 16 MiB
writer = subprocess.Popen([sys.executable, "-c", rewriter, path], stdout=subprocess.PIPE)
assert writer.stdout.readline() == b"ready\n"
ok = refused = 0
try:
    for _ in range(150):
        try:
            got = load_state_dict(path)
        except CheckpointError:
            refused += 1
        else:
            assert got["w"].numel() == 1 << 22
            ok += 1
finally:
    writer.kill()
    writer.wait()
print(ok, refused)
"""


def test_file_truncated_while_read_is_an_error_not_a_crash(
    record_property: Recorder, tmp_path: Path
) -> None:
    """A weights file truncated and rewritten in place while it is loaded, again and again:
    each load returns the whole tensor or a CheckpointError; the process never dies of
    SIGBUS (nothing is memory-mapped)."""
    record_property("bad_input", "weights")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _TRUNCATE_SCRIPT,
                           str(tmp_path / "w.safetensors"), _REWRITE_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    ok, refused = map(int, proc.stdout.split())
    assert ok + refused == 150


# --------------------------------------------------------------------------------------
# image files that lie (issue 18)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` 1-bit pixels and holds a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _image_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    from PIL import Image

    cases: dict[str, tuple[Path, str]] = {}
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20000, 20000))
    cases["bomb"] = (bomb, r"is refused as a decompression bomb|is 20000x20000 pixels")
    warned = tmp_path / "big.png"
    warned.write_bytes(_png_header_only(10000, 10000))  # Pillow only warns at this size
    cases["bomb-warning-range"] = (warned, r"big\.png' is refused as a decompression bomb: "
                                   r"Image size \(100000000 pixels\) exceeds limit")
    good = tmp_path / "good.png"
    Image.effect_noise((200, 200), 64).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated"] = (truncated, r"cannot read image '.*truncated\.png': .*truncated")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image" * 10)
    cases["garbage"] = (garbage, r"garbage\.png' is not an image file that Pillow can read")
    for value in ("nan", "inf"):
        pixels = np.full((20, 20), 0.5, dtype=np.float32)
        pixels[3, 4] = float(value)
        tiff = tmp_path / f"{value}.tiff"
        Image.fromarray(pixels, mode="F").save(tiff)
        cases[f"float-tiff-{value}"] = (tiff, rf"{value}\.tiff' holds 1 NaN or infinite "
                                        r"pixel value \(of 400\)")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.png"
        os.mkfifo(fifo)
        cases["fifo"] = (fifo, r"pipe\.png' is a FIFO \(named pipe\), not a regular file")
        loop = tmp_path / "loop.png"
        os.symlink(tmp_path / "loop2.png", loop)
        os.symlink(loop, tmp_path / "loop2.png")
        cases["symlink-loop"] = (loop, r"loop\.png' is a symbolic-link loop")
        cases["device"] = (Path("/dev/zero"), r"'/dev/zero' is a character device")
    cases["folder"] = (tmp_path, r"is a directory, not an image file")
    cases["missing"] = (tmp_path / "absent.png", r"image not found: '.*absent\.png'")
    return cases


IMAGE_CASES = ["bomb", "bomb-warning-range", "truncated", "garbage", "float-tiff-nan",
               "float-tiff-inf", "fifo", "symlink-loop", "device", "folder", "missing"]


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_bad_image_file_is_one_clear_error(
    record_property: Recorder, tmp_path: Path, case: str
) -> None:
    """open_image answers every bad image file with ImageFileError and a one-line message
    naming the file and the fault: decompression bombs (refused from the header, before
    decoding), truncated and garbage files, float TIFFs with NaN or inf pixels, FIFOs
    (never waited on), link loops, devices, folders and missing files."""
    from tp3nets.data import ImageFileError, open_image

    record_property("bad_input", "images")
    cases = _image_cases(tmp_path)
    if case not in cases:
        pytest.skip("POSIX special files")
    path, pattern = cases[case]
    with pytest.raises(ImageFileError, match=pattern) as info:
        _within(20, lambda: open_image(path))
    assert "\n" not in str(info.value)
    if case == "missing":
        assert isinstance(info.value, FileNotFoundError)


def test_open_image_reads_good_files_whole(tmp_path: Path) -> None:
    """A good file comes back loaded and detached from the file (which can then go)."""
    from PIL import Image

    from tp3nets.data import ImageFileError, open_image

    path = tmp_path / "digit.png"
    Image.open(DIGIT).save(path)
    img = open_image(path)
    path.unlink()
    assert img.size == Image.open(DIGIT).size
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(DIGIT)))
    Image.open(DIGIT).save(path)
    width, height = img.size
    with pytest.raises(ImageFileError, match=rf"is {width}x{height} pixels "
                       rf"\({width * height:,}\), more than the 100 accepted"):
        open_image(path, max_pixels=100)


def test_atomic_write_on_a_full_disk_keeps_the_previous_file(
    record_property: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tp3nets._io._atomic.write_atomically (for checkpoint.py to use): ENOSPC in the middle of a
    write keeps the previous file whole, leaves no temporary file, and says so with errno
    ENOSPC kept; the next good write removes a killed writer's temporary file."""
    import errno

    from tp3nets._io._atomic import write_atomically

    record_property("bad_input", "checkpoints")
    path = tmp_path / "ck.pt"
    write_atomically(b"good" * 1000, path)
    calls: list[int] = []
    real_write = os.write

    def filling(fd: int, data: Any) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", filling)
    with pytest.raises(OSError, match=rf"cannot write '{path}': No space left on device; the "
                       r"previous file there is kept") as info:
        write_atomically(b"new!" * 1000, path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"good" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    killed = tmp_path / ".ck.pt.999999999-00112233aabb.tmp.pt"
    killed.write_bytes(b"half")
    write_atomically(b"next", path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    assert path.read_bytes() == b"next"
