"""Worker for tests/test_distributed.py, started by torchrun with 2 CPU processes.

``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_ddp_worker.py OUT``

fit and evaluate start the gloo process group from torchrun's environment themselves.
Each rank writes ``OUT/rank{r}.pt``; the test compares them with single-process runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from tp3nets import ModelCheckpoint, MultinomialLogisticRegression, evaluate, fit
from tp3nets.data import TensorLoader

N_TRAIN, N_VAL, BATCH, EPOCHS = 48, 21, 8, 3


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :3].argmax(dim=1)


SEEN: list[tuple[bool, int]] = []  # (training, batch size) of every forward pass


def train(loader: Any, val_loader: Any, callbacks: Any = ()) -> tuple[Any, list[dict[str, float]]]:
    """The run that the test repeats in a single process."""
    torch.manual_seed(0)
    model = MultinomialLogisticRegression(8, 3)
    model.register_forward_pre_hook(lambda m, args: SEEN.append((m.training, len(args[0]))))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    history = fit(model, loader, epochs=EPOCHS, optimizer=opt, scheduler=sched,
                  val_loader=val_loader, callbacks=callbacks, progress=None, device="cpu")
    rows = [{k: v for k, v in r.items() if k != "time"} for r in history.epochs]
    return model, rows


def main(out: Path) -> None:
    data, val = make_data(N_TRAIN, 0), make_data(N_VAL, 1)
    model, rows = train(TensorLoader(data, BATCH, shuffle=True, seed=1),
                        TensorLoader(val, 4), callbacks=[ModelCheckpoint(out / "last.pt")])
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    seen = list(SEEN)
    dl_model, dl_rows = train(DataLoader(TensorDataset(*data), batch_size=BATCH),
                              DataLoader(TensorDataset(*val), batch_size=4))
    shuffled, _ = train(DataLoader(TensorDataset(*data), batch_size=BATCH, shuffle=True),
                        None)
    class StopOnRankOne:
        def on_epoch_end(self, state: Any) -> None:
            if rank == 1 and state.epoch == 1:
                state.stop_training = True

    plain = MultinomialLogisticRegression(8, 3)
    stopped = fit(plain, TensorLoader(data, BATCH), epochs=3, device="cpu", progress=False,
                  optimizer=torch.optim.SGD(plain.parameters(), lr=0.1),
                  callbacks=[StopOnRankOne(), ModelCheckpoint(out / "stopped.pt")])
    torch.manual_seed(0)
    bn = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8),
                             torch.nn.Linear(8, 3))
    fit(bn, TensorLoader(data, BATCH, shuffle=True, seed=1), epochs=1, device="cpu",
        optimizer=torch.optim.SGD(bn.parameters(), lr=0.1), progress=False)
    # A plain list holding this rank's own batches: passed through as its share.
    half = N_TRAIN // world
    own = [(data[0][i : i + 4], data[1][i : i + 4])
           for i in range(rank * half, (rank + 1) * half, 4)]
    result = {
        "stopped_epochs": len(stopped),
        "bn_buffers": {k: v for k, v in bn.state_dict().items() if "running" in k},
        "eval_own_batches": evaluate(model, own, device="cpu"),
        "rank": rank,
        "world": world,
        "state": model.state_dict(),
        "rows": rows,
        "seen": seen,
        "dl_state": dl_model.state_dict(),
        "dl_rows": dl_rows,
        "shuffled_state": shuffled.state_dict(),
        "eval_tensor": evaluate(model, TensorLoader(val, 4), device="cpu"),
        "eval_dataloader": evaluate(model, DataLoader(TensorDataset(*val), batch_size=4),
                                    device="cpu"),
    }
    torch.save(result, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
