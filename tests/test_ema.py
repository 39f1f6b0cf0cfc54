"""The EMA callback: the average it keeps, where the model holds it, resuming, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from tp3nets import EMA, EarlyStopping, ModelCheckpoint, evaluate, fit
from tp3nets.data import TensorLoader
from tp3nets.engine import load_checkpoint


def make_data(n: int = 32) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :3].argmax(dim=1)


def make_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def sgd(params: object) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.2, momentum=0.9)  # type: ignore[arg-type]


class Recorder:
    """After every optimizer step: the expected average, computed independently in float64."""

    def __init__(self, decay: float, warmup: bool) -> None:
        self.decay, self.warmup, self.n = decay, warmup, 0
        self.expected: dict[str, Tensor] = {}

    def on_fit_start(self, state: object) -> None:
        model = state.model  # type: ignore[attr-defined]
        tracked = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        self.tracked = {k: v for k, v in tracked.items() if v.is_floating_point()}
        self.expected = {k: v.detach().double().clone() for k, v in self.tracked.items()}
        state.optimizer.register_step_post_hook(self.step)  # type: ignore[attr-defined]

    def step(self, *args: object) -> None:
        d = min(self.decay, (1 + self.n) / (10 + self.n)) if self.warmup else self.decay
        for k, v in self.tracked.items():
            self.expected[k] = d * self.expected[k] + (1 - d) * v.detach().double()
        self.n += 1


@pytest.mark.parametrize("warmup", [True, False])
def test_after_fit_the_model_holds_the_average_of_every_step(warmup: bool) -> None:
    """The weights fit returns are the exponential average of the weights after each step,
    BatchNorm's running statistics included; the integer counter is the model's own."""
    model = make_model()
    recorder, ema = Recorder(0.8, warmup), EMA(decay=0.8, warmup=warmup)
    fit(model, TensorLoader(make_data(), 8, shuffle=True, seed=0), epochs=3, optimizer=sgd,
        callbacks=[recorder, ema], progress=False)
    assert ema.num_updates == recorder.n == 12
    state = model.state_dict()
    for name, expected in recorder.expected.items():
        torch.testing.assert_close(state[name].double(), expected, rtol=1e-5, atol=1e-6)
    assert int(state["1.num_batches_tracked"]) == 12


def test_training_never_sees_the_average() -> None:
    """The training losses and the live weights are those of a run without EMA."""
    data = TensorLoader(make_data(), 8, shuffle=True, seed=0)
    plain, averaged = make_model(), make_model()
    h1 = fit(plain, data, epochs=3, optimizer=sgd, progress=False)
    ema = EMA(decay=0.5)

    class KeepLive:
        def on_train_epoch_end(self, state: object) -> None:
            self.live = {k: v.clone() for k, v in averaged.state_dict().items()}

    keep = KeepLive()
    h2 = fit(averaged, data, epochs=3, optimizer=sgd, callbacks=[keep, ema], progress=False)
    assert h1["loss"] == h2["loss"]
    for k, v in plain.state_dict().items():
        assert torch.equal(v, keep.live[k]), k
    assert not torch.equal(plain[0].weight, averaged[0].weight)  # ... and ends averaged
    for k, v in ema.live_state_dict(averaged).items():  # the live weights are kept
        assert torch.equal(v, plain.state_dict()[k]), k


def test_validation_and_checkpoints_see_the_average(tmp_path: Path) -> None:
    """val_* figures are the average's; best.pt and EarlyStopping's best copy hold it."""
    x, y = make_data()
    val = TensorLoader((x[:16], y[:16]), 8)
    model = make_model()
    best = ModelCheckpoint(tmp_path / "best.pt", monitor="val_loss", save_best_only=True)
    stopper = EarlyStopping("val_loss", patience=10, restore_best_weights=True)
    history = fit(model, TensorLoader((x, y), 8, shuffle=True, seed=0), epochs=4,
                  optimizer=sgd, val_loader=val, callbacks=[EMA(decay=0.7), stopper, best],
                  progress=False)
    saved = load_checkpoint(tmp_path / "best.pt")
    weights = saved["model"]
    probe = make_model()
    probe.load_state_dict(weights)
    best_row = min(history["val_loss"])
    assert evaluate(probe, val)["loss"] == pytest.approx(best_row, rel=1e-6)
    for k, v in probe.state_dict().items():  # restore_best_weights: the same weights
        assert torch.equal(v, model.state_dict()[k]), k


def test_a_resumed_run_ends_with_the_same_average(tmp_path: Path) -> None:
    """Stopped after epoch 2 and resumed with a new EMA, the run ends bitwise where an
    uninterrupted one does: the live weights went back into the model for training."""
    data = TensorLoader(make_data(), 8, shuffle=True, seed=0)
    whole = make_model()
    fit(whole, data, epochs=4, optimizer=sgd, callbacks=[EMA(decay=0.6)], progress=False)
    first = make_model()
    fit(first, data, epochs=2, optimizer=sgd, progress=False,
        callbacks=[EMA(decay=0.6), ModelCheckpoint(tmp_path / "last.pt")])
    again = make_model()
    ema = EMA(decay=0.6)
    fit(again, data, epochs=4, optimizer=sgd, callbacks=[ema, ModelCheckpoint(tmp_path / "x.pt")],
        resume_from=tmp_path / "last.pt", progress=False)
    assert ema.num_updates == 16
    for k, v in whole.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_averaged_state_dict_without_fit_holds_the_average() -> None:
    model = make_model()
    ema = EMA(decay=0.9, warmup=False)
    fit(model, TensorLoader(make_data(), 8), epochs=1, optimizer=sgd, callbacks=[ema],
        progress=False)
    assert ema.averaged_state_dict(model).keys() == model.state_dict().keys()


def test_every_n_steps_updates_less_often() -> None:
    ema = EMA(decay=0.9, every_n_steps=2)
    fit(make_model(), TensorLoader(make_data(), 8), epochs=3, optimizer=sgd,
        callbacks=[ema], progress=False)
    assert ema.num_updates == 6


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, float("nan"), True, "0.9", None])
def test_bad_decay_is_refused(decay: object) -> None:
    with pytest.raises(ValueError, match=r"EMA expects decay to be a number in \(0, 1\)"):
        EMA(decay=decay)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_bad_every_n_steps_is_refused(n: object) -> None:
    with pytest.raises(ValueError, match="EMA expects every_n_steps to be a positive int"):
        EMA(every_n_steps=n)  # type: ignore[arg-type]


def test_a_checkpoint_of_another_model_is_refused() -> None:
    ema = EMA()

    class S:
        model = make_model()
        optimizer = sgd(model.parameters())

    ema.on_fit_start(S())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="saved for another model"):
        ema.load_state_dict({"average": {"x": torch.zeros(1)}, "num_updates": 1})


def test_a_fit_that_raised_leaves_no_second_update_behind() -> None:
    """The same EMA in a new fit after one that failed mid-epoch counts each step once."""
    model = make_model()
    optimizer = sgd(model.parameters())
    ema = EMA(decay=0.9)

    class Boom:
        def on_batch_end(self, state: object) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit(model, TensorLoader(make_data(), 8), epochs=1, optimizer=optimizer,
            callbacks=[ema, Boom()], progress=False)
    fit(model, TensorLoader(make_data(), 8), epochs=1, optimizer=optimizer,
        callbacks=[ema], progress=False)
    assert ema.num_updates == 4
