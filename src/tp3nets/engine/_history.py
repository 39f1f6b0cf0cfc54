"""History: the per-epoch figures of a :func:`~tp3nets.fit` run.

Shared by the engine, the callbacks and the checkpoints; it imports nothing of tp3nets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

__all__ = ["History"]


@dataclass
class History:
    """Per-epoch figures of a :func:`~tp3nets.fit` run, Keras-style keys (``loss``, ``val_acc`` …).

    Each row holds ``epoch``, the training figures (``loss``, ``acc``), the validation ones
    (``val_loss``, ``val_acc``) when there is a validation loader, ``lr`` and ``time``
    (seconds). ``monitor`` and ``mode`` decide :attr:`best_epoch`. ``history[key]`` is one
    figure's series and ``history[i]`` one epoch's row (``history[-1]`` the last);
    iterating a history gives its rows; :attr:`history` is Keras' dict of lists. Epochs
    are integers.

    Example:
        >>> h = History(monitor="val_loss")
        >>> h.append({"epoch": 1, "loss": 0.5, "val_loss": 0.4})
        >>> h.append({"epoch": 2, "loss": 0.3, "val_loss": 0.45})
        >>> h.best_epoch, h["loss"], h.best["val_loss"]
        (1, [0.5, 0.3], 0.4)
        >>> h[-1]
        {'epoch': 2, 'loss': 0.3, 'val_loss': 0.45}
        >>> h.history["val_loss"]
        [0.4, 0.45]
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"

    def append(self, row: Mapping[str, float]) -> None:
        """Add one epoch's figures (a whole-number ``epoch`` is kept as an ``int``)."""
        self.epochs.append(_with_int_epoch(row))

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[dict[str, float]]:
        """The epochs' rows, first to last (``history[key]`` gives one figure's series)."""
        return iter(self.epochs)

    @overload
    def __getitem__(self, key: str) -> list[float]: ...

    @overload
    def __getitem__(self, key: int) -> dict[str, float]: ...

    def __getitem__(self, key: str | int) -> list[float] | dict[str, float]:
        """``history["loss"]``: one figure's series over the epochs (``nan`` where it is
        missing); ``history[-1]``: one epoch's row, indexed as a list of rows."""
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(self.epochs) <= key < len(self.epochs):
                raise IndexError(
                    f"history index {key} out of range: it has {len(self.epochs)} epoch(s)"
                )
            return self.epochs[key]
        if not isinstance(key, str):
            raise TypeError(
                f"history[...] takes a figure name (history['loss']) or a row index "
                f"(history[-1]), got {type(key).__name__}"
            )
        if not any(key in row for row in self.epochs):
            raise KeyError(f"no figure {key!r} in history; have {', '.join(self.keys())}")
        return [row.get(key, math.nan) for row in self.epochs]

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras' ``History.history``: ``{figure: [value of each epoch]}``."""
        return {key: self[key] for key in self.keys()}

    def keys(self) -> list[str]:
        """Every figure name that appears, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.epochs:
            seen.update(dict.fromkeys(row))
        return list(seen)

    @property
    def best_epoch(self) -> int | None:
        """The epoch (1-based) with the best ``monitor`` figure, or ``None`` without one."""
        best = self.best
        return None if best is None else int(best["epoch"])

    @property
    def best(self) -> dict[str, float] | None:
        """The row of the best epoch (the first one on a tie), or ``None`` without one."""
        rows = [r for r in self.epochs if self.monitor in r and not math.isnan(r[self.monitor])]
        if not rows:
            return None
        pick = min if self.mode == "min" else max
        return dict(pick(rows, key=lambda r: r[self.monitor]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy: ``{"monitor", "mode", "best_epoch", "epochs": [...]}``."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_epoch": self.best_epoch,
            "epochs": [dict(r) for r in self.epochs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild a history saved with :meth:`to_dict`."""
        return cls(
            epochs=[_with_int_epoch(r) for r in data.get("epochs", [])],
            monitor=str(data.get("monitor", "val_loss")),
            mode="max" if data.get("mode") == "max" else "min",
        )

    def plot(self, keys: Sequence[str] | None = None, *, ax: Any = None) -> Any:
        """Plot figures against the epoch with matplotlib (``pip install tp3nets[plot]``).

        Args:
            keys: figures to draw; default every loss and accuracy.
            ax: an existing matplotlib Axes.

        Returns:
            The matplotlib Axes.

        Raises:
            ImportError: matplotlib is not installed.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError(
                "History.plot needs matplotlib: pip install 'tp3nets[plot]'"
            ) from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(self.epochs)]
        names = list(keys) if keys is not None else [
            k for k in self.keys() if k.endswith("loss") or k.endswith("acc")
        ]
        for name in names:
            ax.plot(epochs, self[name], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        return ax


def _with_int_epoch(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    epoch = out.get("epoch")
    if isinstance(epoch, float) and epoch.is_integer():
        out["epoch"] = int(epoch)
    return out
