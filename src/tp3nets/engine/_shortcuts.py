"""The one place in tp3nets that reads private torch names: optimizer-step shortcuts.

``optimizer.step()`` and ``optimizer.zero_grad()`` open a profiler range on every call,
which is a measurable share of a small model's training step on a CPU. Where nothing can
observe the difference (no profiler running, no step hooks, torch's own wrapper), the
functions here do the same work without the range; the update is bitwise the same.

:func:`set_fast_step` turns them off (and on again) for the whole process, as timm's
``set_fast_norm`` does for its norm layers; off, every call is torch's own method. The
engine calls :func:`step` and :func:`zero_grad` through this module, never the private
names, so the switch and a test's patch reach every caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import torch
import torch.optim.optimizer as _optim_module

__all__ = ["fast_step_enabled", "set_fast_step", "step", "zero_grad"]

_USE_FAST_STEP = True

_profiler_enabled: Callable[[], bool] = getattr(
    torch.autograd, "_profiler_enabled", lambda: True  # unknown: assume a profiler listens
)



def set_fast_step(enable: bool = True) -> None:
    """Use (``True``, the default) or skip the optimizer-step shortcuts of :func:`fit`.

    With the shortcuts off, every optimizer step and gradient reset is torch's own
    ``optimizer.step()`` / ``optimizer.zero_grad(set_to_none=True)``, profiler range
    included: for profiling the optimizer itself, or to rule the shortcuts out when
    chasing a problem. The results are bitwise the same either way.

    Example:
        >>> from tp3nets.engine import fast_step_enabled, set_fast_step
        >>> set_fast_step(False); fast_step_enabled()
        False
        >>> set_fast_step(True); fast_step_enabled()
        True
    """
    global _USE_FAST_STEP
    _USE_FAST_STEP = bool(enable)


def fast_step_enabled() -> bool:
    """Whether :func:`set_fast_step` leaves the shortcuts on (the default)."""
    return _USE_FAST_STEP


def zero_grad(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)``, for the cost of the assignments.

    torch's method wraps its loop in a profiler range, which costs the logistic
    regression's training step 42 µs of 0.29 ms, 13 % of its epoch
    (``benchmarks/bench_shortcuts.py``); where the optimizer keeps the
    base method and no profiler is running, the same assignments are done directly.
    """
    if (
        not _USE_FAST_STEP
        or type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad
        or "zero_grad" in vars(optimizer)
        or _profiler_enabled()
    ):
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def _profile_wrapper_code() -> Any:
    """The code object of torch's ``Optimizer.step`` wrapper, or None if it cannot be had."""
    try:
        return torch.optim.Optimizer.profile_hook_step(lambda *a, **k: None).__code__
    except Exception:  # another torch: the plain step is always right
        return None


_STEP_WRAPPER_CODE: Final = _profile_wrapper_code()


def step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, without torch's profiler range where nothing can observe it.

    torch wraps every optimizer class's ``step`` in a function that opens a profiler range
    and runs the step hooks; the range costs the logistic regression's training step
    40 µs of 0.29 ms, 12 % of its epoch (``benchmarks/bench_shortcuts.py``, 2 cores).
    Where that wrapper is exactly
    torch's, no step hook is registered, no profiler is running and the instance's
    ``step`` is not replaced (an LR scheduler's tracking wrapper aside), the wrapped step
    is called directly; it is the same function, so the update is bitwise the same.
    Anything else takes the ordinary ``optimizer.step()``.
    """
    wrapper = type(optimizer).step
    own = vars(optimizer).get("step")
    body = getattr(wrapper, "__wrapped__", None)
    if (
        not _USE_FAST_STEP
        or body is None
        or getattr(wrapper, "__code__", None) is not _STEP_WRAPPER_CODE
        or (own is not None and not getattr(own, "_wrapped_by_lr_sched", False))
        or getattr(optimizer, "_optimizer_step_pre_hooks", True)
        or getattr(optimizer, "_optimizer_step_post_hooks", True)
        or getattr(_optim_module, "_global_optimizer_pre_hooks", True)
        or getattr(_optim_module, "_global_optimizer_post_hooks", True)
        or _profiler_enabled()
    ):
        optimizer.step()
        return
    if own is not None:  # what the LR scheduler's wrapper records
        optimizer._opt_called = True  # type: ignore[attr-defined]
    body(optimizer)
    optimizer._optimizer_step_code()


