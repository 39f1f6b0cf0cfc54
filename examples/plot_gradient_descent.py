r"""
Gradient descent, and the step size that converges fastest
==========================================================

The lab report's Questions 1 and 2. Question 1: solve

.. math:: \min_{w \in \mathbb{R}^5} f(w) = (1 - x^\top w)^2, \qquad x = (1, \dots, 1)^\top,

analytically and compare with gradient descent. Question 2: which learning rate
:math:`\eta` converges fastest?

**Analytically.** :math:`f \ge 0`, and :math:`f(w) = 0` exactly when
:math:`x^\top w = \sum_k w_k = 1`: the minimisers are a whole hyperplane, not a point.
The gradient :math:`\nabla f(w) = -2 (1 - x^\top w)\, x` is always parallel to :math:`x`,
so gradient descent only moves :math:`w_0` along :math:`x` and ends at the point of the
hyperplane closest to its start:

.. math:: w^\star = w_0 + \frac{1 - x^\top w_0}{\lVert x \rVert^2}\, x,

which is :math:`(0.2, \dots, 0.2)` from :math:`w_0 = 0`, as the report found, and another
minimiser from another start.

**The step size.** The Hessian :math:`\nabla^2 f = 2 x x^\top` has one non-zero eigenvalue,
:math:`L = 2 \lVert x \rVert^2 = 10`: the gradient is :math:`L`-Lipschitz. Along :math:`x`
the residual :math:`r_k = 1 - x^\top w_k` obeys :math:`r_{k+1} = (1 - \eta L)\, r_k`, so
gradient descent converges exactly when :math:`0 < \eta < 2/L`, fastest at
:math:`\eta = 1/L` (here in a single step), and diverges above :math:`2/L`. This is the
theory's answer to Question 2: :math:`\eta = 1/L` for an :math:`L`-smooth function (for a
quadratic whose curvatures lie between :math:`\mu > 0` and :math:`L`, the best fixed step is
:math:`2/(\mu + L)`). Pure torch, no MNIST; from the TP3 lab report (Kim ANTUNEZ, Isabelle
BERNARD).
"""

import matplotlib.pyplot as plt
import torch

x = torch.ones(5, dtype=torch.float64)
L = 2 * float(x @ x)  # the largest eigenvalue of the Hessian 2 x x^T


def f(w):
    return (1 - x @ w) ** 2


def gradient_descent(w0, lr, steps):
    """The lab's loop: loss.backward() computes the gradient, then a step against it."""
    w = w0.clone().requires_grad_(True)
    losses, path = [], [w.detach().clone()]
    for _ in range(steps):
        loss = f(w)
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
        w.grad.zero_()
        path.append(w.detach().clone())
    return w.detach(), losses, path


# %%
# Question 1: gradient descent against the analytic answer
# ---------------------------------------------------------
#
# From :math:`w_0 = 0`, then from three random starts: each run reaches a minimiser
# (:math:`\sum_k w_k = 1`), and it is the projection of its own start on the hyperplane.

torch.manual_seed(0)
starts = [torch.zeros(5, dtype=torch.float64)] + [torch.randn(5, dtype=torch.float64)
                                                 for _ in range(3)]
for w0 in starts:
    w, _, _ = gradient_descent(w0, lr=0.05, steps=100)
    analytic = w0 + (1 - x @ w0) / (x @ x) * x
    print(f"w0 = {w0.numpy().round(2)}\n"
          f"   gradient descent {w.numpy().round(4)}  sum {float(w.sum()):.6f}\n"
          f"   analytic         {analytic.numpy().round(4)}  "
          f"|difference| {float((w - analytic).abs().max()):.1e}")

# %%
# Question 2: convergence for several learning rates
# --------------------------------------------------
#
# :math:`f(w_k)` along the iterations, from :math:`w_0 = 0`: slow for small steps, a single
# step at :math:`\eta = 1/L`, overshooting (the sum of the weights oscillates around 1) but
# converging between :math:`1/L` and :math:`2/L`, diverging beyond :math:`2/L`.

rates = {
    "η = 0.2/L": 0.2 / L,
    "η = 0.6/L": 0.6 / L,
    "η = 1/L (optimal)": 1 / L,
    "η = 1.3/L": 1.3 / L,
    "η = 1.9/L": 1.9 / L,
    "η = 2.1/L (diverges)": 2.1 / L,
}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for label, lr in rates.items():
    _, losses, path = gradient_descent(torch.zeros(5, dtype=torch.float64), lr, steps=30)
    ax1.semilogy(range(len(losses)), [max(v, 1e-32) for v in losses], marker=".", label=label)
    ax2.plot([float(x @ p) for p in path], marker=".", label=label)
ax1.set(xlabel="iteration k", ylabel="f(w_k)", title="loss (log scale)", ylim=(1e-32, 1e3))
ax2.set(xlabel="iteration k", ylabel="x·w_k = Σ w_k", title="the minimisers have Σ w = 1",
        ylim=(-0.5, 2.5))
ax2.axhline(1.0, color="black", lw=0.8, ls="--")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
ax1.legend(fontsize=8)
fig.suptitle(f"Gradient descent on (1 - xᵀw)², x = ones(5): L = {L:g}, 1/L = {1 / L:g}, "
             f"2/L = {2 / L:g}")
plt.show()

# %%
# The rate of each run is the factor :math:`|1 - \eta L|` by which the residual shrinks
# per step: 0 at :math:`\eta = 1/L`, above 1 past :math:`2/L`.

for label, lr in rates.items():
    print(f"{label:22s} |1 - ηL| = {abs(1 - lr * L):.2f}")
