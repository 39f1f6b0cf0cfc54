"""Checks of saved states against what they will be loaded into, before any is loaded.

Each check raises :class:`StateMismatchError` (a ``ValueError``) naming the field, such as
``optimizer.state[0].exp_avg``; :mod:`tp3nets.engine` turns it into a
:class:`~tp3nets.weights.CheckpointError` that names the file too. Callbacks use the same
checks in their ``check_state_dict``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


class StateMismatchError(ValueError):
    """A saved state that does not fit: ``field`` is where, the message what."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")
        self.field = field


def _shown(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def is_number(value: Any) -> bool:
    """A real number: an int or float (not a bool) or a one-element real tensor."""
    if isinstance(value, Tensor):
        return value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value: Any, field: str, *, low: float | None = None, whole: bool = False) -> None:
    """Refuse anything but a (whole) number, at least ``low`` when given."""
    ok = is_number(value) and not (whole and isinstance(value, (float, Tensor)))
    if ok and low is not None:
        ok = float(value) >= low  # NaN compares false: refused
    if not ok:
        kind = "a whole number" if whole else "a number"
        raise StateMismatchError(field, f"must be {kind}{f' >= {low:g}' if low is not None else ''}"
                                   f", got {_shown(value)}")


def like(saved: Any, live: Any, field: str) -> None:
    """Refuse ``saved`` where it is not of the kind of ``live``, the state it replaces:
    numbers for numbers, flags for flags, lists of the same length, tensors of the same
    shape and kind. Keys ``live`` lacks are not looked at; a key ``saved`` lacks keeps
    the live value when loaded (``load_state_dict`` updates), so is not refused either."""
    if live is None:
        return
    if isinstance(live, bool):
        ok = isinstance(saved, bool)
    elif is_number(live) and not isinstance(live, Tensor):
        ok = is_number(saved) and (not isinstance(live, int) or float(saved).is_integer())
    elif isinstance(live, str):
        ok = isinstance(saved, str)
    elif isinstance(live, Tensor):
        tensor_like(saved, live, field)
        return
    elif isinstance(live, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(live):
            raise StateMismatchError(field, f"must be a list of {len(live)}, got {_shown(saved)}"
                                       + (f" of {len(saved)}" if isinstance(saved, (list, tuple))
                                          else ""))
        for i, (s, v) in enumerate(zip(saved, live, strict=True)):
            like(s, v, f"{field}[{i}]")
        return
    elif isinstance(live, Mapping):
        if not isinstance(saved, Mapping):
            raise StateMismatchError(field, f"must be a dict, got {_shown(saved)}")
        for key, value in live.items():
            if isinstance(key, str) and key in saved:  # int keys are data (milestones)
                like(saved[key], value, f"{field}.{key}")
        return
    else:
        return
    if not ok:
        raise StateMismatchError(field, f"must be like {_shown(live)}, got {_shown(saved)}")


def tensor_like(saved: Any, live: Tensor, field: str) -> None:
    """A tensor of ``live``'s shape and kind (floating, complex, integer or bool)."""
    if not isinstance(saved, Tensor):
        raise StateMismatchError(field, f"must be {_shown(live)}, got {_shown(saved)}")
    if saved.shape != live.shape:
        raise StateMismatchError(
            field, f"must have shape {tuple(live.shape)} (as the model's), got "
                   f"{tuple(saved.shape)}")
    if _kind(saved) != _kind(live):
        raise StateMismatchError(field, f"must be a {_kind(live)} tensor (as the model's), got "
                                   f"{saved.dtype}")


def _kind(t: Tensor) -> str:
    if t.is_complex():
        return "complex"
    if t.is_floating_point():
        return "floating-point"
    return "bool" if t.dtype == torch.bool else "integer"


def tensors_like(saved: Any, live: Mapping[str, Tensor], field: str) -> None:
    """A dict of tensors with exactly ``live``'s names, shapes and kinds."""
    if not isinstance(saved, Mapping):
        raise StateMismatchError(field, f"must be a dict of tensors, got {_shown(saved)}")
    missing = [k for k in live if k not in saved]
    extra = [k for k in saved if k not in live]
    if missing or extra:
        raise StateMismatchError(
            field, "does not hold the model's tensors: "
            + "; ".join(f"{what} {', '.join(map(str, keys[:5]))}"
                        for what, keys in (("missing", missing), ("unexpected", extra)) if keys))
    for key, value in live.items():
        tensor_like(saved[key], value, f"{field}.{key}")


# -- RNG states ------------------------------------------------------------------------


def rng_state(rng: Any, field: str) -> None:
    """Refuse RNG states that the generators would refuse (or misread) when set: each is
    tried on a scratch generator, never on the process's own."""
    if not isinstance(rng, Mapping):
        raise StateMismatchError(field, f"must be a dict of RNG states, got {_shown(rng)}")
    unknown = sorted(set(rng) - {"torch", "python", "numpy", "cuda"})
    if unknown:
        raise StateMismatchError(field, f"holds unknown RNG states {unknown}")
    if "torch" in rng:
        _byte_state(rng["torch"], f"{field}.torch", torch.get_rng_state().numel())
        try:
            torch.Generator().set_state(rng["torch"])
        except RuntimeError as exc:
            raise StateMismatchError(f"{field}.torch", f"is refused by torch: {exc}") from None
    if "python" in rng:
        _python_state(rng["python"], f"{field}.python")
    if "numpy" in rng:
        _numpy_state(rng["numpy"], f"{field}.numpy")
    if "cuda" in rng:
        _cuda_states(rng["cuda"], f"{field}.cuda")


def _byte_state(state: Any, field: str, size: int | None) -> None:
    if not isinstance(state, Tensor) or state.dtype != torch.uint8 or state.dim() != 1 or (
        size is not None and state.numel() != size
    ):
        wanted = f"{size} bytes" if size is not None else "bytes"
        raise StateMismatchError(field, f"must be a generator state of {wanted} (a uint8 tensor), "
                                   f"got {_shown(state)}")


def _cuda_states(states: Any, field: str) -> None:
    if not isinstance(states, (list, tuple)):
        raise StateMismatchError(field, f"must be a list of CUDA generator states, got "
                                   f"{_shown(states)}")
    # The size is the running torch's where CUDA is here (the state is set then), else
    # that of the first entry: all devices' generators are alike.
    size = torch.cuda.get_rng_state(0).numel() if torch.cuda.is_available() else None
    for i, state in enumerate(states):
        _byte_state(state, f"{field}[{i}]", size)
        size = state.numel() if size is None else size


def _python_state(values: Any, field: str) -> None:
    # [624 key words, position, version], as checkpoint.rng_states saves random.getstate().
    if not isinstance(values, (list, tuple)) or len(values) != 626 or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise StateMismatchError(field, f"must be 626 whole numbers (Python's random state), got "
                                   f"{_shown(values)}"
                                   + (f" of {len(values)}" if isinstance(values, (list, tuple))
                                      else ""))
    try:
        random.Random().setstate((values[-1], tuple(values[:-1]), None))
    except (ValueError, TypeError, OverflowError) as exc:
        raise StateMismatchError(field, f"is refused by Python's random: {exc}") from None


def _numpy_state(state: Any, field: str) -> None:
    if not isinstance(state, Mapping) or set(state) != {"keys", "pos", "has_gauss", "gauss"}:
        raise StateMismatchError(field, "must be a dict of keys, pos, has_gauss and gauss, got "
                                   f"{_shown(state)}")
    keys = state["keys"]
    if not isinstance(keys, Tensor) or keys.dtype != torch.int64 or keys.shape != (624,) or (
        bool(((keys < 0) | (keys >= 2**32)).any())
    ):
        raise StateMismatchError(f"{field}.keys", f"must be 624 words (int64 in [0, 2**32)), got "
                                             f"{_shown(keys)}")
    number(state["pos"], f"{field}.pos", low=0, whole=True)
    if state["pos"] > 624:
        raise StateMismatchError(f"{field}.pos", f"must be at most 624, got {state['pos']!r}")
    if state["has_gauss"] not in (0, 1) or isinstance(state["has_gauss"], float):
        raise StateMismatchError(f"{field}.has_gauss", f"must be 0 or 1, got "
                                                  f"{_shown(state['has_gauss'])}")
    number(state["gauss"], f"{field}.gauss")
    if not math.isfinite(float(state["gauss"])):
        raise StateMismatchError(f"{field}.gauss", f"must be finite, got {state['gauss']!r}")


# -- optimizer state ---------------------------------------------------------------------

#: Per-parameter optimizer state with the parameter's own shape (torch.optim's names).
_ELEMENTWISE = frozenset({
    "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg", "grad_avg",
    "acc_delta", "sum", "ax", "prev", "step_size", "exp_inf",
})
#: Per-parameter optimizer state of one number.
_SCALAR = frozenset({"step", "eta", "mu", "mu_product"})


def optimizer_state(saved: Mapping[str, Any], optimizer: torch.optim.Optimizer,
                    field: str = "optimizer") -> None:
    """Refuse an optimizer state that would load and then fail (or go wrong) at a step:
    its groups must match the optimizer's (count, sizes, hyperparameters), and each
    parameter's state must fit that parameter (shapes, kinds, step counts)."""
    groups, live_groups = saved["param_groups"], optimizer.param_groups
    if len(groups) != len(live_groups):
        raise StateMismatchError(f"{field}.param_groups", f"holds {len(groups)} groups, the "
                                                     f"optimizer {len(live_groups)}")
    params: dict[int, Tensor] = {}
    for g, (group, live) in enumerate(zip(groups, live_groups, strict=True)):
        where = f"{field}.param_groups[{g}]"
        _group(group, live, where)
        params.update(zip(group["params"], live["params"], strict=True))
    if len(params) != sum(len(g["params"]) for g in groups):
        raise StateMismatchError(f"{field}.param_groups", "lists a parameter more than once")
    for key, state in saved["state"].items():
        where = f"{field}.state[{key!r}]"
        if key not in params:
            raise StateMismatchError(where, "is the state of a parameter that no group lists")
        if not isinstance(state, Mapping):
            raise StateMismatchError(where, f"must be a dict, got {_shown(state)}")
        for name, value in state.items():
            _param_state(value, params[key], name, f"{where}.{name}")


def _group(group: Any, live: Mapping[str, Any], where: str) -> None:
    if not isinstance(group, Mapping) or not isinstance(group.get("params"), list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in group["params"]
    ):
        raise StateMismatchError(where, "must be a dict with 'params', a list of parameter indices")
    if len(group["params"]) != len(live["params"]):
        raise StateMismatchError(f"{where}.params", f"lists {len(group['params'])} parameters, "
                                               f"the optimizer's group {len(live['params'])}")
    for key, value in live.items():
        if key in ("params", "param_names"):
            continue
        if key not in group:
            # torch fills in missing flags (foreach, maximize, ...) when it loads; a
            # missing hyperparameter (lr, betas, momentum) fails at the first step.
            if is_number(value) or isinstance(value, (tuple, list)):
                raise StateMismatchError(f"{where}.{key}", "is missing")
            continue
        like(group[key], value, f"{where}.{key}")
        if is_number(group[key]) and not math.isfinite(float(group[key])):
            raise StateMismatchError(f"{where}.{key}", f"must be finite, got {group[key]!r}")


def _param_state(value: Any, param: Tensor, name: str, field: str) -> None:
    if name in _SCALAR:
        if value is not None and not is_number(value):
            raise StateMismatchError(field, f"must be a number, got {_shown(value)}")
        if name == "step" and value is not None and not float(value) >= 0:
            raise StateMismatchError(field, f"must be a count >= 0, got {float(value)!r}")
    elif name in _ELEMENTWISE and value is not None:  # SGD's momentum_buffer may be None
        tensor_like(value, param, field)


def scaler_state(saved: Any, live: Mapping[str, Any], field: str = "scaler") -> None:
    """A gradient scaler's state: every entry of the live one (torch refuses a partial
    or empty one), of its kind, with a positive finite scale."""
    like(saved, live, field)
    missing = [k for k in live if k not in saved]
    if missing:
        raise StateMismatchError(field, f"lacks {', '.join(missing)}")
    if "scale" in live:
        number(saved["scale"], f"{field}.scale")
        if not (math.isfinite(float(saved["scale"])) and float(saved["scale"]) > 0):
            raise StateMismatchError(f"{field}.scale", f"must be a positive finite number, got "
                                                       f"{float(saved['scale'])!r}")
