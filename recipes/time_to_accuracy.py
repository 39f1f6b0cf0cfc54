"""Wall-clock time for ConvNet4 to go from scratch to >= 99.12 % MNIST test accuracy.

``python recipes/time_to_accuracy.py --data DIR``

99.12 % is the lab report's figure, which took its authors 40 minutes for 2 epochs. The
clock runs from before the data is read to the end of the evaluation that first reaches
the target: loading, training and evaluation all count. The test set is used here only as
the stopping rule of this measurement (as in DAWNBench-style time-to-accuracy benchmarks),
never to choose the hyperparameters of the bundled weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import tp3nets
from tp3nets.data import TensorLoader, load_mnist
from tp3nets.training import evaluate, seed_everything, train_one_epoch

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TP3NETS_DATA", "../shared/datasets"))
    parser.add_argument("--target", type=float, default=99.12)
    parser.add_argument("--epochs", type=int, default=3, help="schedule length (OneCycle)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--precision", default="bf16", choices=["32", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    start = time.perf_counter()
    train = load_mnist(args.data, train=True)
    test = load_mnist(args.data, train=False)
    loader = TensorLoader(train, args.batch_size, shuffle=True, seed=args.seed)
    test_loader = TensorLoader(test, 1000)
    model = tp3nets.ConvNet4()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=len(loader), pct_start=0.25
    )
    rows = []
    reached = None
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        train_one_epoch(model, loader, optimizer=opt, scheduler=sched, precision=args.precision)
        acc = 100 * evaluate(model, test_loader, precision=args.precision)["acc"]
        elapsed = time.perf_counter() - start
        rows.append({"epoch": epoch + 1, "test_acc": round(acc, 2), "seconds": round(elapsed, 1)})
        print(f"epoch {epoch + 1}: test acc {acc:.2f} % after {elapsed:.0f} s", flush=True)
        if acc >= args.target and reached is None:
            reached = elapsed
            break
    record = {
        "model": "convnet4",
        "target_acc": args.target,
        "reached": reached is not None,
        "seconds_to_target": round(reached, 1) if reached is not None else None,
        "epochs": rows,
        "command": "python recipes/time_to_accuracy.py --data DIR",
        "settings": {k: v for k, v in vars(args).items() if k != "data"},
        "hardware": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "torch_version": torch.__version__,
        "train_images": len(train),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "time_to_accuracy.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0 if reached is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
