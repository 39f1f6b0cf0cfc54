"""
Plain PyTorch with tp3nets, and tp3nets with plain PyTorch
==========================================================

tp3nets does not take over the training loop. Its models are ordinary
:class:`torch.nn.Module` objects that train in a hand-written loop with a
:class:`~torch.utils.data.DataLoader`, exactly like the lab's ``train`` and ``validation``
functions; and :func:`tp3nets.fit` trains any module, here the lab's multi-layer
perceptron written as a bare ``nn.Sequential``.

Models: TP3 lab report (Kim ANTUNEZ, Isabelle BERNARD). Data: MNIST (Yann LeCun, Corinna
Cortes, Christopher J. C. Burges), CC BY-SA 3.0.
"""

import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tp3nets
from tp3nets.data import TensorLoader, mnist_splits

REPO = Path(sys.argv[0]).resolve().parents[1]
DATA = Path(os.environ.get("TP3NETS_DATA", REPO.parent / "shared" / "datasets"))
FAST = os.environ.get("TP3NETS_FAST", "0") not in ("", "0")

N_TRAIN, N_VAL = (2000, 1000) if FAST else (None, None)
EPOCHS = 3

tp3nets.seed_everything(0)
train, val, _ = mnist_splits(DATA)


def as_float(dataset, n):
    """A TensorDataset of float images in [0, 1], as torchvision's ToTensor() gives."""
    images, labels = (t[:n] for t in dataset.tensors)
    return TensorDataset(images.float() / 255, labels)


trainset, valset = as_float(train, N_TRAIN), as_float(val, N_VAL)

# %%
# A tp3nets model in a hand-written loop
# --------------------------------------
#
# The lab's two functions, with ``model`` where the lab first wrote ``net``:

trainloader = DataLoader(trainset, batch_size=64, shuffle=True)
valloader = DataLoader(valset, batch_size=500)


def train_epoch(model, loader, criterion, optimizer):
    model.train()
    total = 0.0
    for inputs, labels in loader:
        optimizer.zero_grad()
        outputs = model(inputs)  # the forward stage
        loss = criterion(outputs, labels)
        loss.backward()  # back-propagation: d loss / d w into each w.grad
        optimizer.step()
        total += loss.item() * len(labels)
    return total / len(loader.dataset)


@torch.no_grad()
def validation(model, loader, criterion):
    model.eval()
    loss, correct = 0.0, 0
    for inputs, labels in loader:
        outputs = model(inputs)
        loss += criterion(outputs, labels).item() * len(labels)
        correct += (outputs.argmax(dim=1) == labels).sum().item()
    return loss / len(loader.dataset), correct / len(loader.dataset)


model = tp3nets.ConvNet2()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
by_hand = []
for epoch in range(EPOCHS):
    train_loss = train_epoch(model, trainloader, criterion, optimizer)
    val_loss, val_acc = validation(model, valloader, criterion)
    by_hand.append((train_loss, val_loss))
    print(f"epoch {epoch + 1}: loss {train_loss:.4f}  val_loss {val_loss:.4f}  "
          f"val_acc {val_acc:.4f}")

# %%
# Any module in ``fit``
# ---------------------
#
# The lab's multi-layer perceptron, built from bare PyTorch layers: ``fit`` needs nothing
# from tp3nets in the model. It takes any iterable of batches too; the same
# ``DataLoader`` objects work, and so does a :class:`~tp3nets.data.TensorLoader`.

mlp = nn.Sequential(
    nn.Flatten(),
    nn.Linear(28 * 28, 128),
    nn.ReLU(),
    nn.Linear(128, 10),
)
history = tp3nets.fit(
    mlp,
    trainloader,
    val_loader=TensorLoader(valset.tensors, batch_size=1000),
    epochs=EPOCHS,
    optimizer=torch.optim.Adam(mlp.parameters(), lr=1e-3),
)

# %%
# Both runs, side by side: the hand-written loop's figures for ConvNet2 and the
# :class:`~tp3nets.History` of ``fit`` for the perceptron.

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
epochs = range(1, EPOCHS + 1)
ax.plot(epochs, [t for t, _ in by_hand], marker="o", label="ConvNet2, loop: loss")
ax.plot(epochs, [v for _, v in by_hand], marker="o", label="ConvNet2, loop: val_loss")
history.plot(["loss", "val_loss"], ax=ax)
ax.lines[-2].set_label("MLP, fit: loss")
ax.lines[-1].set_label("MLP, fit: val_loss")
ax.legend()
ax.set_ylabel("cross-entropy")
ax.set_title("A hand-written loop and fit, on MNIST")
plt.show()
