"""Calibration: probabilities that mean what they say, and abstention below a threshold.

A classifier is calibrated when, of the answers it gives with confidence 0.9, nine in ten
are right. :func:`expected_calibration_error` measures the gap (Guo et al., 2017, "On
Calibration of Modern Neural Networks"), :func:`reliability_diagram` draws it, and
temperature scaling repairs it without changing a single prediction: :func:`fit_temperature`
finds the ``T`` that minimises the negative log-likelihood of ``logits / T`` on held-out
data, and :func:`fold_temperature` divides the final :class:`~torch.nn.Linear` layer by
``T``, so the model, and its plain ``state_dict``, give the calibrated logits directly.
:func:`top_predictions` gives the top-k probabilities and flags the answers below a
confidence threshold, for the callers who act on them.

Recalibrating a fine-tuned model, on a validation loader (never the test set):

.. code-block:: python

   from tp3nets import calibration

   temperature = calibration.fit_temperature(model, val_loader)
   calibration.fold_temperature(model, temperature)   # same argmax, calibrated logits
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._util._checks import check_int as _check_int
from ._util._checks import check_positive as _check_positive
from ._util._checks import check_probability as _check_probability
from .engine._passes import InferencePass as _InferencePass
from .engine._passes import split_batch as _split_batch

__all__ = [
    "Criterion",
    "TopPredictions",
    "collect_logits",
    "expected_calibration_error",
    "fit_temperature",
    "fold_temperature",
    "reliability_diagram",
    "temperature_from_logits",
    "top_predictions",
]

#: Default number of equal-width confidence bins, as in Guo et al. (2017).
DEFAULT_BINS: Final = 15
# Rows of a probability matrix sum to 1 up to this much (bf16 softmax rounds to ~1e-3).
_SUM_TOLERANCE: Final = 1e-2
#: What :func:`temperature_from_logits` minimises: the negative log-likelihood or the ECE.
Criterion = Literal["nll", "ece"]
_CRITERIA: Final = ("nll", "ece")
# A fitted temperature outside this range means the data cannot fix one (e.g. no error).
_T_RANGE: Final = (1e-3, 1e3)


def _check_target(target: Any, n: int, classes: int, what: str) -> Tensor:
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a tensor of class indices, got {type(target).__name__}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.dim() != 1 or target.shape[0] != n:
        raise ValueError(
            f"target must have shape ({n},), one class index per row of {what}, "
            f"got {tuple(target.shape)}"
        )
    if n and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise ValueError(
            f"target values must be class indices in [0, {classes - 1}], got values in "
            f"[{int(target.min())}, {int(target.max())}]"
        )
    return target


def _check_scores(scores: Any, name: str) -> Tensor:
    if not isinstance(scores, Tensor):
        raise TypeError(f"{name} must be a tensor of shape (N, C), got {type(scores).__name__}")
    if scores.dim() != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(
            f"{name} must have shape (N, C) with N, C >= 1, got {tuple(scores.shape)}"
        )
    if not scores.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got dtype {scores.dtype}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return scores


def _check_probs(probs: Any) -> Tensor:
    probs = _check_scores(probs, "probs")
    p: Tensor = probs.detach().to(torch.float64)
    if float(p.min()) < 0.0 or float(p.max()) > 1.0:
        raise ValueError(
            f"probs must be probabilities in [0, 1], got values in [{float(p.min()):.4g}, "
            f"{float(p.max()):.4g}] (logits? pass logits.softmax(dim=1))"
        )
    sums = p.sum(dim=1)
    worst = float((sums - 1.0).abs().max())
    if worst > _SUM_TOLERANCE:
        raise ValueError(
            f"each row of probs must sum to 1, got a row summing to "
            f"{float(sums[(sums - 1.0).abs().argmax()]):.4g} (pass logits.softmax(dim=1))"
        )
    return p


def _bins(
    probs: Tensor, target: Tensor, n_bins: int, who: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Per equal-width confidence bin ``((m-1)/M, m/M]``: count, summed confidence, hits."""
    p = _check_probs(probs)
    n_bins = _check_int(n_bins, "n_bins", who=who)
    target = _check_target(target, p.shape[0], p.shape[1], "probs").to(p.device)
    confidence, predicted = p.max(dim=1)
    correct = predicted.eq(target).to(torch.float64)
    index = (torch.ceil(confidence * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64, device=p.device)
    count.index_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros_like(count).index_add_(0, index, confidence)
    hits = torch.zeros_like(count).index_add_(0, index, correct)
    return count.cpu(), conf_sum.cpu(), hits.cpu()


def expected_calibration_error(probs: Tensor, target: Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error of top-1 predictions, over equal-width confidence bins.

    The predictions are sorted by their confidence (the largest probability) into
    ``n_bins`` bins ``(0, 1/M], (1/M, 2/M], …``; the ECE is the mean over the samples of
    the gap between a bin's accuracy and its mean confidence:
    ``sum_m |B_m| / N * |acc(B_m) - conf(B_m)|``.

    Args:
        probs: probabilities ``(N, C)``, each row summing to 1 (``logits.softmax(dim=1)``).
        target: the true classes ``(N,)``, integers in ``[0, C)``.
        n_bins: number of bins.

    Returns:
        The ECE as a fraction in ``[0, 1]`` (multiply by 100 for percent).

    Raises:
        TypeError: ``probs`` is not a floating-point tensor, or ``target`` not integer.
        ValueError: the shapes do not match, ``probs`` are not probabilities (logits, NaN,
            rows not summing to 1), a class index is out of range, or ``n_bins < 1``.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        >>> round(expected_calibration_error(probs, torch.tensor([0, 1, 0, 1])), 4)
        0.375
    """
    count, conf_sum, hits = _bins(probs, target, n_bins, "expected_calibration_error")
    return float((hits - conf_sum).abs().sum() / count.sum())


def collect_logits(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device | str | None = None,
    unpack: Callable[[Any], tuple[Any, Any]] | None = None,
) -> tuple[Tensor, Tensor]:
    """The model's logits and the targets of every batch of a loader, on CPU, in float32.

    Runs in eval and inference mode, as :func:`~tp3nets.evaluate` and
    :func:`~tp3nets.predict` do: every submodule's mode is restored afterwards, and the
    model is moved to ``device`` and stays there.

    Args:
        model: any classifier returning logits ``(N, C)``.
        loader: yields ``(inputs, target)`` batches (or dicts, see ``unpack``).
        device: where to run; default the model's device.
        unpack: splits a batch into ``(inputs, target)``; default tuples and dicts with
            the keys ``input/target``, ``x/y``, ``image/label`` or ``inputs/labels``.

    Returns:
        ``(logits, target)``, concatenated over the batches.

    Raises:
        ValueError: the loader is empty or a batch cannot be split.
        TypeError: ``unpack`` returned something other than ``(inputs, target)``.

    Example:
        >>> model = torch.nn.Linear(4, 3)
        >>> batches = [(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))] * 2
        >>> logits, target = collect_logits(model, batches)
        >>> tuple(logits.shape), tuple(target.shape)
        ((10, 3), (10,))
    """
    run = _InferencePass(model, device)
    outs: list[Tensor] = []
    targets: list[Tensor] = []
    with run.running():
        for batch in loader:
            x, y = _split_batch(batch, unpack)
            out: Tensor = run.forward(run.to_device(x))
            outs.append(out.detach().float().cpu())
            targets.append(torch.as_tensor(y).cpu())
    if not outs:
        raise ValueError("the loader gave no batch: nothing to calibrate on")
    return torch.cat(outs), torch.cat(targets)


def temperature_from_logits(
    logits: Tensor,
    target: Tensor,
    *,
    criterion: Criterion = "nll",
    max_iter: int = 100,
    n_bins: int = DEFAULT_BINS,
) -> float:
    """The temperature ``T > 0`` that best calibrates ``logits / T``.

    ``criterion="nll"`` (the usual choice, Guo et al. 2017) minimises the cross-entropy, by
    L-BFGS (strong Wolfe line search) on ``log T`` from ``T = 1``, in float64.
    ``criterion="ece"`` minimises :func:`expected_calibration_error` itself, which is
    piecewise constant in ``T``, by a search over 2,001 temperatures evenly spaced in
    ``log T`` between 0.05 and 20 (the one nearest ``T = 1`` among equal minima): for
    models, such as a linear one, whose NLL optimum leaves a larger ECE. ``T > 1`` softens
    an over-confident model, ``T < 1`` sharpens an under-confident one; the argmax, hence
    the accuracy, never changes.

    Args:
        logits: held-out logits ``(N, C)`` (not those the model was trained on).
        target: their true classes ``(N,)``.
        criterion: ``"nll"`` or ``"ece"``.
        max_iter: L-BFGS iterations (``"nll"``).
        n_bins: ECE bins (``"ece"``).

    Returns:
        The temperature.

    Raises:
        TypeError: ``logits`` is not a floating-point tensor, or ``target`` not integer.
        ValueError: bad shapes or values, or no finite temperature fits (the data has no
            error at all, or the fit diverged).

    Example:
        >>> logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
        >>> round(temperature_from_logits(logits, torch.tensor([0, 1, 1, 1])), 3)
        3.641
    """
    logits = _check_scores(logits, "logits")
    target = _check_target(target, logits.shape[0], logits.shape[1], "logits")
    max_iter = _check_int(max_iter, "max_iter", who="temperature_from_logits")
    n_bins = _check_int(n_bins, "n_bins", who="temperature_from_logits")
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(_CRITERIA)}, got {criterion!r}")
    z = logits.detach().to(torch.float64).cpu()
    y = target.cpu().long()
    if criterion == "ece":
        grid = torch.logspace(math.log10(0.05), math.log10(20.0), 2001, dtype=torch.float64)
        errors = torch.tensor([expected_calibration_error((z / t).softmax(dim=1), y, n_bins)
                               for t in grid.tolist()], dtype=torch.float64)
        best = errors <= errors.min() + 1e-12
        nearest = torch.where(best, grid.log().abs(), torch.full_like(grid, math.inf)).argmin()
        return float(grid[nearest])
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    if bool(z.argmax(dim=1).eq(y).all()):
        raise ValueError(
            "no temperature fits: every prediction is right, so the NLL falls as T goes "
            "to 0; calibrate on held-out data that has some errors"
        )
    # float64 and tight tolerances: the optimum to ~1e-9, not LBFGS's float32 defaults.
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    temperature = float(log_t.detach().exp())
    if not (math.isfinite(temperature) and _T_RANGE[0] <= temperature <= _T_RANGE[1]):
        raise ValueError(
            f"no temperature fits these logits (the fit reached T={temperature:.4g}); "
            "calibrate on held-out data that has some errors"
        )
    return temperature


def fit_temperature(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device | str | None = None,
    unpack: Callable[[Any], tuple[Any, Any]] | None = None,
    criterion: Criterion = "nll",
    max_iter: int = 100,
    n_bins: int = DEFAULT_BINS,
) -> float:
    """Fit the temperature of any classifier on a loader of held-out data.

    The logits of every batch are collected once (:func:`collect_logits`: eval mode,
    modes restored, the model left on ``device``), then :func:`temperature_from_logits`
    minimises their negative log-likelihood. Use a validation split, never the test set.
    The model's weights are not changed: :func:`fold_temperature` applies the result.

    Args:
        model: any module returning logits ``(N, C)``.
        loader: yields ``(inputs, target)`` batches (or dicts, see ``unpack``).
        device: where to run; default the model's device.
        unpack: splits a batch into ``(inputs, target)``.
        criterion: ``"nll"`` or ``"ece"``, see :func:`temperature_from_logits`.
        max_iter: L-BFGS iterations (``"nll"``).
        n_bins: ECE bins (``"ece"``).

    Returns:
        The temperature ``T``: divide the logits by it.

    Raises:
        ValueError: an empty loader, bad targets, or no finite temperature fits.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0]]))
        >>> x = torch.randn(200, 2)
        >>> y = (x[:, 1] + 0.5 * torch.randn(200) > x[:, 0]).long()  # noisy labels
        >>> fit_temperature(model, [(x, y)]) > 1.0  # the model is over-confident
        True
    """
    logits, target = collect_logits(model, loader, device=device, unpack=unpack)
    return temperature_from_logits(logits, target, criterion=criterion, max_iter=max_iter,
                                   n_bins=n_bins)


def _head(model: nn.Module, head: str | None) -> nn.Linear:
    if head is not None:
        try:
            layer = model.get_submodule(head)
        except AttributeError as exc:
            raise ValueError(f"{type(model).__name__} has no submodule {head!r}") from exc
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"head {head!r} must be an nn.Linear, got {type(layer).__name__}")
        return layer
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        found = get_classifier()
        if isinstance(found, nn.Linear):
            return found
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"fold_temperature needs a model whose last layer is an nn.Linear, and "
            f"{type(model).__name__} has none; divide its logits by the temperature instead"
        )
    return linears[-1]


def fold_temperature(model: nn.Module, temperature: float, *, head: str | None = None) -> nn.Module:
    """Divide the final Linear layer's weight and bias by ``temperature``, in place.

    The model then returns ``logits / T`` itself: the same argmax, calibrated
    probabilities, and a ``state_dict`` with the same keys and shapes as before. This
    holds when the Linear layer is the last operation of ``forward``, as in every tp3nets
    model (its :meth:`~tp3nets.models.ClassifierModel.get_classifier`); other models use
    the last ``nn.Linear`` they register, or the one named by ``head``.

    Args:
        model: the classifier, changed in place.
        temperature: ``T > 0``, from :func:`fit_temperature`.
        head: the attribute path of the final Linear layer (``"fc"``, ``"classifier.3"``).

    Returns:
        The same model.

    Raises:
        ValueError: ``temperature`` is not a finite positive number, or the model has no
            (or ``head`` does not name an) ``nn.Linear``.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x = torch.randn(2, 1, 2, 2)
        >>> before = model(x)
        >>> _ = fold_temperature(model, 2.0)
        >>> torch.allclose(model(x), before / 2.0)
        True
    """
    t = _check_positive(temperature, "temperature", who="fold_temperature")
    layer = _head(model, head)
    with torch.no_grad():
        layer.weight.div_(t)
        if layer.bias is not None:
            layer.bias.div_(t)
    return model


def reliability_diagram(
    probs: Tensor,
    target: Tensor,
    ax: Any = None,
    *,
    n_bins: int = DEFAULT_BINS,
    label: str | None = None,
) -> Any:
    """Draw accuracy against confidence per bin, with matplotlib (``pip install tp3nets[plot]``).

    Each bar is one equal-width confidence bin: its height the accuracy of the predictions
    in it; the diagonal is perfect calibration, and the bars below it are over-confidence.
    The legend gives the ECE. Call it twice on one ``ax`` to compare two models.

    Args:
        probs: probabilities ``(N, C)``.
        target: the true classes ``(N,)``.
        ax: an existing matplotlib Axes; default a new figure.
        n_bins: number of bins.
        label: the legend's name for these predictions.

    Returns:
        The matplotlib Axes.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: as :func:`expected_calibration_error`.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
        >>> ax = reliability_diagram(probs, torch.tensor([0, 1, 1]), label="toy")
        >>> ax.get_xlabel()
        'confidence'
    """
    count, conf_sum, hits = _bins(probs, target, n_bins, "reliability_diagram")
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "reliability_diagram needs matplotlib: pip install 'tp3nets[plot]'"
        ) from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ece = float((hits - conf_sum).abs().sum() / count.sum())
    filled = count > 0
    width = 1.0 / n_bins
    lefts = torch.arange(n_bins, dtype=torch.float64) * width
    accuracy = torch.where(filled, hits / count.clamp(min=1), torch.zeros_like(count))
    name = f"{label}, " if label else ""
    ax.bar(lefts[filled].tolist(), accuracy[filled].tolist(), width=width, align="edge",
           alpha=0.55, edgecolor="black", linewidth=0.6,
           label=f"{name}ECE {100 * ece:.2f} %")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return ax


class TopPredictions(NamedTuple):
    """The top-k answers of :func:`top_predictions`, best first."""

    #: ``(N, k)`` probabilities of the k most likely classes, in decreasing order.
    probs: Tensor
    #: ``(N, k)`` their class indices.
    classes: Tensor
    #: ``(N,)`` True where the top probability is below ``min_confidence``.
    unsure: Tensor


def top_predictions(probs: Tensor, *, k: int = 1, min_confidence: float = 0.0) -> TopPredictions:
    """The k most likely classes of each row, and an "unsure" flag below a threshold.

    For callers who act on the confidence: accept the answers whose top probability is at
    least ``min_confidence``, send the ``unsure`` ones to a person. The threshold means
    something only for a calibrated model (the bundled weights are; after fine-tuning,
    see :func:`fit_temperature`).

    Args:
        probs: probabilities ``(N, C)``, e.g. ``tp3nets.predict(model, x).softmax(dim=1)``.
        k: how many classes to give per row, at most ``C``.
        min_confidence: a probability in ``[0, 1]``; 0 flags nothing.

    Returns:
        A :class:`TopPredictions` of ``probs (N, k)``, ``classes (N, k)``, ``unsure (N,)``.

    Raises:
        ValueError: ``probs`` are not probabilities, ``k`` is not in ``[1, C]``, or
            ``min_confidence`` is not in ``[0, 1]``.

    Example:
        >>> probs = torch.tensor([[0.05, 0.9, 0.05], [0.4, 0.35, 0.25]])
        >>> top = top_predictions(probs, k=2, min_confidence=0.5)
        >>> top.classes.tolist(), top.unsure.tolist()
        ([[1, 0], [0, 1]], [False, True])
    """
    p = _check_probs(probs)
    k = _check_int(k, "k", who="top_predictions", maximum=p.shape[1],
                   what=f"an int in [1, {p.shape[1]}] (at most the number of classes)")
    threshold = _check_probability(min_confidence, "min_confidence", who="top_predictions")
    values, classes = probs.topk(k, dim=1)
    return TopPredictions(values, classes, values[:, 0] < threshold)
