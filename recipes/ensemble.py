"""What the bundled weights of one model add to each other, on the validation split only:
``python recipes/ensemble.py --data DIR [--model convnet4]``.

Prints the validation acc@1 (5,000 images, ``mnist_splits(val_size=5000, seed=42)``) of
every bundled fp32 member alone, of every ensemble of two or more members (the mean of
their probabilities) and of the uniform average of each pair's weights (a "soup", read
with the averaged BatchNorm statistics as they are). An ensemble well above its members
says a single model has room to learn more (distillation); a soup as good as its members
says the two lie in one basin. Never reads the test set; writes nothing.
"""

from __future__ import annotations

import argparse
import itertools
import os

import torch
from robustness import accuracy, bundled_weights
from torch import Tensor, nn

import tp3nets
from tp3nets.data import mnist_splits


def probabilities(model: nn.Module, x: Tensor, batch: int = 1000) -> Tensor:
    with torch.inference_mode():
        return torch.cat([model(x[i:i + batch]).softmax(1) for i in range(0, len(x), batch)])


def soup(name: str, states: list[dict[str, Tensor]]) -> nn.Module:
    """The model whose floating-point tensors are the mean of ``states`` (integer buffers,
    BatchNorm's batch counter, from the first)."""
    mean = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
                if v.is_floating_point() else v) for k, v in states[0].items()}
    model = tp3nets.get_model(name)
    model.load_state_dict(mean)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TP3NETS_DATA", "../shared/datasets"))
    parser.add_argument("--model", default="convnet4")
    args = parser.parse_args(argv)
    _, val, _ = mnist_splits(args.data, val_size=5000, seed=42)
    images, labels = val.tensors
    x = images.float() / 255
    members = {m.name: tp3nets.get_model(args.model, weights=m).eval()
               for _, m in bundled_weights(args.model)}
    if len(members) < 2:
        parser.error(f"{args.model} has {len(members)} bundled fp32 weights; nothing to combine")
    probs = {k: probabilities(m, x) for k, m in members.items()}

    def acc(p: Tensor) -> float:
        return round(100 * (p.argmax(1) == labels).double().mean().item(), 2)

    print(f"{args.model}, validation acc@1 (%), 5,000 images")
    for k, p in probs.items():
        print(f"  {k}: {acc(p)}")
    for r in range(2, len(probs) + 1):
        for combo in itertools.combinations(probs, r):
            print(f"  ensemble {'+'.join(combo)}: {acc(sum(probs[k] for k in combo))}")
    for a, b in itertools.combinations(members, 2):
        model = soup(args.model, [members[a].state_dict(), members[b].state_dict()])
        print(f"  soup {a}+{b}: {accuracy(model, x, labels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
