"""
Two processes with torchrun, on the CPU
=======================================

This script is the worker that ``torchrun`` starts once per process. It is the script of
a single-process run plus the line that ends the process group: :func:`tp3nets.fit`
starts the group ``torchrun`` describes (``gloo`` on the CPU, ``nccl`` for a GPU per
process), wraps the model in DistributedDataParallel, gives each process its share of
every epoch, reduces the figures across processes, and lets only rank 0 print and write
files. The loader's batch is the global batch, so the learning rate is that of one
process.

Run it with two processes on one machine (``TP3NETS_FAST=1``: seconds)::

    torchrun --standalone --nproc-per-node 2 examples/distributed_torchrun.py
    TP3NETS_FAST=1 torchrun --standalone --nproc-per-node 2 examples/distributed_torchrun.py

It also runs as a plain script, in one process: ``python examples/distributed_torchrun.py``.
The gallery shows it without running it, since it needs ``torchrun``.

ConvNet2: TP3 lab report (Kim ANTUNEZ, Isabelle BERNARD). Data: MNIST (Yann LeCun, Corinna
Cortes, Christopher J. C. Burges), CC BY-SA 3.0.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import tp3nets
from tp3nets.data import TensorLoader, mnist_splits

REPO = Path(sys.argv[0]).resolve().parents[1]
DATA = Path(os.environ.get("TP3NETS_DATA", REPO.parent / "shared" / "datasets"))
FAST = os.environ.get("TP3NETS_FAST", "0") not in ("", "0")

# Every process builds the same data and the same initial model (same seeds): fit gives
# each one its own share of every epoch, and DDP keeps the weights equal.
tp3nets.seed_everything(0)
train, val, test = mnist_splits(DATA)
n_train, n_eval = (2000, 1000) if FAST else (None, None)
train_loader = TensorLoader(tuple(t[:n_train] for t in train.tensors), batch_size=64,
                            shuffle=True, seed=0)  # the global batch: 64 / world per process
val_loader = TensorLoader(tuple(t[:n_eval] for t in val.tensors), batch_size=1000)

model = tp3nets.ConvNet2()
history = tp3nets.fit(
    model,
    train_loader,
    val_loader=val_loader,
    epochs=2,
    optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
)
# evaluate splits the test set between the processes and adds up their counts.
figures = tp3nets.evaluate(model, TensorLoader(tuple(t[:n_eval] for t in test.tensors), 1000))

# fit started the group under torchrun (one process without it).
rank = dist.get_rank() if dist.is_initialized() else 0
world = dist.get_world_size() if dist.is_initialized() else 1
if rank == 0:
    print(f"{world} process(es): test accuracy {figures['acc']:.2%}, "
          f"history {history['val_acc']}")

if dist.is_initialized():
    dist.destroy_process_group()
