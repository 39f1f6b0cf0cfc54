"""
Evaluation: confusion matrix and the digits a model gets wrong
==============================================================

The pretrained ConvNet4 on the MNIST test set: :func:`tp3nets.evaluate` gives the loss and
the accuracy, :func:`tp3nets.predict` the logits, from which come the confusion matrix
(which digit is taken for which) and the images it gets wrong, with its answer and its
confidence.

The same figures from the command line::

    tp3nets evaluate convnet4 --data DIR

With ``TP3NETS_FAST=1`` (as in the gallery build) it reads the first 600 test images; run
it as it is for all 10,000. The figures below say which.

ConvNet4: TP3 lab report (Kim ANTUNEZ, Isabelle BERNARD). Data: MNIST (Yann LeCun, Corinna
Cortes, Christopher J. C. Burges), CC BY-SA 3.0.
"""

import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import tp3nets
from tp3nets.data import TensorLoader, load_mnist

REPO = Path(sys.argv[0]).resolve().parents[1]
DATA = Path(os.environ.get("TP3NETS_DATA", REPO.parent / "shared" / "datasets"))
FAST = os.environ.get("TP3NETS_FAST", "0") not in ("", "0")

weights = tp3nets.ConvNet4_Weights.DEFAULT
model = tp3nets.convnet4(weights=weights).eval()

test = load_mnist(DATA, train=False)
n = 600 if FAST else len(test)
images, labels = (t[:n] for t in test.tensors)

# %%
# Loss and accuracy
# -----------------

figures = tp3nets.evaluate(model, TensorLoader((images, labels), batch_size=200))
print(f"ConvNet4 on {n} MNIST test images: loss {figures['loss']:.4f}, "
      f"accuracy {figures['acc']:.2%}")
recorded = weights.meta["metrics"]["MNIST"]["acc@1"]
print(f"recorded in the weights' meta, on all 10,000: {recorded:.2f} %")

# %%
# The confusion matrix
# --------------------
#
# Row: the true digit; column: the model's answer. Everything off the diagonal is a
# mistake.

logits = tp3nets.predict(model, images.float() / 255, batch_size=200)
probs = logits.softmax(dim=1)
confidence, predicted = probs.max(dim=1)
matrix = torch.zeros(10, 10, dtype=torch.int64)
matrix.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)

fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
ax.imshow(matrix.float().log1p(), cmap="Blues")
for i in range(10):
    for j in range(10):
        if matrix[i, j]:
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if i == j else "black")
ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true digit",
       title=f"ConvNet4 on {n} MNIST test images")
plt.show()

# %%
# The digits it gets wrong
# ------------------------
#
# Most confident mistakes first; each title reads "true → predicted (confidence)".

wrong = (predicted != labels).nonzero().flatten()
wrong = wrong[confidence[wrong].argsort(descending=True)][:24]
errors = int((predicted != labels).sum())
print(f"{errors} mistake{'' if errors == 1 else 's'}; showing {len(wrong)}")
if len(wrong):
    top = int(wrong[0])
    print(f"the most confident: the digit {int(labels[top])} read as "
          f"{int(predicted[top])}, with {float(confidence[top]):.0%} confidence")

if len(wrong):
    cols = min(8, len(wrong))
    rows = (len(wrong) + cols - 1) // cols
    # At least 6.5 inches wide, so that the title fits above a few mistakes.
    fig, axes = plt.subplots(rows, cols, figsize=(max(1.3 * cols, 6.5), 1.5 * rows + 0.6),
                             layout="constrained", squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, wrong.tolist(), strict=False):
        ax.imshow(images[i, 0], cmap="gray")
        ax.set_title(f"{labels[i]} → {predicted[i]} ({confidence[i]:.0%})", fontsize=8)
    title = f"ConvNet4's mistakes on {n} MNIST test digits"
    fig.suptitle(title + "\ntrue → predicted (confidence)", fontsize=10)
    plt.show()
