"""
Training each model from scratch
================================

The lab report's Problems 1 and 2: train the multinomial logistic regression and the three
convolutional networks on MNIST, validating after each epoch, then measure the accuracy on
the test set. :func:`tp3nets.fit` does the loop; :meth:`tp3nets.History.plot` draws the
curves.

The report trained each model for two epochs and reached 83 % (logistic regression),
98.3 % (ConvNet2), 98.9 % (ConvNet3) and 99.12 % (ConvNet4) on the test set. Run this
script as it is to train on the full 55,000-image split. With ``TP3NETS_FAST=1``, as the
gallery is built, it trains on 1,000-2,000 images and tests on 250, a few seconds per
model: those curves (their title says so) show the mechanics, not those accuracies, nor
the bundled weights' (see :doc:`/models`).

Models: TP3 lab report (Kim ANTUNEZ, Isabelle BERNARD). Data: MNIST (Yann LeCun, Corinna
Cortes, Christopher J. C. Burges), CC BY-SA 3.0.
"""

import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import tp3nets
from tp3nets.data import TensorLoader, mnist_splits

REPO = Path(sys.argv[0]).resolve().parents[1]
DATA = Path(os.environ.get("TP3NETS_DATA", REPO.parent / "shared" / "datasets"))
FAST = os.environ.get("TP3NETS_FAST", "0") not in ("", "0")

# %%
# The data: the lab's seeded split of the 60,000 training images into 55,000 to train on
# and 5,000 to validate on, and the 10,000 test images, all held in memory.

train, val, test = mnist_splits(DATA, val_size=5000, seed=42)
print(f"train {len(train)}, validation {len(val)}, test {len(test)}")


def first(dataset, n):
    """The first n samples of a TensorDataset (all of them when n is None)."""
    return tuple(t[:n] for t in dataset.tensors) if n else dataset


# %%
# One setting per model: the lab's two epochs with Adam in full mode. In fast mode, more
# epochs on far fewer images, so that the curves have a few points, and ConvNet4 with a
# quarter of its filters (``width=16`` instead of 64): the full network computes about 40
# times more per image than ConvNet2, too much for a few seconds on a CPU.

EPOCHS = 2
FAST_SETTINGS = {  # model: (training images, epochs, builder options) in fast mode
    "multinomial_logistic_regression": (2000, 5, {}),
    "convnet2": (1000, 4, {}),
    "convnet3": (1000, 4, {}),
    "convnet4": (1000, 4, {"width": 16}),
}
histories, scores = {}, {}
for name, (n_fast, epochs_fast, options) in FAST_SETTINGS.items():
    tp3nets.seed_everything(0)
    model = tp3nets.get_model(name, **(options if FAST else {}))
    n_train, epochs, n_eval = (n_fast, epochs_fast, 250) if FAST else (None, EPOCHS, None)
    print(f"--- {name}: {sum(p.numel() for p in model.parameters()):,} parameters")
    histories[name] = tp3nets.fit(
        model,
        TensorLoader(first(train, n_train), batch_size=32 if FAST else 64, shuffle=True),
        val_loader=TensorLoader(first(val, n_eval), batch_size=500),
        epochs=epochs,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
    )
    scores[name] = tp3nets.evaluate(model, TensorLoader(first(test, n_eval), batch_size=500))

# %%
# Loss and accuracy per epoch, on the training batches and on the validation split.

fig, axes = plt.subplots(2, 4, figsize=(13, 5.5), sharex="col", layout="constrained")
for i, (name, history) in enumerate(histories.items()):
    history.plot(["loss", "val_loss"], ax=axes[0, i])
    history.plot(["acc", "val_acc"], ax=axes[1, i])
    title = name.replace("multinomial_logistic_regression", "logistic regression")
    options = FAST_SETTINGS[name][2] if FAST else {}
    axes[0, i].set_title(title + "".join(f" ({k}={v})" for k, v in options.items()))
axes[0, 0].set_ylabel("cross-entropy")
axes[1, 0].set_ylabel("accuracy")
if FAST:
    bundled = tp3nets.ConvNet3_Weights.DEFAULT.meta["metrics"]["MNIST"]["acc@1"]
    fig.suptitle("FAST MODE (TP3NETS_FAST=1): 1,000-2,000 training images, a few epochs. "
                 f"Not the bundled weights (ConvNet3: {bundled:.2f} % on MNIST test)",
                 color="tab:red")
    print("These curves are from the fast mode; the bundled weights' accuracies are on the "
          "models page.")
else:
    fig.suptitle("TP3 lab models trained from scratch on MNIST, two epochs each")
plt.show()

# %%
# Accuracy on the test set, beside the figure the lab report gives for two epochs.

REPORT = {"multinomial_logistic_regression": 0.83, "convnet2": 0.983, "convnet3": 0.989,
          "convnet4": 0.9912}
for name, figures in scores.items():
    print(f"{name:33s} test acc {figures['acc']:.2%}   (lab report: {REPORT[name]:.2%})")
