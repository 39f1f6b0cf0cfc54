"""glibc's malloc settings for loops that free and reallocate large tensors."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Final

# mallopt() parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_MAX: Final = -4
# glibc's defaults for them (its adaptive thresholds start from these values).
_DEFAULT_MMAP_MAX: Final = 65536
_DEFAULT_TRIM_THRESHOLD: Final = 128 * 1024
# Allocators that replace malloc when preloaded; glibc's settings do nothing to them.
_OTHER_ALLOCATORS: Final = ("jemalloc", "tcmalloc", "mimalloc")
_lock = threading.Lock()


def _glibc() -> ctypes.CDLL | None:
    """The process's glibc, if malloc is glibc's; ``None`` on any other system."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # musl and other libcs do not know the name
        return None
    if not version.startswith("glibc"):
        return None
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in _OTHER_ALLOCATORS):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded in this process
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def reuse_freed_memory(enable: bool = True) -> bool:
    """Make glibc keep the memory that tensors free, for the next ones to reuse.

    A training or evaluation step frees its activations and allocates the same sizes again
    at the next step. glibc's default is to give large blocks back to the system at once
    (they are mapped with ``mmap``, or trimmed off the heap), so every step faults the same
    memory in again, page by page. This turns both off for the whole process: large blocks
    come from the heap and freed memory stays there. On a 2-core AMD EPYC, evaluating
    ConvNet4 on the 10,000 MNIST test images at batch 1000 went from 503 to 830 images/s
    in fp32 (``benchmarks/bench_evaluate.py``). The command line ``tp3nets`` calls it
    for you.

    The cost is memory: the process keeps what it freed until it exits, and its peak grows
    (``tp3nets evaluate convnet4``: 1.65 GB resident at most instead of 1.32 GB).
    ``enable=False`` puts back glibc's default limits and returns the free memory to the
    system (glibc's adaptive thresholds stay off). It does from inside Python what
    starting it with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=10000000000`` does.
    Preloading jemalloc or tcmalloc is the other cure; this function then leaves malloc
    alone.

    Args:
        enable: keep freed memory (``True``), or go back to glibc's limits (``False``).

    Returns:
        ``True`` if glibc's settings were changed; ``False`` where malloc is not glibc's
        (macOS, Windows, musl, a preloaded allocator), which is left as it is.

    Example:
        >>> from tp3nets.engine import reuse_freed_memory
        >>> reuse_freed_memory()  # doctest: +SKIP
        True
    """
    libc = _glibc()
    if libc is None:
        return False
    with _lock:
        if enable:
            # mallopt returns 1 on success.
            done = libc.mallopt(_M_MMAP_MAX, 0) == 1
            done = libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1 and done  # -1: never trim
        else:
            done = libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX) == 1
            done = libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD) == 1 and done
            libc.malloc_trim(0)
    return bool(done)
