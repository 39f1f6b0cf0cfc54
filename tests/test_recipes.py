"""The weight recipes' own logic: selection candidates, versions, time to accuracy."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _load(name: str) -> ModuleType:
    if str(RECIPES) not in sys.path:
        sys.path.insert(0, str(RECIPES))  # the recipes import each other, as scripts do
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tta = _load("time_to_accuracy")
tw = _load("train_weights")
sync = _load("sync_meta")


def test_a_missed_run_counts_as_infinitely_slow_in_the_median() -> None:
    runs: list[dict[str, Any]] = [{"seed": 0, "reached": True, "seconds": 90.0},
                                  {"seed": 1, "reached": False, "seconds": None},
                                  {"seed": 2, "reached": True, "seconds": 100.0}]
    out = tta.summary("convnet4", 99.12, runs)
    assert out["median_seconds"] == 100.0
    assert out["reached"] is False
    out = tta.summary("convnet4", 99.12, runs[1:2] * 2 + runs[:1])
    assert math.isinf(out["median_seconds"])


def test_the_measured_settings_cannot_be_changed_on_the_command_line() -> None:
    with pytest.raises(SystemExit):
        tta.main(["--set", "epochs=2"])


@pytest.mark.mnist
def test_a_selection_run_stops_on_the_validation_images_and_writes_nothing(
    mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--select trains on the 55,000 split; the clock covers loading and evaluation; a
    fractional schedule ends mid-epoch and is evaluated there."""
    written = RECIPES / "results" / "time_to_accuracy.json"
    before = written.read_bytes() if written.exists() else None
    assert tta.main(["--data", str(mnist_root), "--select", "--models", "convnet3",
                     "--seeds", "0", "--set", "epochs=0.05", "target=101"]) == 0
    out = capsys.readouterr().out
    assert "convnet3 seed 0:" in out
    assert "after 0.05 epochs" in out
    assert (written.read_bytes() if written.exists() else None) == before


def test_every_bundled_record_has_a_recipe_version() -> None:
    """Each results/MODEL[_vN].json that sync_meta reads has its recipe in RECIPES, with the
    command that reproduces it."""
    real = _load("train_real")
    for path in sync.record_files():
        record = json.loads(path.read_text())
        version = record.get("version", 1)
        if record["recipe"]["command"].startswith("python recipes/train_real.py"):
            # The realistic-pictures versions have their own recipe file.
            assert version in real.VERSIONS, path.name
            assert version not in real.NOT_TAKEN, path.name
            assert record["file"] == f"{record['model']}_mnist_v{version}.safetensors"
            assert f" --version {version} " in record["recipe"]["command"]
            assert {k: record["recipe"][k] for k in real.RECIPE} == json.loads(
                json.dumps(real.RECIPE)), path.name
            continue
        assert version in tw.RECIPES[record["model"]], path.name
        assert record["file"] == f"{record['model']}_mnist_v{version}.safetensors"
        assert record["recipe"]["command"] == tw.recipe_command(
            record["model"], version, record["recipe"]["seed"]), path.name
        assert f" {record['model']} --version {version} " in record["recipe"]["command"]
        recipe = tw.RECIPES[record["model"]][version]
        assert {k: record["recipe"][k] for k in recipe} == recipe, path.name


@pytest.mark.mnist
def test_a_candidate_is_finished_only_by_its_own_recipe(mnist_root: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A --no-test --candidate run keeps what it trained; --finish with the same recipe
    writes the file and the record from it without training; another seed is refused."""
    monkeypatch.setitem(tw.RECIPES, "multinomial_logistic_regression", {
        1: dict(tw.RECIPES["convnet4"][2], precision="32", epochs=1, batch_size=512)})
    cand = tmp_path / "cand.safetensors"
    common = ["multinomial_logistic_regression", "--data", str(mnist_root),
              "--out", str(tmp_path / "files"), "--results", str(tmp_path / "results")]
    assert tw.main([*common, "--no-test", "--candidate", str(cand)]) == 0
    assert cand.is_file()
    assert not (tmp_path / "files").exists()
    with pytest.raises(SystemExit, match="not by this recipe"):
        tw.main([*common, "--finish", str(cand), "--seed", "1"])
    assert tw.main([*common, "--finish", str(cand)]) == 0
    record = json.loads((tmp_path / "results" / "multinomial_logistic_regression.json")
                        .read_text())
    assert record["selection"]["finished_from_candidate"] is True
    assert record["recipe"]["weights"] == "average"
    assert set(record["selection"]) >= {"val_live", "val_average"}
    assert (tmp_path / "files" / record["file"]).is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["--weights", "MNIST_V9"], "unknown weights 'MNIST_V9' for ConvNet2_Weights"),
    (["--models", "convnet4,convnet9"], "unknown model(s) convnet9"),
])
def test_quantize_refuses_unknown_weights_before_reading_data(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """quantize.py names a mistyped --weights or model and exits 2, before any data."""
    quantize = _load("quantize")
    with pytest.raises(SystemExit) as exc:
        quantize.main(["--data", "/nonexistent", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


class _Recorder(torch.nn.Module):
    """A teacher that remembers what it read and answers fixed logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.logits.expand(x.shape[0], -1)


def test_distillation_teachers_read_the_uncorrupted_view_and_stay_out_of_the_state() -> None:
    """The teachers see the batch before the corruption, the student after it; the state
    dict, parameters and .train() are the student's; in eval the loss is plain CE, in
    training the mix of CE and tau^2 KL against the mean of the softened teachers."""
    distill = _load("distill")
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    a, b = _Recorder(torch.tensor([[2.0, 0.0, 0.0]])), _Recorder(torch.tensor([[0.0, 2.0, 0.0]]))
    wrapped = distill.Distiller(student, [a, b], _Zero(),
                                temperature=2.0, alpha=0.25)
    x, y = torch.rand(5, 1, 2, 2) + 0.5, torch.tensor([0, 1, 2, 0, 1])
    wrapped.train()
    out = wrapped(x)
    assert torch.equal(a.seen[0], x)
    assert torch.equal(b.seen[0], x)
    assert torch.equal(out, student(torch.zeros_like(x)))  # the student read the corrupted view
    assert not a.training
    assert not b.training
    assert set(wrapped.state_dict()) == {f"student.{k}" for k in student.state_dict()}
    assert distill.student_state(wrapped.state_dict()).keys() == student.state_dict().keys()
    assert len(list(wrapped.parameters())) == 2
    soft = (torch.softmax(a.logits / 2, 1) + torch.softmax(b.logits / 2, 1)) / 2
    kl = torch.nn.functional.kl_div(torch.log_softmax(out / 2, 1), soft.expand(5, -1),
                                    reduction="batchmean")
    expected = 0.75 * torch.nn.functional.cross_entropy(out, y) + 0.25 * 4 * kl
    torch.testing.assert_close(wrapped.loss(out, y), expected)
    wrapped.eval()
    out = wrapped(x)
    assert len(a.seen) == 1  # no teacher in eval
    torch.testing.assert_close(wrapped.loss(out, y), torch.nn.functional.cross_entropy(out, y))
    with pytest.raises(ValueError, match="not a Distiller"):
        distill.student_state(student.state_dict())
    for augmentation in (None, torch.nn.Identity()):
        with pytest.raises(ValueError, match="splits a Sequential augmentation"):
            distill.distiller(student, "convnet4", {}, augmentation)
    with pytest.raises(ValueError, match="at least one teacher"):
        distill.Distiller(student, [], _Zero(), temperature=1.0, alpha=0.5)


class _Zero(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


@pytest.mark.mnist
def test_the_distilled_recipe_trains_the_student_alone(mnist_root: Path) -> None:
    """ConvNet4 version 4 on a slice of MNIST: its teachers are the bundled V1-V3 files,
    and what it keeps (live and averaged) are plain ConvNet4 state dicts."""
    import argparse

    import tp3nets
    from tp3nets.data import mnist_splits

    recipe = tw.RECIPES["convnet4"][4]
    assert recipe["distill"]["teachers"] == ["MNIST_V1", "MNIST_V2", "MNIST_V3"]
    train_set, val, _ = mnist_splits(mnist_root, val_size=5000, seed=42)
    small = torch.utils.data.TensorDataset(*(t[:256] for t in train_set.tensors))
    states, _, _, extra = tw.train(argparse.Namespace(model="convnet4", seed=0),
                                   {**recipe, "epochs": 1}, small,
                                   torch.utils.data.TensorDataset(*(t[:200] for t in val.tensors)))
    keys = tp3nets.ConvNet4().state_dict().keys()
    assert states.keys() == {"live", "average"}
    assert all(s.keys() == keys for s in states.values())
    assert len(extra["live_val_acc@1_per_epoch"]) == 1


def test_a_recipe_not_taken_runs_only_as_a_selection_run(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """ConvNet4 version 4 lost its validation rule: naming it without --no-test (which would
    touch the test set and write a file) exits 2 before any data is read, and the default
    version is the latest one taken."""
    assert {4, 5, 6} <= set(tw.NOT_TAKEN["convnet4"])
    for version in ("4", "5", "6"):
        with pytest.raises(SystemExit) as exc:
            tw.main(["convnet4", "--version", version, "--data", "/nonexistent"])
        assert exc.value.code == 2
        assert f"version {version} of convnet4 was tried and not taken" in (
            capsys.readouterr().err)
    assert tw.default_version("convnet4") == 3
    assert tw.default_version("convnet2") == 2
    assert tw.default_version("multinomial_logistic_regression") == 1
    # A recipe under selection (written, not yet trained to a bundled file) is not the
    # default either.
    monkeypatch.setitem(tw.RECIPES["convnet2"], 9, tw.RECIPES["convnet2"][2])
    assert tw.default_version("convnet2") == 2
    for model, versions in tw.RECIPES.items():
        assert set(tw.NOT_TAKEN.get(model, {})) < set(versions), model


def test_a_recipe_model_config_reaches_the_model_it_trains(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ConvNet4 version 6 trains without dropout: its model_config goes to get_model (and
    only there: the state dict it keeps loads into the lab's ConvNet4)."""
    import argparse

    import tp3nets

    recipe = tw.RECIPES["convnet4"][6]
    assert recipe["model_config"] == {"dropout": 0.0, "classifier_dropout": 0.0}
    assert {k: v for k, v in recipe.items() if k != "model_config"} == tw.RECIPES["convnet4"][3]
    built: list[torch.nn.Module] = []
    real = tp3nets.get_model

    def spy(name: str, **config: Any) -> torch.nn.Module:
        built.append(real(name, **config))
        return built[-1]

    monkeypatch.setattr(tp3nets, "get_model", spy)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        (torch.rand(64, 1, 28, 28, generator=g) * 255).to(torch.uint8),
        torch.randint(0, 10, (64,), generator=g))
    states, _, _, _ = tw.train(argparse.Namespace(model="convnet4", seed=0),
                               {**recipe, "epochs": 1, "batch_size": 32, "ema": None,
                                "precision": "32"}, data, data)
    model = built[0]
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.0, 0.0]
    assert model.classifier_dropout == 0.0
    tp3nets.ConvNet4().load_state_dict(states["live"])


def test_the_realistic_recipe_not_taken_runs_only_as_a_selection_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """train_real.py --version 7 (not taken) refuses to run without --no-test, before any
    picture is made or data read."""
    real = _load("train_real")
    with pytest.raises(SystemExit) as stop:
        real.main(["--version", "7", "--data", "/nonexistent"])
    assert stop.value.code == 2
    assert "tried and not taken" in capsys.readouterr().err
