"""Atomic file writes: a temporary file in the same folder, fsync, rename.

A process killed while writing, or a disk that fills up, leaves the previous file at the
target whole and no partial file under the target's name. Temporary files are named
``.<target name>.<pid>-<token>.tmp<suffix>``; the temporary files of earlier writes of the
same target whose process is gone (a killed save) are removed at the next successful
write, so they do not pile up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = ["atomic_path", "clean_stale_temporaries", "write_atomically", "write_new_file"]

#: A temporary file without a process id (written by tp3nets <= 0.2) counts as stale
#: once this old: a save takes seconds.
_LEGACY_STALE_S: Final = 600.0
#: Any temporary file this old is stale, whatever its process id says (ids are reused).
_STALE_S: Final = 86_400.0
_CHUNK: Final = 1 << 20


def _temporary_name(target: Path) -> Path:
    return target.with_name(
        f".{target.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp{target.suffix}"
    )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process: alive
        return True
    return True


def _is_stale(name: str, target: Path, now: float, mtime: float) -> bool:
    """Whether ``name`` (in the target's folder) is an abandoned temporary of ``target``."""
    head = f".{target.name}."
    if not name.startswith(head):
        return False
    rest = name[len(head) :]
    age = now - mtime
    tag, sep, _suffix = rest.partition(".tmp")
    if not sep:
        return False
    pid_text, dash, token = tag.partition("-")
    if dash and pid_text.isdigit() and token and all(c in "0123456789abcdef" for c in token):
        return age > _STALE_S or not _alive(int(pid_text))
    if not dash and len(tag) == 12 and all(c in "0123456789abcdef" for c in tag):
        return age > _LEGACY_STALE_S  # ``.<name>.<12 hex>.tmp`` of older versions
    return False


def clean_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the abandoned temporary files of earlier writes of ``target``.

    Only files named as :func:`atomic_path` names them (or as tp3nets <= 0.2 did) are
    touched: one whose writing process is gone, or older than a day.

    Returns:
        The files removed.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     stale = Path(d, ".ck.pt.999999999-0123456789ab.tmp.pt")
        ...     _ = stale.write_bytes(b"half a checkpoint")
        ...     [p.name for p in clean_stale_temporaries(Path(d, "ck.pt"))]
        ['.ck.pt.999999999-0123456789ab.tmp.pt']
    """
    path = Path(target)
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if _is_stale(entry.name, path, now, entry.stat(follow_symlinks=False).st_mtime):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _explained(exc: OSError, target: Path) -> OSError:
    """``exc`` with a message that names the target and says the old file is kept."""
    if exc.errno == errno.ENOSPC:
        why = "No space left on device"
    elif exc.errno == errno.EDQUOT:
        why = "Disk quota exceeded"
    else:
        why = exc.strerror or str(exc)
    kept = "the previous file there is kept" if target.exists() else "nothing was written"
    return OSError(exc.errno, f"cannot write {str(target)!r}: {why}; {kept}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Give a temporary path beside ``target``; on success, move it onto ``target``.

    The body writes the temporary file (a library that wants a path, such as an
    exporter); it is then fsynced and renamed over ``target``, and earlier abandoned
    temporaries of the same target are removed. If the body raises, the temporary file is
    removed and ``target`` is left as it was. An ``OSError`` (a full disk) comes out with a
    message naming the target.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with atomic_path(f"{d}/out.txt") as tmp:
        ...         _ = tmp.write_text("done")
        ...     Path(d, "out.txt").read_text(), sorted(p.name for p in Path(d).iterdir())
        ('done', ['out.txt'])
    """
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _explained(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    clean_stale_temporaries(path)


def write_atomically(data: bytes | bytearray | memoryview, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename.

    A process killed while writing, or a full disk, leaves the previous file whole; the
    abandoned temporaries of earlier killed writes of ``path`` are removed. The file gets
    the mode ``open()`` would give it (the umask applies).

    Raises:
        OSError: the write failed (``errno`` kept: ``ENOSPC`` for a full disk); the message
            names ``path`` and says the previous file is kept.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_atomically(b"abc", f"{d}/x.bin").read_bytes()
        b'abc'
    """
    target = Path(path)
    with atomic_path(target) as tmp:
        write_new_file(tmp, data)
    return target


def write_new_file(path: Path, data: bytes | bytearray | memoryview) -> None:
    """Create ``path`` (it must not exist) holding ``data``, written and fsynced."""
    view = memoryview(data).cast("B")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done : done + _CHUNK])
        os.fsync(fd)
    finally:
        os.close(fd)
