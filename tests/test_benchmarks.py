"""The benchmark scripts run: each one's ``--quick`` mode prints its table and writes JSON.

Timings are never asserted (they mean nothing in ``--quick`` mode); what is checked is
that a script anyone is told to rerun still works with the package as it is, and that it
refuses bad arguments with a usage error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# script -> extra arguments that keep the quick run short
QUICK = {
    "bench_fit_vs_reference.py": ["--models", "mlr,convnet2"],
    "bench_overhead.py": ["--models", "mlr"],
    "profile_overhead.py": ["--models", "mlr"],
    "bench_evaluate.py": ["--models", "mlr,convnet2"],
    "bench_backends.py": ["--models", "mlr,convnet2"],
    "bench_threads.py": ["--threads", "1"],  # still 2 child processes
    "bench_shortcuts.py": ["--shortcuts", "step,blocks"],
    "bench_real_inputs.py": ["--models", "convnet2"],
    "bench_conv_layers.py": [],
    "bench_ort_spinning.py": [],
}


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
        timeout=600, env=env, cwd=BENCHMARKS.parent,
    )


def test_every_benchmark_script_has_a_quick_check() -> None:
    """A new script in benchmarks/ gets its entry here, so that it is run too (modules
    that scripts import, such as real_inputs.py, have no ``__main__`` block)."""
    scripts = {p.name for p in BENCHMARKS.glob("*.py")
               if not p.name.startswith("_") and "__main__" in p.read_text()}
    assert scripts == set(QUICK) | {"bench_vs_commit.py"}  # it runs the others: below


def test_bench_vs_commit_compares_a_script_on_two_commits(mnist_root: Path) -> None:
    """bench_vs_commit runs a script's quick mode on HEAD (in a temporary worktree) and on
    this checkout, prints a row per figure with both medians and their ratio, and leaves
    no worktree behind."""
    before = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True,
                            cwd=BENCHMARKS.parent, check=True).stdout
    proc = _run("bench_vs_commit.py", "--ref", "HEAD", "--rounds", "1", "bench_overhead.py",
                "--", "--quick", "--models", "mlr", "--data", str(mnist_root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("machine: ")
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| mlr | fit s |")]
    assert len(rows) == 1
    before_s, now_s, ratio = (float(x) for x in rows[0].strip("| ").split(" | ")[2:])
    assert before_s > 0
    assert now_s > 0
    assert ratio == pytest.approx(now_s / before_s, rel=1e-2)
    after = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True,
                           cwd=BENCHMARKS.parent, check=True).stdout
    assert after == before


@pytest.mark.parametrize("script", sorted(QUICK))
def test_benchmark_quick_mode_prints_a_table_and_writes_json(
    script: str, mnist_root: Path, tmp_path: Path,
) -> None:
    """``--quick`` exits 0, prints the machine line and a table, and writes its rows."""
    out = tmp_path / "result.json"
    proc = _run(script, "--quick", "--data", str(mnist_root), "--json", str(out),
                *QUICK[script])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("machine: ")
    assert "| --- |" in proc.stdout
    data = json.loads(out.read_text())
    assert data["machine"]["torch"]
    assert data["rows"]


def _main(script: str) -> Any:
    """The script's ``main``, imported in this process (usage errors need no new process)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{script[:-3]}", BENCHMARKS / script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("script", ["bench_fit_vs_reference.py", "bench_overhead.py",
                                    "profile_overhead.py", "bench_evaluate.py"])
def test_benchmark_refuses_unknown_models_and_devices(
    script: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """A model or device it cannot run is a usage error (exit 2) naming the choices."""
    main = _main(script)
    with pytest.raises(SystemExit) as stop:
        main(["--quick", "--models", "mlr,resnet50"])
    assert stop.value.code == 2
    assert "unknown model(s) resnet50; choose from mlr, convnet2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["--quick", "--device", "tpu"])
    assert stop.value.code == 2
    assert "--device must be cpu, cuda or cuda:N, got 'tpu'" in capsys.readouterr().err
