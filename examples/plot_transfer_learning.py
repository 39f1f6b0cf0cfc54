"""
Transfer learning: ConvNet4's features for a new task
=====================================================

A new task with another number of classes: tell **even from odd** digits (2 classes). The
pretrained ConvNet4 already turns a digit into 256 features that separate the ten digits
well; :meth:`~tp3nets.models.ClassifierModel.reset_classifier` swaps its 10-way head for a
fresh 2-way one, and only that head is trained, on a few hundred labelled images.

Since the features stay frozen, they are computed once and cached; the head, a plain
:class:`torch.nn.Linear`, is trained on them with :func:`tp3nets.fit` in a fraction of a
second. The model with its new head then classifies images end to end. Another task works
the same way: digits 0-4 only would be ``reset_classifier(5)``, with the images of the
other digits left out.

ConvNet4: TP3 lab report (Kim ANTUNEZ, Isabelle BERNARD). Data: MNIST (Yann LeCun, Corinna
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

N_TRAIN, N_VAL, N_TEST = (300, 200, 300) if FAST else (2000, 1000, 10000)

train, val, test = mnist_splits(DATA)


def task(dataset, n):
    """The first n images, as floats in [0, 1], with the new labels: 0 even, 1 odd."""
    images, digits = (t[:n] for t in dataset.tensors)
    return images.float() / 255, digits % 2


# %%
# The pretrained model, with a new head
# -------------------------------------

model = tp3nets.convnet4(weights="DEFAULT").eval()
model.reset_classifier(2)
print(model.get_classifier())  # Linear(in_features=256, out_features=2)


@torch.inference_mode()
def features(images):
    """ConvNet4 up to its head: (N, 1, 28, 28) -> (N, 256), in eval mode."""
    return torch.cat([model.features(x).flatten(1) for x in images.split(100)])


x_train, y_train = task(train, N_TRAIN)
x_val, y_val = task(val, N_VAL)
f_train, f_val = features(x_train), features(x_val)
print(f"cached features: {tuple(f_train.shape)} for training, {tuple(f_val.shape)} for validation")

# %%
# Train the head alone
# --------------------
#
# ``fit`` trains any module: here the head, an ``nn.Linear``, on the cached features.
# Because the head is the model's own layer, training it trains the model.

tp3nets.seed_everything(0)
head = model.get_classifier()
history = tp3nets.fit(
    head,
    TensorLoader((f_train, y_train), batch_size=32, shuffle=True),
    val_loader=TensorLoader((f_val, y_val), batch_size=500),
    epochs=15,
    optimizer=torch.optim.Adam(head.parameters(), lr=1e-2),
    progress=False,
)
ax = history.plot(["loss", "val_loss", "acc", "val_acc"])
ax.set_title(f"Even/odd head on ConvNet4's pretrained features ({N_TRAIN} images)")
plt.show()

# %%
# The whole model on new images
# -----------------------------
#
# ConvNet4 with its new head, end to end on test images it has never seen:

x_test, y_test = task(test, N_TEST)
figures = tp3nets.evaluate(model, TensorLoader((x_test, y_test), batch_size=100))
print(f"even/odd accuracy on {N_TEST} test images: {figures['acc']:.2%}")

predicted = tp3nets.predict(model, x_test[:16]).argmax(dim=1)
fig, axes = plt.subplots(2, 8, figsize=(9, 2.8), layout="constrained")
for ax, image, guess, truth in zip(axes.flat, x_test, predicted, y_test, strict=False):
    ax.imshow(image[0], cmap="gray")
    ax.set_title("odd" if guess else "even", fontsize=9,
                 color="tab:green" if guess == truth else "tab:red")
    ax.set_axis_off()
fig.suptitle("ConvNet4 with a new 2-way head: even or odd?")
plt.show()
