"""The one pass over a loader that evaluate, predict and collect_logits share
(tp3nets.engine._passes): the same device rule, modes, lock, unpacking and precision."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from _support import DEVICES
from tp3nets.calibration import collect_logits
from tp3nets.engine import evaluate, predict
from tp3nets.engine._batches import model_lock
from tp3nets.engine._passes import InferencePass, split_batch

_X = torch.rand(6, 4)
_Y = torch.tensor([0, 1, 2, 0, 1, 2])


class _Probe(nn.Module):
    """Logits of its inputs' first three features; records, at each forward, its mode,
    inference mode, autocast and whether this thread holds the model's lock."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.drop = nn.Dropout(0.5)
        self.seen: list[dict[str, bool]] = []

    def forward(self, x: Tensor) -> Tensor:
        free: list[bool] = []

        def try_lock() -> None:  # from another thread: fails while this one holds it
            lock = model_lock(self)
            got = lock.acquire(blocking=False)
            if got:
                lock.release()
            free.append(got)

        other = threading.Thread(target=try_lock)
        other.start()
        other.join()
        self.seen.append({
            "training": self.training or self.drop.training,
            "inference": torch.is_inference_mode_enabled(),
            "autocast": torch.is_autocast_enabled("cpu"),
            "locked": not free[0],
        })
        out: Tensor = x[:, :3] * self.scale
        return out


class _Anywhere(nn.Module):
    """CPU logits whatever device its weights are on: runs on the meta device, which
    stands in for an accelerator where there is none."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], 3)


def _loss(out: Tensor, y: Tensor) -> Tensor:
    return out.sum() * 0.0


PASSES: dict[str, Callable[..., Any]] = {
    "evaluate": lambda model, **kw: evaluate(model, [(_X, _Y)], loss_fn=_loss, metrics={}, **kw),
    "predict": lambda model, **kw: predict(model, [(_X, _Y)], **kw),
    "collect_logits": lambda model, **kw: collect_logits(model, [(_X, _Y)], **kw),
}


@pytest.mark.parametrize("name", sorted(PASSES))
def test_each_pass_leaves_the_model_on_the_device_it_ran_on(name: str) -> None:
    """evaluate, predict and collect_logits move a CPU model to device= and leave it there
    (collect_logits used to move it back; the meta device stands in for an accelerator)."""
    model = _Anywhere()
    PASSES[name](model, device="meta")
    assert {t.device.type for t in model.parameters()} == {"meta"}


@pytest.mark.parametrize("device", DEVICES)
def test_the_three_passes_agree_on_the_model_device_afterwards(device: str) -> None:
    """On every available device the model ends where device= says, after each pass."""
    after = {}
    for name, run in PASSES.items():
        model = nn.Linear(4, 3)
        run(model, device=device)
        after[name] = {p.device for p in model.parameters()}
    assert len({frozenset(d) for d in after.values()}) == 1, after
    assert {d.type for d in after["evaluate"]} == {torch.device(device).type}


@pytest.mark.parametrize("name", sorted(PASSES))
def test_each_pass_runs_locked_in_eval_and_inference_mode_and_restores_modes(name: str) -> None:
    """Every forward runs in eval mode, under inference mode, with the model's lock held;
    the submodules' own modes come back afterwards (one in train, one in eval)."""
    model = _Probe()
    model.train()
    model.drop.eval()
    PASSES[name](model)
    assert model.seen == [
        {"training": False, "inference": True, "autocast": False, "locked": True}
    ]
    assert model.training
    assert not model.drop.training


@pytest.mark.parametrize("name", ["evaluate", "predict"])
def test_the_passes_with_a_precision_run_the_forward_under_its_autocast(name: str) -> None:
    """precision='bf16' runs each forward under CPU autocast, in evaluate and predict alike."""
    model = _Probe()
    PASSES[name](model, precision="bf16")
    assert [s["autocast"] for s in model.seen] == [True]


@pytest.mark.parametrize("name", sorted(PASSES))
def test_each_pass_splits_batches_the_same_way(name: str) -> None:
    """Dict batches are read by the same keys, and an unpack that does not return a pair
    is refused by the three passes in the same words."""
    run = {
        "evaluate": lambda b, **kw: evaluate(nn.Linear(4, 3), b, **kw),
        "predict": lambda b, **kw: predict(nn.Linear(4, 3), b, **kw),
        "collect_logits": lambda b, **kw: collect_logits(nn.Linear(4, 3), b, **kw),
    }[name]
    run([{"image": _X, "label": _Y}])
    with pytest.raises(TypeError, match=r"unpack must return \(inputs, target\)"):
        run([(_X, _Y)], unpack=lambda b: (b[0], b[1], None))


def test_the_pass_object_states_the_device_rule() -> None:
    """InferencePass moves the model when made and never back: after running() the model
    is still on the pass's device."""
    model = _Anywhere()
    run = InferencePass(model, "meta")
    assert run.device == torch.device("meta")
    assert model.weight.device.type == "meta"
    with run.running():
        assert run.forward(run.to_device(_X)).shape == (6, 3)
    assert model.weight.device.type == "meta"


def test_split_batch_reads_bare_inputs_only_where_the_target_is_optional() -> None:
    """predict takes bare inputs (target None); the passes that need a target refuse them."""
    assert split_batch(_X, None, needs_target=False)[1] is None
    assert split_batch((_X,), None, needs_target=False)[1] is None
    with pytest.raises(ValueError, match=r"expected batches of \(inputs, target\)"):
        split_batch(_X, None)
