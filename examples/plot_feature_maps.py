"""
What ConvNet4's first block sees
================================

ConvNet4 starts with a :func:`~tp3nets.batch_relu` block: 64 convolution kernels of 3×3,
batch normalisation, ReLU. Each kernel slides over the image and answers where it finds
its pattern, giving 64 *feature maps* of 28×28. Below, the kernels of the pretrained
model, then their maps for one MNIST test digit, read with a forward hook: no change to
the model is needed.

ConvNet4: TP3 lab report (Kim ANTUNEZ, Isabelle BERNARD). Data: MNIST (Yann LeCun, Corinna
Cortes, Christopher J. C. Burges), CC BY-SA 3.0.
"""

import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import tp3nets
from tp3nets.data import load_mnist

REPO = Path(sys.argv[0]).resolve().parents[1]
DATA = Path(os.environ.get("TP3NETS_DATA", REPO.parent / "shared" / "datasets"))

model = tp3nets.convnet4(weights="DEFAULT").eval()
block = model.features[:3]  # Conv2d(1, 64, 3) - BatchNorm2d(64) - ReLU: the first batch_relu
print(block)

image, label = load_mnist(DATA, train=False)[0]
x = image.float().unsqueeze(0) / 255  # (1, 1, 28, 28)

# %%
# The 64 kernels
# --------------
#
# The weights of the first convolution, each a 3×3 pattern (blue negative, red positive).

kernels = model.features[0].weight.detach()[:, 0]  # (64, 3, 3)
fig, axes = plt.subplots(4, 16, figsize=(10, 2.8), layout="constrained")
bound = float(kernels.abs().max())
for ax, k in zip(axes.flat, kernels, strict=True):
    ax.imshow(k, cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set_axis_off()
fig.suptitle("ConvNet4 (pretrained): the 64 kernels of its first convolution")
plt.show()

# %%
# The 64 feature maps of one digit
# --------------------------------
#
# A forward hook on the block's ReLU catches its output during an ordinary call of the
# model. Bright: where a kernel's pattern is present (strokes, edges in one direction, the
# background).

captured = {}
hook = model.features[2].register_forward_hook(
    lambda module, inputs, output: captured.update(maps=output.detach()))
with torch.inference_mode():
    answer = model(x).argmax(dim=1).item()
hook.remove()
maps = captured["maps"][0]  # (64, 28, 28)

fig = plt.figure(figsize=(11, 5.8), layout="constrained")
left, right = fig.subfigures(1, 2, width_ratios=[1, 3.2])
ax = left.subplots()
ax.imshow(x[0, 0], cmap="gray")
ax.set_title(f"input: a {label}\nmodel's answer: {answer}")
ax.set_axis_off()
axes = right.subplots(8, 8)
for ax, fmap in zip(axes.flat, maps, strict=True):
    ax.imshow(fmap, cmap="magma")
    ax.set_axis_off()
right.suptitle("after Conv 3×3 → BatchNorm → ReLU: 64 maps of 28×28")
plt.show()

# %%
# The same hook works on any layer: ``model.features[13]`` ends the second stage
# (128 maps of 14×14), ``model.features[21]`` the third (256 maps of 7×7), which
# global average pooling turns into the 256 features the head reads.
