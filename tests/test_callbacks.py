"""EarlyStopping and ModelCheckpoint, alone and inside fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from tp3nets import EarlyStopping, ModelCheckpoint, fit
from tp3nets.data import TensorLoader
from tp3nets.engine import FitState, History, load_checkpoint
from tp3nets.engine.callbacks import monitor_mode


def make_data(n: int = 16) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :3].argmax(dim=1)


def make_state(model: nn.Module) -> FitState:
    return FitState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                    scheduler=None, history=History())


def drive(cb: EarlyStopping, state: FitState, values: list[float]) -> list[int]:
    """Feed one monitored value per epoch; return the epochs after which a stop was asked."""
    cb.on_fit_start(state)
    stops = []
    for epoch, value in enumerate(values, start=1):
        state.epoch = epoch
        with torch.no_grad():
            for p in state.model.parameters():
                p.fill_(float(epoch))  # the weights say which epoch they come from
        state.logs = {"val_loss": value}
        cb.on_epoch_end(state)
        if state.stop_training:
            stops.append(epoch)
            state.stop_training = False
    cb.on_fit_end(state)
    return stops


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    """patience=2 stops after the second epoch in a row that does not improve."""
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=2)
    stops = drive(stopper, make_state(model), [3.0, 2.0, 2.5, 2.6])
    assert stops == [4]
    assert stopper.stopped_epoch == 4
    assert stopper.wait == 2
    once = EarlyStopping(patience=1)
    assert drive(once, make_state(model), [3.0, 3.5, 2.0, 2.0]) == [2, 4]


def test_early_stopping_restores_the_best_weights() -> None:
    """restore_best_weights loads the best epoch's weights at the end of the run."""
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=5, min_delta=0.1)
    drive(stopper, make_state(model), [3.0, 2.0, 1.95, 2.5])
    assert stopper.best_epoch == 2
    assert stopper.best == 2.0
    assert torch.all(model.weight == 2.0)


def test_early_stopping_mode_follows_the_figure() -> None:
    """mode='auto' maximises accuracies and minimises everything else."""
    assert EarlyStopping("val_acc").mode == "max"
    assert EarlyStopping("val_loss").mode == "min"
    assert EarlyStopping("val_acc", mode="min").mode == "min"


def test_early_stopping_inside_fit_keeps_the_best_epoch() -> None:
    """Inside fit, a figure that never improves stops the run and brings back epoch 1."""
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    weights: list[Tensor] = []

    class Snapshot:
        def on_epoch_end(self, state: FitState) -> None:
            weights.append(state.model.weight.detach().clone())

    # The training loss falls, so with mode="max" it "worsens" after epoch 1.
    stopper = EarlyStopping("loss", mode="max", patience=2)
    history = fit(model, TensorLoader(make_data(), 4), epochs=10,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                  callbacks=[Snapshot(), stopper], progress=False)
    assert len(history) == 3
    assert stopper.stopped_epoch == 3
    assert torch.equal(model.weight, weights[0])


def test_resuming_a_stopped_run_stays_stopped(tmp_path: Path) -> None:
    """A checkpoint written when EarlyStopping asked to stop resumes to no further epoch."""
    model = nn.Linear(8, 3)
    data = TensorLoader(make_data(), 4)
    fit(model, data, epochs=10, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        callbacks=[ModelCheckpoint(tmp_path / "last.pt"),
                   EarlyStopping("loss", mode="max", patience=1)], progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["stop_training"] is True
    again = nn.Linear(8, 3)
    history = fit(again, data, epochs=10, optimizer=torch.optim.SGD(again.parameters(), lr=0.1),
                  callbacks=[ModelCheckpoint(tmp_path / "last.pt"),
                             EarlyStopping("loss", mode="max", patience=1)],
                  resume_from=tmp_path / "last.pt", progress=False)
    assert len(history) == 2
    assert torch.equal(again.weight, model.weight)


def test_early_stopping_names_a_missing_figure() -> None:
    """Monitoring a figure that no epoch logs raises with the figures that exist (after the
    first epoch: a callback may add figures to state.logs, see below)."""
    model = nn.Linear(8, 3)
    with pytest.raises(ValueError, match=r"monitors 'val_loss' but the epoch logged only acc, "
                                         r"epoch, loss, lr, time \(pass val_loader="):
        fit(model, TensorLoader(make_data(), 4), epochs=2,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            callbacks=[EarlyStopping()], progress=False)


class _AddsF1:
    def on_epoch_end(self, state: FitState) -> None:
        state.logs["val_f1"] = 0.5


def test_a_figure_added_by_a_callback_can_be_monitored() -> None:
    model = nn.Linear(8, 3)
    history = fit(model, TensorLoader(make_data(), 4), epochs=3,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False,
                  callbacks=[_AddsF1(), EarlyStopping("val_f1", patience=1)])
    assert len(history) == 2  # no improvement at epoch 2: stopped


def test_fit_refuses_a_monitor_it_will_not_log() -> None:
    model = nn.Linear(8, 3)
    with pytest.raises(ValueError, match=r"monitor 'val_acc' is not a figure of this run, which "
                                         r"logs epoch, loss, acc, lr, time \(val_\* figures"):
        fit(model, TensorLoader(make_data(), 4), epochs=1, monitor="val_acc",
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False)


def test_callback_arguments_are_checked() -> None:
    """Negative patience, an unknown mode and every_n_epochs < 1 are refused."""
    with pytest.raises(ValueError, match="expects patience to be a non-negative int"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode must be 'min', 'max' or 'auto'"):
        EarlyStopping(mode="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expects every_n_epochs to be a positive int"):
        ModelCheckpoint("x.pt", every_n_epochs=0)
    with pytest.raises(ValueError, match="mode must be 'min', 'max' or 'auto', got 'minimum'"):
        ModelCheckpoint("x.pt", mode="minimum")  # type: ignore[arg-type]
    for bad in (2.5, "3", True):
        with pytest.raises(ValueError,
                           match=f"expects patience to be a non-negative int, got {bad!r}"):
            EarlyStopping(patience=bad)  # type: ignore[arg-type]
    assert EarlyStopping(patience=np.int64(2)).patience == 2
    with pytest.raises(ValueError, match=r"each \{field\} must name a figure"):
        ModelCheckpoint("ep{}.pt")
    with pytest.raises(ValueError, match="is a directory; give a file name in it"):
        ModelCheckpoint(Path(__file__).parent)


@pytest.mark.parametrize(("monitor", "mode"), [
    ("val_loss", "min"), ("loss", "min"), ("val_mae", "min"), ("val_error", "min"),
    ("val_acc", "max"), ("acc", "max"), ("val_accuracy", "max"), ("top1_acc", "max"),
    ("val_f1", "max"), ("val_auc", "max"), ("val_iou", "max"), ("val_r2", "max"),
    ("val_psnr", "max"), ("val_ssim", "max"), ("val_miou", "max"), ("top5", "max"),
])
def test_fit_and_the_callbacks_agree_on_what_is_better(monitor: str, mode: str) -> None:
    """One rule for fit's best epoch, EarlyStopping and ModelCheckpoint."""
    assert monitor_mode(monitor) == mode
    assert EarlyStopping(monitor).mode == mode
    assert ModelCheckpoint("x.pt", monitor=monitor).mode == mode
    assert monitor_mode(monitor, "min") == "min"
    assert monitor_mode(monitor, "max") == "max"


def test_fit_monitors_a_metric_with_the_mode_of_its_name() -> None:
    """A mean absolute error is best when smallest; monitor_mode= overrides the guess."""
    x = torch.randn(32, 4)
    loader = TensorLoader((x, x.sum(1, keepdim=True)), 8)
    mae = {"mae": lambda p, t: (p - t).abs().mean()}

    def run(**kwargs: Any) -> History:
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        return fit(model, loader, epochs=3, optimizer=torch.optim.SGD(model.parameters(),
                   lr=0.05), loss_fn=nn.MSELoss(), metrics=mae, monitor="mae",
                   progress=False, **kwargs)

    history = run()
    assert history.mode == "min"
    assert history["mae"][history.best_epoch - 1] == min(history["mae"])
    assert run(monitor_mode="max").mode == "max"
    with pytest.raises(ValueError, match="mode must be 'min', 'max' or 'auto', got 'up'"):
        run(monitor_mode="up")


def test_model_checkpoint_names_files_by_epoch(tmp_path: Path) -> None:
    """'{epoch}' in the path gives one file per epoch, every n-th epoch only."""
    model = nn.Linear(8, 3)
    saver = ModelCheckpoint(tmp_path / "ep{epoch}.pt", every_n_epochs=2)
    fit(model, TensorLoader(make_data(), 4), epochs=5,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[saver], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep2.pt", "ep4.pt"]
    assert saver.last_saved == tmp_path / "ep4.pt"
    assert load_checkpoint(tmp_path / "ep4.pt")["epoch"] == 4


def test_model_checkpoint_save_best_only(tmp_path: Path) -> None:
    """save_best_only writes only when the monitored figure improves."""
    model = nn.Linear(8, 3)
    saver = ModelCheckpoint(tmp_path / "best{epoch}.pt", monitor="loss", mode="max",
                            save_best_only=True)
    history = fit(model, TensorLoader(make_data(), 4), epochs=3,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[saver],
                  progress=False)
    assert history["loss"][0] > history["loss"][1] > history["loss"][2]
    assert [p.name for p in tmp_path.iterdir()] == ["best1.pt"]
    ckpt = load_checkpoint(tmp_path / "best1.pt")
    assert ckpt["history"]["epochs"][0]["loss"] == history["loss"][0]


def test_on_train_epoch_end_runs_between_training_and_validation() -> None:
    """The hook sees the epoch's training figures, before any val_* figure exists."""
    model = nn.Linear(8, 3)
    x, y = make_data()
    seen: list[tuple[str, int, list[str]]] = []

    class Order:
        def on_epoch_start(self, state: FitState) -> None:
            seen.append(("start", state.epoch, []))

        def on_train_epoch_end(self, state: FitState) -> None:
            seen.append(("train_end", state.epoch, sorted(state.logs)))

        def on_epoch_end(self, state: FitState) -> None:
            seen.append(("end", state.epoch, sorted(state.logs)))

    fit(model, TensorLoader((x, y), 4), epochs=2, val_loader=TensorLoader((x, y), 8),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[Order()],
        progress=False)
    assert [s[:2] for s in seen] == [("start", 1), ("train_end", 1), ("end", 1),
                                     ("start", 2), ("train_end", 2), ("end", 2)]
    assert seen[1][2] == ["acc", "loss"]
    assert "val_acc" in seen[2][2]
