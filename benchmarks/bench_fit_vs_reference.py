"""One epoch of ``tp3nets.fit`` against the TP3 lab's own training loop, model by model.

    python benchmarks/bench_fit_vs_reference.py --data ../shared/datasets
    python benchmarks/bench_fit_vs_reference.py --quick          # a few batches: checks it runs

Both sides train the same model (same initial weights), with the same optimizer, batch size
and seeded 55,000/5,000 split, for one epoch followed by a validation pass, on the CPU
(``--device cuda``: on the GPU):

* reference: ``torchvision.datasets.MNIST`` + ``transforms.ToTensor()`` +
  ``DataLoader(batch_size, shuffle=True)`` and the lab's ``train``/``validation`` functions
  (below, as in the report: per-batch ``loss.item()`` bookkeeping, no device handling; on
  a GPU the model is moved there and each batch with ``.to(device)``, the usual GPU form
  of such a loop, the functions' bodies unchanged);
* tp3nets: ``load_mnist`` + ``train_val_split`` (which copies nothing) +
  :class:`~tp3nets.data.TensorLoader` +
  :func:`tp3nets.fit`, the ConvNets in bf16 autocast and channels-last, the logistic
  regression in fp32 (``--fit-precision``, ``--no-channels-last``), with torch's fused
  implementation of the same optimizer where there is one, as ``tp3nets train`` uses
  (``--plain-optimizer``: the reference's). On a GPU the loaders hold MNIST on the device.

"epoch" is the training pass plus validation; "end to end" adds building the datasets and
loaders. With ``--repeats N`` each model is trained N times by both sides, alternately and
from the same initial weights, and the table gives the medians (a sub-second epoch, such as
the logistic regression's, swings by a third between single runs on a small machine). The
goals are those of the project's issue tracker; a goal is judged on the median of the N
ratios of back-to-back pairs (reference run, then fit run), which the machine's drift from
one minute to the next moves less than the ratio of the two sides' medians (also shown).
The JSON keeps every run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_DATA,
    MODELS,
    add_memory_option,
    check_device,
    lab_optimizer,
    machine,
    malloc_setting,
    median,
    print_machine,
    report,
    timed,
)

import tp3nets
from tp3nets.data import TensorLoader, TensorSubset, load_mnist, train_val_split

GOALS = {"mlr": 10.0, "convnet2": 1.5, "convnet3": 1.5, "convnet4": 2.0}
N_VAL = 5000


# --------------------------------------------------------------------------------------
# The reference lab's loop. The report gives the calls, ``train(model, trainloader,
# criterion, optimizer, epoch, num_epochs)`` and ``val_loss, val_acc = validation(model,
# valloader, criterion)``, and the corrected line ``outputs = model(inputs)``; the bodies
# are the course's usual ones, kept as they are (no device, .item() per batch).


def train(model, trainloader, criterion, optimizer, epoch, num_epochs):  # type: ignore[no-untyped-def]
    model.train()
    running_loss = 0.0
    correct = 0
    total = 0
    for inputs, labels in trainloader:
        optimizer.zero_grad()
        outputs = model(inputs)  # Forwards stage (prediction with current weights)
        loss = criterion(outputs, labels)
        loss.backward()  # Backward stage (gradients)
        optimizer.step()  # Update the weights
        running_loss += loss.item()
        _, predicted = torch.max(outputs.data, 1)
        total += labels.size(0)
        correct += (predicted == labels).sum().item()
    print(f"Epoch [{epoch + 1}/{num_epochs}], Loss: {running_loss / len(trainloader):.4f}, "
          f"Accuracy: {correct / total:.4f}")


def validation(model, valloader, criterion):  # type: ignore[no-untyped-def]
    model.eval()
    val_loss = 0.0
    correct = 0
    total = 0
    with torch.no_grad():
        for inputs, labels in valloader:
            outputs = model(inputs)
            val_loss += criterion(outputs, labels).item()
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return val_loss / len(valloader), correct / total


# --------------------------------------------------------------------------------------


class _Limited:
    """The first ``n`` batches of a loader (``--limit-batches``), with a matching len()."""

    def __init__(self, loader: Any, n: int | None) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.loader), self.n)

    def __len__(self) -> int:
        return len(self.loader) if self.n is None else min(self.n, len(self.loader))


class _OnDevice:
    """A reference loader's batches moved to ``device`` with ``.to(device)``, as a GPU
    version of the lab's loop does at the top of its loop body."""

    def __init__(self, loader: Any, device: str) -> None:
        self.loader, self.device = loader, device

    def __iter__(self) -> Iterator[Any]:
        for inputs, labels in self.loader:
            yield inputs.to(self.device), labels.to(self.device)

    def __len__(self) -> int:
        return len(self.loader)


def _warm_up(template: nn.Module, device: str) -> None:
    """One forward and backward pass of a copy of the model on ``device`` in fp32 and bf16,
    so that neither side's first run pays CUDA's context, cuDNN's handles or kernel loads."""
    if not device.startswith("cuda"):
        return
    model = copy.deepcopy(template).to(device)
    x = torch.zeros(64, 1, 28, 28, device=device)
    for bf16 in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            model(x).float().sum().backward()
    torch.cuda.synchronize()


def _describe(optimizer: torch.optim.Optimizer) -> str:
    return type(optimizer).__name__ + (" fused" if optimizer.defaults.get("fused") else "")


def run_reference(name: str, model: nn.Module, args: argparse.Namespace) -> dict[str, Any]:
    from torchvision import datasets, transforms

    def setup() -> tuple[Any, Any]:
        all_train = datasets.MNIST(args.data, download=False, train=True,
                                   transform=transforms.ToTensor())
        num_train = len(all_train) - N_VAL
        trainset, valset = torch.utils.data.random_split(
            all_train, [num_train, len(all_train) - num_train],
            generator=torch.Generator().manual_seed(42),
        )
        if args.limit_val:
            valset = torch.utils.data.Subset(valset, range(args.limit_val))
        trainloader = torch.utils.data.DataLoader(trainset, batch_size=args.batch_size,
                                                  shuffle=True)
        valloader = torch.utils.data.DataLoader(valset, batch_size=args.batch_size,
                                                shuffle=True)
        trainloader = _Limited(trainloader, args.limit_batches)
        if args.device != "cpu":
            return _OnDevice(trainloader, args.device), _OnDevice(valloader, args.device)
        return trainloader, valloader

    setup_s, (trainloader, valloader) = timed(setup, args.device)
    criterion = nn.CrossEntropyLoss()
    model.to(args.device)
    optimizer = lab_optimizer(name, model, args.lr)
    train_s, _ = timed(lambda: train(model, trainloader, criterion, optimizer, 0, 1),
                       args.device)
    val_s, (val_loss, val_acc) = timed(lambda: validation(model, valloader, criterion),
                                       args.device)
    return {"setup_s": setup_s, "epoch_s": train_s + val_s, "train_s": train_s, "val_s": val_s,
            "val_acc": val_acc, "val_loss": val_loss, "batches": len(trainloader)}


def run_fit(name: str, model: nn.Module, args: argparse.Namespace) -> dict[str, Any]:
    # The engine's fast CPU path for convolutions: bf16 autocast in channels-last layout.
    conv = name != "mlr"
    precision = args.fit_precision or ("bf16" if conv else "32")
    channels_last = conv and not args.no_channels_last

    device = None if args.device == "cpu" else args.device

    def setup() -> tuple[TensorLoader, TensorLoader]:
        train, val = train_val_split(load_mnist(args.data, train=True), N_VAL, seed=42)
        if args.limit_batches:
            train = TensorSubset(train, range(min(args.limit_batches * args.batch_size,
                                                  len(train))))
        if args.limit_val:
            val = TensorSubset(val, range(min(args.limit_val, len(val))))
        return (TensorLoader(train, args.batch_size, shuffle=True, seed=0, device=device),
                TensorLoader(val, args.batch_size, device=device))

    setup_s, (loader, val_loader) = timed(setup, args.device)
    optimizer = lab_optimizer(name, model, args.lr, fused=not args.plain_optimizer)
    epoch_s, history = timed(lambda: tp3nets.fit(
        model, loader, epochs=1, optimizer=optimizer, val_loader=val_loader,
        precision=precision, progress=False, device=args.device, channels_last=channels_last,
    ), args.device)
    row = history.epochs[-1]
    return {"setup_s": setup_s, "epoch_s": epoch_s, "val_acc": row["val_acc"],
            "val_loss": row["val_loss"], "batches": len(loader),
            "precision": precision + (" channels-last" if channels_last else ""),
            "optimizer": _describe(optimizer)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlr,convnet2,convnet3,convnet4",
                        help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-batches", type=int, default=None,
                        help="train on this many batches instead of a full epoch")
    parser.add_argument("--limit-val", type=int, default=None,
                        help="validate on this many of the 5,000 validation images")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST/raw/")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: SGD 0.01 for mlr, Adam 1e-3 otherwise)")
    parser.add_argument("--fit-precision", choices=["32", "bf16"], default=None,
                        help="precision of fit for every model (default: bf16 for the ConvNets, "
                        "32 for mlr)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="keep the ConvNets in the default memory format in fit")
    parser.add_argument("--plain-optimizer", action="store_true",
                        help="give fit the reference's plain optimizer instead of its fused "
                        "implementation")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or cuda:N: where both sides train")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1,
                        help="train each model this many times per side; medians are reported")
    parser.add_argument("--quick", action="store_true",
                        help="5 batches and 500 validation images: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    add_memory_option(parser)
    args = parser.parse_args(argv)
    malloc = malloc_setting(args)
    if args.quick:
        args.limit_batches = args.limit_batches or 5
        args.limit_val = args.limit_val or 500
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    check_device(parser, args.device)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")

    info = machine(args.device, malloc)
    print_machine(info)
    rows = []
    for name in names:
        torch.manual_seed(args.seed)
        template = MODELS[name]()
        _warm_up(template, args.device)
        refs, fits = [], []
        for _ in range(args.repeats):
            gc.collect()  # the reference's per-sample objects must not burden fit's run
            refs.append(run_reference(name, copy.deepcopy(template), args))
            gc.collect()
            fits.append(run_fit(name, copy.deepcopy(template), args))
        ref, ours = dict(refs[0]), dict(fits[0])
        for key in ("setup_s", "epoch_s"):
            ref[key] = median([r[key] for r in refs])
            ours[key] = median([r[key] for r in fits])
        epoch_x = ref["epoch_s"] / ours["epoch_s"]
        e2e_x = (ref["setup_s"] + ref["epoch_s"]) / (ours["setup_s"] + ours["epoch_s"])
        # Each pair ran back to back, so its ratio does not see the machine's drift from
        # one minute to the next; the median of those ratios judges the goal.
        key = "e2e_s" if name == "mlr" else "epoch_s"
        for r in refs + fits:
            r["e2e_s"] = r["setup_s"] + r["epoch_s"]
        pairs = sorted(r[key] / f[key] for r, f in zip(refs, fits, strict=True))
        goal = GOALS[name]
        # mlr's goal is end to end; the ConvNets' goals are per epoch.
        measured = median(pairs)
        rows.append({
            "model": name,
            "batches": ref["batches"],
            "fit precision": ours["precision"],
            "fit optimizer": ours["optimizer"],
            "ref s/epoch": ref["epoch_s"],
            "fit s/epoch": ours["epoch_s"],
            "epoch speedup": epoch_x,
            "ref s end-to-end": ref["setup_s"] + ref["epoch_s"],
            "fit s end-to-end": ours["setup_s"] + ours["epoch_s"],
            "e2e speedup": e2e_x,
            "goal's speedup per pair (min, median, max)":
                f"{pairs[0]:.2f}, {measured:.2f}, {pairs[-1]:.2f}",
            "ref val acc": ref["val_acc"],
            "fit val acc": ours["val_acc"],
            "goal": f">= {goal:g}x " + ("end to end" if name == "mlr" else "per epoch"),
            "met": "yes" if measured >= goal else "no",
            "runs": {"ref": refs, "fit": fits},
        })
    notes = []
    if args.repeats > 1:
        notes.append(f"medians of {args.repeats} runs per side; goals judged on the median of "
                     "the pairs' ratios; accuracies of the first run")
    if args.limit_batches:
        notes.append(f"limited to {args.limit_batches} training batches: not a full epoch")
    report("fit_vs_reference", info, rows, args, "; ".join(notes) or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
