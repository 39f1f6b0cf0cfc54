"""Run one benchmark script on this checkout and on an earlier commit, side by side.

    python benchmarks/bench_vs_commit.py --ref eec128a --rounds 5 -- \\
        bench_overhead.py --data ../shared/datasets --reuse-freed-memory

The earlier commit is checked out into a temporary git worktree; each round runs that
commit's copy of the script against its own ``src/`` and this checkout's copy against this
``src/`` (``PYTHONPATH``), in alternating order (ABBA), each in a fresh process with
``--json``. For every row of the script's JSON (keyed by its first column) and every
numeric figure, the table gives both medians and the ratio now / before: for a time, below
1 is faster now. A refactor that claims "no slower" quotes these ratios, measured in one
run on an otherwise idle machine, with the machine line the scripts print.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _run(tree: Path, script: str, args: list[str], out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [sys.executable, str(tree / "benchmarks" / script), *args, "--json", str(out)]
    # From the caller's folder, so that relative paths among the options mean what they
    # mean to the caller (--data ../shared/datasets).
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _figures(result: dict[str, Any]) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for row in result.get("rows", []):
        key = str(next(iter(row.values())))
        for name, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[(key, name)] = float(value)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the earlier commit (any git ref)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each side")
    parser.add_argument("script", help="a script of benchmarks/, e.g. bench_overhead.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own options")
    opts = parser.parse_args(argv)
    if opts.rounds < 1:
        parser.error(f"--rounds expects an integer >= 1, got {opts.rounds}")
    args = [a for a in opts.args if a != "--"]
    with tempfile.TemporaryDirectory(prefix="tp3nets-vs-") as tmp:
        before_tree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q",
                        str(before_tree), opts.ref], check=True)
        try:
            sides: dict[str, list[dict[tuple[str, str], float]]] = {"before": [], "now": []}
            machine: Any = None
            for i in range(opts.rounds):
                order = [("before", before_tree), ("now", REPO)]
                if i % 2:
                    order.reverse()
                for side, tree in order:
                    result = _run(tree, opts.script, args, Path(tmp) / f"{side}-{i}.json")
                    machine = result.get("machine", machine)
                    sides[side].append(_figures(result))
                    print(f"round {i + 1}/{opts.rounds}: {side} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(before_tree)], check=False)
    print(f"machine: {json.dumps(machine)}")
    print(f"{opts.script} {' '.join(args)}: {opts.ref} (before) against this checkout "
          f"(now), {opts.rounds} rounds each, alternating; medians\n")
    print("| row | figure | before | now | now / before |")
    print("| --- | --- | --- | --- | --- |")
    keys = sorted(set(sides["before"][0]) & set(sides["now"][0]))
    for key in keys:
        b = statistics.median(r[key] for r in sides["before"])
        n = statistics.median(r[key] for r in sides["now"])
        ratio = f"{n / b:.3f}" if b else "n/a"
        print(f"| {key[0]} | {key[1]} | {b:.6g} | {n:.6g} | {ratio} |")


if __name__ == "__main__":
    main()
