"""Metrics of the engine: the :class:`Metric` protocol, :func:`accuracy`, and the meter
that sums per-batch figures exactly across batches and processes."""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from . import _devices as devices
from . import _distributed as dist_utils

__all__ = ["Metric", "MetricLike", "accuracy"]

#: The columns that fit adds to every history row beside the figures.
ROW_KEYS: Final = ("epoch", "lr", "time")


@runtime_checkable
class Metric(Protocol):
    """A stateful metric in torchmetrics' shape: ``update(preds, target)`` and ``compute()``.

    :func:`~tp3nets.fit` and :func:`~tp3nets.evaluate` call ``reset()`` before each pass
    when the object has
    one (and otherwise work on a fresh copy of it each pass), ``update`` for each batch and
    ``compute`` after the pass. Under ``torchrun`` the object reduces its own state across
    processes (torchmetrics does); plain callables are reduced by tp3nets.

    Example:
        >>> class Seen:
        ...     def update(self, preds, target): self.n = getattr(self, "n", 0) + len(target)
        ...     def compute(self): return self.n
        >>> isinstance(Seen(), Metric)
        True
    """

    def update(self, preds: Tensor, target: Tensor) -> Any: ...

    def compute(self) -> Any: ...


MetricLike = Metric | Callable[[Tensor, Tensor], Tensor | float]


def accuracy(
    preds: Tensor, target: Tensor, *, loss_fn: Callable[..., Tensor] | None = None
) -> Tensor:
    """Top-1 accuracy of ``preds`` against ``target``, read the way ``loss_fn`` reads them.

    * Logits ``(N, C, ...)`` with class indices ``(N, ...)``: the argmax is the answer.
      With :class:`~torch.nn.CrossEntropyLoss` or :class:`~torch.nn.NLLLoss`, targets equal
      to their ``ignore_index`` are not counted.
    * Logits with class probabilities or one-hot targets of their own shape, under one of
      those two losses: the argmax of each is compared.
    * :class:`~torch.nn.BCEWithLogitsLoss`: a logit above 0 answers 1;
      :class:`~torch.nn.BCELoss`: a probability above 0.5 does; targets above 0.5 are 1.
    * Otherwise, predictions of the target's shape are rounded (binary probabilities).

    :func:`~tp3nets.fit` and :func:`~tp3nets.evaluate` pass their own ``loss_fn``, so
    ``metrics={"acc":
    accuracy}`` (the default) follows the loss being trained.

    Example:
        >>> import torch
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor(0.5000)
        >>> accuracy(torch.tensor([-2.0, 3.0]), torch.tensor([0.0, 1.0]),
        ...          loss_fn=torch.nn.BCEWithLogitsLoss())
        tensor(1.)
    """
    hits, total = _correct(preds, target, loss_fn)
    return hits.float() / (total.clamp(min=1) if isinstance(total, Tensor) else max(total, 1))


def _correct(
    preds: Tensor, target: Tensor, loss_fn: Callable[..., Tensor] | None = None
) -> tuple[Tensor, Tensor | int]:
    """``(right answers, answers counted)``, as an int64 scalar and an int (or int64 scalar
    where targets can be ignored): exact to sum across batches."""
    if not isinstance(preds, Tensor) or not isinstance(target, Tensor):
        raise TypeError(
            f"accuracy needs tensors, got predictions {type(preds).__name__} and targets "
            f"{type(target).__name__}; pass metrics={{...}} suited to this model's output"
        )
    classes = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))
    if isinstance(loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss)) and preds.shape == target.shape:
        cut = 0.0 if isinstance(loss_fn, nn.BCEWithLogitsLoss) else 0.5
        hits = (preds > cut) == (target > 0.5)
        return hits.sum(), hits.numel()
    if classes and target.is_floating_point() and preds.shape == target.shape and (
        preds.dim() >= 2
    ):
        hits = preds.argmax(dim=1) == target.argmax(dim=1)
        return hits.sum(), hits.numel()
    predicted = preds.argmax(dim=1) if preds.dim() == target.dim() + 1 else preds.round()
    if predicted.shape != target.shape:
        raise ValueError(
            f"accuracy needs logits (N, C, ...) with targets (N, ...), or predictions with "
            f"the targets' shape; got predictions {tuple(preds.shape)} and targets "
            f"{tuple(target.shape)}"
        )
    hits = predicted == target
    if classes and not target.is_floating_point():
        counted = target != getattr(loss_fn, "ignore_index", -100)
        return (hits & counted).sum(), counted.sum()
    return hits.sum(), hits.numel()


def _floats(values: Sequence[Tensor | float]) -> list[float]:
    """Python floats of per-batch scalars, with one device synchronisation for all."""
    if values and all(isinstance(v, Tensor) for v in values):
        with contextlib.suppress(RuntimeError):
            stacked = torch.stack([v.reshape(()) for v in values])  # type: ignore[union-attr]
            out: list[float] = stacked.double().cpu().tolist()
            return out
    return [float(v) for v in values]


class Meter:
    """Per-batch loss and metric values, weighted by batch size when computed.

    The epoch figure is ``fsum(value_i * n_i) / sum(n_i)`` over every batch of every
    process: ``math.fsum`` rounds the exact sum once, so the result does not depend on how
    the batches were spread over processes. Accuracy is summed as integer counts of right
    answers.

    Accuracy is counted on groups of batches rather than batch by batch: the detached
    outputs and targets wait in a list (at most :attr:`GROUP_BATCHES` batches and
    :attr:`GROUP_ELEMENTS` output elements) and are counted together, three tensor
    operations per group instead of per batch; the counts are the same integers either
    way. Nothing is read back from an accelerator during the pass; on the CPU, where
    reading costs nothing, the loss is kept as the Python float the NaN check already read.
    """

    GROUP_BATCHES = 64
    GROUP_ELEMENTS = 1 << 20

    def __init__(self, metrics: Mapping[str, MetricLike], device: torch.device,
                 loss_fn: Callable[..., Tensor] | None = None) -> None:
        self.on_cpu = devices.cheap_readback(device)
        self.loss_fn = loss_fn  # how accuracy reads the predictions
        self.stateful = {
            k: m if callable(getattr(m, "reset", None)) else copy.deepcopy(m)
            for k, m in metrics.items() if isinstance(m, Metric)
        }
        self.plain = {k: m for k, m in metrics.items() if not isinstance(m, Metric)}
        self.counts = [k for k, m in self.plain.items() if m is accuracy]
        self.others = {k: m for k, m in self.plain.items() if m is not accuracy}
        self.losses: list[Tensor | float] = []
        self.sizes: list[int] = []
        self.values: dict[str, list[Tensor | float]] = {k: [] for k in self.plain}
        self.answers: dict[str, list[Tensor | int]] = {k: [] for k in self.counts}
        self.group: list[tuple[Tensor, Tensor]] = []
        self.group_elements = 0
        self.group_shapes: tuple[torch.Size, torch.Size] | None = None
        for m in self.stateful.values():
            reset = getattr(m, "reset", None)
            if callable(reset):
                reset()

    def update(self, loss: Tensor, out: Any, y: Any, n: int,
               loss_value: float | None = None) -> None:
        """Record one batch. ``loss_value``: ``loss.item()`` when the caller has it."""
        self.sizes.append(n)
        if self.on_cpu:
            self.losses.append(loss_value if loss_value is not None else loss.item())
        else:
            self.losses.append(loss.detach())
        if not self.plain and not self.stateful:
            return
        preds = out.detach() if isinstance(out, Tensor) else out
        if self.counts:
            if isinstance(preds, Tensor) and isinstance(y, Tensor):
                self._group(preds, y)
            else:  # not tensors: accuracy() raises its own clear error here
                self._count(preds, y)
        if not self.others and not self.stateful:
            return
        if isinstance(preds, Tensor) and preds.is_floating_point():
            preds = preds.float()  # bf16/fp16 logits under autocast
        for name, fn in self.others.items():
            value = fn(preds, y)
            if isinstance(value, Tensor) and value.numel() == 1:
                value = value.item() if self.on_cpu else value.detach()
            elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                got = (f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor)
                       else type(value).__name__)
                raise TypeError(
                    f"metric {name!r} must return the batch's figure as a number or a "
                    f"one-element tensor, got {got}"
                )
            self.values[name].append(value)
        for m in self.stateful.values():
            m.update(preds, y)

    def nonfinite_since(self, start: int) -> bool:
        """Whether a loss recorded since the ``start``-th batch is NaN or infinite.

        On an accelerator, one stack and one read for all of them: no work per batch.
        """
        return not all(math.isfinite(v) for v in _floats(self.losses[start:]))

    def _group(self, preds: Tensor, y: Tensor) -> None:
        # Batches join a group only with the same shapes beyond the batch dimension, so
        # that they concatenate (segmentation maps of several sizes start new groups).
        # Outputs and targets of one pass share their device and dtypes.
        shapes = (preds.shape[1:], y.shape[1:])
        if shapes != self.group_shapes:
            self._flush()
            self.group_shapes = shapes
        self.group.append((preds, y))
        self.group_elements += preds.numel()
        if len(self.group) >= self.GROUP_BATCHES or self.group_elements >= self.GROUP_ELEMENTS:
            self._flush()

    def _flush(self) -> None:
        if not self.group:
            return
        if len(self.group) == 1:
            preds, y = self.group[0]
        else:
            preds = torch.cat([p for p, _ in self.group])
            y = torch.cat([t for _, t in self.group])
        self.group, self.group_elements = [], 0
        self._count(preds, y)

    def _count(self, preds: Any, y: Any) -> None:
        hits, answers = _correct(preds, y, self.loss_fn)
        value: Tensor | int = int(hits) if self.on_cpu else hits.detach()
        if isinstance(answers, Tensor) and self.on_cpu:
            answers = int(answers)
        for name in self.counts:
            self.values[name].append(value)
            self.answers[name].append(answers)

    def compute(self, prefix: str = "") -> tuple[dict[str, float], int]:
        """``({prefix + name: figure}, samples)`` over every process."""
        self._flush()
        terms: dict[str, list[float]] = {
            "loss": [v * n for v, n in zip(_floats(self.losses), self.sizes, strict=True)]
        }
        for name, values in self.values.items():
            floats = _floats(values)
            terms[name] = floats if name in self.counts else [
                v * n for v, n in zip(floats, self.sizes, strict=True)
            ]
        count = sum(self.sizes)
        answers = {k: math.fsum(_floats(v)) for k, v in self.answers.items()}
        if dist_utils.is_distributed():
            gathered = dist_utils.all_gather_object((count, answers, terms))
            count = sum(c for c, _, _ in gathered)
            answers = {k: sum(a[k] for _, a, _ in gathered) for k in answers}
            terms = {k: [x for _, _, t in gathered for x in t[k]] for k in terms}
        out = {
            prefix + k: math.fsum(v) / max(answers.get(k, count), 1) for k, v in terms.items()
        }
        for name, m in self.stateful.items():
            value = m.compute()
            out[prefix + name] = float(value.item() if isinstance(value, Tensor) else value)
        return out, count


def default_metrics(metrics: Mapping[str, MetricLike] | None) -> dict[str, MetricLike]:
    if metrics is None:
        return {"acc": accuracy}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics must be a mapping name -> metric, got {type(metrics).__name__}"
        )
    for name, m in metrics.items():
        if not (isinstance(m, Metric) or callable(m)):
            raise TypeError(
                f"metric {name!r} must be callable(preds, target) or have update and compute,"
                f" got {type(m).__name__}"
            )
        if not isinstance(name, str) or not name:
            raise TypeError(f"metric names must be non-empty strings, got {name!r}")
        if name == "loss":
            raise ValueError("'loss' is always reported; give the metric another name")
        if name in ROW_KEYS or name.startswith("val_"):
            raise ValueError(
                f"metric name {name!r} is taken: every history row has "
                f"{', '.join(repr(k) for k in ROW_KEYS)} and 'val_' + each figure; give the "
                f"metric another name"
            )
    return dict(metrics)


