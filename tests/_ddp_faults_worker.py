"""Worker for the torchrun faults of tests/test_distributed.py (2 CPU processes, gloo).

``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_ddp_faults_worker.py
MODE OUT``

Modes:

* ``uneven``: rank 0 is given 10 batches, rank 1 six; fit must refuse before the first
  step, naming the ranks, instead of waiting forever in the gradient all-reduce.
* ``stall``: rank 1 sleeps in its second epoch; rank 0 must give up after
  ``TP3NETS_DIST_TIMEOUT`` seconds with a message naming itself, rank 1 and the cause.
* ``full`` / ``part`` / ``rest``: batch 15 over 2 ranks (shards of 8 and 7) with dropout,
  3 epochs straight, or 2 epochs and then a resume to 3; each rank writes its final
  weights to ``OUT/MODE-rank{r}.pt``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tp3nets import ModelCheckpoint, fit, seed_everything
from tp3nets.data import TensorLoader


def make_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :3].argmax(dim=1)


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))


class StallOnRankOne:
    def on_batch_end(self, state: Any) -> None:
        if int(os.environ["RANK"]) == 1 and state.epoch == 2 and state.batch == 0:
            time.sleep(60)


def main(mode: str, out: Path) -> None:
    rank = int(os.environ["RANK"])
    seed_everything(0)
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    if mode == "uneven":
        data = make_data(80 if rank == 0 else 48)
        fit(net, TensorLoader(data, 8), epochs=1, optimizer=opt, progress=False,
            device="cpu")
        return
    if mode == "stall":
        fit(net, TensorLoader(make_data(64), 8), epochs=3, optimizer=opt, progress=False,
            device="cpu", callbacks=[StallOnRankOne()])
        return
    loader = TensorLoader(make_data(90), 15, shuffle=True, seed=1)
    epochs = 2 if mode == "part" else 3
    fit(net, loader, epochs=epochs, optimizer=opt, progress=False, device="cpu",
        callbacks=[ModelCheckpoint(out / "part.pt")] if mode == "part" else [],
        resume_from=out / "part.pt" if mode == "rest" else None)
    torch.save(net.state_dict(), out / f"{mode}-rank{rank}.pt")


if __name__ == "__main__":
    import torch.distributed as dist

    try:
        main(sys.argv[1], Path(sys.argv[2]))
    finally:
        # Joined before exit: gloo's threads left running at exit abort the process
        # ("terminate called without an active exception") on a loaded machine.
        if dist.is_initialized():
            dist.destroy_process_group()
