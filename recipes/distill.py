"""Knowledge distillation for ``train_weights.py``: a student taught by bundled weights.

The student trains on the recipe's augmentation; the teachers (bundled weights of the same
model, frozen, in eval mode) read each image after its geometric part only (the random
affine), before the stroke, contrast and noise corruptions the student learns to
withstand, so their soft targets describe the digit, not the damage. The loss is
``(1 - alpha) * CE(student, label) + alpha * tau**2 * KL(teachers || student)`` at
temperature ``tau``, the teachers' target the mean of their softened probabilities.

:class:`Distiller` wraps the student for :func:`tp3nets.fit`: its only registered module
is the student (so its ``state_dict``, the EMA and ``.train()`` see the student alone,
under the prefix ``student.``); in eval mode it is the student, and the loss falls back to
the plain cross-entropy (validation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import tp3nets

PREFIX = "student."


class Distiller(nn.Module):
    """``student`` taught by ``teachers`` on the views described in the module docstring."""

    def __init__(self, student: nn.Module, teachers: list[nn.Module],
                 corruption: nn.Module, *, temperature: float, alpha: float) -> None:
        super().__init__()
        if not teachers:
            raise ValueError("distillation needs at least one teacher")
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"temperature must be > 0 and alpha in [0, 1], got "
                             f"{temperature}, {alpha}")
        self.student = student
        # Not registered: no state_dict entries, no EMA, no .train() for the teachers.
        object.__setattr__(self, "teachers", [t.eval().requires_grad_(False) for t in teachers])
        object.__setattr__(self, "corruption", corruption)
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.soft: Tensor | None = None

    def _apply(self, fn: Any, recurse: bool = True) -> Distiller:  # .to(), channels_last
        for teacher in self.teachers:
            teacher._apply(fn)
        return super()._apply(fn, recurse)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            self.soft = None
            return self.student(x)
        with torch.no_grad():
            probs = [F.softmax(t(x).float() / self.temperature, dim=1) for t in self.teachers]
            self.soft = torch.stack(probs).mean(0)
        return self.student(self.corruption(x))

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        """The distillation loss of the last training forward; cross-entropy in eval."""
        hard = F.cross_entropy(out, target)
        if self.soft is None:
            return hard
        tau = self.temperature
        log_p = F.log_softmax(out.float() / tau, dim=1)
        soft = F.kl_div(log_p, self.soft, reduction="batchmean") * tau * tau
        return (1.0 - self.alpha) * hard + self.alpha * soft


def student_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Distiller's state dict as the student's own (the prefix taken off)."""
    if not all(k.startswith(PREFIX) for k in state):
        raise ValueError("not a Distiller state dict")
    return {k[len(PREFIX):]: v for k, v in state.items()}


def teachers(model: str, members: list[str]) -> list[nn.Module]:
    """The bundled weights ``members`` of ``model`` (sha256-checked by the registry)."""
    enum = tp3nets.get_model_weights(model)
    return [tp3nets.get_model(model, weights=enum[m]) for m in members]


def distiller(student: nn.Module, model: str, spec: dict[str, Any],
              augmentation: nn.Module | None) -> tuple[Distiller, nn.Module]:
    """The wrapped student and the loader's transform (the augmentation's first, geometric
    stage); the teachers see that view and the student the rest of ``augmentation``."""
    if not isinstance(augmentation, nn.Sequential) or len(augmentation) < 2:
        raise ValueError("distillation splits a Sequential augmentation (geometric first)")
    corruption = nn.Sequential(*list(augmentation)[1:])
    wrapped = Distiller(student, teachers(model, list(spec["teachers"])), corruption,
                        temperature=float(spec["temperature"]), alpha=float(spec["alpha"]))
    return wrapped, augmentation[0]
