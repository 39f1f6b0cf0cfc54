"""Export to ONNX and TorchScript: the files compute what the eager models compute."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import tp3nets
from tp3nets.deploy import (
    ExportError,
    export_onnx,
    export_torchscript,
    onnx_runtime,
    verify_onnx,
    verify_torchscript,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.*` is deprecated:FutureWarning",
)

HERE = Path(__file__).resolve().parent
MODELS = tp3nets.list_models()
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None



from _support import DEVICES  # noqa: E402


def _batch(n: int, seed: int = 7) -> Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _pretrained(name: str) -> nn.Module:
    return tp3nets.get_model(name, weights="DEFAULT")


def _run_onnx(path: Path, x: Tensor) -> Tensor:
    """Run the file with onnxruntime when installed, else with onnx's reference evaluator."""
    if HAS_ORT:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    from onnx.reference import ReferenceEvaluator

    return torch.as_tensor(ReferenceEvaluator(str(path)).run(None, {"input": x.numpy()})[0])


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each registered model with its bundled weights, exported once to ONNX."""
    folder = tmp_path_factory.mktemp("onnx")
    return {name: export_onnx(_pretrained(name), folder / f"{name}.onnx") for name in MODELS}


@pytest.mark.parametrize("name", MODELS)
def test_onnx_file_matches_eager(name: str, onnx_files: dict[str, Path]) -> None:
    """The ONNX file is valid, self-contained, batch-dynamic, and gives the eager logits."""
    import onnx

    path = onnx_files[name]
    assert path.name == f"{name}.onnx"
    assert path.is_file()
    assert not list(path.parent.glob(f"{name}.onnx.data"))  # no external weight file
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param  # symbolic, not a fixed size
    model = _pretrained(name).eval()
    for n in (1, 5):
        x = _batch(n)
        got = _run_onnx(path, x)
        with torch.no_grad():
            expected = model(x)
        assert got.shape == (n, 10)
        assert float((got - expected).abs().max()) <= 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_onnx_reference_evaluator_agrees(name: str, onnx_files: dict[str, Path]) -> None:
    """verify_onnx passes with onnx's pure-Python evaluator too (the fallback without ORT)."""
    diff = verify_onnx(onnx_files[name], _pretrained(name), runtime="reference")
    assert 0.0 <= diff <= 1e-4


def test_onnx_runtime_is_reported() -> None:
    """onnx_runtime names onnxruntime when it is installed, else the reference evaluator."""
    assert onnx_runtime() == ("onnxruntime" if HAS_ORT else "reference")


@pytest.mark.parametrize("method", ["script", "trace"])
@pytest.mark.parametrize("name", MODELS)
def test_torchscript_file_matches_eager(name: str, method: str, tmp_path: Path) -> None:
    """The TorchScript file loads with torch.jit.load and gives the eager logits at any batch."""
    model = _pretrained(name)
    path = export_torchscript(model, tmp_path / f"{name}.pt", method=method)  # type: ignore[arg-type]
    assert path == tmp_path / f"{name}.pt"
    loaded = torch.jit.load(str(path))
    eager = model.eval()
    for n in (1, 2, 6):
        x = _batch(n)
        with torch.no_grad():
            assert float((loaded(x) - eager(x)).abs().max()) <= 1e-4


def test_scripted_file_keeps_the_input_checks(tmp_path: Path) -> None:
    """A scripted ConvNet2 still rejects a wrongly sized batch with the model's message."""
    path = export_torchscript(tp3nets.convnet2(), tmp_path / "c2.pt")
    loaded = torch.jit.load(str(path))
    with pytest.raises(Exception, match=r"expects inputs of shape \(N, 1, 28, 28\)"):
        loaded(torch.zeros(2, 1, 32, 32))


@pytest.mark.parametrize("device", DEVICES)
def test_export_leaves_the_model_alone(device: str, tmp_path: Path) -> None:
    """Exporting keeps the caller's model on its device, in its mode, with its weights."""
    model = tp3nets.convnet3().to(device).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_torchscript(model, tmp_path / "m.pt")
    export_onnx(model, tmp_path / "m.onnx", dynamic_batch=False)
    assert model.training
    for key, value in model.state_dict().items():
        assert value.device.type == torch.device(device).type
        assert torch.equal(value, before[key])


def test_static_batch_and_explicit_example(tmp_path: Path) -> None:
    """With dynamic_batch=False and a batch-1 example, the file still matches the model."""
    model = tp3nets.multinomial_logistic_regression(weights="DEFAULT")
    path = export_onnx(model, tmp_path / "deep" / "er" / "mlr.onnx", dynamic_batch=False,
                       example_inputs=_batch(1))
    assert path.is_file()  # the missing folders were made
    x = _batch(2)
    with torch.no_grad():
        assert float((_run_onnx(path, x) - model.eval()(x)).abs().max()) <= 1e-4


class _Noisy(nn.Module):
    """A model whose output changes on every call: no export can match it."""

    input_shape = (1, 28, 28)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :10] + torch.rand(x.shape[0], 10)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_mismatch_raises_export_error(fmt: str, tmp_path: Path) -> None:
    """When the file's outputs differ from eager PyTorch, the export raises ExportError."""
    export = export_onnx if fmt == "onnx" else export_torchscript
    with pytest.raises(ExportError, match=r"differs from eager PyTorch: max abs diff .* > atol"):
        export(_Noisy(), tmp_path / f"noisy.{fmt}")
    assert list(tmp_path.iterdir()) == []  # the file that failed its check is not left


def test_a_fixed_batch_file_checked_at_another_batch_is_an_export_error(
    tmp_path: Path,
) -> None:
    """The runtime's own error (InvalidArgument, a reshape error) becomes ExportError."""
    model = tp3nets.multinomial_logistic_regression(weights="DEFAULT")
    path = export_onnx(model, tmp_path / "fixed.onnx", dynamic_batch=False,
                       example_inputs=_batch(2))
    with pytest.raises(ExportError, match=r"cannot run inputs of shape \(3, 1, 28, 28\): .* "
                       r"exported with dynamic_batch=False"):
        verify_onnx(path, model, _batch(3), dynamic_batch=False)


def test_verify_catches_a_file_of_other_weights(onnx_files: dict[str, Path],
                                                tmp_path: Path) -> None:
    """Checking a file against a model with other weights fails, for both formats."""
    other = tp3nets.convnet2()  # random weights, not the bundled ones
    with pytest.raises(ExportError, match=r"the ONNX file .* differs from eager PyTorch"):
        verify_onnx(onnx_files["convnet2"], other)
    path = export_torchscript(_pretrained("convnet2"), tmp_path / "c2.pt")
    with pytest.raises(ExportError, match=r"the TorchScript file .* differs from eager PyTorch"):
        verify_torchscript(path, other)
    assert verify_torchscript(path, _pretrained("convnet2")) <= 1e-4


def test_corrupt_files_fail_verification(tmp_path: Path) -> None:
    """A file that is not ONNX or TorchScript fails verification with ExportError."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not a valid ONNX model"):
        verify_onnx(bad, tp3nets.convnet2())
    bad_ts = tmp_path / "bad.pt"
    bad_ts.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not a loadable TorchScript file"):
        verify_torchscript(bad_ts, tp3nets.convnet2())


class _Unscriptable(nn.Module):
    """Runs in eager mode and traces, but uses Python that TorchScript cannot compile."""

    input_shape = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear(x) * len({1, 2})  # TorchScript has no sets
        return out


def test_unscriptable_model_suggests_trace(tmp_path: Path) -> None:
    """When scripting fails the error says so and suggests method='trace', which works."""
    with pytest.raises(ExportError, match=r"TorchScript export \(script\).*try method='trace'"):
        export_torchscript(_Unscriptable(), tmp_path / "u.pt")
    path = export_torchscript(_Unscriptable(), tmp_path / "u.pt", method="trace")
    assert path.is_file()


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    """A non-module, a missing input shape, a folder as target, bad atol or method are refused."""
    with pytest.raises(TypeError, match=r"expected an nn\.Module to export, got str"):
        export_torchscript("convnet2", tmp_path / "x.pt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot tell the input shape of Linear"):
        export_torchscript(nn.Linear(3, 2), tmp_path / "x.pt")
    assert export_torchscript(nn.Linear(3, 2), tmp_path / "x.pt",
                              example_inputs=torch.rand(2, 3)).is_file()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        export_onnx(tp3nets.convnet2(), tmp_path)
    with pytest.raises(ValueError, match="expects atol to be a number >= 0, got -1"):
        export_torchscript(tp3nets.convnet2(), tmp_path / "y.pt", atol=-1)
    with pytest.raises(ValueError, match="method must be 'script' or 'trace', got 'jit'"):
        export_torchscript(tp3nets.convnet2(), tmp_path / "y.pt", method="jit")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# atomic exports (issue 18)


_FULL_DISK_SCRIPT = r"""
import resource, signal, sys
import tp3nets
from tp3nets.deploy import ExportError, export_onnx, export_torchscript
fmt, path = sys.argv[1], sys.argv[2]
model = tp3nets.convnet2(weights="DEFAULT")  # 3 MB of weights: past the limit below
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, resource.RLIM_INFINITY))
try:
    (export_onnx if fmt == "onnx" else export_torchscript)(model, path)
except ExportError as exc:
    print("ExportError:", exc)
"""


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_failing_write_keeps_the_previous_export(fmt: str, tmp_path: Path) -> None:
    """An export whose writes fail in the kernel (a file-size limit: the writes fail as on a
    full disk) is one ExportError in a live process, not an abort; the good export already
    at that path is untouched and no partial or temporary file is left."""
    import subprocess
    import sys

    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    path = tmp_path / f"m.{'onnx' if fmt == 'onnx' else 'pt'}"
    (export_onnx if fmt == "onnx" else export_torchscript)(
        tp3nets.multinomial_logistic_regression(), path)
    good = path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, fmt, str(path)],
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith(f"ExportError: export failed: cannot write {str(path)!r}: "), \
        proc.stdout
    assert "the previous file there is kept" in proc.stdout
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_no_space_left_is_an_export_error(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC from the write (simulated) gives ExportError naming the file; the previous
    export survives whole."""
    import errno
    import os

    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    path = tmp_path / f"m.{fmt}"
    export = export_onnx if fmt == "onnx" else export_torchscript
    export(tp3nets.multinomial_logistic_regression(), path)
    good = path.read_bytes()
    if fmt == "onnx":
        real = torch.onnx.export

        def full(model: nn.Module, args: object, f: str, **kwargs: object) -> None:
            Path(f).write_bytes(b"\x08\x07partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(torch.onnx, "export", full)
        del real
    else:
        def full_write(fd: int, data: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", full_write)
    with pytest.raises(ExportError, match=rf"cannot write '{path}': No space left on device; "
                       r"the previous file there is kept"):
        export(tp3nets.convnet2(), path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_failed_check_keeps_the_previous_export(fmt: str, tmp_path: Path) -> None:
    """A new export that fails its check is removed, and the good export it would have
    replaced stays (the check runs on the temporary file, before the rename)."""
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    path = tmp_path / f"m.{fmt}"
    export = export_onnx if fmt == "onnx" else export_torchscript
    export(tp3nets.multinomial_logistic_regression(), path)
    good = path.read_bytes()
    with pytest.raises(ExportError, match=rf"the \w+ file '{path}' differs from eager PyTorch"):
        export(_Noisy(), path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_stale_temporaries_of_the_same_target_are_cleaned(tmp_path: Path) -> None:
    """The temporaries left by killed writes of the same target (a dead process id, or the
    old id-less names once old) are removed at the next successful export; a live
    writer's and other targets' are kept."""
    import os
    import time

    path = tmp_path / "m.pt"
    dead = tmp_path / ".m.pt.999999999-0123456789ab.tmp.pt"
    legacy = tmp_path / ".m.pt.0123456789ab.tmp"
    live = tmp_path / f".m.pt.{os.getppid()}-abcdefabcdef.tmp.pt"
    other = tmp_path / ".n.pt.999999999-0123456789ab.tmp.pt"
    for p in (dead, legacy, live, other):
        p.write_bytes(b"x" * 1000)
    old = time.time() - 3600
    os.utime(legacy, (old, old))
    export_torchscript(tp3nets.multinomial_logistic_regression(), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, live.name,
                                                                 other.name])
