"""fit, evaluate, predict, train_one_epoch and History on tiny models and synthetic data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, Dataset

from tp3nets import ConvNet2, History, evaluate, fit, predict, seed_everything, train_one_epoch
from tp3nets.data import TensorLoader
from tp3nets.engine import FitState, accuracy, default_unpack, load_checkpoint
from tp3nets.engine import _distributed as dist_utils
from tp3nets.engine.callbacks import ModelCheckpoint

CUDA = ["cuda"] if torch.cuda.is_available() else []


class TinyNet(nn.Module):
    """8 features → 3 classes, with dropout so that the RNG matters."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.body(x))
        return out


def make_data(n: int = 40, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :3].argmax(dim=1)


def sgd(model: nn.Module, lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr)


def rows_without_time(history: History) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "time"} for row in history.epochs]


# --------------------------------------------------------------------------------------
# figures


def test_fit_history_has_train_and_val_figures_per_epoch() -> None:
    """fit returns one History row per epoch with loss, acc, val_loss, val_acc, lr, time."""
    torch.manual_seed(0)
    model = TinyNet()
    data, val = make_data(40), make_data(20, seed=1)
    history = fit(model, TensorLoader(data, 8, shuffle=True), epochs=3, optimizer=sgd(model),
                  val_loader=TensorLoader(val, 8), progress=False)
    assert len(history) == 3
    assert history["epoch"] == [1.0, 2.0, 3.0]
    assert set(history.keys()) == {"epoch", "loss", "acc", "val_loss", "val_acc", "lr", "time"}
    assert all(0.0 <= a <= 1.0 for a in history["val_acc"])
    # The last epoch's validation figures are those of the final weights.
    assert evaluate(model, TensorLoader(val, 8)) == {
        "loss": history["val_loss"][-1], "acc": history["val_acc"][-1]
    }
    assert history.monitor == "val_loss"
    assert history.best_epoch == 1 + min(range(3), key=lambda i: history["val_loss"][i])


def test_evaluate_weights_batches_by_size() -> None:
    """evaluate over batches of 4, 4 and 2 gives the per-sample mean, not the batch mean."""
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    x, y = make_data(10)
    logits = model(x)
    per_sample = nn.functional.cross_entropy(logits, y, reduction="none")
    expected_acc = (logits.argmax(1) == y).double().mean().item()
    small = evaluate(model, TensorLoader((x, y), 4))
    whole = evaluate(model, TensorLoader((x, y), 10))
    assert small["loss"] == pytest.approx(per_sample.double().mean().item(), rel=1e-6)
    assert small["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert small["acc"] == expected_acc == whole["acc"]


def test_train_figures_weighted_by_batch_size() -> None:
    """With lr=0 an epoch's training loss equals the full-batch loss despite a short batch."""
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    x, y = make_data(10)
    figures = train_one_epoch(model, TensorLoader((x, y), 4), optimizer=sgd(model, lr=0.0))
    expected = nn.functional.cross_entropy(model(x), y).item()
    assert figures["loss"] == pytest.approx(expected, rel=1e-6)


def test_metric_objects_and_plain_callables_both_work() -> None:
    """A torchmetrics-shaped object and a callable returning a float give the right values."""

    class Hits:
        def __init__(self) -> None:
            self.right, self.total, self.resets = 0, 0, 0

        def update(self, preds: Tensor, target: Tensor) -> None:
            self.right += int((preds.argmax(1) == target).sum())
            self.total += len(target)

        def compute(self) -> Tensor:
            return torch.tensor(self.right / self.total)

        def reset(self) -> None:
            self.right, self.total = 0, 0
            self.resets += 1

    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    x, y = make_data(10)
    hits = Hits()
    figures = evaluate(model, TensorLoader((x, y), 4), metrics={
        "hits": hits, "first": lambda p, t: float((p.argmax(1) == 0).float().mean()),
        "acc": accuracy,
    })
    preds = model(x).argmax(1)
    assert figures["hits"] == pytest.approx(figures["acc"], abs=1e-7)
    assert figures["acc"] == (preds == y).double().mean().item()
    assert figures["first"] == pytest.approx((preds == 0).double().mean().item(), abs=1e-7)
    assert hits.resets == 1
    assert hits.total == 10


def test_metric_without_reset_starts_afresh_each_pass() -> None:
    """A metric object with update/compute but no reset() counts each pass on its own."""

    class Seen:
        def __init__(self) -> None:
            self.n = 0

        def update(self, preds: Tensor, target: Tensor) -> None:
            self.n += len(target)

        def compute(self) -> float:
            return float(self.n)

    model = TinyNet()
    history = fit(model, TensorLoader(make_data(8), 4), epochs=2, optimizer=sgd(model),
                  val_loader=TensorLoader(make_data(6), 4), metrics={"seen": Seen()},
                  progress=False)
    assert history["seen"] == [8.0, 8.0]
    assert history["val_seen"] == [6.0, 6.0]


def test_metrics_must_be_metric_like() -> None:
    """A metric that is neither callable nor update/compute is refused by name."""
    model = TinyNet()
    with pytest.raises(TypeError, match="metric 'bad' must be callable"):
        evaluate(model, TensorLoader(make_data(8), 4), metrics={"bad": 3})  # type: ignore[dict-item]


def test_accuracy_counts_top1_hits() -> None:
    """accuracy compares the argmax over classes with the labels, also for (N, C, H, W)."""
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(logits, torch.tensor([1, 0, 0])).item() == pytest.approx(2 / 3)
    seg = torch.zeros(2, 3, 4, 4)
    seg[:, 2] = 1.0
    assert accuracy(seg, torch.full((2, 4, 4), 2)).item() == 1.0


def test_accuracy_refuses_shapes_it_cannot_compare() -> None:
    """Predictions that match neither (N, C) against (N,) nor the targets' shape: an error,
    not a silently broadcast (N, N) comparison."""
    with pytest.raises(ValueError, match=r"predictions \(4,\) and targets \(4, 1\)"):
        accuracy(torch.rand(4), torch.zeros(4, 1))
    with pytest.raises(TypeError, match="accuracy needs tensors"):
        accuracy([0.1, 0.9], torch.tensor([1]))  # type: ignore[arg-type]


class _Lookup(nn.Module):
    """Returns the logits stored for each sample id: outputs chosen by the test."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, ids: Tensor) -> Tensor:
        return self.logits[ids]


def _meter_accuracy(batches: list[tuple[Tensor, Tensor]], device: str) -> float:
    """The epoch accuracy a Meter made for ``device`` reports for these batches (the
    tensors stay on the CPU: "cuda" only selects the accelerator's grouped counting)."""
    from tp3nets.engine._metrics import Meter

    meter = Meter({"acc": accuracy}, torch.device(device))
    for logits, target in batches:
        meter.update(torch.tensor(0.5), logits, target, logits.shape[0])
    figures, _ = meter.compute()
    return figures["acc"]


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_grouped_accuracy_counts_equal_batch_by_batch_counts(batch_size: int) -> None:
    """On an accelerator accuracy is counted over groups of batches (fewer kernel
    launches); on the CPU batch by batch. Both equal the exact count, for groups that fill
    up, groups cut by the element budget and a short last batch."""
    g = torch.Generator().manual_seed(3)
    n = 1500
    logits = torch.randn(n, 10, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    batches = [
        (logits[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, n, batch_size)
    ]
    expected = int((logits.argmax(1) == labels).sum()) / n
    assert _meter_accuracy(batches, "cuda") == expected
    assert _meter_accuracy(batches, "cpu") == expected
    loader = TensorLoader((torch.arange(n), labels), batch_size)
    assert evaluate(_Lookup(logits), loader)["acc"] == expected


def _accuracy_cases() -> list[tuple[str, nn.Module, Tensor, Tensor, float]]:
    g = torch.Generator().manual_seed(1)
    logit = torch.randn(50, generator=g) * 3 + 0.1
    binary = (logit > 0).float()
    logits = torch.randn(50, 4, generator=g)
    best = logits.argmax(1)
    wrong = (best + 1) % 4
    one_hot = nn.functional.one_hot(torch.cat([best[:30], wrong[30:]]), 4).float()
    soft = 0.7 * one_hot + 0.1  # class probabilities, the largest on the one-hot class
    labels = torch.cat([best[:20], wrong[20:30], torch.full((20,), -100)])
    return [
        ("bce-logits", nn.BCEWithLogitsLoss(), logit, binary, 1.0),
        ("bce-logits-(N,1)", nn.BCEWithLogitsLoss(), logit[:, None], binary[:, None], 1.0),
        ("bce-probabilities", nn.BCELoss(), torch.sigmoid(logit), binary, 1.0),
        ("ce-one-hot", nn.CrossEntropyLoss(), logits, one_hot, 0.6),
        ("ce-soft", nn.CrossEntropyLoss(), logits, soft, 0.6),
        ("ce-ignore-index", nn.CrossEntropyLoss(), logits, labels, 20 / 30),
        ("nll-ignore-index", nn.NLLLoss(ignore_index=7), logits,
         torch.where(labels == -100, 7, labels), 20 / 30),
        ("ce-all-counted", nn.CrossEntropyLoss(), logits, best, 1.0),
    ]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize(("name", "loss_fn", "preds", "target", "expected"), _accuracy_cases(),
                         ids=[c[0] for c in _accuracy_cases()])
def test_accuracy_reads_predictions_as_the_loss_does(
    device: str, name: str, loss_fn: nn.Module, preds: Tensor, target: Tensor,
    expected: float,
) -> None:
    """Logits of BCEWithLogitsLoss are cut at 0, probabilities of BCELoss at 0.5; one-hot
    and soft targets of CrossEntropyLoss compare argmaxes; ignore_index is not counted.
    The same on the CPU and on the accelerator path, through fit/evaluate's meter."""
    from tp3nets.engine._metrics import Meter

    assert accuracy(preds, target, loss_fn=loss_fn).item() == pytest.approx(expected)
    meter = Meter({"acc": accuracy}, torch.device(device), loss_fn)
    for i in range(0, 50, 16):
        meter.update(torch.tensor(0.5), preds[i : i + 16], target[i : i + 16],
                     len(target[i : i + 16]))
    assert meter.compute()[0]["acc"] == pytest.approx(expected)
    if device == "cpu":
        loader = TensorLoader((torch.arange(50), target), 16)
        got = evaluate(_Lookup(preds), loader, loss_fn=loss_fn)["acc"]
        assert got == pytest.approx(expected)


def test_grouped_accuracy_flushes_when_batch_shapes_change() -> None:
    """Batches whose outputs differ in shape beyond the batch dimension (segmentation maps
    of several sizes) are counted right: a group never mixes shapes."""
    sizes = [4, 4, 6, 6, 6, 4]
    batches = []
    correct = total = 0
    g = torch.Generator().manual_seed(5)
    for side in sizes:
        target = torch.randint(0, 3, (2, side, side), generator=g)
        logits = torch.randn(2, 3, side, side, generator=g)
        correct += int((logits.argmax(1) == target).sum())
        total += target.numel()
        batches.append((logits, target))
    assert _meter_accuracy(batches, "cuda") == correct / total
    assert _meter_accuracy(batches, "cpu") == correct / total

    class Echo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x: Tensor) -> Tensor:
            return x * self.w

    result = evaluate(Echo(), batches, loss_fn=nn.CrossEntropyLoss())
    assert result["acc"] == correct / total


def test_cpu_meter_keeps_figures_as_python_numbers() -> None:
    """On the CPU the per-batch loss and metric figures are kept as Python numbers (the
    loss as the float the NaN check read), and the epoch figures come out right."""
    from tp3nets.engine._metrics import Meter

    meter = Meter({"acc": accuracy, "mean": lambda p, t: p.mean()}, torch.device("cpu"))
    for _ in range(3):
        meter.update(torch.tensor(0.25), torch.randn(4, 10), torch.randint(0, 10, (4,)), 4)
    figures = meter.compute()[0]
    kept = [*meter.losses, *(v for values in meter.values.values() for v in values)]
    assert len(kept) == 3 + 3 + 1  # losses, means, one accuracy count for the group
    assert not [v for v in kept if isinstance(v, Tensor)]
    assert figures["loss"] == 0.25


# --------------------------------------------------------------------------------------
# training mechanics


def _manual_steps(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> None:
    """One SGD(lr=1) step on the mean of the batches' mean-loss gradients."""
    grads = [torch.zeros_like(p) for p in model.parameters()]
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y) / len(batches)
        for g, d in zip(grads, torch.autograd.grad(loss, list(model.parameters())), strict=True):
            g += d
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads, strict=True):
            p -= g


class _NoLen:
    """An iterable without len(): fit cannot know the size of the last window."""

    def __init__(self, loader: TensorLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)


@pytest.mark.parametrize("wrap", [False, True], ids=["with-len", "without-len"])
def test_gradient_accumulation_divides_by_real_window(wrap: bool) -> None:
    """With 3 batches and accumulate 2, the second step uses the last batch's gradient alone."""
    torch.manual_seed(0)
    model = nn.Linear(8, 3).double()
    reference = nn.Linear(8, 3).double()
    reference.load_state_dict(model.state_dict())
    x, y = make_data(12)
    x = x.double()
    loader = TensorLoader((x, y), 4)
    train_one_epoch(model, _NoLen(loader) if wrap else loader, optimizer=sgd(model, lr=1.0),
                    accumulate_grad_batches=2, metrics={})
    _manual_steps(reference, [(x[:4], y[:4]), (x[4:8], y[4:8])])
    _manual_steps(reference, [(x[8:], y[8:])])
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_modes_set_and_restored_per_submodule() -> None:
    """Training runs in train mode, evaluation in eval mode; each submodule's mode comes back."""

    class Recorder(TinyNet):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[bool, bool, bool]] = []

        def forward(self, x: Tensor) -> Tensor:
            self.seen.append((self.training, self.head.training, torch.is_grad_enabled()))
            return super().forward(x)

    model = Recorder()
    model.body.eval()  # a user-frozen part: must be back in eval mode after each call
    before = [m.training for m in model.modules()]
    data = make_data(8)
    fit(model, TensorLoader(data, 8), epochs=1, optimizer=sgd(model),
        val_loader=TensorLoader(data, 8), progress=False)
    assert model.seen == [(True, True, True), (False, False, False)]
    assert [m.training for m in model.modules()] == before
    predict(model, data[0])
    assert model.seen[-1] == (False, False, False)
    assert [m.training for m in model.modules()] == before


def test_a_part_left_in_eval_mode_stays_so_in_training() -> None:
    """A frozen backbone's BatchNorm keeps its running statistics through fit (modes as
    the user set them); a model in eval mode as a whole trains in train mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    model[1].eval()
    frozen = model[1].running_mean.clone()
    data = make_data(16)
    fit(model, TensorLoader(data, 8), epochs=1, optimizer=sgd(model), progress=False,
        val_loader=TensorLoader(data, 8))
    assert torch.equal(model[1].running_mean, frozen)
    assert model.training
    assert not model[1].training
    model.eval()
    fit(model, TensorLoader(data, 8), epochs=1, optimizer=sgd(model), progress=False)
    assert not torch.equal(model[1].running_mean, frozen)
    assert not model.training
    # Under a wrapper (DDP's, here DataParallel's, in train mode when built) the user's
    # model decides: in eval mode as a whole, it trains in train mode.
    from tp3nets.engine._batches import set_mode as _mode

    wrapped = nn.DataParallel(model)
    with _mode(wrapped, True):
        assert all(m.training for m in model.modules())
    assert not any(m.training for m in model.modules())


def test_evaluation_runs_in_inference_mode() -> None:
    """evaluate and predict run the model under torch.inference_mode."""
    seen: list[bool] = []
    model = TinyNet()
    model.register_forward_hook(lambda *_: seen.append(torch.is_inference_mode_enabled()))
    data = make_data(8)
    evaluate(model, TensorLoader(data, 4))
    predict(model, data[0])
    assert seen == [True, True, True]


def test_fit_accepts_dataloader_and_dict_batches() -> None:
    """fit on a torch DataLoader of dict batches gives the weights of the TensorLoader run."""

    class DictSet(Dataset[dict[str, Tensor]]):
        def __init__(self, x: Tensor, y: Tensor) -> None:
            self.x, self.y = x, y

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict[str, Tensor]:
            return {"image": self.x[i], "label": self.y[i]}

    x, y = make_data(20)
    runs = []
    for loader in (DataLoader(DictSet(x, y), batch_size=6), TensorLoader((x, y), 6)):
        torch.manual_seed(0)
        model = TinyNet(dropout=0.0)  # a DataLoader draws from the global RNG per epoch
        history = fit(model, loader, epochs=2, optimizer=sgd(model), progress=False)
        runs.append((model.state_dict(), rows_without_time(history)))
    (sd_a, hist_a), (sd_b, hist_b) = runs
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert hist_a == hist_b


def test_default_unpack_names_the_keys_it_needs() -> None:
    """A dict batch without known keys gets an error that lists its keys and the way out."""
    with pytest.raises(ValueError, match=r"keys \['a', 'b'\]; pass unpack="):
        default_unpack({"a": 1, "b": 2})


def test_seed_everything_makes_fit_bitwise_reproducible() -> None:
    """Two fit runs with the same seed give bitwise identical weights and history on CPU."""
    runs = []
    for _ in range(2):
        seed_everything(123)
        model = TinyNet()
        data = make_data(40)
        loader = DataLoader(torch.utils.data.TensorDataset(*data), batch_size=8, shuffle=True)
        history = fit(model, loader, epochs=2, optimizer=torch.optim.Adam(model.parameters()),
                      val_loader=TensorLoader(make_data(16, seed=2), 8), progress=False)
        runs.append((model.state_dict(), rows_without_time(history)))
    (sd_a, hist_a), (sd_b, hist_b) = runs
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert hist_a == hist_b


def test_scheduler_steps_per_epoch_or_per_step() -> None:
    """An epoch scheduler moves the lr once per epoch, a step scheduler once per batch."""
    data = make_data(16)
    for interval, expected in (("epoch", [0.1, 0.05]), ("step", [0.1 * 0.5**4, 0.1 * 0.5**8])):
        model = TinyNet()
        opt = sgd(model)
        # A factory (optimizer -> scheduler) works too.
        history = fit(model, TensorLoader(data, 4), epochs=2, optimizer=opt,
                      scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.5),
                      scheduler_interval=interval, progress=False)  # type: ignore[arg-type]
        assert history["lr"] == pytest.approx(expected)


def test_reduce_lr_on_plateau_follows_monitor() -> None:
    """ReduceLROnPlateau is stepped once per epoch with the monitored figure."""

    class Plateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
        seen: ClassVar[list[float]] = []

        def step(self, metrics: Any, epoch: Any = None) -> None:  # type: ignore[override]
            self.seen.append(float(metrics))
            super().step(metrics)

    model = TinyNet()
    opt = sgd(model)
    data = make_data(8)
    history = fit(model, TensorLoader(data, 4), epochs=2, optimizer=opt,
                  scheduler=Plateau(opt), val_loader=TensorLoader(data, 4), monitor="val_acc",
                  progress=False)
    assert Plateau.seen == history["val_acc"]
    with pytest.raises(ValueError, match="monitor 'val_loss' is not a figure of this run"):
        fit(model, TensorLoader(data, 4), epochs=1, optimizer=opt, monitor="val_loss",
            scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(opt), progress=False)


def test_callback_hooks_run_in_order_and_can_stop() -> None:
    """Hooks run fit_start, epoch_start, batch_end…, epoch_end, fit_end; stop ends the run."""

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def on_fit_start(self, state: FitState) -> None:
            self.calls.append("fit_start")

        def on_epoch_start(self, state: FitState) -> None:
            self.calls.append(f"epoch_start {state.epoch}")

        def on_batch_end(self, state: FitState) -> None:
            self.calls.append(f"batch {state.batch}")
            assert math.isfinite(state.logs["loss"])

        def on_epoch_end(self, state: FitState) -> None:
            self.calls.append(f"epoch_end {state.epoch}")
            state.stop_training = state.epoch == 2

        def on_fit_end(self, state: FitState) -> None:
            self.calls.append("fit_end")

    rec = Recorder()
    model = TinyNet()
    history = fit(model, TensorLoader(make_data(8), 4), epochs=5, optimizer=sgd(model),
                  callbacks=[rec, object()], progress=False)
    assert len(history) == 2
    assert rec.calls == [
        "fit_start", "epoch_start 1", "batch 0", "batch 1", "epoch_end 1",
        "epoch_start 2", "batch 0", "batch 1", "epoch_end 2", "fit_end",
    ]


def test_grad_clip_norm_bounds_the_step() -> None:
    """With grad_clip_norm=1e-3 and SGD lr=1 no weight moves by more than 1e-3 in a step."""
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, TensorLoader(make_data(8), 8), epochs=1, optimizer=sgd(model, lr=1.0),
        grad_clip_norm=1e-3, progress=False)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before,
                                                                     strict=True)])
    assert 0 < moved.norm().item() <= 1e-3 + 1e-9


# --------------------------------------------------------------------------------------
# output


def test_progress_false_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    """progress=False prints nothing at all."""
    model = TinyNet()
    fit(model, TensorLoader(make_data(8), 4), epochs=2, optimizer=sgd(model), progress=False)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ""


def test_non_interactive_progress_prints_one_line_per_epoch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On a non-terminal stream, progress=None prints a one-line summary per epoch, no bar."""
    model = TinyNet()
    history = fit(model, TensorLoader(make_data(8), 4), epochs=2, optimizer=sgd(model),
                  val_loader=TensorLoader(make_data(8), 4))
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    assert err == ""
    assert lines[0].startswith("epoch 1/2  loss ")
    assert f"val_acc {history['val_acc'][1]:.4f}" in lines[1]


def test_progress_true_draws_a_tqdm_bar(capsys: pytest.CaptureFixture[str]) -> None:
    """progress=True draws a tqdm bar on stderr and keeps a summary line per epoch."""
    model = TinyNet()
    fit(model, TensorLoader(make_data(8), 4), epochs=1, optimizer=sgd(model), progress=True)
    out, err = capsys.readouterr()
    assert "epoch 1/1" in err
    assert "/2 [" in err
    assert out.count("epoch 1/1  loss") == 1


def test_only_rank_zero_prints_and_writes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A process of rank 1 prints nothing and writes no checkpoint."""
    monkeypatch.setattr(dist_utils, "rank", lambda: 1)
    model = TinyNet()
    fit(model, TensorLoader(make_data(8), 4), epochs=1, optimizer=sgd(model), progress=True,
        callbacks=[ModelCheckpoint(tmp_path / "last.pt")])
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ""
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# precision, memory format, compile


def test_bf16_autocasts_on_cpu() -> None:
    """precision='bf16' runs forward passes under CPU bfloat16 autocast; figures stay finite."""
    seen: list[tuple[bool, torch.dtype]] = []

    def hook(module: nn.Module, args: Any, out: Tensor) -> None:
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))

    torch.manual_seed(0)
    model = TinyNet()
    model.head.register_forward_hook(hook)
    history = fit(model, TensorLoader(make_data(8), 8), epochs=1, optimizer=sgd(model),
                  val_loader=TensorLoader(make_data(8), 8), precision="bf16", progress=False)
    assert seen == [(True, torch.bfloat16), (True, torch.bfloat16)]
    assert all(math.isfinite(v) for v in history.epochs[0].values())
    assert model.head.weight.dtype == torch.float32
    assert predict(model, make_data(4)[0], precision="bf16").dtype == torch.float32


def test_fp16_on_cpu_is_refused() -> None:
    """precision='16' on the CPU raises an error that points to bf16."""
    model = TinyNet()
    with pytest.raises(ValueError, match=r"precision='16'.*needs a CUDA device.*bf16"):
        fit(model, TensorLoader(make_data(8), 4), epochs=1, optimizer=sgd(model),
            precision="16", device="cpu")


def test_unknown_precision_is_refused() -> None:
    """A precision other than 32, bf16, 16 is refused with the allowed values."""
    model = TinyNet()
    with pytest.raises(ValueError, match="precision must be one of 32, bf16, 16, got 'fp8'"):
        evaluate(model, TensorLoader(make_data(8), 4), precision="fp8")  # type: ignore[arg-type]


@pytest.mark.parametrize("device", CUDA or [pytest.param("cuda", marks=pytest.mark.skip(
    reason="no CUDA device"))])
def test_fp16_trains_with_grad_scaler_on_cuda(device: str) -> None:
    """precision='16' on CUDA trains with a GradScaler and moves CPU optimizer state once."""
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters())
    model(make_data(4)[0]).sum().backward()
    opt.step()  # optimizer state now exists on the CPU
    history = fit(model, TensorLoader(make_data(16), 8), epochs=1, optimizer=opt, device=device,
                  precision="16", progress=False)
    assert math.isfinite(history["loss"][0])
    assert all(s["exp_avg"].device.type == "cuda" for s in opt.state.values())


def _count_precisions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The precision objects built from now on, by class name."""
    from tp3nets.engine import _precision

    made: list[str] = []
    real_init = _precision.FloatPrecision.__init__

    def init(self: Any, device: Any) -> None:
        made.append(type(self).__name__)
        real_init(self, device)

    monkeypatch.setattr(_precision.FloatPrecision, "__init__", init)
    return made


def test_fit_builds_the_precision_once_and_passes_it_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """precision='bf16' becomes one object at fit's setup, which every epoch uses (it was
    turned back into its name and rebuilt every epoch); a precision object is taken as
    it is, and callbacks see it on the state."""
    made = _count_precisions(monkeypatch)
    torch.manual_seed(0)
    model = TinyNet()
    fit(model, TensorLoader(make_data(16), 8), epochs=3, optimizer=sgd(model),
        precision="bf16", progress=False)
    assert made == ["BF16Precision"]
    from tp3nets.engine import BF16Precision

    precision = BF16Precision("cpu")
    made.clear()
    seen: list[tuple[Any, bool]] = []

    class See:
        def on_batch_end(self, state: FitState) -> None:
            seen.append((state.precision, torch.is_autocast_enabled("cpu")))

    model.head.register_forward_hook(
        lambda m, a, out: seen.append((None, out.dtype == torch.bfloat16)))
    fit(model, TensorLoader(make_data(16), 8), epochs=2, optimizer=sgd(model),
        precision=precision, callbacks=[See()], progress=False)
    assert made == []
    assert seen == [(None, True), (precision, False)] * 4


def test_train_one_epoch_takes_a_precision_object_and_checks_it() -> None:
    """train_one_epoch takes a precision object that a loop keeps across epochs; one made
    for another kind of device, or given with a scaler beside its own, is refused."""
    from tp3nets.engine import BF16Precision, FloatPrecision

    model = TinyNet()
    loader = TensorLoader(make_data(16), 8)
    figures = train_one_epoch(model, loader, optimizer=sgd(model),
                              precision=BF16Precision("cpu"))
    assert sorted(figures) == ["acc", "loss"]
    with pytest.raises(ValueError, match="BF16Precision given as precision was made for a "
                       "'cuda' device, but the model runs on 'cpu'; pass precision='bf16'"):
        train_one_epoch(model, loader, optimizer=sgd(model),
                        precision=BF16Precision(torch.device("cuda")))
    with pytest.raises(ValueError, match="a scaler was given beside a FloatPrecision, which "
                       "owns its gradient scaler"):
        train_one_epoch(model, loader, optimizer=sgd(model), precision=FloatPrecision("cpu"),
                        scaler=torch.amp.GradScaler("cpu"))


def test_fit_checks_its_arguments_once_not_every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit checks the optimizer (a scan of its parameters' ids) once, at setup, and runs
    the unchecked inner epoch: train_one_epoch's checks never run under fit (they ran
    again every epoch)."""
    from tp3nets.engine import _epoch, _training

    calls = {"setup": 0, "epoch checks": 0, "epochs": 0}

    def counting(key: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[key] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(_training, "check_optimizer",
                        counting("setup", _training.check_optimizer))
    monkeypatch.setattr(_epoch, "check_optimizer",
                        counting("epoch checks", _epoch.check_optimizer))
    monkeypatch.setattr(_epoch, "train_one_epoch",
                        counting("epoch checks", _epoch.train_one_epoch))
    monkeypatch.setattr(_training, "train_epoch", counting("epochs", _training.train_epoch))
    model = TinyNet()
    fit(model, TensorLoader(make_data(16), 8), epochs=3, optimizer=sgd(model), progress=False,
        val_loader=TensorLoader(make_data(8), 8))
    assert calls == {"setup": 1, "epoch checks": 0, "epochs": 3}
    train_one_epoch(model, TensorLoader(make_data(16), 8), optimizer=sgd(model))
    assert calls == {"setup": 1, "epoch checks": 1, "epochs": 3}


def test_a_closure_optimizer_that_cannot_accumulate_is_refused_at_setup() -> None:
    """LBFGS with accumulate_grad_batches=2 is refused by fit's setup, before any
    callback runs (the check ran in every epoch's stepper)."""
    started: list[int] = []

    class Start:
        def on_fit_start(self, state: FitState) -> None:
            started.append(1)

    model = TinyNet()
    with pytest.raises(ValueError, match="LBFGS evaluates the loss itself"):
        fit(model, TensorLoader(make_data(16), 8), epochs=1, progress=False,
            optimizer=torch.optim.LBFGS(model.parameters()), accumulate_grad_batches=2,
            callbacks=[Start()])
    assert started == []


@pytest.mark.parametrize("device", CUDA or [pytest.param("cuda", marks=pytest.mark.skip(
    reason="no CUDA device"))])
def test_fp16_scaler_is_owned_by_the_precision_and_checkpointed(
    device: str, tmp_path: Path
) -> None:
    """precision='16': the FP16MixedPrecision object owns the GradScaler that carries its
    scale across epochs; the checkpoint's scaler field is its state, and a resumed run
    given an FP16MixedPrecision of its own gets that state back."""
    from tp3nets.engine import FP16MixedPrecision

    torch.manual_seed(0)
    model = TinyNet()
    precision = FP16MixedPrecision(device)
    fit(model, TensorLoader(make_data(16), 8), epochs=2, optimizer=sgd(model), device=device,
        precision=precision, progress=False, callbacks=[ModelCheckpoint(tmp_path / "c.pt")])
    saved = load_checkpoint(tmp_path / "c.pt")
    assert saved["scaler"] == precision.scaler.state_dict()
    assert saved["scaler"]["_growth_tracker"] == 4  # 4 steps without inf: one scaler
    again = FP16MixedPrecision(device)
    fit(model, TensorLoader(make_data(16), 8), epochs=3, optimizer=sgd(model), device=device,
        precision=again, progress=False, resume_from=tmp_path / "c.pt")
    assert again.scaler.state_dict()["_growth_tracker"] == 6


def test_channels_last_runs_model_and_inputs_in_channels_last() -> None:
    """channels_last=True converts the conv weights and the 4-D inputs to channels-last."""
    seen: list[bool] = []
    model = ConvNet2()
    model.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    x = torch.rand(4, 1, 28, 28)
    fit(model, TensorLoader((x, torch.arange(4)), 4), epochs=1, optimizer=sgd(model),
        channels_last=True, progress=False)
    conv = model.layer1[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert seen == [True]


def test_compile_checkpoints_keep_plain_keys(tmp_path: Any) -> None:
    """fit(compile=...) and a user-compiled model both write checkpoints without _orig_mod."""
    data = make_data(8)
    torch.manual_seed(0)
    model = TinyNet()
    fit(model, TensorLoader(data, 4), epochs=1, optimizer=sgd(model), progress=False,
        compile={"backend": "eager"}, callbacks=[ModelCheckpoint(tmp_path / "a.pt")])
    compiled = torch.compile(TinyNet(), backend="eager")
    seen: list[type] = []

    class SeeModel:
        def on_fit_start(self, state: FitState) -> None:
            seen.append(type(state.model))

    fit(compiled, TensorLoader(data, 4), epochs=1, optimizer=sgd(compiled), progress=False,
        callbacks=[ModelCheckpoint(tmp_path / "b.pt"), SeeModel()])
    assert seen == [TinyNet]  # callbacks see the bare module
    for name, source in (("a.pt", model), ("b.pt", compiled)):
        ckpt = load_checkpoint(tmp_path / name)
        assert sorted(ckpt["model"]) == sorted(TinyNet().state_dict())
        assert ckpt["model_class"] == "TinyNet"
        fresh = TinyNet()
        fresh.load_state_dict(ckpt["model"], strict=True)
        plain = source._orig_mod if hasattr(source, "_orig_mod") else source
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in plain.state_dict().items())


# --------------------------------------------------------------------------------------
# bad input


def test_empty_loader_is_refused() -> None:
    """An empty training loader raises before any work, naming the loader."""
    model = TinyNet()
    empty = TensorLoader((torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)), 4)
    with pytest.raises(ValueError, match=r"train_loader is empty \(0 batches\)"):
        fit(model, empty, epochs=1, optimizer=sgd(model))
    with pytest.raises(ValueError, match="the loader yielded no batch"):
        evaluate(model, _NoLen(empty))  # type: ignore[arg-type]


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True])
def test_non_positive_epochs_are_refused(epochs: Any) -> None:
    """fit refuses an epochs that is not a positive int."""
    model = TinyNet()
    with pytest.raises(ValueError, match="fit expects epochs to be a positive int"):
        fit(model, TensorLoader(make_data(8), 4), epochs=epochs, optimizer=sgd(model))


def test_target_shape_the_loss_cannot_take() -> None:
    """Targets of the wrong shape get an error naming the loss and both shapes."""
    model = TinyNet()
    x, y = make_data(8)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss cannot take model output \(4, 3\) "
                                         r"with target \(4, 2\)"):
        fit(model, TensorLoader((x, y[:, None].repeat(1, 2)), 4), epochs=1, optimizer=sgd(model))


def test_labels_outside_the_model_classes() -> None:
    """Labels outside [0, C) are refused with the class count and the label range."""
    model = TinyNet()
    x, _ = make_data(8)
    bad = torch.tensor([0, 1, 2, 0, 1, 3, 2, 1])
    msg = r"labels must be class indices in \[0, 3\) for a model with 3 outputs, got labels " \
          r"from [01] to 3"
    with pytest.raises(ValueError, match=msg):
        fit(model, TensorLoader((x, bad), 4), epochs=1, optimizer=sgd(model))
    with pytest.raises(ValueError, match=msg):
        evaluate(model, TensorLoader((x, bad), 8))


def test_optimizer_for_another_model_is_refused() -> None:
    """An optimizer over another model's parameters raises before training."""
    model = TinyNet()
    with pytest.raises(ValueError, match=r"optimizer holds 4 parameter tensor.*another model"):
        fit(model, TensorLoader(make_data(8), 4), epochs=1, optimizer=sgd(TinyNet()))


def test_scheduler_for_another_optimizer_is_refused() -> None:
    """A scheduler built on another optimizer raises before training."""
    model = TinyNet()
    other = torch.optim.lr_scheduler.StepLR(sgd(TinyNet()), 1)
    with pytest.raises(ValueError, match="scheduler was built for another optimizer"):
        fit(model, TensorLoader(make_data(8), 4), epochs=1, optimizer=sgd(model),
            scheduler=other)


def test_nan_loss_raises_floating_point_error() -> None:
    """A loss that turns NaN stops training with FloatingPointError naming the batch."""
    model = TinyNet()
    x, y = make_data(8)
    x[5, 0] = math.nan
    with pytest.raises(FloatingPointError, match=r"loss became nan at batch 2; lower the "
                                                 r"learning rate"):
        fit(model, TensorLoader((x, y), 4), epochs=1, optimizer=sgd(model))


def _as_on_an_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the accelerator's bookkeeping on the CPU: tensors kept, read back in bulk."""
    monkeypatch.setattr("tp3nets.engine._devices.cheap_readback", lambda device: False)


def test_accelerator_bookkeeping_gives_the_cpu_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Losses and counts kept as tensors and read at the end give the same history."""
    data, val = make_data(100), make_data(30, seed=1)
    runs = []
    for accelerator in (False, True):
        if accelerator:
            _as_on_an_accelerator(monkeypatch)
        seed_everything(0)
        model = TinyNet()
        history = fit(model, TensorLoader(data, 8, shuffle=True, seed=0), epochs=2,
                      optimizer=sgd(model), val_loader=TensorLoader(val, 7), progress=False,
                      metrics={"acc": accuracy, "err": lambda p, t: 1 - accuracy(p, t)})
        runs.append(rows_without_time(history))
    assert runs[0] == runs[1]


@pytest.mark.parametrize(("bad_batch", "where"), [
    (3, "at or before batch 32"),  # found at the first check, before batch 32's step
    (32, "at or before batch 32"),
    (33, "at or before batch 64"),
    (70, "during the epoch"),  # after the last check, found at the end of the epoch
])
def test_accelerator_nan_check_reads_every_32_batches(
    monkeypatch: pytest.MonkeyPatch, bad_batch: int, where: str,
) -> None:
    """Without per-batch reads, a NaN loss is reported at the next check, or at the end."""
    _as_on_an_accelerator(monkeypatch)
    model = TinyNet()
    x, y = make_data(72)  # 72 batches of 1
    x[bad_batch - 1, 0] = math.nan
    steps: list[int] = []
    opt = sgd(model)
    opt.register_step_post_hook(lambda o, a, k: steps.append(1))
    with pytest.raises(FloatingPointError, match=f"loss became nan or inf {where}; lower"):
        fit(model, TensorLoader((x, y), 1), epochs=1, optimizer=opt, progress=False)
    checks = [32, 64, 72]
    assert len(steps) == next(c for c in checks if c >= bad_batch) - (bad_batch <= 64)


# --------------------------------------------------------------------------------------
# History


def test_history_round_trips_and_finds_the_best_epoch() -> None:
    """to_dict/from_dict round-trip; best_epoch follows monitor and mode; missing keys raise."""
    h = History(monitor="val_acc", mode="max")
    for epoch, acc in enumerate([0.5, 0.9, 0.8], start=1):
        h.append({"epoch": epoch, "loss": 1 / epoch, "val_acc": acc})
    data = h.to_dict()
    assert data["best_epoch"] == 2
    again = History.from_dict(data)
    assert again.epochs == h.epochs
    assert again.best_epoch == 2
    assert again.mode == "max"
    assert again.best == {"epoch": 2, "loss": 0.5, "val_acc": 0.9}
    assert History().best_epoch is None
    with pytest.raises(KeyError, match="no figure 'val_loss' in history; have epoch, loss"):
        h["val_loss"]


def test_history_plot_draws_each_figure() -> None:
    """History.plot draws one line per loss and accuracy figure."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    h = History()
    h.append({"epoch": 1, "loss": 1.0, "acc": 0.5, "val_loss": 1.1, "lr": 0.1})
    h.append({"epoch": 2, "loss": 0.5, "acc": 0.8, "val_loss": 0.9, "lr": 0.1})
    ax = h.plot()
    assert sorted(line.get_label() for line in ax.get_lines()) == ["acc", "loss", "val_loss"]
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_labels_checked_on_the_host_for_accelerators() -> None:
    """For a CUDA device, labels of later batches are checked on the host before transfer."""
    from tp3nets.engine._batches import LabelGuard as _LabelGuard

    guard = _LabelGuard(nn.CrossEntropyLoss(), torch.device("cuda"))
    guard.before_transfer(torch.tensor([7]))  # classes unknown before the first forward
    guard.after_forward(torch.tensor([0, 2]), torch.zeros(2, 3))
    guard.before_transfer(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\).*from 1 to 3"):
        guard.before_transfer(torch.tensor([1, 3]))
    cpu = _LabelGuard(nn.CrossEntropyLoss(), torch.device("cpu"))
    cpu.after_forward(torch.tensor([0]), torch.zeros(1, 3))
    cpu.before_transfer(torch.tensor([9]))  # on the CPU the loss itself raises later


class _CountingZeroGrad(torch.optim.SGD):
    """An optimizer with its own zero_grad, which fit must call."""

    calls = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        type(self).calls += 1
        super().zero_grad(set_to_none=set_to_none)


def test_fit_clears_gradients_and_respects_a_custom_zero_grad() -> None:
    """After each step every gradient is None; an overridden or patched zero_grad is used."""
    data = (torch.rand(24, 1, 28, 28), torch.randint(0, 10, (24,)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    seen: list[bool] = []

    class Spy:
        def on_batch_end(self, state: FitState) -> None:  # after the optimizer step
            seen.append(all(p.grad is None for p in model.parameters()))

    fit(model, TensorLoader(data, 8), epochs=1, optimizer=torch.optim.SGD(model.parameters()),
        callbacks=[Spy()], progress=False)
    assert seen == [True, True, True]

    _CountingZeroGrad.calls = 0
    opt = _CountingZeroGrad(model.parameters(), lr=0.1)
    fit(model, TensorLoader(data, 8), epochs=1, optimizer=opt, progress=False)
    assert _CountingZeroGrad.calls == 4  # once before the epoch, once after each step

    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    patched: list[bool] = []
    plain.zero_grad = lambda set_to_none=True: patched.append(set_to_none)  # type: ignore[method-assign]
    fit(model, TensorLoader(data, 8), epochs=1, optimizer=plain, progress=False)
    assert patched == [True] * 4


class _CountingStep(torch.optim.SGD):
    """An optimizer with its own step, which fit must call."""

    calls = 0

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        type(self).calls += 1
        return super().step(closure)


def _step_ranges(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the profiler ranges torch's optimizer wrapper opens from now on."""
    opened: list[str] = []
    real = torch.autograd.profiler.record_function

    def spy(name: str, *args: Any) -> Any:
        opened.append(name)
        return real(name, *args)

    monkeypatch.setattr(torch.autograd.profiler, "record_function", spy)
    return opened


def test_fit_steps_without_the_profiler_range_and_the_same_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plain optimizers are stepped past torch's profiler wrapper, bitwise as step() does."""
    from tp3nets.engine._shortcuts import step as _step

    data = make_data(48)
    for make in (
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-2),
    ):
        weights = []
        for use_step_method in (False, True):
            torch.manual_seed(0)
            model = TinyNet(dropout=0.0)
            opt = make(model.parameters())
            if use_step_method:
                monkeypatch.setattr("tp3nets.engine._shortcuts.step", lambda o: o.step())
            fit(model, TensorLoader(data, 8), epochs=2, optimizer=opt, progress=False)
            monkeypatch.setattr("tp3nets.engine._shortcuts.step", _step)
            weights.append([p.detach().clone() for p in model.parameters()])
        assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))

    opened = _step_ranges(monkeypatch)
    model = TinyNet()
    fit(model, TensorLoader(data, 8), epochs=1, optimizer=sgd(model), progress=False)
    assert not [n for n in opened if n.startswith("Optimizer.step")]


def test_fit_keeps_step_hooks_profiler_ranges_and_custom_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hooks, a running profiler, an overridden or replaced step: the real step() runs.

    Under a profiler, zero_grad keeps its profiler range too.
    """
    data = make_data(24)  # 3 batches of 8
    model = TinyNet()

    def loader() -> TensorLoader:
        return TensorLoader(data, 8)

    opt = sgd(model)
    pre: list[int] = []
    post: list[int] = []
    opt.register_step_pre_hook(lambda o, a, k: pre.append(1))
    opt.register_step_post_hook(lambda o, a, k: post.append(1))
    fit(model, loader(), epochs=1, optimizer=opt, progress=False)
    assert (len(pre), len(post)) == (3, 3)

    seen: list[int] = []
    handle = register_optimizer_step_post_hook(lambda o, a, k: seen.append(1))
    try:
        fit(model, loader(), epochs=1, optimizer=sgd(model), progress=False)
    finally:
        handle.remove()
    assert len(seen) == 3

    _CountingStep.calls = 0
    fit(model, loader(), epochs=1, optimizer=_CountingStep(model.parameters(), lr=0.1),
        progress=False)
    assert _CountingStep.calls == 3

    plain = sgd(model)
    replaced: list[int] = []
    plain.step = lambda closure=None: replaced.append(1)  # type: ignore[method-assign]
    fit(model, loader(), epochs=1, optimizer=plain, progress=False)
    assert len(replaced) == 3

    opened = _step_ranges(monkeypatch)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        fit(model, loader(), epochs=1, optimizer=sgd(model), progress=False)
    assert opened.count("Optimizer.step#SGD.step") == 3
    assert opened.count("Optimizer.zero_grad#SGD.zero_grad") == 4  # before, after each step


def test_fit_with_a_scheduler_records_the_optimizer_step(
    recwarn: pytest.WarningsRecorder,
) -> None:
    """An LR scheduler sees the optimizer stepped: no 'scheduler before optimizer' warning."""
    model = TinyNet()
    opt = sgd(model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    fit(model, TensorLoader(make_data(24), 8), epochs=2, optimizer=opt, scheduler=sched,
        progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


@pytest.mark.parametrize("norm", [np.float32(1.0), torch.tensor(1.0), 1])
def test_grad_clip_norm_takes_any_real_number(norm: Any) -> None:
    model = TinyNet()
    fit(model, TensorLoader(make_data(8), 4), epochs=1, optimizer=sgd(model),
        grad_clip_norm=norm, progress=False)


def test_seed_everything_takes_numpy_integers() -> None:
    seed_everything(np.int64(3))
    a = torch.rand(2)
    seed_everything(3)
    assert torch.equal(a, torch.rand(2))


def test_iterating_a_history_gives_its_rows() -> None:
    h = History(monitor="loss")
    h.append({"epoch": 1, "loss": 0.5})
    h.append({"epoch": 2, "loss": 0.3})
    assert [row["loss"] for row in h] == [0.5, 0.3]


def test_lbfgs_steps_through_a_closure_as_a_hand_loop_does() -> None:
    """An optimizer whose step() needs a closure (LBFGS) gets one that recomputes the
    batch's loss; the weights are bitwise those of the hand-written closure loop, and the
    batch's figures are those of the first evaluation."""
    data = make_data(40)

    def run_fit() -> tuple[nn.Module, History]:
        torch.manual_seed(0)
        model = TinyNet(dropout=0.0)
        history = fit(model, TensorLoader(data, 40), epochs=2, progress=False,
                      optimizer=torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=4))
        return model, history

    def run_by_hand() -> tuple[nn.Module, list[float]]:
        torch.manual_seed(0)
        model = TinyNet(dropout=0.0)
        opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=4)
        first_losses: list[float] = []
        for _ in range(2):
            model.train()
            for x, y in TensorLoader(data, 40):
                seen: list[float] = []

                def closure(x: Tensor = x, y: Tensor = y, seen: list[float] = seen) -> Tensor:
                    opt.zero_grad()
                    loss = nn.functional.cross_entropy(model(x), y)
                    loss.backward()
                    seen.append(loss.item())
                    return loss

                opt.step(closure)
                first_losses.append(seen[0])
        return model, first_losses

    model, history = run_fit()
    reference, losses = run_by_hand()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    assert history["loss"] == pytest.approx(losses)  # one full batch an epoch, LBFGS's use
    assert history["loss"][1] < history["loss"][0]


def test_history_has_keras_habits() -> None:
    """Keras users' habits work on History: ``.history`` is a dict of lists,
    ``history[-1]`` is the last row, and epochs are integers (in rows, JSON and after a
    round trip through to_dict/from_dict)."""
    import json

    torch.manual_seed(0)
    model = TinyNet()
    data = make_data(32)
    history = fit(model, TensorLoader(data, 8), epochs=3, optimizer=sgd(model),
                  val_loader=TensorLoader(data, 16), progress=False)
    assert history[-1] == history.epochs[-1]
    assert history[0]["epoch"] == 1
    assert all(type(row["epoch"]) is int for row in history)
    assert history.history["loss"] == history["loss"]
    assert set(history.history) == set(history.keys())
    assert len(history.history["val_acc"]) == 3
    assert json.loads(json.dumps(history.to_dict()))["epochs"][2]["epoch"] == 3
    back = History.from_dict(json.loads(json.dumps(history.to_dict())))
    assert type(back[-1]["epoch"]) is int
    old = History.from_dict({"epochs": [{"epoch": 1.0, "loss": 0.5}]})  # saved as floats
    assert type(old[0]["epoch"]) is int
    with pytest.raises(IndexError, match="history index 3 out of range: it has 3 epoch"):
        history[3]
    with pytest.raises(TypeError, match=r"history\[...\] takes a figure name"):
        history[1.5]  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------
# faults of the second reliability pass


@pytest.mark.parametrize("device_path", ["cpu", "accelerator"])
def test_a_batch_whose_labels_are_all_ignored_is_left_out(
    device_path: str, monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    """A batch whose every label is ignore_index (its mean loss is 0/0) is left out of
    training and of the figures, with a warning naming the cause: fit does not say
    "lower the learning rate", evaluate does not report NaN, the weights stay finite and
    equal those of a run without that batch."""
    record_property("bad_input", "training")
    if device_path == "accelerator":
        _as_on_an_accelerator(monkeypatch)
    x, y = make_data(24)
    y_ignored = y.clone()
    y_ignored[8:16] = -100
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    with pytest.warns(UserWarning, match=r"1 batch had no target to count .* left out of "
                                         r"the training and the figures"):
        history = fit(model, [(x[:8], y[:8]), (x[8:16], y_ignored[8:16]), (x[16:], y[16:])],
                      epochs=2, optimizer=sgd(model), progress=False)
    assert all(math.isfinite(v) for v in history["loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    torch.manual_seed(0)
    plain = TinyNet(dropout=0.0)
    expected = fit(plain, [(x[:8], y[:8]), (x[16:], y[16:])], epochs=2, optimizer=sgd(plain),
                   progress=False)
    assert history["loss"] == expected["loss"]
    assert history["acc"] == expected["acc"]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), plain.parameters(),
                                                 strict=True))
    with pytest.warns(UserWarning, match="evaluate: 1 batch had no target .* of the figures"):
        figures = evaluate(model, [(x[:8], y[:8]), (x[8:16], y_ignored[8:16])])
    assert figures == evaluate(model, [(x[:8], y[:8])])


def test_a_last_batch_of_one_sample_under_batchnorm_is_left_out_with_a_warning(
    record_property: Any,
) -> None:
    """ConvNet4 on 7x7 inputs (its BatchNorm sees one value per channel): 17 samples at
    batch 16 leave a 1-sample last batch, which BatchNorm cannot train on. It is left out
    with a warning, rather than crashing after the epoch's work."""
    record_property("bad_input", "training")
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(17, 1, 7, 7, generator=g), torch.randint(0, 10, (17,), generator=g))
    from tp3nets import ConvNet4

    model = ConvNet4()
    with pytest.warns(UserWarning, match="1 batch held a single sample, which BatchNorm "
                                         "cannot normalise in training"):
        history = fit(model, TensorLoader(data, 16), epochs=1, progress=False,
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    assert len(history) == 1
    assert math.isfinite(history["loss"][0])


def test_a_nonfinite_monitored_figure_is_said_and_neither_stops_nor_skips_silently(
    tmp_path: Path, record_property: Any,
) -> None:
    """One NaN validation image makes val_loss NaN every epoch: fit, EarlyStopping and
    ModelCheckpoint(save_best_only) each say so, once; EarlyStopping does not count those
    epochs towards its patience (the run is not stopped by a figure that means nothing)."""
    from tp3nets.engine.callbacks import EarlyStopping, ModelCheckpoint

    record_property("bad_input", "training")
    x, y = make_data(32)
    val_x = x[:8].clone()
    val_x[0, 0] = math.nan
    model = TinyNet()
    stopper = EarlyStopping(patience=2)
    saver = ModelCheckpoint(tmp_path / "best.pt", save_best_only=True)
    with pytest.warns(UserWarning, match="val_loss is nan") as caught:
        history = fit(model, TensorLoader((x, y), 8), epochs=4, optimizer=sgd(model),
                      val_loader=TensorLoader((val_x, y[:8]), 8), progress=False,
                      callbacks=[stopper, saver])
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("fit: the monitored val_loss is nan at epoch 1") for m in messages)
    # Said once a run, not once an epoch.
    assert sum("EarlyStopping: val_loss is nan" in m for m in messages) == 1
    assert sum("ModelCheckpoint: val_loss is nan" in m and "not saved as a best" in m
               for m in messages) == 1
    assert len(history) == 4
    assert stopper.stopped_epoch is None


def test_predict_and_evaluate_are_safe_from_several_threads_on_one_model(
    record_property: Any,
) -> None:
    """predict/evaluate from 4 threads on one shared model with dropout: every output is
    the eval-mode one (no call sees another's train mode), and the model's own mode is
    kept."""
    import threading

    record_property("fault", "4 threads calling predict/evaluate on one model")
    torch.manual_seed(0)
    model = TinyNet(dropout=0.5)
    model.train()
    x, y = make_data(64)
    expected_out = predict(model, x, batch_size=8)
    expected_eval = evaluate(model, TensorLoader((x, y), 16))
    outs: list[Tensor] = []
    evals: list[dict[str, float]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                outs.append(predict(model, x, batch_size=8))
                evals.append(evaluate(model, TensorLoader((x, y), 16)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(outs) == 80
    assert all(torch.equal(o, expected_out) for o in outs)
    assert all(e == expected_eval for e in evals)
    assert model.training
    assert all(m.training for m in model.modules())


def test_predict_on_pil_images_says_to_use_the_weights_transforms(
    record_property: Any,
) -> None:
    """predict(model, [pil_image]) advises weights.transforms() (not torch.as_tensor)."""
    import tp3nets

    record_property("bad_input", "training")
    img = tp3nets.data.samples.digit(3)
    model = ConvNet2()
    for data in ([img], img, (img, img)):
        with pytest.raises(TypeError, match=r"predict takes tensors, got PIL images: .*"
                                            r"weights\.transforms\(\)\(img\)"):
            predict(model, data)  # type: ignore[arg-type]
