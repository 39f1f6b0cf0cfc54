"""Reading weight and checkpoint files (tp3nets._io._serialization): one "is this a file?"
rule, one reader for the builders, the command line, load_state_dict and load_checkpoint."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

import tp3nets
from tp3nets._io._serialization import names_a_file, read_serialized, size_limit
from tp3nets.cli._common import _load_model
from tp3nets.weights import CheckpointError

PACKAGE = Path(tp3nets.__file__).resolve().parent


@pytest.mark.parametrize(("value", "is_file"), [
    ("DEFAULT", False), ("MNIST_V1", False), ("ConvNet4_Weights.MNIST_V1", False),
    ("net.pt", True), ("NET.PTH", True), ("run.ckpt", True), ("w.safetensors", True),
    ("w.bin", True), ("model.onnx", True), ("runs/best", True), (Path("best"), True),
    (None, False), (3, False),
])
def test_one_rule_says_whether_a_weights_value_names_a_file(value: object, is_file: bool) -> None:
    """A path object, a separator or a weights/checkpoint/export suffix names a file."""
    assert names_a_file(value) is is_file


def test_the_builder_takes_an_onnx_value_as_a_file_as_the_command_line_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """weights='x.onnx' is a file for the builder too (it was looked up as a member name)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"not found: 'missing\.onnx'"):
        tp3nets.convnet2(weights="missing.onnx")
    Path("model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")  # an ONNX protobuf's start
    with pytest.raises(CheckpointError, match=r"is not a PyTorch .* or safetensors file"):
        tp3nets.convnet2(weights="model.onnx")


def test_the_command_line_loads_a_weights_file_through_the_builder(tmp_path: Path) -> None:
    """--weights FILE gives the model that convnet2(weights=FILE) gives, weight for weight."""
    torch.manual_seed(0)
    path = tmp_path / "w.pt"
    torch.save(tp3nets.ConvNet2().state_dict(), path)
    model, member, source = _load_model("convnet2", str(path))
    built = tp3nets.convnet2(weights=path)
    assert member is None
    assert source == str(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), built.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k


def test_a_builder_refuses_a_file_too_large_for_its_model_before_reading_it(
    tmp_path: Path,
) -> None:
    """The builder reads a file for the model it builds: one larger than the model can
    need is refused from its size alone (a sparse file: nothing is read)."""
    big = tmp_path / "huge.pt"
    with open(big, "wb") as f:
        f.truncate(size_limit(tp3nets.ConvNet2()) + 1)
    with pytest.raises(CheckpointError, match=r"for ConvNet2 .* it is not a file of this model"):
        tp3nets.convnet2(weights=big)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit's deprecation notes
def test_read_serialized_names_what_a_file_is(tmp_path: Path) -> None:
    """torch.save's zip, a safetensors file and other bytes are told apart; TorchScript is
    refused as not weights."""
    from safetensors.torch import save_file

    torch.save({"w": torch.zeros(2)}, tmp_path / "a.pt")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    (tmp_path / "a.txt").write_bytes(b"hello world")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "a.ts"))
    assert read_serialized(tmp_path / "a.pt")[1] == "torch"
    assert read_serialized(tmp_path / "a.safetensors")[1] == "safetensors"
    assert read_serialized(tmp_path / "a.txt")[1] == "unknown"
    with pytest.raises(CheckpointError, match="is a TorchScript program") as info:
        read_serialized(tmp_path / "a.ts")
    assert info.value.kind == "torchscript"


def _imported_names(module: str, source: Path) -> set[str]:
    return {
        alias.name
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith(module)
        for alias in node.names
    }


def test_checkpoints_import_no_private_name_of_the_weights_module() -> None:
    """engine/_checkpoint.py reads files through _io._serialization, not through private
    names of weights/_api.py (it imported five)."""
    names = _imported_names("weights._api", PACKAGE / "engine" / "_checkpoint.py")
    assert not {n for n in names if n.startswith("_")}, names
    assert "read_serialized" in _imported_names("_serialization",
                                                PACKAGE / "engine" / "_checkpoint.py")


def test_the_file_readers_have_one_home() -> None:
    """Sniffing and the zip inflation check live in _io/_serialization.py only."""
    holders = sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
        if "def sniff_bytes" in p.read_text() or "def _sniff" in p.read_text()
        or "def check_inflated_size" in p.read_text()
        or "def _check_inflated_size" in p.read_text()
    )
    assert holders == [os.path.join("_io", "_serialization.py")], holders
