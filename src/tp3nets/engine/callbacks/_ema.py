"""An exponential moving average of the weights, as a callback of :func:`~tp3nets.fit`.

The average of the weights over the last few hundred optimizer steps usually generalises
a little better than the last weights, for the cost of one ``lerp`` per step (timm's
``ModelEmaV3``, Keras' ``use_ema``, Lightning's ``EMAWeightAveraging``). :class:`EMA`
keeps that average beside the model and puts it in the model whenever the model is
looked at: validation, the epoch's callbacks (so :class:`~tp3nets.ModelCheckpoint`
and :class:`~tp3nets.EarlyStopping` see the weights that the figures belong
to) and the end of the run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..._util._checks import check_int, check_real
from .. import _state_checks as checks
from .._state import FitState

__all__ = ["EMA"]


class EMA:
    """Train with the live weights; validate, checkpoint and finish with their average.

    After every optimizer step, each floating-point parameter and buffer (BatchNorm's
    running statistics) moves towards the model's by ``1 - decay``:
    ``ema = decay * ema + (1 - decay) * weight``. With ``warmup`` the decay of the n-th
    update is ``min(decay, (1 + n) / (10 + n))``, so that the first updates do not keep
    the random initialisation. Integer buffers (BatchNorm's batch counter) are the
    model's own.

    Between epochs the model holds the average: :func:`~tp3nets.fit` validates it, the
    ``on_epoch_end`` callbacks see it (a checkpoint or best-weights copy holds it) and it
    is what the model holds when ``fit`` returns, as with Keras' ``use_ema``. The live
    weights are set aside meanwhile and go back into the model when the next epoch's
    training starts, so training itself never sees the average. Both, and the number of
    updates, are in the callback's state: a run resumed from a full checkpoint continues
    exactly (``fit(..., callbacks=[EMA(...)], resume_from=...)`` with a new instance).

    Args:
        decay: the weight of the old average at each update, in (0, 1). 0.999 averages
            over about the last 1,000 steps; use a smaller one for short runs.
        warmup: ramp the decay up over the first updates (see above).
        every_n_steps: update every n-th optimizer step only (a cheaper average).

    Raises:
        ValueError: ``decay`` not in (0, 1), ``every_n_steps`` not a positive int.

    Example:
        >>> import torch
        >>> from tp3nets import MultinomialLogisticRegression, fit
        >>> from tp3nets.engine.callbacks import EMA
        >>> from tp3nets.data import TensorLoader
        >>> ds = torch.utils.data.TensorDataset(torch.rand(64, 1, 28, 28),
        ...                                     torch.randint(0, 10, (64,)))
        >>> model = MultinomialLogisticRegression()
        >>> ema = EMA(decay=0.9)
        >>> _ = fit(model, TensorLoader(ds, 16), epochs=2, progress=False,
        ...         optimizer=lambda p: torch.optim.SGD(p, lr=0.1), callbacks=[ema])
        >>> ema.num_updates
        8
    """

    def __init__(self, decay: float = 0.999, *, warmup: bool = True,
                 every_n_steps: int = 1) -> None:
        self.decay: float = check_real(decay, "decay", who="EMA", low=0.0, high=1.0,
                                       low_open=True, high_open=True,
                                       what="a number in (0, 1), such as 0.999")
        self.warmup: bool = bool(warmup)
        self.every_n_steps: int = check_int(every_n_steps, "every_n_steps", who="EMA")
        self.num_updates: int = 0
        self._steps: int = 0
        self._names: list[str] = []
        self._targets: list[Tensor] = []
        self._average: list[Tensor] = []
        self._live: list[Tensor] | None = None
        self._handle: Any = None

    # -- the average ------------------------------------------------------------------

    def current_decay(self) -> float:
        """The decay that the next update uses."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    def _track(self, model: nn.Module) -> None:
        """The model's floating-point parameters and buffers, by name, in a fixed order."""
        names, targets = [], []
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if t.is_floating_point():
                names.append(name)
                targets.append(t)
        self._names, self._targets = names, targets

    @torch.no_grad()
    def update(self) -> None:
        """One averaging step towards the model's current weights (fit calls it)."""
        weight = 1.0 - self.current_decay()
        live = [t.detach() for t in self._targets]
        if self._average and live:
            torch._foreach_lerp_(self._average, live, weight)
        self.num_updates += 1

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._steps += 1
        if self._steps % self.every_n_steps == 0:
            self.update()

    @torch.no_grad()
    def _swap_in(self) -> None:
        """Live weights aside, the average into the model."""
        if self._live is not None:
            return
        _share_average(self._average)
        self._live = [t.detach().clone() for t in self._targets]
        torch._foreach_copy_(self._targets, self._average)

    @torch.no_grad()
    def _swap_out(self) -> None:
        """The live weights back into the model, for training."""
        if self._live is None:
            return
        torch._foreach_copy_(self._targets, self._live)
        self._live = None

    def averaged_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """``model.state_dict()`` with the average in place of each tracked tensor."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name, avg in zip(self._names, self._average, strict=True):
            if name in state:
                state[name] = avg.detach().clone()
        return state

    def live_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """``model.state_dict()`` with the live (trained, not averaged) weights, also after
        fit, while the model holds the average: to compare the two, or to keep both."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self._live is not None:
            for name, t in zip(self._names, self._live, strict=True):
                if name in state:
                    state[name] = t.detach().clone()
        return state

    # -- fit's hooks ------------------------------------------------------------------

    def on_fit_start(self, state: FitState) -> None:
        self._track(state.model)
        with torch.no_grad():
            self._average = [t.detach().clone() for t in self._targets]
        self.num_updates, self._steps, self._live = 0, 0, None
        if self._handle is not None:  # a previous fit that raised never reached on_fit_end
            self._handle.remove()
        self._handle = state.optimizer.register_step_post_hook(self._after_step)

    def on_epoch_start(self, state: FitState) -> None:
        self._swap_out()

    def on_train_epoch_end(self, state: FitState) -> None:
        self._swap_in()

    def on_fit_end(self, state: FitState) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._swap_in()  # a run that trained no epoch ends with the average too

    # -- checkpoints ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The average, the set-aside live weights and the counters, for full checkpoints."""
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "steps": self._steps,
            "average": dict(zip(self._names, (t.detach().clone() for t in self._average),
                                strict=True)),
            "live": None if self._live is None else dict(
                zip(self._names, (t.clone() for t in self._live), strict=True)),
        }

    def check_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        """Refuse a :meth:`state_dict` that does not fit ``model`` (the average's and the
        live weights' names, shapes and kinds; the counters), before anything is loaded.

        Raises:
            ValueError: naming the entry.
        """
        tracked = {n: t for n, t in [*model.named_parameters(), *model.named_buffers()]
                   if t.is_floating_point()}
        checks.tensors_like(state.get("average"), tracked, "average")
        if state.get("live") is not None:
            checks.tensors_like(state["live"], tracked, "live")
        checks.number(state.get("num_updates"), "num_updates", low=0, whole=True)
        if state.get("steps") is not None:
            checks.number(state["steps"], "steps", low=0, whole=True)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (after ``on_fit_start``, as fit calls it)."""
        average, live = state["average"], state.get("live")
        missing = [n for n in self._names if n not in average]
        if missing:
            raise ValueError(
                f"EMA: the checkpoint's average lacks {', '.join(missing[:5])}: it was "
                f"saved for another model"
            )
        with torch.no_grad():
            for own, name in zip(self._average, self._names, strict=True):
                own.copy_(average[name])
        self.num_updates = int(state["num_updates"])
        self._steps = int(state.get("steps") or self.num_updates * self.every_n_steps)
        self._live = None if live is None else [
            live[n].to(t.device, t.dtype) for n, t in zip(self._names, self._targets,
                                                           strict=True)
        ]

    def __repr__(self) -> str:
        return (f"EMA(decay={self.decay}, warmup={self.warmup}, "
                f"every_n_steps={self.every_n_steps})")


def _share_average(average: list[Tensor]) -> None:
    """Under torchrun each process averages its own BatchNorm statistics: rank 0's for all,
    as fit does with the model's buffers before validation."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for t in average:
        torch.distributed.broadcast(t, src=0)
