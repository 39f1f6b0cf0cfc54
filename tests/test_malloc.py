"""reuse_freed_memory: glibc keeps the memory tensors free, and gives it back on request.

Each case runs in a fresh interpreter: malloc's settings belong to the whole process, and
the test process must keep glibc's defaults.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tp3nets import cli
from tp3nets.engine import _malloc, reuse_freed_memory

glibc_only = pytest.mark.skipif(
    _malloc._glibc() is None, reason="malloc is not glibc's here"
)

# Page faults of each of 8 rounds of allocating, touching and freeing 64 MiB. 64 MiB is
# above glibc's largest adaptive mmap threshold (32 MiB), so by default every round maps
# fresh memory and faults each of its pages in again. When freed memory is kept, the heap
# grows for the first rounds (once or twice, depending on where small allocations land),
# then stops faulting.
_SCRIPT = r"""
import resource, sys, torch
from tp3nets.engine import reuse_freed_memory
applied = None
for step in sys.argv[1:]:
    applied = reuse_freed_memory(step == "on")

faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 * 2**20)  # 64 MiB of float32
    t.fill_(1.0)  # touch every page
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, *faults)
"""


def _faults(*steps: str) -> tuple[str, list[int]]:
    """``(what reuse_freed_memory returned, page faults of each round)``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("GLIBC_TUNABLES", None)
    env.pop("LD_PRELOAD", None)
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", _SCRIPT, *steps], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    return out[-9], [int(f) for f in out[-8:]]


@glibc_only
def test_freed_memory_is_reused_and_given_back() -> None:
    """On: no page faults for memory freed and taken again; off: glibc's behaviour again."""
    default_applied, default = _faults()
    on_applied, on = _faults("on")
    off_applied, off = _faults("on", "off")
    assert (default_applied, on_applied, off_applied) == ("None", "True", "True")
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")  # of one round
    assert sum(on[4:]) < pages // 20, on  # steady: the freed 64 MiB is taken again
    if min(default) >= pages // 2:  # 4 KiB pages faulted one by one (no transparent huge pages)
        assert min(off[4:]) >= pages // 2, off  # back to mapping and unmapping each round


def test_other_allocators_and_systems_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A preloaded jemalloc, or a libc other than glibc: nothing changes, False is returned."""
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert _malloc._glibc() is None
    assert reuse_freed_memory() is False
    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.setattr(_malloc.sys, "platform", "darwin")
    assert reuse_freed_memory() is False
    assert reuse_freed_memory(False) is False


@pytest.mark.parametrize(
    ("env", "called"),
    [
        ({}, True),
        ({"TP3NETS_REUSE_FREED_MEMORY": "0"}, False),
        ({"TP3NETS_REUSE_FREED_MEMORY": "1"}, True),
        ({"MALLOC_ARENA_MAX": "2"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}, False),
    ],
)
def test_command_line_keeps_freed_memory_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    env: dict[str, str], called: bool,
) -> None:
    """tp3nets tunes malloc before running a command, unless the environment chose."""
    for name in list(os.environ):
        if name.startswith("MALLOC_") or name in ("GLIBC_TUNABLES", cli.REUSE_MEMORY_ENV):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls: list[bool] = []
    monkeypatch.setattr(cli, "_reuse_freed_memory", lambda enable=True: calls.append(enable))
    assert cli.main(["list"]) == 0
    capsys.readouterr()
    assert calls == ([True] if called else [])
