"""Full training checkpoints: exact resumption, atomic writes, safe and strict loading."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from tp3nets import CheckpointError, MultinomialLogisticRegression, fit, seed_everything
from tp3nets.data import TensorLoader
from tp3nets.engine import (
    CHECKPOINT_FORMAT,
    FitState,
    FloatPrecision,
    FP16MixedPrecision,
    History,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from tp3nets.engine import _checkpoint as ckpt_mod
from tp3nets.engine.callbacks import EarlyStopping, ModelCheckpoint


class TinyNet(nn.Module):
    """8 features → 3 classes, with dropout so that the RNG matters."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.body(x))
        return out


def make_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :3].argmax(dim=1)


def _run(folder: Path, loader_kind: str, *, resume_from: Path | None = None, seed: int = 0
         ) -> tuple[dict[str, Tensor], History, EarlyStopping]:
    seed_everything(seed)
    data = make_data(40, seed=1)
    loader: Any = (
        TensorLoader(data, 8, shuffle=True, seed=3) if loader_kind == "tensor"
        else DataLoader(TensorDataset(*data), batch_size=8, shuffle=True)
    )
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    stopper = EarlyStopping(patience=10)
    history = fit(model, loader, epochs=4, optimizer=opt, scheduler=sched,
                  val_loader=TensorLoader(make_data(16, seed=2), 8), progress=False,
                  callbacks=[ModelCheckpoint(folder / "epoch{epoch}.pt"), stopper],
                  resume_from=resume_from)
    return model.state_dict(), history, stopper


@pytest.mark.parametrize("loader_kind", ["tensor", "dataloader"])
def test_resume_gives_the_same_final_weights(tmp_path: Path, loader_kind: str) -> None:
    """Resuming from epoch 2 of 4 (shuffling, dropout, StepLR) ends bitwise where an
    uninterrupted run ends, with the same history and early-stopping state."""
    full_sd, full_hist, full_stop = _run(tmp_path / "a", loader_kind)
    resumed_sd, resumed_hist, resumed_stop = _run(
        tmp_path / "b", loader_kind, resume_from=tmp_path / "a" / "epoch2.pt", seed=999
    )
    assert sorted(full_sd) == sorted(resumed_sd)
    assert all(torch.equal(full_sd[k], resumed_sd[k]) for k in full_sd)

    def strip(h: History) -> list[dict[str, float]]:
        return [{k: v for k, v in r.items() if k != "time"} for r in h.epochs]

    assert strip(full_hist) == strip(resumed_hist)
    assert (full_stop.best, full_stop.best_epoch) == (resumed_stop.best, resumed_stop.best_epoch)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["epoch3.pt", "epoch4.pt"]


def test_checkpoint_holds_every_state(tmp_path: Path) -> None:
    """A checkpoint holds weights, optimizer, scheduler, epoch, history, callbacks and RNGs."""
    _run(tmp_path, "tensor")
    ckpt = load_checkpoint(tmp_path / "epoch3.pt")
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["epoch"] == 3
    assert ckpt["model_class"] == "TinyNet"
    assert sorted(ckpt["model"]) == sorted(TinyNet().state_dict())
    assert ckpt["scheduler"]["last_epoch"] == 3
    assert len(ckpt["optimizer"]["state"]) == 4
    assert [r["epoch"] for r in ckpt["history"]["epochs"]] == [1.0, 2.0, 3.0]
    assert [c["class"] for c in ckpt["callbacks"]] == ["ModelCheckpoint", "EarlyStopping"]
    assert set(ckpt["rng"]) >= {"torch", "python", "numpy"}


def test_resuming_at_the_last_epoch_trains_no_more(tmp_path: Path) -> None:
    """Resuming a finished run returns its history and leaves the weights as saved."""
    full_sd, _, _ = _run(tmp_path / "a", "tensor")
    again_sd, again_hist, _ = _run(tmp_path / "b", "tensor",
                                   resume_from=tmp_path / "a" / "epoch4.pt")
    assert len(again_hist) == 4
    assert all(torch.equal(full_sd[k], again_sd[k]) for k in full_sd)


def test_rng_states_round_trip() -> None:
    """make_checkpoint saves, and restore_checkpoint restores, torch, Python and NumPy RNGs."""
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = make_checkpoint(model, opt, None, None, 1, History())
    first = (torch.rand(3), random.random(), np.random.rand())
    restore_checkpoint(ckpt, model, opt, None, None, source="mem")
    second = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0])
    assert first[1:] == second[1:]


def test_checkpoint_from_another_model_is_refused(tmp_path: Path) -> None:
    """Resuming a TinyNet checkpoint into another model class raises CheckpointError."""
    _run(tmp_path, "tensor")
    model = MultinomialLogisticRegression(8, 3)
    with pytest.raises(CheckpointError, match="saved from a TinyNet, not a "
                                              "MultinomialLogisticRegression"):
        fit(model, TensorLoader(make_data(8, 0), 4), epochs=5,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            resume_from=tmp_path / "epoch2.pt")


def test_checkpoint_with_other_shapes_is_refused(tmp_path: Path) -> None:
    """A checkpoint of the same class but other shapes lists the mismatched keys."""

    class TinyNet(nn.Module):  # same name, other head
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3))
            self.head = nn.Linear(16, 4)

        def forward(self, x: Tensor) -> Tensor:
            out: Tensor = self.head(self.body(x))
            return out

    _run(tmp_path, "tensor")
    model = TinyNet()
    with pytest.raises(CheckpointError, match=r"head.weight \(3, 16\) vs \(4, 16\)"):
        fit(model, TensorLoader(make_data(8, 0), 4), epochs=5,
            optimizer=torch.optim.Adam(model.parameters(), lr=0.1),
            resume_from=tmp_path / "epoch2.pt")


def test_optimizer_state_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    """Resuming with an optimizer over other parameter groups raises CheckpointError."""
    _run(tmp_path, "tensor")
    model = TinyNet()
    opt = torch.optim.Adam(model.head.parameters())
    with pytest.raises(CheckpointError, match=r"field .optimizer.param_groups\[0\].params. lists 4 "
                       r"parameters, the optimizer.s group 2"):
        fit(model, TensorLoader(make_data(8, 0), 4), epochs=5, optimizer=opt,
            resume_from=tmp_path / "epoch2.pt")


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that dies midway leaves the previous file whole and no temporary file."""
    target = tmp_path / "last.pt"
    save_checkpoint({"format": CHECKPOINT_FORMAT, "model": {}, "epoch": 1}, target)
    before = target.read_bytes()

    def dying_save(obj: Any, fh: Any) -> None:
        fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"format": CHECKPOINT_FORMAT, "model": {}, "epoch": 2}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    monkeypatch.undo()
    assert load_checkpoint(target)["epoch"] == 1


class _Payload:
    """Any class: unpickling it would run code, which weights_only loading refuses."""


def test_load_refuses_pickled_code_and_foreign_files(tmp_path: Path) -> None:
    """load_checkpoint refuses pickled objects, bare state dicts and missing files clearly."""
    evil = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "x": _Payload()}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pt' is not a readable tp3nets checkpoint"):
        load_checkpoint(evil)
    bare = tmp_path / "bare.pt"
    torch.save(TinyNet().state_dict(), bare)
    with pytest.raises(CheckpointError, match=r"not a tp3nets training checkpoint .*"
                                              r"tp3nets\.load_state_dict"):
        load_checkpoint(bare)
    with pytest.raises(FileNotFoundError, match=r"checkpoint file not found: .*nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_fit_state_writes_only_on_the_main_process(tmp_path: Path) -> None:
    """FitState.save_checkpoint writes on rank 0 and does nothing elsewhere."""
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for is_main, name in ((False, "worker.pt"), (True, "main.pt")):
        FitState(model=model, optimizer=opt, scheduler=None, history=History(),
                 is_main=is_main).save_checkpoint(tmp_path / name)
    assert [p.name for p in tmp_path.iterdir()] == ["main.pt"]


class Wrapped(nn.Module):
    """A user's model with a child named ``module``, as DDP's wrapper has."""

    def __init__(self) -> None:
        super().__init__()
        self.module = nn.Linear(8, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(torch.relu(self.module(x)))
        return out


def test_a_child_named_module_is_not_taken_for_a_wrapper(tmp_path: Path) -> None:
    """Checkpoints, resumption and EarlyStopping keep the whole model, not its child."""
    seed_everything(0)
    model = Wrapped()
    loader = TensorLoader(make_data(40, seed=1), 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stopper = EarlyStopping("loss", patience=5)
    fit(model, loader, epochs=2, optimizer=opt, progress=False,
        callbacks=[stopper, ModelCheckpoint(tmp_path / "w.pt")])
    ckpt = load_checkpoint(tmp_path / "w.pt")
    assert ckpt["model_class"] == "Wrapped"
    assert sorted(ckpt["model"]) == sorted(model.state_dict())
    assert stopper._best_state is not None
    assert sorted(stopper._best_state) == sorted(
        model.state_dict()
    )
    fresh = Wrapped()
    restore_checkpoint(ckpt, fresh, torch.optim.SGD(fresh.parameters(), lr=0.1), None, None,
                       source="w.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    lin = nn.Linear(8, 16)
    with pytest.raises(CheckpointError, match="saved from a Wrapped, not a Linear"):
        restore_checkpoint(ckpt, lin, torch.optim.SGD(lin.parameters(), lr=0.1), None, None,
                           source="w.pt")


class _SaveAt:
    """Tries a full checkpoint from one hook."""

    def __init__(self, hook: str, path: Path) -> None:
        setattr(self, hook, lambda state: state.save_checkpoint(path))


@pytest.mark.parametrize("hook", ["on_epoch_start", "on_batch_end"])
def test_no_full_checkpoint_during_an_epoch(hook: str, tmp_path: Path) -> None:
    """A checkpoint of an unfinished epoch would resume as if it were done: refused."""
    model = TinyNet()
    with pytest.raises(RuntimeError, match=r"only be taken between epochs .* epoch 1 is under"):
        fit(model, TensorLoader(make_data(16, seed=1), 8), epochs=2, progress=False,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            callbacks=[_SaveAt(hook, tmp_path / "x.pt")])
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("hook", ["on_fit_start", "on_epoch_end", "on_fit_end"])
def test_full_checkpoints_between_epochs(hook: str, tmp_path: Path) -> None:
    model = TinyNet()
    fit(model, TensorLoader(make_data(16, seed=1), 8), epochs=2, progress=False,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        callbacks=[_SaveAt(hook, tmp_path / "x.pt")])
    assert load_checkpoint(tmp_path / "x.pt")["epoch"] == (0 if hook == "on_fit_start" else 2)


class _NumpyState:
    def state_dict(self) -> dict[str, Any]:
        return {"best": np.float64(0.25), "seen": np.int64(3), "curve": np.arange(3.0)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded = state


class _ObjectState:
    def state_dict(self) -> dict[str, Any]:
        return {"when": object()}


def test_callback_states_are_saved_so_that_they_load(tmp_path: Path) -> None:
    """NumPy values become numbers and tensors; other objects are refused at save time,
    with the callback named, rather than written into a file resume_from cannot read."""
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    saved = save_checkpoint(make_checkpoint(model, opt, None, None, 1, History(),
                                            callbacks=[_NumpyState()]), tmp_path / "np.pt")
    state = load_checkpoint(saved)["callbacks"][0]["state"]
    assert state["best"] == 0.25
    assert state["seen"] == 3
    assert torch.equal(state["curve"], torch.arange(3.0, dtype=torch.float64))
    with pytest.raises(CheckpointError, match="the state of callback _ObjectState"):
        save_checkpoint(make_checkpoint(model, opt, None, None, 1, History(),
                                        callbacks=[_ObjectState()]), tmp_path / "obj.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["np.pt"]


@pytest.mark.parametrize(("optimizer", "scheduler", "message"), [
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), None,
     "was saved with the Adam optimizer, not the SGD given; resume with the same optimizer"),
    (lambda p: torch.optim.Adam(p, lr=1e-2),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5),
     "was saved with the StepLR scheduler, not the CosineAnnealingLR given"),
])
def test_resuming_with_another_optimizer_or_scheduler_is_refused(
    tmp_path: Path, optimizer: Any, scheduler: Any, message: str
) -> None:
    """Another optimizer's state would load and then fail at the first step (KeyError);
    another scheduler's would give another schedule."""
    _run(tmp_path, "tensor")
    with pytest.raises(CheckpointError, match=message):
        fit(TinyNet(), TensorLoader(make_data(8, 0), 4), epochs=5, optimizer=optimizer,
            scheduler=scheduler, resume_from=tmp_path / "epoch2.pt", progress=False)


def test_resuming_with_a_scheduler_the_run_did_not_have_is_refused(tmp_path: Path) -> None:
    model = TinyNet()
    fit(model, TensorLoader(make_data(8, 0), 4), epochs=1, progress=False,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        callbacks=[ModelCheckpoint(tmp_path / "plain.pt")])
    with pytest.raises(CheckpointError, match="was saved without a learning-rate scheduler"):
        fit(TinyNet(), TensorLoader(make_data(8, 0), 4), epochs=2, progress=False,
            optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
            scheduler=lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=4),
            resume_from=tmp_path / "plain.pt")
    # Dropping a schedule is a choice: the run goes on at the learning rate it had.
    _run(tmp_path, "tensor")
    history = fit(TinyNet(), TensorLoader(make_data(8, 0), 4), epochs=3, progress=False,
                  optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
                  resume_from=tmp_path / "epoch2.pt")
    assert history["lr"][-1] == pytest.approx(1e-2 * 0.7**2)  # where StepLR had got to


def test_a_refused_resume_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    _run(tmp_path, "tensor")
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="saved with the Adam optimizer"):
        fit(model, TensorLoader(make_data(8, 0), 4), epochs=5, progress=False,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            resume_from=tmp_path / "epoch2.pt")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class _TextState:
    def state_dict(self) -> dict[str, Any]:
        return {"names": np.array(["a", "b"])}


def test_a_numpy_text_array_in_a_callback_state_is_named() -> None:
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="the state of callback _TextState"):
        save_checkpoint(make_checkpoint(model, opt, None, None, 1, History(),
                                        callbacks=[_TextState()]), "/tmp/never-written.pt")


def _valid_checkpoint(tmp_path: Path) -> dict[str, Any]:
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, TensorLoader(make_data(16, seed=1), 8), epochs=1, optimizer=opt,
        progress=False, callbacks=[ModelCheckpoint(tmp_path / "good.pt")])
    return load_checkpoint(tmp_path / "good.pt")


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("model", None, "field 'model' must be the model's state dict"),
    ("epoch", "one", "field 'epoch' must be a whole number >= 0, got 'one'"),
    ("epoch", -3, "field 'epoch' must be a whole number >= 0, got -3"),
    ("epoch", 1.5, "field 'epoch' must be a whole number >= 0, got 1.5"),
    ("epoch", True, "field 'epoch' must be a whole number >= 0, got True"),
    ("history", [{"epoch": 1}], "field 'history' must be a dict with 'epochs'"),
    ("history", {"epochs": [{"loss": "low"}]}, "field 'history' must be a dict"),
    ("optimizer", {"lr": 0.1}, "field 'optimizer' must be an optimizer state dict"),
    ("optimizer", [1, 2], "field 'optimizer' must be a dict or None, got list"),
    ("stop_training", "no", "field 'stop_training' must be True or False"),
    ("callbacks", ["x"], "field 'callbacks' must be a list of {'class', 'state'}"),
    ("model_class", 3, "field 'model_class' must be a class name, got 3"),
])
def test_malformed_checkpoint_fields_are_refused_naming_file_and_field(
    tmp_path: Path, field: str, value: Any, needle: str, record_property: Any
) -> None:
    """A checkpoint with the right format tag but a missing or wrongly typed field is
    refused by load_checkpoint with a CheckpointError naming the file and the field,
    before anything is restored (a KeyError, a bare int() error, or training epochs -2..2
    before)."""
    record_property("bad_input", "checkpoints")
    ckpt = _valid_checkpoint(tmp_path)
    if value is None:
        del ckpt[field]
    else:
        ckpt[field] = value
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"bad\.pt") as info:
        load_checkpoint(path)
    assert needle in str(info.value)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=f"field '{field}'"):
        fit(model, TensorLoader(make_data(16, seed=1), 8), epochs=3, progress=False,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1), resume_from=path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resume_from_a_loaded_checkpoint_dict(tmp_path: Path) -> None:
    """fit(resume_from=) takes the dict load_checkpoint read as well as its path, with the
    same result; a malformed dict is refused by the same checks."""
    first = _run(tmp_path / "a", "tensor")[0]
    path = tmp_path / "a" / "epoch2.pt"
    again = _run(tmp_path / "b", "tensor", resume_from=path)[0]
    assert all(torch.equal(first[k], again[k]) for k in first)
    seed_everything(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    ckpt = load_checkpoint(path)
    fit(model, TensorLoader(make_data(40, seed=1), 8, shuffle=True, seed=3), epochs=4,
        optimizer=opt, scheduler=sched, val_loader=TensorLoader(make_data(16, seed=2), 8),
        progress=False, callbacks=[EarlyStopping(patience=10)], resume_from=ckpt)
    assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="resume_from: field 'epoch'"):
        fit(model, TensorLoader(make_data(40, seed=1), 8), epochs=4, optimizer=opt,
            scheduler=sched, progress=False, resume_from={**ckpt, "epoch": "2"})


# -- crafted checkpoints: well-formed fields, wrong inside -------------------------------

from tp3nets.engine.callbacks import EMA  # noqa: E402


def _callbacks(folder: Path) -> list[Any]:
    return [ModelCheckpoint(folder / "last.pt"), EarlyStopping(patience=10), EMA(decay=0.9)]


def _fit_args(model: nn.Module, folder: Path) -> dict[str, Any]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return dict(optimizer=opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.7),
                val_loader=TensorLoader(make_data(16, seed=2), 8), progress=False,
                callbacks=_callbacks(folder))


@pytest.fixture(scope="module")
def every_state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real checkpoint holding every kind of state: RNGs, Adam, StepLR, and the states
    of ModelCheckpoint, EarlyStopping (with its best weights) and EMA."""
    folder = tmp_path_factory.mktemp("every_state")
    seed_everything(0)
    model = TinyNet()
    fit(model, TensorLoader(make_data(40, seed=1), 8), epochs=2, **_fit_args(model, folder))
    return load_checkpoint(folder / "last.pt")


def _set(path: str, value: Any) -> Any:
    """A change to one field of a checkpoint, ``path`` a list of keys."""
    keys = path.split("/")

    def change(ck: dict[str, Any]) -> None:
        target: Any = ck
        for key in keys[:-1]:
            target = target[int(key) if key.isdigit() else key]
        last = int(keys[-1]) if keys[-1].isdigit() else keys[-1]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value(target[last]) if callable(value) else value
    return change


_DELETE = object()
_BYTES = torch.uint8
CRAFTED: dict[str, tuple[Any, str]] = {
    # RNG states of every kind, here and for each torchrun rank.
    "torch RNG of 3 bytes": (_set("rng/torch", torch.zeros(3, dtype=_BYTES)), "rng.torch"),
    "torch RNG as floats": (_set("rng/torch", lambda t: t.float()), "rng.torch"),
    "torch RNG as a list": (_set("rng/torch", lambda t: t.tolist()), "rng.torch"),
    "python RNG truncated": (_set("rng/python", lambda v: v[:100]), "rng.python"),
    "python RNG position past the end": (_set("rng/python/624", 9999), "rng.python"),
    "python RNG with a word of text": (_set("rng/python/3", "x"), "rng.python"),
    "numpy RNG of 10 words": (_set("rng/numpy/keys", lambda t: t[:10]), "rng.numpy.keys"),
    "numpy RNG negative word": (_set("rng/numpy/keys/0", -1), "rng.numpy.keys"),
    "numpy RNG position 700": (_set("rng/numpy/pos", 700), "rng.numpy.pos"),
    "numpy RNG without gauss": (_set("rng/numpy/gauss", _DELETE), "rng.numpy"),
    "numpy RNG has_gauss 7": (_set("rng/numpy/has_gauss", 7), "rng.numpy.has_gauss"),
    "CUDA RNG states as floats": (_set("rng/cuda", [torch.zeros(16)]), "rng.cuda[0]"),
    "CUDA RNG states not a list": (_set("rng/cuda", "abc"), "rng.cuda"),
    "an unknown RNG": (_set("rng/jax", torch.zeros(2)), "rng"),
    "a rank's torch RNG of 3 bytes": (
        _set("rng_ranks", [{"torch": torch.zeros(3, dtype=_BYTES)}]), "rng_ranks[0].torch"),
    # Optimizer state against the parameters.
    "Adam exp_avg of another shape": (
        _set("optimizer/state/0/exp_avg", torch.zeros(3)), "optimizer.state[0].exp_avg"),
    "Adam exp_avg transposed": (
        _set("optimizer/state/0/exp_avg", lambda t: t.T.contiguous()),
        "optimizer.state[0].exp_avg"),
    "Adam exp_avg_sq of integers": (
        _set("optimizer/state/2/exp_avg_sq", lambda t: t.long()),
        "optimizer.state[2].exp_avg_sq"),
    "Adam step negative": (_set("optimizer/state/1/step", torch.tensor(-3.0)),
                           "optimizer.state[1].step"),
    "Adam step as text": (_set("optimizer/state/1/step", "3"), "optimizer.state[1].step"),
    "state of a parameter no group lists": (
        _set("optimizer/state/99", {"step": torch.tensor(1.0)}), "optimizer.state[99]"),
    "a parameter's state not a dict": (_set("optimizer/state/0", 5), "optimizer.state[0]"),
    "an extra parameter group": (
        _set("optimizer/param_groups", lambda g: [*g, dict(g[0], params=[7])]),
        "optimizer.param_groups"),
    "a group with fewer parameters": (
        _set("optimizer/param_groups/0/params", lambda p: p[:2]),
        "optimizer.param_groups[0].params"),
    "a group without lr": (_set("optimizer/param_groups/0/lr", _DELETE),
                           "optimizer.param_groups[0].lr"),
    "a group with lr as text": (_set("optimizer/param_groups/0/lr", "0.1"),
                                "optimizer.param_groups[0].lr"),
    "a group with three betas": (_set("optimizer/param_groups/0/betas", (0.9, 0.99, 0.1)),
                                 "optimizer.param_groups[0].betas"),
    "a group with eps NaN": (_set("optimizer/param_groups/0/eps", float("nan")),
                             "optimizer.param_groups[0].eps"),
    # Scheduler state against the scheduler.
    "scheduler last_epoch as text": (_set("scheduler/last_epoch", "2"), "scheduler.last_epoch"),
    "scheduler base_lrs for two groups": (_set("scheduler/base_lrs", [0.1, 0.1]),
                                          "scheduler.base_lrs"),
    "scheduler gamma a list": (_set("scheduler/gamma", [0.7]), "scheduler.gamma"),
    # Callback states: ModelCheckpoint [0], EarlyStopping [1], EMA [2].
    "ModelCheckpoint last_saved a number": (_set("callbacks/0/state/last_saved", 3),
                                            "callbacks[0]"),
    "ModelCheckpoint without best": (_set("callbacks/0/state/best", _DELETE), "callbacks[0]"),
    "EarlyStopping best as text": (_set("callbacks/1/state/best", "low"), "callbacks[1]"),
    "EarlyStopping wait negative": (_set("callbacks/1/state/wait", -1), "callbacks[1]"),
    "EarlyStopping best weights of another shape": (
        _set("callbacks/1/state/best_state/head.weight", torch.zeros(4, 16)), "callbacks[1]"),
    "EMA average of another shape": (
        _set("callbacks/2/state/average/head.bias", torch.zeros(5)), "callbacks[2]"),
    "EMA average lacking a tensor": (
        _set("callbacks/2/state/average/head.bias", _DELETE), "callbacks[2]"),
    "EMA num_updates negative": (_set("callbacks/2/state/num_updates", -5), "callbacks[2]"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_checkpoint_is_refused_before_anything_changes(
    case: str, every_state: dict[str, Any], tmp_path: Path, record_property: Any
) -> None:
    """A checkpoint written by the project's own save, then one field made wrong inside
    (well-formed, but not fitting the generators, the parameters, the scheduler or the
    callbacks): resume_from raises CheckpointError naming the file and the field, before
    any step and with the model, the optimizer and the RNG untouched."""
    import copy

    record_property("bad_input", "crafted checkpoint fields")
    change, field = CRAFTED[case]
    ck = copy.deepcopy(every_state)
    change(ck)
    path = save_checkpoint(ck, tmp_path / "crafted.pt")
    seed_everything(5)
    model = TinyNet()
    args = _fit_args(model, tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(CheckpointError) as info:
        fit(model, TensorLoader(make_data(40, seed=1), 8), epochs=4, resume_from=path, **args)
    message = str(info.value)
    assert str(path) in message, message
    assert f"'{field}" in message, message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(args["optimizer"].state) == 0
    assert args["scheduler"].last_epoch == 0
    assert torch.equal(torch.get_rng_state(), rng)


def test_the_unchanged_crafted_checkpoint_resumes(
    every_state: dict[str, Any], tmp_path: Path
) -> None:
    """The checks refuse the changed field, not the checkpoint: saved back unchanged,
    it resumes."""
    path = save_checkpoint(every_state, tmp_path / "same.pt")
    model = TinyNet()
    history = fit(model, TensorLoader(make_data(40, seed=1), 8), epochs=3, resume_from=path,
                  **_fit_args(model, tmp_path))
    assert [int(row["epoch"]) for row in history] == [1, 2, 3]


SCALER_CRAFTED: dict[str, tuple[Any, str]] = {
    "an empty scaler state": (lambda s: {}, "scaler"),
    "a negative scale": (lambda s: {**s, "scale": -1.0}, "scaler.scale"),
    "an infinite scale": (lambda s: {**s, "scale": float("inf")}, "scaler.scale"),
    "a scale as text": (lambda s: {**s, "scale": "big"}, "scaler.scale"),
    "a growth tracker of a fraction": (lambda s: {**s, "_growth_tracker": 0.5},
                                       "scaler._growth_tracker"),
}


@pytest.mark.parametrize("case", sorted(SCALER_CRAFTED))
def test_a_crafted_gradient_scaler_state_is_refused(
    case: str, every_state: dict[str, Any], record_property: Any
) -> None:
    """The gradient scaler's state is checked against the scaler before anything loads."""
    record_property("bad_input", "crafted checkpoint fields")
    change, field = SCALER_CRAFTED[case]
    live = torch.amp.GradScaler("cpu")
    ck = dict(every_state, scaler=change(torch.amp.GradScaler("cpu").state_dict()))
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=rf"crafted\.pt: field '{re.escape(field)}"):
        restore_checkpoint(ck, model, opt, None, live, source="crafted.pt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(opt.state) == 0


# --------------------------------------------------------------------------------------
# the file format, kept while the precision object took the scaler over

#: Written by tp3nets at commit 9267ccf, before the precision object owned the gradient
#: scaler: ``seed_everything(0)``; ``TinyNet``; Adam (lr 1e-2) and StepLR (1, 0.7);
#: ``fit(..., epochs=1)`` on ``TensorLoader(make_data(40, seed=1), 8, shuffle=True,
#: seed=3)``, validating on ``TensorLoader(make_data(16, seed=2), 8)``, with
#: ``[ModelCheckpoint(path), EarlyStopping(patience=10)]``.
FORMAT_1_FILE = Path(__file__).parent / "snapshots" / "checkpoint_0_2_epoch1.pt"
#: The fields of a ``tp3nets.checkpoint/1`` file.
FORMAT_1_FIELDS = sorted([
    "callbacks", "epoch", "format", "history", "metadata", "model", "model_class",
    "optimizer", "optimizer_class", "rng", "rng_ranks", "scaler", "scheduler",
    "scheduler_class", "stop_training", "torch_version",
])


def _format_run(folder: Path, resume_from: Path | None) -> tuple[dict[str, Tensor], History]:
    """The run that wrote FORMAT_1_FILE, for two epochs."""
    seed_everything(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    history = fit(model, TensorLoader(make_data(40, seed=1), 8, shuffle=True, seed=3),
                  epochs=2, optimizer=opt, scheduler=sched, progress=False,
                  val_loader=TensorLoader(make_data(16, seed=2), 8),
                  callbacks=[ModelCheckpoint(folder / "last.pt"), EarlyStopping(patience=10)],
                  resume_from=resume_from)
    return model.state_dict(), history


def test_a_checkpoint_written_before_the_precision_objects_resumes(tmp_path: Path) -> None:
    """A checkpoint file of the format as written before the precision object owned the
    gradient scaler (its ``scaler`` field None for float32) resumes, and the run ends
    where an uninterrupted run ends; a new checkpoint has the same fields."""
    old = tmp_path / "old.pt"
    old.write_bytes(FORMAT_1_FILE.read_bytes())
    saved = load_checkpoint(old)
    assert sorted(saved) == FORMAT_1_FIELDS
    assert saved["scaler"] is None
    assert saved["epoch"] == 1
    full_sd, full_hist = _format_run(tmp_path / "full", None)
    resumed_sd, resumed_hist = _format_run(tmp_path / "resumed", old)
    assert [int(row["epoch"]) for row in resumed_hist] == [1, 2]
    assert resumed_hist.epochs[0] == saved["history"]["epochs"][0]
    for got, want in zip(resumed_hist.epochs, full_hist.epochs, strict=True):
        assert {k: v for k, v in got.items() if k != "time"} == pytest.approx(
            {k: v for k, v in want.items() if k != "time"})
    # Bitwise on the torch that wrote the file; the tolerance allows another torch's
    # rounding of the first epoch.
    torch.testing.assert_close(resumed_sd, full_sd)
    new = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert sorted(new) == FORMAT_1_FIELDS
    assert new["scaler"] is None
    assert new["epoch"] == 2


class _CPUScaledPrecision(FP16MixedPrecision):
    """FP16MixedPrecision's state handling around a CPU GradScaler (float16 training
    itself needs CUDA), to test what checkpoints keep of it on any machine."""

    def __init__(self, scale: float = 65536.0) -> None:
        FloatPrecision.__init__(self, torch.device("cpu"))
        self.scaler = torch.amp.GradScaler("cpu", init_scale=scale)


def test_the_precision_state_is_the_scaler_field_of_the_old_layout(tmp_path: Path) -> None:
    """The checkpoint asks the precision object for its state: a precision with a gradient
    scaler writes the scaler's own state dict in the ``scaler`` field (what a reader of
    the old layout loads into a GradScaler), one without writes None; restoring gives the
    state back to the precision's scaler."""
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    plain = make_checkpoint(model, opt, None, FloatPrecision("cpu"), 1, History())
    assert sorted(plain) == FORMAT_1_FIELDS
    assert plain["scaler"] is None
    precision = _CPUScaledPrecision(scale=512.0)
    state = FitState(model=model, optimizer=opt, scheduler=None, history=History(),
                     precision=precision, epoch=1)
    assert state.scaler is precision.scaler
    path = state.save_checkpoint(tmp_path / "scaled.pt")
    raw = torch.load(path, weights_only=True)
    assert sorted(raw) == FORMAT_1_FIELDS
    assert raw["scaler"] == precision.scaler.state_dict() == precision.state_dict()
    old_reader = torch.amp.GradScaler("cpu")
    old_reader.load_state_dict(raw["scaler"])
    assert old_reader.get_scale() == 512.0
    fresh = _CPUScaledPrecision()
    model2 = TinyNet()
    restore_checkpoint(load_checkpoint(path), model2, torch.optim.Adam(model2.parameters()),
                       None, fresh, source="scaled.pt")
    assert fresh.scaler.get_scale() == 512.0
    # A float32 run resumed from it ignores the scaler state, as it did.
    restore_checkpoint(load_checkpoint(path), model2, torch.optim.Adam(model2.parameters()),
                       None, FloatPrecision("cpu"), source="scaled.pt")


def test_a_gradient_scaler_state_that_does_not_fit_the_precision_is_refused(
    every_state: dict[str, Any],
) -> None:
    """The saved scaler state is checked against the precision object's before anything
    loads, as it was against a scaler given beside it."""
    ck = dict(every_state, scaler={**torch.amp.GradScaler("cpu").state_dict(), "scale": -1.0})
    model = TinyNet()
    precision = _CPUScaledPrecision(scale=8.0)
    with pytest.raises(CheckpointError, match=r"crafted\.pt: field 'scaler\.scale"):
        restore_checkpoint(ck, model, torch.optim.Adam(model.parameters(), lr=1e-2), None,
                           precision, source="crafted.pt")
    assert precision.scaler.get_scale() == 8.0


def test_fit_reads_and_checks_a_resumed_checkpoint_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit(resume_from=path) parses the file once and runs check_checkpoint once (the
    read checked it, and restoring checked it again)."""
    old = tmp_path / "old.pt"
    old.write_bytes(FORMAT_1_FILE.read_bytes())
    counts = {"reads": 0, "checks": 0}
    real_load, real_check = torch.load, ckpt_mod.check_checkpoint

    def load(*args: Any, **kwargs: Any) -> Any:
        out = real_load(*args, **kwargs)
        counts["reads"] += isinstance(out, dict) and out.get("format") == CHECKPOINT_FORMAT
        return out

    def check(*args: Any, **kwargs: Any) -> None:
        counts["checks"] += 1
        real_check(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(ckpt_mod, "check_checkpoint", check)
    _format_run(tmp_path, old)
    assert counts == {"reads": 1, "checks": 1}


def test_a_checked_checkpoint_keeps_its_required_fields() -> None:
    """The read-once checkpoint that tp3nets train hands on drops optional fields only."""
    checked = ckpt_mod.CheckedCheckpoint.read(FORMAT_1_FILE, source="f.pt")
    assert "scheduler" not in checked.without("scheduler", "scheduler_class")
    assert checked.without("scheduler").source == "f.pt"
    assert "scheduler" in checked
    with pytest.raises(ValueError, match="epoch, model cannot be dropped"):
        checked.without("model", "epoch")


def test_a_scaler_given_as_in_0_1_still_goes_into_the_checkpoint(tmp_path: Path) -> None:
    """FitState(scaler=...) and check_resumable(scaler=...), 0.1's way of giving the
    gradient scaler, still work beside the precision object that now owns it: the
    checkpoint's ``scaler`` field holds the scaler's state, and giving both a precision
    and another scaler is refused."""
    from tp3nets.engine import check_resumable, get_precision

    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=64.0)
    state = FitState(model=model, optimizer=opt, scheduler=None, history=History(),
                     scaler=scaler)
    ckpt = state.checkpoint()
    assert ckpt["scaler"]["scale"] == 64.0
    check_resumable(ckpt, model, opt, None, scaler=torch.amp.GradScaler("cpu"))
    prec = get_precision("32", torch.device("cpu"))
    assert FitState(model=model, optimizer=opt, scheduler=None, history=History(),
                    precision=prec).scaler is prec.scaler
    with pytest.raises(ValueError, match="FitState expects scaler to be the precision's own"):
        FitState(model=model, optimizer=opt, scheduler=None, history=History(),
                 precision=prec, scaler=scaler)
    with pytest.raises(ValueError, match=r"precision or scaler .*not both"):
        check_resumable(ckpt, model, opt, None, precision=prec, scaler=scaler)
