"""Shared pieces of the benchmark scripts: machine description, tables, JSON, data."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import tp3nets
from tp3nets.engine import fused_optimizer, reuse_freed_memory

MODELS: dict[str, Callable[[], nn.Module]] = {
    "mlr": tp3nets.MultinomialLogisticRegression,
    "convnet2": tp3nets.ConvNet2,
    "convnet3": tp3nets.ConvNet3,
    "convnet4": tp3nets.ConvNet4,
}
#: Registry name of each model's builder (``tp3nets.get_model``), by the short name above.
BUILDERS: dict[str, str] = {
    "mlr": "multinomial_logistic_regression",
    "convnet2": "convnet2",
    "convnet3": "convnet3",
    "convnet4": "convnet4",
}
DEFAULT_DATA = os.environ.get(
    "TP3NETS_DATA", str(Path(__file__).resolve().parent.parent.parent / "shared" / "datasets")
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> dict[str, bool]:
    """The CPU's vector extensions that decide torch's and ONNX Runtime's kernels."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "AVX2": "avx2" in flags,
        "AVX-512": "avx512f" in flags,
        "VNNI": bool({"avx512_vnni", "avx_vnni"} & flags),
        "AMX": "amx_tile" in flags,
        "bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
    }


def add_memory_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reuse-freed-memory", action="store_true",
        help="call tp3nets.engine.reuse_freed_memory() first, as the tp3nets command "
        "does: glibc keeps freed memory for reuse (for the whole process, so for both "
        "sides of a comparison)",
    )


def check_device(parser: argparse.ArgumentParser, device: str) -> None:
    """A usage error (exit 2) for a ``--device`` that is not cpu/cuda/cuda:N or has no CUDA."""
    if device != "cpu" and not device.startswith("cuda"):
        parser.error(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: CUDA is not available on this machine")


def malloc_setting(args: argparse.Namespace) -> str:
    """Apply ``--reuse-freed-memory``; describe malloc's setting for the machine line."""
    if getattr(args, "reuse_freed_memory", False):
        if reuse_freed_memory():
            return "glibc, freed memory kept (reuse_freed_memory)"
        return "not glibc: reuse_freed_memory did nothing"
    tuned = sorted(k for k in os.environ if k.startswith("MALLOC_") or k == "LD_PRELOAD")
    return "environment: " + ", ".join(tuned) if tuned else "default"


def machine(device: str = "cpu", malloc: str = "default") -> dict[str, Any]:
    """The facts a timing depends on."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "tp3nets": tp3nets.__version__,
        "python": platform.python_version(),
        "device": device,
        "malloc": malloc,
    }
    # What PyTorch's kernels use of the CPU: lower than its flags when capped (for example
    # ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 to stand in for an AVX2-only CPU).
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    capped = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                         "DNNL_MAX_CPU_ISA") if k in os.environ}
    if capped:
        info["isa_capped"] = capped
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def print_machine(info: dict[str, Any]) -> None:
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info.get("cpu_flags", {}).items())
    capped = info.get("isa_capped")
    cap = (f"; torch kernels capped at {info.get('torch_cpu_capability')} "
           f"({', '.join(f'{k}={v}' for k, v in capped.items())}), other libraries not"
           if capped else "")
    print(f"machine: {info['cpu']} ({flags}), {info['cores']} cores ({info['torch_threads']} torch "
          f"threads){gpu}; torch {info['torch']}, tp3nets {info['tp3nets']}, "
          f"Python {info['python']}; device {info['device']}; malloc {info['malloc']}{cap}")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {target}")


def report(
    benchmark: str, info: dict[str, Any], rows: Sequence[dict[str, Any]],
    args: Any, footer: str | None = None,
) -> None:
    """Print the rows as a markdown table (and a footer), and write them with ``--json``."""
    print()
    # Lists and dicts (the individual runs) go to the JSON only.
    print(markdown_table(rows, [k for k, v in rows[0].items() if not isinstance(v, (dict, list))]))
    if footer:
        print(f"\n{footer}")
    write_json(args.json, {"benchmark": benchmark, "machine": info,
                           "settings": {k: v for k, v in vars(args).items() if k != "json"},
                           "rows": list(rows)})


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, Any]:
    """Seconds taken by ``fn()`` (synchronising CUDA around it) and its result."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


#: Seconds of rest before each timed pass. ONNX Runtime's worker threads spin on the CPU
#: for tens of milliseconds after a run, waiting for the next one (its default,
#: ``session.intra_op.allow_spinning``): on a 2-core machine they slowed the eager PyTorch
#: pass timed right after by a third. Every pass starts from the same rest instead.
SETTLE_S = 0.2


def settle() -> None:
    """Rest :data:`SETTLE_S` before a timed pass (see there)."""
    time.sleep(SETTLE_S)


def ort_session(path: str | Path, spinning: bool = True) -> Callable[[Tensor], Tensor]:
    """A bare ``onnxruntime.InferenceSession`` on the ONNX file at ``path``: the CPU,
    torch's thread count, one inter-op thread, fed NumPy; what one would run without
    tp3nets. ``spinning``: ONNX Runtime's ``session.intra_op.allow_spinning`` (its
    default, on)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "1" if spinning else "0")
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    return run


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def lab_optimizer(name: str, model: nn.Module, lr: float | None,
               fused: bool = False) -> torch.optim.Optimizer:
    """The report's optimizer: SGD for the logistic regression, Adam for the ConvNets.

    ``fused=True`` asks for torch's fused implementation of the same algorithm, as
    ``tp3nets train`` does; torch versions without it get the plain one.
    """
    if name == "mlr":  # the report: optim.SGD for the logistic regression
        cls: type[torch.optim.Optimizer] = torch.optim.SGD
        lr = lr or 0.01
    else:  # the report, for the ConvNets
        cls, lr = torch.optim.Adam, lr or 1e-3
    if fused:
        return fused_optimizer(cls, model.parameters(), lr=lr)
    return cls(model.parameters(), lr=lr)  # type: ignore[call-arg]
