"""Property-based tests (hypothesis): inputs the models accept or refuse, metric aggregation
over any batching, files damaged anywhere, and command lines made of bad values.

Each generated example records ``bad_input`` or ``good_input`` with its category through
pytest's ``record_property``, for the table of ``docs/reliability.rst``
(``tests/_fault_report.py``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn import functional as F

import tp3nets
from tp3nets import CheckpointError, MultinomialLogisticRegression, cli, evaluate
from tp3nets.data import TensorLoader
from tp3nets.engine import accuracy
from tp3nets.weights import load_state_dict, load_weights_into

REPO = Path(__file__).resolve().parent.parent
MODELS = tp3nets.list_models()
MLR = "multinomial_logistic_regression"
Recorder = Callable[[str, object], None]


def _settings(examples: int) -> settings:
    """Few, reproducible examples; the fixtures used are safe to share between them."""
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


# One model of each family in float32 and float64, built once: inputs never change them.
_BUILT: dict[tuple[str, torch.dtype], nn.Module] = {}


def _model(name: str, dtype: torch.dtype) -> nn.Module:
    if (name, dtype) not in _BUILT:
        torch.manual_seed(0)
        kwargs = {"width": 4} if name == "convnet4" else {}
        _BUILT[name, dtype] = tp3nets.get_model(name, **kwargs).to(dtype).eval()
    return _BUILT[name, dtype]


def _verdict(
    name: str, shape: tuple[int, ...], floating: bool
) -> tuple[type[Exception], str] | None:
    """What the model must do with a tensor of ``shape``: ``None`` (accept it) or the
    exception type and exact message it must raise."""
    shown = "(" + ", ".join(map(str, shape)) + ")"
    cls = type(_model(name, torch.float32)).__name__
    if name == MLR:
        expected = "(N, 784) or (N, C, H, W) with C*H*W == 784"
        if len(shape) < 2:
            return ValueError, (f"{cls} expects a batch of shape {expected}, got {shown}; add the "
                                "batch dimension with x.unsqueeze(0)")
        values = math.prod(shape[1:])
        if values != 784:
            return ValueError, (f"{cls} expects a batch of shape {expected}, got {shown} "
                                f"({values} values per sample)")
    else:
        if name == "convnet4":
            expected = "(N, 1, H, W) with H, W >= 4"
            fits = len(shape) == 4 and shape[1] == 1 and min(shape[2:]) >= 4
        else:
            expected = "(N, 1, 28, 28)"
            fits = len(shape) == 4 and shape[1:] == (1, 28, 28)
        if not fits:
            return ValueError, f"{cls} expects inputs of shape {expected}, got {shown}"
    if not floating:
        return TypeError, (f"{cls} expects a floating-point tensor, got an integer tensor of "
                           f"shape {shown}; convert uint8 images with x.float() / 255")
    return None


def _valid(name: str, batch: int, h: int, w: int, split: int) -> tuple[int, ...]:
    """A shape the model accepts: MNIST's, any size from 4 for ConvNet4, and any grouping of
    784 values per sample for the logistic regression."""
    if name == "convnet4":
        return (batch, 1, h, w)
    if name == MLR:
        return [(batch, 784), (batch, 1, 28, 28), (batch, 4, 14, 14), (batch, 16, 7, 7),
                (batch, 28, 28)][split]
    return (batch, 1, 28, 28)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, tuple[int, ...]]:
    """A model and an input shape: valid, valid but for one dimension, or anything."""
    name = draw(st.sampled_from(MODELS))
    batch = draw(st.integers(0, 3))
    valid = _valid(name, batch, draw(st.integers(4, 32)), draw(st.integers(4, 32)),
                   draw(st.integers(0, 4)))
    kind = draw(st.sampled_from(["valid", "one-off", "any"]))
    if kind == "valid":
        return name, valid
    if kind == "one-off":
        i = draw(st.integers(0, len(valid) - 1))
        changed = list(valid)
        changed[i] = draw(st.integers(0, 32))
        return name, tuple(changed)
    rank = draw(st.integers(1, 5))
    return name, tuple(draw(st.integers(0, 32)) for _ in range(rank))


@_settings(100)
@given(case=_cases(), dtype=st.sampled_from([torch.float32, torch.float64, torch.float32,
                                              torch.uint8, torch.int64, torch.bool]))
def test_models_accept_or_refuse_any_shape_clearly(
    record_property: Recorder, case: tuple[str, tuple[int, ...]], dtype: torch.dtype
) -> None:
    """For any N, C, H, W (and rank 1 to 5) and dtype, a model returns (N, num_classes) or
    raises ValueError/TypeError with the expected message, never another exception."""
    name, shape = case
    floating = dtype.is_floating_point
    model = _model(name, dtype if floating else torch.float32)
    x = torch.zeros(shape, dtype=dtype)
    verdict = _verdict(name, shape, floating)
    record_property("bad_input" if verdict else "good_input", "models (generated)")
    with torch.no_grad():
        if verdict is None:
            out = model(x)
            assert out.shape == (shape[0], 10)
            assert out.dtype == dtype
            assert torch.isfinite(out).all()
        else:
            exc, message = verdict
            with pytest.raises(exc, match=re.escape(message)) as info:
                model(x)
            assert type(info.value) is exc


# --------------------------------------------------------------------------------------
# metric aggregation


@st.composite
def _dataset(draw: st.DrawFn) -> tuple[Tensor, Tensor, list[int]]:
    """Samples, labels, and cut points that split them into batches of random sizes."""
    n = draw(st.integers(1, 40))
    classes = draw(st.integers(2, 5))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=6))) if n > 1 else []
    return x, y, cuts


def _model_for(y: Tensor) -> nn.Module:
    torch.manual_seed(int(y.sum()))
    return MultinomialLogisticRegression(6, int(y.max()) + 1 if int(y.max()) >= 1 else 2).eval()


def _mae(preds: Tensor, target: Tensor) -> Tensor:
    """A plain metric: the batch mean of (1 - probability of the right class)."""
    return (1 - preds.softmax(dim=1).gather(1, target[:, None])).mean()


@_settings(50)
@given(data=_dataset(), batch_size=st.integers(1, 40))
def test_evaluate_over_any_batching_equals_the_whole_set(
    record_property: Recorder, data: tuple[Tensor, Tensor, list[int]], batch_size: int
) -> None:
    """evaluate over batches of random sizes (a TensorLoader's, or uneven ones) gives the
    figures of the whole set at once: accuracy exactly, loss and mean metrics to float32
    rounding."""
    record_property("good_input", "metrics (generated)")
    x, y, cuts = data
    model = _model_for(y)
    with torch.no_grad():
        logits = model.double()(x.double())
        model.float()
    whole_loss = float(F.cross_entropy(logits, y))
    whole_acc = int((logits.argmax(1) == y).sum()) / len(y)
    whole_mae = float(_mae(logits, y))
    bounds = [0, *cuts, len(y)]
    uneven = [(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]
    for loader in (TensorLoader((x, y), batch_size), uneven):
        result = evaluate(model, loader, metrics={"acc": accuracy, "mae": _mae})
        assert result["acc"] == whole_acc
        assert result["loss"] == pytest.approx(whole_loss, rel=1e-5, abs=1e-6)
        assert result["mae"] == pytest.approx(whole_mae, rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------------------
# damaged files


def _files(folder: Path) -> dict[str, bytes]:
    torch.manual_seed(0)
    state = dict(MultinomialLogisticRegression(6, 3).state_dict())
    save_file(state, str(folder / "w.safetensors"))
    torch.save(state, folder / "w.pt")
    return {suffix: (folder / f"w{suffix}").read_bytes() for suffix in (".safetensors", ".pt")}


@_settings(100)
@given(suffix=st.sampled_from([".safetensors", ".pt"]), how=st.sampled_from(["cut", "flip"]),
       where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_a_damaged_file_never_escapes_as_another_error(
    record_property: Recorder, tmp_path_factory: pytest.TempPathFactory, suffix: str, how: str,
    where: float, bit: int,
) -> None:
    """A weights file cut short or with one bit flipped anywhere either loads (a flip inside
    the tensor data: neither format has a checksum) or raises CheckpointError naming the
    file; with its sha256 given, any change raises CheckpointError."""
    record_property("bad_input", "weights (generated)")
    folder = tmp_path_factory.mktemp("damaged")
    original = _files(folder)[suffix]
    digest = hashlib.sha256(original).hexdigest()
    at = int(where * len(original))
    damaged = bytearray(original[:at] if how == "cut" else original)
    if how == "flip":
        damaged[at] ^= 1 << bit
    path = folder / f"damaged{suffix}"
    path.write_bytes(bytes(damaged))
    error: CheckpointError | None = None
    try:
        loaded = load_state_dict(path)
        load_weights_into(MultinomialLogisticRegression(6, 3), loaded, source=str(path))
    except CheckpointError as exc:  # any other exception fails the test
        error = exc
    if error is None:
        assert how == "flip"
    else:
        assert str(path) in str(error)
    with pytest.raises(CheckpointError, match=re.escape(f"{str(path)!r} is corrupt or was "
                                                        "modified")):
        load_state_dict(path, sha256=digest)


# --------------------------------------------------------------------------------------
# the command line

_DIGIT = str(REPO / "examples" / "digits" / "digit_7.png")
_JUNK = ["", "-1", "0", "abc", "1e999", "nan", "3.5", "/nonexistent/x.pt", "∞", "%s", "--"]
_OPTIONS: dict[str, list[str]] = {
    "info": ["--json", "--history", "--bogus"],
    "train": ["--epochs", "--batch-size", "--lr", "--weight-decay", "--val-size", "--seed",
              "--optimizer", "--scheduler", "--precision", "--label-smoothing", "--weights",
              "--resume", "--output", "--weights-out", "--device", "--data",
              "--limit-train-batches", "--quiet"],
    "evaluate": ["--weights", "--split", "--batch-size", "--limit", "--device", "--data",
                 "--val-size", "--json"],
    "predict": ["--weights", "--top", "--device", "--json"],
}
_FLAGS = {"--json", "--history", "--quiet", "--bogus"}


@st.composite
def _argv(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(_OPTIONS)))
    argv = [command, draw(st.sampled_from(["convnet2", "CONVNET3", "convnet5", "", "mlr"]))]
    if command == "predict":
        argv.append(draw(st.sampled_from([_DIGIT, "/nonexistent.png", str(REPO)])))
    for option in draw(st.lists(st.sampled_from(_OPTIONS[command]), max_size=3)):
        argv.append(option)
        if option not in _FLAGS:
            argv.append(draw(st.sampled_from(_JUNK)))
    return argv


@_settings(60)
@given(argv=_argv())
def test_any_bad_command_line_is_one_line_and_status_2(
    record_property: Recorder, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, argv: list[str],
) -> None:
    """Command lines built from bad names and junk values either succeed or fail with exit
    status 2 and one 'tp3nets: error:' line; no exception escapes main."""
    empty = tmp_path_factory.mktemp("no-mnist")
    monkeypatch.setenv("TP3NETS_DATA", str(empty))  # train/evaluate never reach real data
    code = cli.main(argv)
    out, err = capsys.readouterr()
    record_property("bad_input" if code else "good_input", "cli (generated)")
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert re.match(r"tp3nets( \w+)?: error: \S", lines[0]), (argv, err)
        assert "Traceback" not in err
    else:
        assert argv[0] in ("info", "predict"), (argv, out)


def test_property_rules_match_the_documented_shapes() -> None:
    """The rules the shape property checks accept the documented inputs and no others."""
    assert _verdict("convnet2", (2, 1, 28, 28), True) is None
    assert _verdict("convnet4", (2, 1, 4, 5), True) is None
    assert _verdict(MLR, (0, 4, 14, 14), True) is None
    assert _verdict("convnet3", (2, 1, 28, 28), False) is not None
    assert _verdict("convnet4", (2, 1, 3, 5), True) is not None
