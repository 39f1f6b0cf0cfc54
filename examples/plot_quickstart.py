"""
Quickstart: a pretrained ConvNet4 reads digits
==============================================

The bundled ConvNet4 weights classify the sample images that ship inside the package
(:mod:`tp3nets.data.samples`, the same files as ``examples/digits/``): digits drawn in dark ink
on paper of several shades, sizes and slants, none of them from MNIST.
Nothing is downloaded and MNIST is not needed: the weights are inside the package.

The same from the command line::

    tp3nets predict convnet4 examples/digits/*.png

ConvNet4 is the last model of the TP3 lab report (Kim ANTUNEZ, Isabelle BERNARD); its
weights were trained on MNIST (Yann LeCun, Corinna Cortes, Christopher J. C. Burges,
CC BY-SA 3.0).
"""

import matplotlib.pyplot as plt
import torch
from PIL import Image

import tp3nets

# The ten sample files, digit_0.png to digit_9.png, inside the installed package: this
# script runs from any folder.
paths = tp3nets.data.samples.digit_paths()

# %%
# Load the model with its weights, and the preprocessing those weights were trained with.
# :class:`~tp3nets.MNISTPreprocess` turns any digit image into what MNIST looks like: a
# 28×28 float tensor, light ink on black, the digit centred in a 20×20 box.

weights = tp3nets.ConvNet4_Weights.DEFAULT
model = tp3nets.convnet4(weights=weights).eval()
preprocess = weights.transforms()

images = [Image.open(p) for p in paths]
batch = torch.stack([preprocess(im) for im in images])  # (N, 1, 28, 28)
probs = tp3nets.predict(model, batch).softmax(dim=1)
confidence, predicted = probs.max(dim=1)

categories = weights.meta["categories"]
for path, c, k in zip(paths, confidence.tolist(), predicted.tolist(), strict=True):
    print(f"{path.name:14s} -> {categories[k]}  ({c:.1%})")

# %%
# Each image as it was given (top) and as the model sees it (bottom), with the answer.
# The file ``digit_<d>.png`` holds the digit ``d``: green answers are right.

fig, axes = plt.subplots(2, len(paths), figsize=(1.3 * len(paths), 3.2), layout="constrained")
for i, (path, image) in enumerate(zip(paths, images, strict=True)):
    truth = path.stem.rsplit("_", 1)[-1]
    answer = categories[predicted[i]]
    axes[0, i].imshow(image.convert("L"), cmap="gray", vmin=0, vmax=255)
    axes[1, i].imshow(batch[i, 0], cmap="gray", vmin=0, vmax=1)
    axes[1, i].set_title(f"{answer} ({confidence[i]:.0%})", fontsize=9,
                         color="tab:green" if answer == truth else "tab:red")
    for ax in axes[:, i]:
        ax.set_axis_off()
fig.suptitle("ConvNet4 (TP3 lab) with its MNIST weights, on digits it never saw")
plt.show()
