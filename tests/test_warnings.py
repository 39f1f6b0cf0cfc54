"""Every warning tp3nets gives names the user's call site and is said once a run.

Each case records ``bad_input`` (category ``warnings``) for ``tests/_fault_report.py``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tp3nets
from tp3nets import EarlyStopping, ModelCheckpoint, evaluate, fit, load_state_dict
from tp3nets.data import TensorLoader

Recorder = Callable[[str, object], None]
SRC = Path(tp3nets.__file__).resolve().parent


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))


def _data(n: int, *, nan: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, 4, 4)
    if nan:
        x[0] = float("nan")
    return x, torch.arange(n) % 3


def _fit(callbacks: list[Any], **kwargs: Any) -> None:
    net = _net()
    fit(net, TensorLoader(_data(kwargs.pop("n", 16)), 4), epochs=3,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.01), progress=False,
        callbacks=callbacks, **kwargs)


def _recorded(run: Callable[[], object], pattern: str) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [w for w in caught if re.search(pattern, str(w.message))]


def _prefixed(tmp: Path) -> object:
    torch.save({f"model.{k}": v for k, v in tp3nets.ConvNet2().state_dict().items()},
               tmp / "lightning.pt")
    return load_state_dict(tmp / "lightning.pt", model=tp3nets.ConvNet2())


CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "EarlyStopping on a NaN figure": (
        lambda tmp: _fit([EarlyStopping(patience=5)],
                         val_loader=TensorLoader(_data(8, nan=True), 4)),
        r"^EarlyStopping: val_loss is nan",
    ),
    "ModelCheckpoint(save_best_only) on a NaN figure": (
        lambda tmp: _fit([ModelCheckpoint(tmp / "best.pt", save_best_only=True)],
                         val_loader=TensorLoader(_data(8, nan=True), 4)),
        r"^ModelCheckpoint: val_loss is nan",
    ),
    "fit's monitored figure NaN": (
        lambda tmp: _fit([], val_loader=TensorLoader(_data(8, nan=True), 4)),
        r"^fit: the monitored val_loss is nan",
    ),
    "fit leaving out single-sample batches every epoch": (
        lambda tmp: _fit([], n=17), r"held a single sample",
    ),
    "evaluate leaving out a batch with nothing to count": (
        lambda tmp: evaluate(_net(), [(torch.rand(4, 1, 4, 4), torch.full((4,), -100)),
                                      (torch.rand(4, 1, 4, 4), torch.zeros(4).long())]),
        r"had no target to count",
    ),
    "weights whose keys carry a prefix": (
        lambda tmp: _prefixed(tmp),
        r"removed the prefix 'model\.'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_warning_names_the_callers_line_once_a_run(
    case: str, tmp_path: Path, record_property: Recorder
) -> None:
    """The warning's file is this test file, not tp3nets' insides, and a condition that
    holds every epoch of a 3-epoch fit is said once."""
    record_property("bad_input", "warnings")
    run, pattern = CASES[case]
    caught = _recorded(lambda: run(tmp_path), pattern)
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert Path(caught[0].filename).resolve() == Path(__file__).resolve(), caught[0].filename


def test_a_second_fit_warns_again(record_property: Recorder) -> None:
    """Once a run: a new fit is a new run, and says it again."""
    record_property("bad_input", "warnings")
    val = TensorLoader(_data(8, nan=True), 4)

    def twice() -> None:
        _fit([EarlyStopping()], val_loader=val)
        _fit([EarlyStopping()], val_loader=val)

    assert len(_recorded(twice, r"^EarlyStopping: val_loss is nan")) == 2


def test_every_warning_goes_through_the_one_helper() -> None:
    """No module calls warnings.warn with a hand-counted stacklevel: tp3nets._util._warn.warn
    finds the user's frame for all of them."""
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py") if path.name != "_warn.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "warnings.warn(" in line
    ]
    assert offenders == []
