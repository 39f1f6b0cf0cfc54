"""Worker for tests/test_faults.py: one torchrun rank fails in the middle of fit.

``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_fault_rank.py``

Both ranks train the same small model under DistributedDataParallel (gloo, CPU). At its
third batch of the second epoch, rank 1 raises; rank 0 then waits in the next gradient
all-reduce. The test checks that torchrun stops the whole run quickly and reports rank 1's
error, instead of rank 0 waiting for its partner until the collective times out.
"""

from __future__ import annotations

from typing import Any

FAIL_RANK, FAIL_EPOCH, FAIL_BATCH = 1, 2, 3
MESSAGE = "injected failure on rank {rank} at epoch {epoch}, batch {batch}"


class FailOnRank:
    """A callback that raises on one rank, mid-epoch."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def on_batch_end(self, state: Any) -> None:
        if self.rank == FAIL_RANK and state.epoch == FAIL_EPOCH and state.batch + 1 == FAIL_BATCH:
            raise RuntimeError(
                MESSAGE.format(rank=self.rank, epoch=state.epoch, batch=state.batch + 1)
            )


def main() -> None:
    import os

    import torch
    from torch.distributed.elastic.multiprocessing.errors import record

    from tp3nets import MultinomialLogisticRegression, fit
    from tp3nets.data import TensorLoader

    @record  # torchrun's summary then names this rank's exception and its message
    def run() -> None:
        rank = int(os.environ["RANK"])
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 8, generator=g)
        y = x[:, :3].argmax(dim=1)
        torch.manual_seed(0)
        model = MultinomialLogisticRegression(8, 3)
        fit(model, TensorLoader((x, y), 8, shuffle=True), epochs=3,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[FailOnRank(rank)],
            progress=False, device="cpu")
        print(f"rank {rank} finished training", flush=True)

    run()


if __name__ == "__main__":
    main()
