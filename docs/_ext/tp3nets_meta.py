"""Figures for the docs and the README, read from the code and from measured results.

Nothing here is typed by hand: each row comes from a weights enum's ``meta`` (read from
the records ``tp3nets/weights/records/*.json``, which ``recipes/sync_meta.py`` writes from
the training runs) and, for throughput, from
``benchmarks/results/evaluate.json`` when a benchmark run has written it. Used by the
Sphinx extension ``tp3nets_docs`` and by ``docs/gen_readme_table.py``; needs no Sphinx.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCHMARK_RESULTS = REPO / "benchmarks" / "results"
EVALUATE_JSON = BENCHMARK_RESULTS / "evaluate.json"
NOT_AVAILABLE = "n/a"

LAB_REPORT = "TP3: NN and CNN with Pytorch, by Kim ANTUNEZ and Isabelle BERNARD"
# The order of the lab report; models it does not have follow, by name.
LAB_ORDER = ("multinomial_logistic_regression", "convnet2", "convnet3", "convnet4")

# Keys under which a benchmark record may hold a throughput in images per second.
_THROUGHPUT_KEYS = (
    "images/s",
    "images_per_s",
    "images_per_second",
    "img_per_s",
    "imgs_per_s",
    "throughput",
    "throughput_img_s",
    "samples_per_s",
    "samples_per_second",
)
_MACHINE_KEYS = ("machine", "hardware", "system", "platform", "host", "env", "environment")
# Short names the benchmark scripts use for registered models.
MODEL_ALIASES = {
    "mlr": "multinomial_logistic_regression",
    "logistic": "multinomial_logistic_regression",
}


@dataclass
class WeightsRow:
    """One bundled weight set, as the models table shows it."""

    model: str
    enum_name: str
    member: str
    is_default: bool
    num_params: int | None
    file_size: int | None
    test_acc: float | None
    val_acc: float | None
    provisional: bool
    meta: Mapping[str, Any] = field(repr=False)
    file: str = ""
    sha256: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.enum_name}.{self.member}"


def _percent(value: Any) -> float | None:
    """An accuracy as a percentage; the records store percentages, fractions are scaled."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return None
    return float(value) * 100 if 0 < value <= 1 else float(value)


def is_provisional(meta: Mapping[str, Any]) -> bool:
    """True for the placeholder files shipped before the training runs finished."""
    command = str((meta.get("recipe") or {}).get("command", ""))
    return command.upper().startswith("PROVISIONAL") or not meta.get("history")


def record_files() -> list[Path]:
    """The JSON records the weights enums read their ``meta`` from (package data of
    ``tp3nets.weights``): a page built from ``meta`` depends on them."""
    import tp3nets.weights

    return sorted((Path(tp3nets.weights.__file__).parent / "records").glob("*.json"))


def weights_rows() -> list[WeightsRow]:
    """Every registered model's weight sets (aliases such as DEFAULT folded in)."""
    import tp3nets

    rows = []
    names = sorted(
        tp3nets.list_models(),
        key=lambda n: (LAB_ORDER.index(n) if n in LAB_ORDER else len(LAB_ORDER), n),
    )
    for name in names:
        try:
            enum_cls = tp3nets.get_model_weights(name)
        except ValueError:  # a model without pretrained weights
            continue
        default = enum_cls.__members__.get("DEFAULT")
        for member in enum_cls:  # iteration skips aliases
            meta = member.meta
            metrics = meta.get("metrics") or {}
            rows.append(
                WeightsRow(
                    model=name,
                    enum_name=enum_cls.__name__,
                    member=member.name,
                    is_default=member is default,
                    num_params=meta.get("num_params"),
                    file_size=meta.get("file_size"),
                    test_acc=_percent((metrics.get("MNIST") or {}).get("acc@1")),
                    val_acc=_percent(metrics.get("val_acc@1")),
                    provisional=is_provisional(meta),
                    meta=meta,
                    file=member.file,
                    sha256=member.sha256,
                )
            )
    return rows


# --------------------------------------------------------------------------------------
# benchmark results


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def benchmark_records(data: Any) -> list[dict[str, Any]]:
    """The flat records of a results file: a list, or the list under a usual key."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    if isinstance(data, dict):
        for key in ("results", "records", "runs", "rows", "measurements", "models"):
            value = data.get(key)
            if isinstance(value, list):
                return [r for r in value if isinstance(r, dict)]
            if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
                return [{"model": k, **v} for k, v in value.items()]
        if data and all(isinstance(v, dict) for k, v in data.items() if k not in _MACHINE_KEYS):
            return [
                {"model": k, **v} for k, v in data.items()
                if k not in _MACHINE_KEYS and isinstance(v, dict)
            ]
    return []


def machine_of(data: Any) -> str:
    """A one-line description of the machine a results file came from."""
    if not isinstance(data, dict):
        return ""
    for key in _MACHINE_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict) and value:
            parts = [f"{k}: {v}" for k, v in value.items() if not isinstance(v, (dict, list))]
            flags = value.get("cpu_flags")
            if isinstance(flags, dict):
                have = [k for k, v in flags.items() if v]
                parts.insert(1, "CPU flags: " + (" ".join(have) if have else "none of "
                                                  + " ".join(flags)))
            capped = value.get("isa_capped")
            if isinstance(capped, dict) and capped:
                parts.append("torch's kernels capped by " + " ".join(
                    f"{k}={v}" for k, v in capped.items()) + " (other libraries not)")
            return ", ".join(parts)
    return ""


def _throughput(record: Mapping[str, Any]) -> float | None:
    for key in _THROUGHPUT_KEYS:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _model_key(record: Mapping[str, Any]) -> str:
    name = str(record.get("model", record.get("name", ""))).lower()
    return MODEL_ALIASES.get(name, name)


# The paths the models table quotes: the library's own precisions (a benchmark's other
# rows, BatchNorm folding, ONNX Runtime, the reference int8 kernel, are on its docs page).
_TABLE_VARIANTS = ("", "fp32", "bf16", "int8")


def _variant(record: Mapping[str, Any]) -> str:
    """What distinguishes records of one model: precision, device (when given)."""
    parts = []
    precision = record.get("precision")
    if precision is not None:
        parts.append("fp32" if str(precision) == "32" else str(precision))
    if record.get("device"):
        parts.append(str(record["device"]))
    return " ".join(parts)


def throughputs(path: Path = EVALUATE_JSON) -> dict[str, str]:
    """Model name → evaluation throughput text (best per precision/device), from the file."""
    data = load_json(path) if path.is_file() else None
    if data is None:
        return {}
    best: dict[str, dict[str, float]] = {}
    for record in benchmark_records(data):
        value = _throughput(record)
        if value is None:
            continue
        variant = _variant(record)
        if variant.split(" ")[0] not in _TABLE_VARIANTS:
            continue
        per_variant = best.setdefault(_model_key(record), {})
        per_variant[variant] = max(value, per_variant.get(variant, 0.0))
    return {
        model: "; ".join(
            f"{_fmt_rate(v)} img/s" + (f" ({k})" if k else "") for k, v in per_variant.items()
        )
        for model, per_variant in best.items()
    }


def throughput_source(path: Path = EVALUATE_JSON) -> str:
    """Where the throughput figures come from: the file and its machine, in one line."""
    data = load_json(path) if path.is_file() else None
    if data is None:
        return ""
    machine = machine_of(data)
    rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
    return f"Eval throughput from {rel}" + (f" (machine: {machine})" if machine else "") + "."


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def iter_result_files() -> Iterator[Path]:
    if BENCHMARK_RESULTS.is_dir():
        yield from sorted(BENCHMARK_RESULTS.glob("*.json"))


# --------------------------------------------------------------------------------------
# formatting


def fmt_int(value: int | None) -> str:
    return f"{value:,}" if isinstance(value, int) else NOT_AVAILABLE


def fmt_size(n: int | None) -> str:
    if not isinstance(n, int):
        return NOT_AVAILABLE
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB"


def fmt_acc(value: float | None, provisional: bool) -> str:
    if provisional:
        return f"{NOT_AVAILABLE} (provisional weights)"
    if value is None:
        return NOT_AVAILABLE
    return f"{value:.2f} %"


def fmt_seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return NOT_AVAILABLE
    seconds = round(float(value))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


TABLE_HEADER = (
    "Model",
    "Weights",
    "Parameters",
    "File size",
    "MNIST test acc@1",
    "Validation acc@1",
    "Eval throughput",
)


def table_cells(rows: list[WeightsRow] | None = None) -> list[tuple[str, ...]]:
    """The models table as plain strings, one tuple per weight set."""
    rows = weights_rows() if rows is None else rows
    rates = throughputs()
    cells = []
    for r in rows:
        weights = r.qualified + (" (DEFAULT)" if r.is_default else "")
        cells.append((
            r.model,
            weights,
            fmt_int(r.num_params),
            fmt_size(r.file_size),
            fmt_acc(r.test_acc, r.provisional),
            fmt_acc(r.val_acc, r.provisional),
            rates.get(r.model, NOT_AVAILABLE),
        ))
    return cells


def markdown_table(rows: list[WeightsRow] | None = None) -> str:
    """The models table in GitHub Markdown (for the README)."""
    cells = table_cells(rows)
    lines = ["| " + " | ".join(TABLE_HEADER) + " |"]
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(TABLE_HEADER) - 2)) + "|")
    for row in cells:
        model, weights, *rest = row
        name, _, default = weights.partition(" ")
        cell = f"`{name}`" + (f" {default}" if default else "")
        lines.append("| " + " | ".join([f"`{model}`", cell, *rest]) + " |")
    return "\n".join(lines)
