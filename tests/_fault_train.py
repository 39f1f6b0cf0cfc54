"""Worker for tests/test_faults.py: a training run that may be killed, and its resumption.

``python tests/_fault_train.py MODE OUT``, MODE one of:

* ``full``: train all epochs uninterrupted; write ``OUT/full.pt`` (weights and history).
* ``victim``: train with a checkpoint per epoch; inside epoch ``KILL_EPOCH`` (after the
  checkpoint of the epoch before is on disk), write ``OUT/inside`` and wait to be killed.
* ``resume``: continue from ``OUT/epoch{KILL_EPOCH - 1}.pt`` in a fresh process; write
  ``OUT/resumed.pt``.

Every mode builds the same run: same seed, data, model (with dropout, so the RNG state
matters), Adam, a StepLR schedule and an EarlyStopping callback whose state is saved.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

EPOCHS, KILL_EPOCH, KILL_BATCH = 4, 3, 5


class WaitForKill:
    """In epoch KILL_EPOCH, batch KILL_BATCH: say so through a file, then wait for SIGKILL."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_batch_end(self, state: Any) -> None:
        if state.epoch == KILL_EPOCH and state.batch + 1 == KILL_BATCH:
            (self.out / "inside").write_text(f"{state.epoch} {state.batch + 1}")
            time.sleep(120)  # the parent kills the process long before this ends
            raise SystemExit("the parent did not kill this process")


def run(mode: str, out: Path) -> None:
    import torch

    from tp3nets import ConvNet2, EarlyStopping, ModelCheckpoint, fit, seed_everything
    from tp3nets.data import TensorLoader

    seed_everything(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(96, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + (x.mean((1, 2, 3)) > 0.5)
    xv = torch.rand(24, 1, 8, 8, generator=g)
    yv = (xv[:, 0, :4].mean((1, 2)) > xv[:, 0, 4:].mean((1, 2))).long()
    model = ConvNet2(num_classes=3, input_size=8, hidden=16, dropout=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.8)
    callbacks: list[Any] = [EarlyStopping(patience=10)]
    if mode != "full":
        callbacks.append(ModelCheckpoint(out / "epoch{epoch}.pt"))
    if mode == "victim":
        callbacks.append(WaitForKill(out))
    resume = out / f"epoch{KILL_EPOCH - 1}.pt" if mode == "resume" else None
    history = fit(model, TensorLoader((x, y), 8, shuffle=True, seed=5), epochs=EPOCHS,
                  optimizer=opt, scheduler=sched, val_loader=TensorLoader((xv, yv), 10),
                  callbacks=callbacks, progress=False, resume_from=resume)
    torch.save({"state": model.state_dict(), "rows": history.epochs}, out / f"{mode}.pt")


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
