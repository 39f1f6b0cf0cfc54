"""Worker for tests/test_faults.py: a process killed (SIGKILL) in the middle of a save.

``python tests/_fault_save.py TARGET``

Writes a first checkpoint to TARGET with :func:`tp3nets.engine.save_checkpoint`, then
starts a second save of a different checkpoint and kills itself with SIGKILL once
``torch.save`` has written part of it into the temporary file: no ``finally`` clause, no
cleanup, as when the machine's out-of-memory killer or a scheduler ends a job. Prints the
sha256 of TARGET as the first save left it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

KILL_AFTER_BYTES = 100_000  # inside the 256 kB tensor


def checkpoint(epoch: int) -> dict[str, Any]:
    """A checkpoint whose tensors tell which epoch wrote it (large enough to need many writes)."""
    import torch

    from tp3nets.engine import CHECKPOINT_FORMAT

    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model": {"weight": torch.full((64, 1024), float(epoch))},
    }


class _DieMidway:
    """A file object that lets KILL_AFTER_BYTES through, then SIGKILLs the process."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.written = 0

    def write(self, data: Any) -> int:
        room = KILL_AFTER_BYTES - self.written
        if len(data) < room:
            n: int = self.fh.write(data)
            self.written += n
            return n
        self.fh.write(bytes(memoryview(data).cast("B")[:room]))  # cut inside this write
        self.fh.flush()
        os.fsync(self.fh.fileno())  # the partial temporary file is really on disk
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: SIGKILL cannot be caught")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)

    def __enter__(self) -> _DieMidway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def main(target: Path) -> None:

    from tp3nets.engine import _checkpoint as ckpt_mod

    ckpt_mod.save_checkpoint(checkpoint(1), target)
    # The parent compares the file after the kill with these bytes.
    print(hashlib.sha256(target.read_bytes()).hexdigest(), flush=True)
    from tp3nets._io import _atomic

    def write_then_die(path: Path, data: Any) -> None:
        # save_checkpoint serialises in memory, then writes the temporary file through
        # _atomic.write_new_file: cut that write in the middle.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            _DieMidway(fh).write(data)

    _atomic.write_new_file = write_then_die  # type: ignore[assignment]
    ckpt_mod.save_checkpoint(checkpoint(2), target)
    raise SystemExit("the process should have been killed during the second save")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
