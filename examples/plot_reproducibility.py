"""
Why two runs differ, and how to make them equal
===============================================

The lab report's Question 4: *run the block several times; is it plotting the same number
all the time? If not, why?* The block split the 60,000 MNIST training images into a
training and a validation set with ``torch.utils.data.random_split`` and plotted an image
of the split. The answer: no, because ``random_split`` draws a new random permutation on
every run; passing ``generator=torch.Generator().manual_seed(42)`` fixes it.

tp3nets makes that seeded split the default (:func:`tp3nets.data.train_val_split`, with
exactly the indices of the lab's seeded ``random_split``), and seeds the rest of a training
run too: the initial weights, the shuffling, dropout. Below, the split first, then whole
training runs.

From the TP3 lab report (Kim ANTUNEZ, Isabelle BERNARD). Data: MNIST (Yann LeCun, Corinna
Cortes, Christopher J. C. Burges), CC BY-SA 3.0.
"""

import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.data import random_split

import tp3nets
from tp3nets.data import TensorLoader, load_mnist, train_val_split

REPO = Path(sys.argv[0]).resolve().parents[1]
DATA = Path(os.environ.get("TP3NETS_DATA", REPO.parent / "shared" / "datasets"))
FAST = os.environ.get("TP3NETS_FAST", "0") not in ("", "0")

all_train = load_mnist(DATA, train=True)
n_val = 5000

# %%
# The split, three times each way
# -------------------------------
#
# Top: the lab's block as first written, ``random_split`` without a generator: each run
# puts a different image first in the validation set. Bottom: the seeded split, the same
# image every time.

fig, axes = plt.subplots(2, 3, figsize=(6, 4.4), layout="constrained")
for run in range(3):
    _, valset = random_split(all_train, [len(all_train) - n_val, n_val])
    image, label = all_train[valset.indices[0]]
    axes[0, run].imshow(image[0], cmap="gray")
    axes[0, run].set_title(f"run {run + 1}: a {label}", fontsize=9)

    _, val = train_val_split(all_train, n_val, seed=42)
    image, label = val.tensors[0][0], int(val.tensors[1][0])
    axes[1, run].imshow(image[0], cmap="gray")
    axes[1, run].set_title(f"run {run + 1}: a {label}", fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_ylabel("random_split")
axes[1, 0].set_ylabel("train_val_split\n(seed=42)")
fig.suptitle("First validation image of the MNIST split")
plt.show()

# %%
# The seeded split is the lab's own fix, index for index:

_, lab_val = random_split(all_train, [len(all_train) - n_val, n_val],
                          generator=torch.Generator().manual_seed(42))
_, val = train_val_split(all_train, n_val, seed=42)
same = torch.equal(val.tensors[1], all_train.tensors[1][lab_val.indices])
print(f"train_val_split(seed=42) == random_split(generator=manual_seed(42)): {same}")

# %%
# Whole training runs
# -------------------
#
# The split is not the only source of randomness: the initial weights, the order of the
# batches and dropout are drawn too. Two runs of the same code give different weights
# unless everything is seeded; with :func:`tp3nets.seed_everything`, the seeded split and a
# seeded :class:`~tp3nets.data.TensorLoader`, two runs on the CPU are bitwise identical.

N_TRAIN, N_VAL = (1000, 1000) if FAST else (None, None)
EPOCHS = 3 if FAST else 5


def run(seed=None):
    """Split, build and train ConvNet2; seed everything when ``seed`` is given."""
    if seed is None:  # the lab's block: a fresh random split and random everything else
        train_idx, val_idx = random_split(range(len(all_train)), [len(all_train) - n_val, n_val])
        train = tuple(t[list(train_idx)] for t in all_train.tensors)
        val = tuple(t[list(val_idx)] for t in all_train.tensors)
        loader_seed = int(torch.randint(0, 2**31, ()))
    else:
        tp3nets.seed_everything(seed)  # initial weights, dropout
        train_ds, val_ds = train_val_split(all_train, n_val, seed=42)
        train, val = train_ds.tensors, val_ds.tensors
        loader_seed = seed  # the order of the batches
    model = tp3nets.ConvNet2()
    history = tp3nets.fit(
        model,
        TensorLoader(tuple(t[:N_TRAIN] for t in train), batch_size=64, shuffle=True,
                     seed=loader_seed),
        val_loader=TensorLoader(tuple(t[:N_VAL] for t in val), batch_size=1000),
        epochs=EPOCHS,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        progress=False,
    )
    return model, history


def max_difference(a, b):
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((p - q).abs().max()) for p, q in pairs)


runs = {"not seeded": (run(), run()), "seeded": (run(seed=0), run(seed=0))}
for name, ((m1, h1), (m2, h2)) in runs.items():
    print(f"{name:11s} largest weight difference {max_difference(m1, m2):.3g}, "
          f"validation accuracy {h1['val_acc'][-1]:.4f} vs {h2['val_acc'][-1]:.4f}")

# %%
# The validation curves of the two runs: apart without seeds, one on top of the other
# with them.

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True, layout="constrained")
for ax, (name, ((_, h1), (_, h2))) in zip(axes, runs.items(), strict=True):
    h1.plot(["val_loss"], ax=ax)
    h2.plot(["val_loss"], ax=ax)
    ax.lines[1].set_linestyle("--")
    ax.legend(["run 1", "run 2"])
    ax.set_title(f"ConvNet2, {name}")
axes[0].set_ylabel("validation loss")
plt.show()
