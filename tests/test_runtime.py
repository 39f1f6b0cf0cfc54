"""Inference backends (tp3nets.deploy): each agrees with eager PyTorch, and says so."""

from __future__ import annotations

import itertools
import json
import logging
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import tp3nets
from tp3nets import cli
from tp3nets.data import TensorLoader
from tp3nets.deploy import FP32_RTOL, BackendError, InferenceModel, optimize

MODELS = ("multinomial_logistic_regression", "convnet2", "convnet3", "convnet4")
FAST = ("torch", "onnxruntime", "auto")
EXPECTED = {"torch": "torch", "onnxruntime": "onnxruntime", "auto": "onnxruntime"}


@cache
def _model(name: str) -> nn.Module:
    return tp3nets.get_model(name, weights="DEFAULT").eval()


@cache
def _fast(name: str, backend: str) -> InferenceModel:
    return optimize(_model(name), backend)  # type: ignore[arg-type]


def _digits(n: int) -> Tensor:
    """``n`` digits: the ten samples, repeated, each repeat slightly shifted in brightness."""
    x = tp3nets.data.samples.digit_batch()[0]
    reps = [(x * (1 - 0.02 * i)).clamp(0, 1) for i in range((n + 9) // 10)]
    return torch.cat(reps)[:n]


def _small_net() -> nn.Module:
    """Not a tp3nets model: a torchvision-like stem with BatchNorm and trained statistics."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    for bn in (net[1], net[4]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
    return net.eval()


class _Eigenvalues(nn.Module):
    """A model the ONNX exporter cannot convert (no ONNX function for eigvalsh)."""

    input_shape = (4,)

    def forward(self, x: Tensor) -> Tensor:
        m = x.reshape(-1, 2, 2)
        out: Tensor = torch.linalg.eigvalsh(m @ m.transpose(1, 2))  # (N, 2)
        return out


class _Noisy(nn.Module):
    """Different outputs on every call: no backend can agree with eager."""

    input_shape = (4,)

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.rand_like(x)


def _close(name: str, fast: nn.Module, model: nn.Module, x: Tensor) -> None:
    with torch.inference_mode():
        expected, got = model(x), fast(x)
    tol = FP32_RTOL * max(1.0, float(expected.abs().max()))
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= tol, name
    assert torch.equal(got.argmax(1), expected.argmax(1)), name


@pytest.mark.parametrize("backend", list(FAST))
@pytest.mark.parametrize("name", list(MODELS))
def test_every_backend_agrees_with_eager_on_the_bundled_models(name: str, backend: str) -> None:
    """Each backend runs each bundled model with the eager predictions and logits within
    FP32_RTOL of the output scale, at batch sizes 1, 5 and 64 (one model, any batch)."""
    fast = _fast(name, backend)
    assert fast.backend == EXPECTED[backend]
    assert fast.max_abs_diff <= fast.tolerance
    for n in (1, 5, 64):
        _close(f"{name} {backend} batch {n}", fast, _model(name), _digits(n))


def test_the_torch_backend_folds_batchnorm_into_a_onednn_graph() -> None:
    """ConvNet4's torch backend is the traced, frozen oneDNN graph, not the fallback."""
    assert _fast("convnet4", "torch").reason.startswith("oneDNN graph")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_predict_and_evaluate_take_a_backend(backend: str) -> None:
    """predict and evaluate give eager's predictions and figures through a backend; the
    default stays eager, bitwise."""
    model, x = _model("convnet2"), _digits(37)
    eager = tp3nets.predict(model, x, batch_size=16)
    assert torch.equal(tp3nets.predict(model, x, batch_size=16, backend="eager"), eager)
    got = tp3nets.predict(model, x, batch_size=16, backend=backend)
    assert torch.equal(got.argmax(1), eager.argmax(1))
    assert float((got - eager).abs().max()) <= FP32_RTOL * float(eager.abs().max())
    loader = TensorLoader((x, eager.argmax(1)), 8)
    before = tp3nets.evaluate(model, loader)
    after = tp3nets.evaluate(model, loader, backend=backend)
    assert after["acc"] == before["acc"] == 1.0
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_module_that_is_not_a_tp3nets_model(backend: str) -> None:
    """Any module taking and returning one tensor runs, given an example batch; without
    input_shape or example= the error says to pass one."""
    net = _small_net()
    with pytest.raises(ValueError, match="pass example="):
        optimize(net, backend)  # type: ignore[arg-type]
    fast = optimize(net, backend, example=torch.rand(4, 3, 12, 12))  # type: ignore[arg-type]
    assert fast.backend == backend
    for n in (1, 5, 64):
        _close(f"small net batch {n}", fast, net, torch.rand(n, 3, 12, 12))
    # predict takes the example from a tensor's first batch
    x = torch.rand(20, 3, 12, 12)
    got = tp3nets.predict(net, x, backend=backend)  # type: ignore[arg-type]
    assert float((got - tp3nets.predict(net, x)).abs().max()) < 1e-4


def test_auto_says_what_it_chose(caplog: pytest.LogCaptureFixture,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """auto picks onnxruntime here, says so in .backend, in one INFO line of the tp3nets
    logger, and in ``tp3nets info``; nothing reaches stdout."""
    model = tp3nets.get_model("convnet3", weights="DEFAULT").eval()  # not made before
    with caplog.at_level(logging.INFO, logger="tp3nets"):
        fast = optimize(model)
    assert fast.backend == "onnxruntime"
    lines = [r.getMessage() for r in caplog.records if r.name == "tp3nets"]
    assert len(lines) == 1
    assert lines[0].startswith("ConvNet3 runs on the onnxruntime backend: auto: onnxruntime")
    assert capsys.readouterr().out == ""
    with caplog.at_level(logging.INFO, logger="tp3nets"):
        assert optimize(model) is fast  # remembered: made, and said, once
    assert len([r for r in caplog.records if r.name == "tp3nets"]) == 1
    assert cli.main(["info", "convnet3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backends"] == {"available": ["eager", "torch", "onnxruntime"],
                                "auto": "onnxruntime"}


def test_without_onnxruntime(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Without onnxruntime, asking for it names the extra to install; auto takes torch,
    and info says so."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'tp3nets\[onnx\]'"):
        optimize(_model("convnet2"), "onnxruntime")
    fast = optimize(_model("convnet2"))
    assert fast.backend == "torch"
    assert "onnxruntime: the onnxruntime backend needs onnxruntime" in fast.reason
    assert cli.main(["info", "convnet2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backends"]["auto"] == "torch"


def test_a_model_the_exporter_cannot_handle() -> None:
    """The ONNX export fails: onnxruntime raises with the exporter's reason, auto falls back
    to the torch backend and says why."""
    model = _Eigenvalues().eval()
    with pytest.raises(BackendError, match="ONNX export failed: ExportError: ONNX export of "
                       "_Eigenvalues failed"):
        optimize(model, "onnxruntime")
    fast = optimize(model)
    assert fast.backend == "torch"
    assert "onnxruntime: ONNX export failed" in fast.reason
    assert "\x1b" not in fast.reason  # the exporter's colours are left out
    for n in (1, 5):
        x = torch.rand(n, 4)
        assert float((fast(x) - model(x)).abs().max()) < 1e-4


def test_a_model_the_trace_gets_wrong_runs_folded_instead() -> None:
    """The oneDNN graph is a trace: a model whose trace records a batch size as a constant
    fails its check at batch 1, and the torch backend runs the folded model instead."""

    class Reshaped(nn.Module):
        input_shape = (6,)

        def forward(self, x: Tensor) -> Tensor:
            return x.reshape(int(x.shape[0]), 2, 3).sum(2)  # int(): a constant in a trace

    model = Reshaped().eval()
    fast = optimize(model, "torch")
    assert fast.reason.startswith("BatchNorm folded, channels_last (tried: oneDNN graph")
    x = torch.rand(1, 6)
    assert torch.allclose(fast(x), model(x))


def test_a_backend_that_disagrees_raises_with_the_difference() -> None:
    """A named backend whose outputs differ from eager raises, giving the difference; auto
    then falls back to eager itself."""
    model = _Noisy().eval()
    with pytest.raises(BackendError, match=r"max abs diff \d"):
        optimize(model, "torch")
    fast = optimize(model, "auto")
    assert fast.backend == "eager"
    assert fast.module is model


def test_errors_are_clear() -> None:
    """An unknown backend, a model in training mode, training an InferenceModel, a backend
    on another precision are refused with what was expected."""
    model = _model("convnet2")
    with pytest.raises(ValueError, match="backend must be one of auto, eager, torch"):
        optimize(model, "tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend must be one of"):
        tp3nets.predict(model, _digits(2), backend="fast")  # type: ignore[arg-type]
    training = tp3nets.convnet2().train()
    with pytest.raises(ValueError, match=r"call model.eval\(\) first"):
        optimize(training, "torch")
    fast = _fast("convnet2", "torch")
    with pytest.raises(RuntimeError, match="for inference only"):
        fast.train()
    assert fast.eval() is fast
    assert not fast.training
    with pytest.raises(ValueError, match="runs float32 on the CPU"):
        tp3nets.predict(model, _digits(2), precision="bf16", backend="torch")
    with pytest.raises(ValueError, match="already runs on the torch backend"):
        optimize(fast, "onnxruntime")
    # predict in training mode builds the backend in eval mode, and restores the mode
    tp3nets.predict(training, _digits(2), backend="torch")
    assert training.training


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_cli_predict_backend_in_every_option_order(
    order: tuple[int, ...], capsys: pytest.CaptureFixture[str],
) -> None:
    """``--backend`` is read wherever it stands on the line; the JSON names the backend and
    the predictions are the eager ones."""
    groups = [["convnet2"], ["--samples"], ["--json"], ["--backend", "torch"]]
    argv = ["predict", *(arg for i in order for arg in groups[i])]
    code, out, err = _cli(capsys, "predict", "convnet2", "--samples", "--json")
    assert code == 0, err
    eager = json.loads(out)
    code, out, err = _cli(capsys, *argv)
    assert code == 0, err
    report = json.loads(out)
    assert report["backend"] == "torch"
    labels = [(r["status"], r["label"]) for r in report["results"]]
    assert labels == [(r["status"], r["label"]) for r in eager["results"]]
    assert sum(label == str(i) for i, (_, label) in enumerate(labels)) >= 9


def test_cli_backend_default_errors_and_evaluate(
    capsys: pytest.CaptureFixture[str], mnist_root: Path,
) -> None:
    """The default is eager; an unknown backend is a usage error; evaluate's JSON names the
    backend (auto: onnxruntime here) and its figures are eager's."""
    code, out, _ = _cli(capsys, "predict", MODELS[0], "--samples", "--json")
    assert code == 0
    assert json.loads(out)["backend"] == "eager"
    code, _, err = _cli(capsys, "predict", MODELS[0], "--samples", "--backend", "tvm")
    assert code == 2
    assert "invalid choice: 'tvm'" in err
    args = ("evaluate", "convnet2", "--data", str(mnist_root), "--limit", "300", "--json")
    code, out, err = _cli(capsys, *args)
    assert code == 0, err
    eager = json.loads(out)
    code, out, err = _cli(capsys, args[0], "--backend=auto", *args[1:])
    assert code == 0, err
    fast = json.loads(out)
    assert (eager["backend"], fast["backend"]) == ("eager", "onnxruntime")
    assert fast["confusion_matrix"] == eager["confusion_matrix"]
    assert fast["loss"] == pytest.approx(eager["loss"], rel=1e-4)


class _Scaled(nn.Module):
    """A linear classifier whose input is scaled by a non-persistent buffer (a constant
    kept out of the state_dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(1), persistent=False)
        self.lin = nn.Linear(4, 3)
        self.input_shape = (4,)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.lin(x * self.scale)
        return out


def test_a_non_persistent_buffer_written_in_place_rebuilds_the_backend() -> None:
    """A backend stays valid only while every tensor the model reads is unchanged: a
    non-persistent buffer (not in the state_dict) written in place makes optimize build
    afresh, and the new backend gives the new outputs."""
    model = _Scaled().eval()
    x = torch.rand(5, 4)
    first = optimize(model, "torch")
    torch.testing.assert_close(first(x), model(x))
    with torch.no_grad():
        model.scale.fill_(3.0)
    again = optimize(model, "torch")
    assert again is not first
    torch.testing.assert_close(again(x), model(x), rtol=1e-5, atol=1e-5)


def test_state_tensors_walks_every_parameter_and_buffer_once() -> None:
    """The walk behind the per-call checks: state_dict's tensors, non-persistent buffers
    too, a shared module's once, unset parameters skipped."""
    from tp3nets._util._modules import state_tensors

    model = tp3nets.convnet4()
    names = dict(state_tensors(model))
    assert names.keys() == model.state_dict().keys()
    assert all(names[k] is v for k, v in model.state_dict(keep_vars=True).items())
    shared = nn.Linear(2, 2, bias=False)
    outer = nn.Sequential(shared, shared, _Scaled())
    assert [k for k, _ in state_tensors(outer)] == ["0.weight", "2.scale", "2.lin.weight",
                                                     "2.lin.bias"]


def test_a_backend_is_made_once_per_model_until_its_weights_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """predict(backend="onnxruntime") in a loop exports and checks the model once; a
    training step, load_state_dict or another thread count makes the next call build
    afresh, and the fresh backend gives the new weights' outputs."""
    from tp3nets.deploy import _runtime

    made: list[str] = []
    real = dict(_runtime._BUILDERS)
    for name, build in real.items():
        def counting(model: nn.Module, example: Tensor, _n: str = name,
                     _b: Any = build) -> InferenceModel:
            made.append(_n)
            out: InferenceModel = _b(model, example)
            return out
        monkeypatch.setitem(_runtime._BUILDERS, name, counting)
    model = tp3nets.convnet2(weights="DEFAULT").eval()
    x = torch.rand(3, 1, 28, 28)
    first = tp3nets.predict(model, x, backend="onnxruntime")
    for _ in range(3):
        assert torch.equal(tp3nets.predict(model, x, backend="onnxruntime"), first)
    assert made == ["onnxruntime"]
    assert optimize(model, "onnxruntime") is optimize(model, "onnxruntime")

    # A training step writes the weights in place: the next call rebuilds and agrees
    # with the new weights.
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    tp3nets.fit(model, [(x, torch.tensor([1, 2, 3]))], optimizer=opt, epochs=1,
                device="cpu", progress=False)
    model.eval()
    after = tp3nets.predict(model, x, backend="onnxruntime")
    assert made == ["onnxruntime", "onnxruntime"]
    assert not torch.allclose(after, first)
    assert float((after - tp3nets.predict(model, x)).abs().max()) < 1e-3

    model.load_state_dict(tp3nets.ConvNet2_Weights.DEFAULT.get_state_dict())
    tp3nets.predict(model, x, backend="onnxruntime")
    assert made == ["onnxruntime"] * 3
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        tp3nets.predict(model, x, backend="onnxruntime")
    finally:
        torch.set_num_threads(threads)
    assert made == ["onnxruntime"] * 4
    # Each backend is remembered on its own.
    optimize(model, "torch")
    optimize(model, "torch")
    assert made == ["onnxruntime"] * 4 + ["torch"]


def test_what_optimize_keeps_does_not_keep_the_model_alive() -> None:
    """The cache holds models weakly: a model dropped by the user is freed, with what was
    made for it, even when auto fell back to eager (which wraps the model itself)."""
    import gc
    import weakref

    from tp3nets.deploy import _runtime

    model = tp3nets.convnet2().eval()
    optimize(model, "torch")
    noisy = _Noisy().eval()
    assert optimize(noisy, "auto").backend == "eager"
    refs = [weakref.ref(model), weakref.ref(noisy)]
    del model, noisy
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert all(r() not in _runtime._MADE for r in refs)
