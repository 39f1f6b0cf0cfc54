"""Run the reliability tests and print the table of ``docs/reliability.rst`` from their records.

``OMP_NUM_THREADS=1 python tests/_fault_report.py``

The tests of ``tests/test_reliability.py``, ``tests/test_properties.py``,
``tests/test_faults.py`` and the fault tests of ``test_checkpoint.py``,
``test_training.py``, ``test_cli.py``, ``test_distributed.py``, ``test_warnings.py`` and
``test_images.py`` record what they try
through pytest's ``record_property``: ``bad_input`` (a wrong input, by category),
``good_input`` (a generated input that is valid), ``defined_behaviour`` (NaN/inf, empty
batches, memory layouts), ``fault`` (a fault injected), ``recovered`` (a run that ended as
an uninterrupted one) and ``data_intact`` (a checkpoint that survived a fault whole). This
script runs them in-process and counts the records by the outcome of the test that made
them, so every figure comes from a run.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FILES = ["test_reliability.py", "test_properties.py", "test_faults.py", "test_checkpoint.py",
         "test_training.py", "test_cli.py", "test_distributed.py", "test_warnings.py",
         "test_images.py"]


class _Collector:
    """A pytest plugin that keeps each test's records and outcome."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []  # (name, value, outcome)
        self.outcomes: collections.Counter[str] = collections.Counter()

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            self.outcomes[outcome] += 1
            for name, value in report.user_properties:
                self.records.append((str(name), str(value), outcome))


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines)


def main() -> int:
    import pytest

    collector = _Collector()
    started = time.perf_counter()
    code = pytest.main(["-q", "-p", "no:cacheprovider", *(str(HERE / f) for f in FILES)],
                       plugins=[collector])
    seconds = time.perf_counter() - started
    by: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    for name, value, outcome in collector.records:
        by[name, value][outcome] += 1

    rows = []
    for (name, category), counts in sorted(by.items()):
        if name != "bad_input":
            continue
        rows.append((category, str(sum(counts.values())), str(counts["passed"]),
                     str(counts["xfailed"]), str(counts["failed"])))
    total = [sum(int(r[i]) for r in rows) for i in range(1, 5)]
    rows.append(("**all**", *(f"**{t}**" for t in total)))
    print(_table(rows, ("Bad inputs", "tried", "clear error", "known gap (xfail)",
                        "crash, hang or unclear")))
    print()

    def count(name: str, outcome: str | None = None) -> int:
        return sum(c[outcome] if outcome else sum(c.values())
                   for (n, _), c in by.items() if n == name)

    faults = count("fault")
    failed_faults = sum(c["failed"] for (n, _), c in by.items() if n == "fault")
    summary = [
        ("defined behaviours checked (NaN/inf, empty batches, layouts)",
         f"{count('defined_behaviour', 'passed')} of {count('defined_behaviour')}"),
        ("valid generated inputs accepted", f"{count('good_input', 'passed')}"),
        ("faults injected", f"{faults}"),
        ("runs recovered (bitwise equal to an uninterrupted run)",
         f"{count('recovered', 'passed')}"),
        ("checkpoints intact after a fault", f"{count('data_intact', 'passed')}"),
        ("crashes or hangs", f"{total[3] + failed_faults}"),
        ("data lost", f"{failed_faults}"),
    ]
    print(_table(summary, ("Faults and outcomes", "count")))
    print()
    tests = ", ".join(f"{n} {k}" for k, n in sorted(collector.outcomes.items()))
    print(f"pytest exit status {int(code)}; tests: {tests}; {seconds:.0f} s")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
