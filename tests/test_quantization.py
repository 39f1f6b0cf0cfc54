"""The int8 models: registry, builders, bundled files (sha256, meta, reproduced by the
recipe's calibration), the plain-tensor int8 path (no deprecated quantized dtype, no
warning, both kernels agree), wrong inputs, the state encoding, graph tools (convert_fx
keeps the input check), ONNX export, BN folding."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tp3nets
from tp3nets.deploy import fold_batchnorm
from tp3nets.models import quantization
from tp3nets.models.quantization import (
    ConvNet2_QuantizedWeights,
    ConvNet3_QuantizedWeights,
    ConvNet4_QuantizedWeights,
    QuantizableConvNet2,
    QuantizableConvNet4,
    decode_quantized_state,
    encode_quantized_state,
    quantize_model,
)
from tp3nets.models.quantization._int8 import Int8Conv2d, default_kernel
from tp3nets.weights import CheckpointError, _api
from tp3nets.weights._defaults import member_version

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning",
    "ignore::UserWarning",
    "ignore::FutureWarning",
)

NAMES = ["convnet2", "convnet3", "convnet4"]
ENUMS: dict[str, Any] = {
    "convnet2": ConvNet2_QuantizedWeights,
    "convnet3": ConvNet3_QuantizedWeights,
    "convnet4": ConvNet4_QuantizedWeights,
}
FLOAT_ENUMS: dict[str, Any] = {
    "convnet2": tp3nets.ConvNet2_Weights,
    "convnet3": tp3nets.ConvNet3_Weights,
    "convnet4": tp3nets.ConvNet4_Weights,
}
FILES = Path(tp3nets.__file__).resolve().parent / "weights" / "files"
BAD = {
    "convnet2": ((2, 1, 29, 29), "ConvNet2 expects inputs of shape (N, 1, 28, 28), got "
                 "(2, 1, 29, 29)"),
    "convnet3": ((2, 3, 28, 28), "ConvNet3 expects inputs of shape (N, 1, 28, 28), got "
                 "(2, 3, 28, 28)"),
    "convnet4": ((2, 3, 28, 28), "ConvNet4 expects inputs of shape (N, 1, H, W) with "
                 "H, W >= 4, got (2, 3, 28, 28)"),
}


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _float_member(name: str, version: int) -> Any:
    """The fp32 member of that version (MNIST_V2, MNIST_REAL_V8 ...)."""
    return next(m for m in FLOAT_ENUMS[name] if member_version(m.name) == version)


def _is_int8(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Conv2d) for m in model.modules())


@pytest.fixture(scope="module")
def digits(mnist_root: Path) -> torch.Tensor:
    """64 MNIST test images as the models take them (floats in [0, 1])."""
    from tp3nets.data import load_mnist

    return load_mnist(mnist_root, train=False).tensors[0][:64].float() / 255


@pytest.fixture(scope="module")
def int8_models() -> dict[str, nn.Module]:
    return {n: getattr(quantization, n)(weights="DEFAULT", quantize=True) for n in NAMES}


# --------------------------------------------------------------------------------------
# registry


def test_list_models_separates_float_and_int8() -> None:
    """list_models() keeps the float models; list_models(quantized=True) lists the int8 ones
    (the logistic regression has none: int8 does not pay for it)."""
    assert tp3nets.list_models() == [
        "convnet2", "convnet3", "convnet4", "multinomial_logistic_regression"
    ]
    assert tp3nets.list_models(quantized=True) == [f"quantized_{n}" for n in NAMES]
    with pytest.raises(TypeError, match="quantized to be a bool"):
        tp3nets.list_models(quantized="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_registry_finds_the_int8_weights_and_builder(name: str) -> None:
    """get_model_weights / get_weight / get_model_builder reach the int8 enum and builder."""
    enum = ENUMS[name]
    builder = getattr(quantization, name)
    assert tp3nets.get_model_weights(f"quantized_{name}") is enum
    assert tp3nets.get_model_weights(builder) is enum
    assert tp3nets.get_model_builder(f"Quantized_{name}") is builder
    assert tp3nets.get_weight(f"{enum.__name__}.DEFAULT") is enum.DEFAULT
    assert tp3nets.get_weight(f"{enum.__name__}.MNIST_INT8_V1") is enum.MNIST_INT8_V1
    model = tp3nets.get_model(f"quantized_{name}", weights="DEFAULT", quantize=True)
    assert _is_int8(model)
    assert not model.training


# --------------------------------------------------------------------------------------
# bundled files and their meta


INT8_MEMBERS = [(name, member) for name in NAMES for member in ENUMS[name]]


@pytest.mark.parametrize(("name", "member"), INT8_MEMBERS,
                         ids=[f"{n}-{m.name}" for n, m in INT8_MEMBERS])
def test_int8_file_matches_its_record(name: str, member: Any) -> None:
    """Every shipped int8 file has the recorded sha256 and size, is ~4x smaller than fp32,
    was derived from the bundled fp32 weights of its version, and its recorded command
    names that model and those weights (so it still derives it when the DEFAULT moves)."""
    data = (FILES / member.file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == member.sha256
    assert len(data) == member.meta["file_size"]
    assert member.meta["backend"] == "x86"
    assert member.meta["calibration"]["images"] == 512
    assert "training split" in member.meta["calibration"]["source"]
    version = member_version(member.name)
    float_member = _float_member(name, version)
    assert member.meta["unquantized"] == repr(float_member)
    assert member.meta["unquantized_sha256"] == float_member.sha256, (
        f"the fp32 weights changed: rerun {member.meta['recipe']['command']}"
    )
    assert member.meta["num_params"] == float_member.meta["num_params"]
    assert len(data) < 0.4 * float_member.meta["file_size"]
    assert member.meta["recipe"]["command"] == (
        f"python recipes/quantize.py --data DIR --models {name} --weights {float_member.name} "
        f"--calibration 512 --seed 0 --backend x86")


@pytest.mark.parametrize("name", NAMES)
def test_int8_default_comes_from_the_fp32_default(name: str) -> None:
    """The int8 DEFAULT is derived from the fp32 DEFAULT of the same model."""
    assert ENUMS[name].DEFAULT.meta["unquantized"] == repr(FLOAT_ENUMS[name].DEFAULT)


@pytest.mark.parametrize(("name", "member"), INT8_MEMBERS,
                         ids=[f"{n}-{m.name}" for n, m in INT8_MEMBERS])
def test_int8_accuracy_within_005_points_of_fp32(name: str, member: Any) -> None:
    """Every int8 file's recorded MNIST test accuracy is within 0.05 points of that of the
    fp32 weights it comes from."""
    int8 = member.meta["metrics"]["MNIST"]["acc@1"]
    fp32 = member.meta["unquantized_metrics"]["MNIST"]["acc@1"]
    float_member = _float_member(name, member_version(member.name))
    assert fp32 == float_member.meta["metrics"]["MNIST"]["acc@1"]
    assert abs(int8 - fp32) <= 0.05


@pytest.mark.mnist
@pytest.mark.parametrize("name", NAMES)
def test_int8_model_agrees_with_fp32_on_test_images(
    name: str, mnist_root: Path, int8_models: dict[str, nn.Module]
) -> None:
    """On 500 MNIST test images the int8 model predicts as the fp32 one (at most 1 differs)."""
    from tp3nets.data import load_mnist

    images = load_mnist(mnist_root, train=False).tensors[0][:500].float() / 255
    fp32 = tp3nets.get_model(name, weights="DEFAULT").eval()
    with torch.no_grad():
        same = (int8_models[name](images).argmax(1) == fp32(images).argmax(1)).sum()
    assert int(same) >= 499


@pytest.mark.parametrize("name", NAMES)
def test_tampered_int8_file_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An int8 file that differs by one bit fails the sha256 check, naming the file; a
    missing one says so."""
    member = ENUMS[name].DEFAULT
    folder = tmp_path / "files"
    folder.mkdir()
    data = bytearray((FILES / member.file).read_bytes())
    data[-1] ^= 0x01
    (folder / member.file).write_bytes(bytes(data))
    monkeypatch.setattr(_api, "_weights_dir", lambda: folder)
    with pytest.raises(CheckpointError, match=rf"{member.file}.*corrupt or was modified"):
        getattr(quantization, name)(weights="DEFAULT", quantize=True)
    (folder / member.file).unlink()
    with pytest.raises(CheckpointError, match=rf"{member.file}.*missing"):
        getattr(quantization, name)(weights="DEFAULT", quantize=True)


# --------------------------------------------------------------------------------------
# builders


@pytest.mark.parametrize("name", NAMES)
def test_quantize_false_is_the_float_model(name: str) -> None:
    """quantize=False gives the float Quantizable model: fp32 weights, the fp32 logits."""
    model = getattr(quantization, name)(weights="DEFAULT").eval()
    fp32 = tp3nets.get_model(name, weights="DEFAULT").eval()
    assert not _is_int8(model)
    x = _images()
    torch.testing.assert_close(model(x), fp32(x))


@pytest.mark.mnist
@pytest.mark.parametrize("name", NAMES)
def test_int8_logits_close_to_fp32(
    name: str, int8_models: dict[str, nn.Module], digits: torch.Tensor
) -> None:
    """On digits, the int8 logits stay within 10 % of the fp32 logits' range."""
    fp32 = tp3nets.get_model(name, weights="DEFAULT").eval()
    x = digits
    with torch.no_grad():
        a, b = int8_models[name](x), fp32(x)
    assert float((a - b).abs().max()) < 0.1 * float(b.abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_builder_refuses_mismatched_weights(name: str) -> None:
    """int8 weights need quantize=True, float weights refuse it; other wrong arguments raise."""
    builder = getattr(quantization, name)
    with pytest.raises(ValueError, match="int8 weights: build with quantize=True"):
        builder(weights=ENUMS[name].DEFAULT)
    with pytest.raises(ValueError, match="quantize=True loads int8 weights"):
        builder(weights=FLOAT_ENUMS[name].DEFAULT, quantize=True)
    with pytest.raises(ValueError, match="10 classes but num_classes=3"):
        builder(weights="DEFAULT", quantize=True, num_classes=3)
    with pytest.raises(ValueError, match="backend must be one of"):
        builder(weights="DEFAULT", quantize=True, backend="tpu")
    with pytest.raises(TypeError, match="expects quantize to be a bool"):
        builder(quantize="yes")
    with pytest.raises(ValueError, match="unknown weights 'MNIST_V9'"):
        builder(weights="MNIST_V9", quantize=True)


@pytest.mark.parametrize("name", NAMES)
def test_int8_model_keeps_the_input_checks(name: str, int8_models: dict[str, nn.Module]) -> None:
    """Wrong shapes, integer tensors and lists raise tp3nets' messages, not oneDNN's."""
    model = int8_models[name]
    shape, message = BAD[name]
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.rand(*shape))
    with pytest.raises(TypeError, match="floating-point tensor"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(TypeError, match=re.escape("expects a torch.Tensor, got list")):
        model([[0.0]])


@pytest.mark.parametrize("name", NAMES)
def test_int8_model_scripts_and_keeps_its_logits(
    name: str, int8_models: dict[str, nn.Module]
) -> None:
    """torch.jit.script of the int8 model gives the same logits and keeps the check."""
    model = int8_models[name]
    scripted = torch.jit.script(model)
    x = _images()
    torch.testing.assert_close(scripted(x), model(x))
    shape, message = BAD[name]
    with pytest.raises(torch.jit.Error, match=re.escape(message)):
        scripted(torch.rand(*shape))


@pytest.mark.mnist
@pytest.mark.parametrize("name", NAMES)
def test_int8_forward_features(
    name: str, int8_models: dict[str, nn.Module], digits: torch.Tensor
) -> None:
    """forward_features of the int8 model is the float map (its uint8 values times their
    scale) of the float one's shape, close to the fp32 features on digits; the head takes
    it back (forward = head(features))."""
    fp32 = tp3nets.get_model(name, weights="DEFAULT").eval()
    x = digits
    model = int8_models[name]
    feats = model.forward_features(x)
    assert feats.dtype == torch.float32
    want = fp32.forward_features(x)
    assert feats.shape == want.shape
    assert float((feats - want).abs().max()) < 0.1 * float(want.abs().max())
    assert torch.equal(model.dequant(model.forward_head(feats)), model(x))


# --------------------------------------------------------------------------------------
# the int8 path on plain tensors

DEPRECATED = ("quantize_per_tensor", "quantize_per_channel", "_make_per_tensor_quantized_tensor",
              "_make_per_channel_quantized_tensor", "quantize_per_tensor_dynamic")


def _forbid_quantized_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every torch function that creates a quantized tensor fail, and every quantized
    kernel of ``torch.ops.quantized``."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a deprecated quantized-dtype function was called")

    for fn in DEPRECATED:
        monkeypatch.setattr(torch, fn, refuse)
    monkeypatch.setattr(torch.ops, "quantized", None, raising=False)


@pytest.mark.parametrize("name", NAMES)
def test_int8_path_uses_no_quantized_dtype_and_warns_nothing(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Building the bundled int8 model (both kernels), running it, quantizing a float model
    and exporting it never create a quantized tensor, call torch.ao's quantized layers or
    kernels, or raise a warning."""
    _forbid_quantized_dtypes(monkeypatch)
    builder = getattr(quantization, name)
    kernels = ["reference", *(["onednn"] if default_kernel() == "onednn" else [])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kernel in kernels:
            model = builder(weights="DEFAULT", quantize=True, kernel=kernel)
            out = model(_images())
            assert out.dtype == torch.float32
            assert not out.is_quantized
            assert not any(type(m).__module__.startswith("torch.ao") for m in model.modules())
            assert not any(m.training for m in model.modules())
            assert not any(v.is_quantized for v in model.state_dict().values())
        float_model = builder(weights="DEFAULT").eval()
        quantize_model(float_model, _images(16))(_images())
        if pytest.importorskip("onnx") is not None:
            quantization.export_quantized_onnx(model, tmp_path / "q.onnx", check=False)


@pytest.mark.mnist
@pytest.mark.parametrize("name", NAMES)
def test_int8_kernels_agree(name: str, mnist_root: Path) -> None:
    """oneDNN's int8 operators and the float reference give the same predictions on 1,000
    test images and logits within two steps of the output's scale."""
    if default_kernel() != "onednn":
        pytest.skip("this PyTorch has no oneDNN int8 operators on plain tensors")
    from tp3nets.data import load_mnist

    images = load_mnist(mnist_root, train=False).tensors[0][:1000].float() / 255
    builder = getattr(quantization, name)
    onednn = builder(weights="DEFAULT", quantize=True, kernel="onednn")
    reference = builder(weights="DEFAULT", quantize=True, kernel="reference")
    with torch.no_grad():
        a, b = onednn(images), reference(images)
    assert torch.equal(a.argmax(1), b.argmax(1))
    step = onednn.dequant.input_scale
    assert float((a - b).abs().max()) <= 2 * step + 1e-6


@pytest.mark.mnist
@pytest.mark.parametrize(("name", "member"), INT8_MEMBERS,
                         ids=[f"{n}-{m.name}" for n, m in INT8_MEMBERS])
def test_int8_files_keep_their_recorded_accuracy(
    name: str, member: Any, mnist_root: Path
) -> None:
    """Each bundled int8 file, run on the plain-tensor path, scores the MNIST test accuracy
    its record gives (made on torch.ao's kernels): at most one image of 10,000 apart."""
    from tp3nets.data import load_mnist

    test = load_mnist(mnist_root, train=False)
    images, labels = test.tensors[0].float() / 255, test.tensors[1]
    model = getattr(quantization, name)(weights=member, quantize=True)
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum())
                      for x, y in zip(images.split(1000), labels.split(1000), strict=True))
    assert abs(100 * correct / len(labels) - member.meta["metrics"]["MNIST"]["acc@1"]) <= 0.011


@pytest.mark.mnist
@pytest.mark.parametrize("name", NAMES)
def test_quantize_model_reproduces_the_bundled_file(name: str, mnist_root: Path) -> None:
    """recipes/quantize.py's calibration (512 training images, seed 0, one thread) through
    quantize_model gives the DEFAULT int8 file's integer tensors bit for bit and its scales
    to float32 rounding, though the file was made with torch.ao's eager flow: the recipe
    stays reproducible without it. (Scales may differ in the last bit: the histogram
    observer sums floats, whose rounding depends on the CPU the file was made on; torch.ao's
    own flow differs from the ConvNet3 file the same way here.)"""
    from tp3nets.data import mnist_splits

    member = ENUMS[name].DEFAULT
    train = mnist_splits(mnist_root, val_size=5000, seed=42)[0].tensors[0]
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    calibration = train[order[:512]].float().div(255)
    fp32 = getattr(quantization, name)(weights=FLOAT_ENUMS[name].DEFAULT).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        q = quantize_model(fp32, calibration)
    finally:
        torch.set_num_threads(threads)
    made = encode_quantized_state(q.state_dict())
    shipped = member.get_state_dict()
    assert made.keys() == shipped.keys()
    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        if a.is_floating_point():
            return a.dtype == b.dtype and torch.allclose(a, b, rtol=1e-6, atol=0)
        return torch.equal(a, b)

    differ = [k for k in made if not same(made[k], shipped[k])]
    assert not differ, f"differ from {member.file}: {differ[:5]}"


def test_reference_kernel_refuses_a_layer_int8_cannot_run() -> None:
    """A layer without an int8 form between the stubs is refused by name, not run."""
    model = QuantizableConvNet2().eval()
    model.layer1[2] = nn.AvgPool2d(2)
    with pytest.raises(TypeError, match=re.escape("cannot run 'layer1.2' (AvgPool2d)")):
        quantize_model(model, _images())


def test_kernel_argument_is_checked() -> None:
    """An unknown kernel is refused, naming the choices."""
    with pytest.raises(ValueError, match="kernel must be one of onednn, reference"):
        quantization.convnet2(weights="DEFAULT", quantize=True, kernel="fbgemm")


# --------------------------------------------------------------------------------------
# quantize_model and the state encoding


def test_quantize_model_is_deterministic_and_leaves_the_model() -> None:
    """Two quantizations of the same model on the same images store identical tensors; the
    float model is not modified."""
    torch.manual_seed(0)
    model = QuantizableConvNet2().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = encode_quantized_state(quantize_model(model, _images(32)).state_dict())
    b = encode_quantized_state(quantize_model(model, _images(32)).state_dict())
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not _is_int8(model)


def test_quantize_model_takes_loader_batches() -> None:
    """Calibration batches may be (images, labels) pairs, as TensorLoader yields: the same
    batches give the same model as the tensor cut into them."""
    torch.manual_seed(0)
    model = QuantizableConvNet2().eval()
    x = _images(32)
    a = encode_quantized_state(quantize_model(model, x, batch_size=16).state_dict())
    pairs = [(x[:16], torch.zeros(16)), (x[16:], torch.zeros(16))]
    b = encode_quantized_state(quantize_model(model, pairs).state_dict())
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TypeError, match="tensors or \\(images, labels\\) pairs, got str"):
        quantize_model(model, ["images"])


def test_quantize_model_refuses_a_plain_model() -> None:
    """A float model without stubs is refused with a TypeError that points to Quantizable*."""
    with pytest.raises(TypeError, match=r"Quantizable\* model"):
        quantize_model(tp3nets.ConvNet2().eval(), _images())  # type: ignore[arg-type]


def test_fuse_model_needs_eval_mode() -> None:
    """fuse_model folds BatchNorm, so it refuses a model in training mode."""
    with pytest.raises(ValueError, match=r"call \.eval\(\) first"):
        QuantizableConvNet4(width=8).fuse_model()


def test_state_encoding_round_trips() -> None:
    """encode -> decode into a fresh converted model reproduces the logits exactly."""
    torch.manual_seed(0)
    q = quantize_model(QuantizableConvNet4(width=8).eval(), _images(16))
    flat = encode_quantized_state(q.state_dict())
    assert all(isinstance(v, torch.Tensor) and not v.is_quantized for v in flat.values())
    assert flat.keys() == q.state_dict().keys()
    fresh = quantize_model(QuantizableConvNet4(width=8).eval(), torch.rand(1, 1, 28, 28))
    fresh.load_state_dict(decode_quantized_state(flat, fresh.state_dict()))
    x = _images()
    assert torch.equal(fresh(x), q(x))


def test_state_decoding_refuses_a_file_that_does_not_fit() -> None:
    """A missing, extra or mistyped entry raises CheckpointError naming it."""
    q = quantize_model(QuantizableConvNet2().eval(), _images())
    flat = encode_quantized_state(q.state_dict())
    template = q.state_dict()
    missing = {k: v for k, v in flat.items() if k != "layer1.0.weight#scale"}
    with pytest.raises(CheckpointError, match=re.escape("lacks the entry 'layer1.0.weight#scale'")):
        decode_quantized_state(missing, template)
    with pytest.raises(CheckpointError, match="entries this model does not have: extra"):
        decode_quantized_state({**flat, "extra": torch.zeros(1)}, template)
    wrong = {**flat, "layer1.0.weight": flat["layer1.0.weight"].float()}
    with pytest.raises(CheckpointError, match=re.escape("'layer1.0.weight' holds torch.float32")):
        decode_quantized_state(wrong, template)


# --------------------------------------------------------------------------------------
# graph tools


def test_convert_fx_keeps_the_input_check() -> None:
    """FX graph-mode quantization (prepare_fx/convert_fx, whose passes delete unused nodes)
    keeps the check: a wrong shape raises tp3nets' ValueError, not a oneDNN error."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(0)
    model = tp3nets.ConvNet4(width=8).eval()
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (_images(2),))
    prepared(_images(8))
    converted = convert_fx(prepared)
    assert converted(_images(2)).shape == (2, 10)
    with pytest.raises(ValueError, match=re.escape(BAD["convnet4"][1])):
        converted(torch.rand(2, 3, 28, 28))


# --------------------------------------------------------------------------------------
# ONNX


def test_export_quantized_onnx_runs_in_onnxruntime(
    tmp_path: Path, int8_models: dict[str, nn.Module]
) -> None:
    """The int8 ConvNet4 exports to QDQ ONNX; ONNX Runtime gives its predictions for any
    batch size."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = int8_models["convnet4"]
    path = quantization.export_quantized_onnx(model, tmp_path / "q.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    digits = tp3nets.data.samples.digit_batch()[0]  # digits: on noise the DEFAULT's logits are
    for n in (1, 5):                            # nearly equal, by design (no class)
        x = digits[n:2 * n]
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        assert torch.equal(got.argmax(1), model(x).argmax(1))


def test_export_quantized_onnx_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, int8_models: dict[str, nn.Module]
) -> None:
    """A float model or a too-old opset raises ValueError; a failure while writing raises
    QuantizedExportError with its reason and leaves no file."""
    with pytest.raises(ValueError, match=re.escape("export float models with tp3nets.deploy")):
        quantization.export_quantized_onnx(tp3nets.ConvNet2().eval(), tmp_path / "f.onnx")
    with pytest.raises(ValueError, match=r"expects opset_version to be an int >= 13 .*, got 12"):
        quantization.export_quantized_onnx(
            int8_models["convnet2"], tmp_path / "q.onnx", opset_version=12
        )

    onnx = pytest.importorskip("onnx")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the checker found a fault")

    monkeypatch.setattr(onnx.checker, "check_model", broken)
    with pytest.raises(quantization.QuantizedExportError, match="the checker found a fault"):
        quantization.export_quantized_onnx(int8_models["convnet2"], tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


# --------------------------------------------------------------------------------------
# BatchNorm folding


def test_fold_batchnorm_is_exact_and_leaves_the_model() -> None:
    """Folding ConvNet4's BatchNorms (pretrained statistics) gives the same logits to float
    tolerance, removes every BatchNorm, and leaves the original model as it was."""
    model = tp3nets.convnet4(weights="DEFAULT").eval()
    folded = fold_batchnorm(model)
    x = _images(4)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6


def test_fold_batchnorm_refuses_training_mode() -> None:
    """In training mode BatchNorm uses batch statistics: folding is refused."""
    with pytest.raises(ValueError, match=r"call model\.eval\(\) first"):
        fold_batchnorm(tp3nets.ConvNet4(width=8))
    with pytest.raises(TypeError, match=re.escape("expects an nn.Module")):
        fold_batchnorm("convnet4")  # type: ignore[arg-type]


def test_fold_batchnorm_without_batchnorm_changes_nothing() -> None:
    """A model without BatchNorm (ConvNet2) comes back with identical outputs."""
    model = QuantizableConvNet2().eval()
    x = _images()
    assert torch.equal(fold_batchnorm(model)(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_int8_model_copies_pickles_and_runs_in_every_backend(name: str) -> None:
    """After a forward pass (oneDNN's weights packed), the int8 model deep-copies and
    pickles with the same logits, is in eval mode throughout, and tp3nets.deploy's
    backends run it with eager's predictions on digits."""
    import copy
    import io

    from tp3nets.deploy import _runtime as runtime

    model = getattr(quantization, name)(weights="DEFAULT", quantize=True)
    x = tp3nets.data.samples.digit_batch()[0]
    want = model(x)
    assert torch.equal(copy.deepcopy(model)(x), want)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer, weights_only=False)(x), want)
    assert not any(m.training for m in model.modules())
    for backend in runtime.available_backends():
        if backend in ("auto", "eager"):
            continue
        fast = runtime.optimize(model, backend)
        assert fast.backend == backend
        assert torch.equal(fast(x).argmax(1), want.argmax(1))
