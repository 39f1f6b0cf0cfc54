"""CSVLogger and TensorBoardLogger: every epoch's figures, rank 0 only, right on resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from tp3nets import CSVLogger, ModelCheckpoint, TensorBoardLogger, fit
from tp3nets.data import TensorLoader


def make_data(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :3].argmax(dim=1)


def _fit(callbacks: list[object], epochs: int = 3, resume_from: Path | None = None) -> object:
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return fit(model, TensorLoader(make_data(32), 8), epochs=epochs, optimizer=opt,
               scheduler=sched, val_loader=TensorLoader(make_data(16, 1), 8),
               progress=False, callbacks=callbacks, resume_from=resume_from)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_logger_writes_every_figure_of_every_epoch(tmp_path: Path) -> None:
    """One row per epoch with the history's figures (learning rate included), equal to
    the history's values."""
    history = _fit([CSVLogger(tmp_path / "logs" / "history.csv")])
    rows = _rows(tmp_path / "logs" / "history.csv")
    assert list(rows[0]) == ["epoch", "loss", "acc", "val_loss", "val_acc", "lr", "time"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, want in zip(rows, history, strict=True):
        for key, value in want.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-12)
    assert [float(r["lr"]) for r in rows] == [0.1, 0.05, 0.025]


def test_csv_logger_after_resume_holds_the_runs_epochs_only(tmp_path: Path) -> None:
    """Resumed from epoch 2 of a run killed after its CSV had 3 rows, the file holds the
    checkpoint's 2 epochs and the new ones, never the lost epoch 3 twice."""
    log = tmp_path / "history.csv"
    _fit([ModelCheckpoint(tmp_path / "ep{epoch}.pt"), CSVLogger(log)], epochs=3)
    straight = _rows(log)
    _fit([ModelCheckpoint(tmp_path / "ep{epoch}.pt"), CSVLogger(log)], epochs=4,
         resume_from=tmp_path / "ep2.pt")
    rows = _rows(log)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [r["loss"] for r in rows[:3]] == [r["loss"] for r in straight]


def test_csv_logger_writes_nonfinite_figures_readably(tmp_path: Path) -> None:
    """A NaN figure is written as 'nan', which float() reads back."""
    x, y = make_data(16)
    x_val = x.clone()
    x_val[0, 0] = math.nan
    model = nn.Linear(8, 3)
    with pytest.warns(UserWarning, match="val_loss is nan"):
        fit(model, TensorLoader((x, y), 8), epochs=1, progress=False,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            val_loader=TensorLoader((x_val, y), 8), callbacks=[CSVLogger(tmp_path / "h.csv")])
    assert math.isnan(float(_rows(tmp_path / "h.csv")[0]["val_loss"]))


def test_csv_logger_refuses_a_directory(tmp_path: Path) -> None:
    """A folder given as the CSV file is refused at once."""
    with pytest.raises(ValueError, match="is a directory; give a file name"):
        CSVLogger(tmp_path)


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_logger_writes_scalars_per_epoch(tmp_path: Path) -> None:
    """Each figure is a scalar per epoch (train/, val/, epoch/ tags), with the history's
    values; a resumed run continues the curves without duplicate steps."""
    pytest.importorskip("tensorboard")
    history = _fit([TensorBoardLogger(tmp_path / "tb"),
                    ModelCheckpoint(tmp_path / "ep{epoch}.pt")])
    scalars = _scalars(tmp_path / "tb")
    assert set(scalars) == {"train/loss", "train/acc", "val/loss", "val/acc", "epoch/lr",
                            "epoch/time"}
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["val/acc"]] == pytest.approx(history["val_acc"], rel=1e-6)
    assert [v for _, v in scalars["epoch/lr"]] == pytest.approx([0.1, 0.05, 0.025])
    _fit([TensorBoardLogger(tmp_path / "tb"), ModelCheckpoint(tmp_path / "ep{epoch}.pt")],
         epochs=4, resume_from=tmp_path / "ep2.pt")
    steps = [s for s, _ in _scalars(tmp_path / "tb")["train/loss"]]
    assert steps == [1, 2, 3, 4]
