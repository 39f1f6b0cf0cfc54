"""Reading user-given files safely: regular files only, once, into memory.

Every loader of a user's file (weights, checkpoints, images) goes through
:func:`read_regular_file`, which

- opens the path without blocking (``O_NONBLOCK``), so a FIFO never hangs the process,
  and checks what was opened (``fstat`` of the descriptor, not of the name), so a FIFO,
  a directory, a device or a socket is refused in those words rather than "not found";
- names a dangling symbolic link and a symbolic-link loop as such;
- reads the bytes once into memory, hashing them as they come, so that a digest checked
  and the bytes parsed are the same bytes (a file swapped between two opens cannot slip
  through), and nothing is memory-mapped (a file truncated while read gives an error, not
  SIGBUS);
- refuses a file larger than the caller's limit before reading it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "DigestError",
    "FileContents",
    "NotRegularFileError",
    "check_regular_file",
    "read_regular_file",
]

_CHUNK: Final = 1 << 20  # 1 MiB: the hash and the read go chunk by chunk


class NotRegularFileError(ValueError):
    """The path names something other than a regular file (a FIFO, a device, a socket,
    a symbolic-link loop)."""


class DigestError(ValueError):
    """A file's sha256 differs from the one expected."""

    def __init__(self, path: Path, digest: str, expected: str) -> None:
        super().__init__(
            f"{str(path)!r} is corrupt or was modified: its sha256 is {digest}, "
            f"expected {expected}"
        )
        self.path, self.digest, self.expected = path, digest, expected


@dataclass(frozen=True)
class FileContents:
    """The bytes of a file and their sha256 digest (lowercase hex)."""

    data: bytes
    sha256: str


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(path: Path, what: str, mode: int) -> None:
    kind = _kind(mode)
    if stat.S_ISDIR(mode):
        # FileNotFoundError as before, so callers that catch it keep working.
        raise FileNotFoundError(f"{what} {str(path)!r} is a directory, not a file")
    raise NotRegularFileError(
        f"{what} {str(path)!r} is {kind}, not a regular file; give the path of a file"
    )


def _missing(path: Path, what: str, exc: OSError) -> BaseException:
    if exc.errno == errno.ELOOP:
        return NotRegularFileError(
            f"{what} {str(path)!r} is a symbolic-link loop (too many levels of symbolic "
            f"links), not a file"
        )
    if exc.errno == errno.ENOENT and path.is_symlink():
        return FileNotFoundError(
            f"{what} {str(path)!r} is a broken symbolic link (to {os.readlink(path)!r})"
        )
    if exc.errno == errno.ENOENT:
        return FileNotFoundError(f"{what} not found: {str(path)!r}")
    if exc.errno == errno.ENOTDIR:
        return NotADirectoryError(
            f"{what} {str(path)!r}: a part of that path is a file, not a folder"
        )
    if exc.errno == errno.EACCES or isinstance(exc, PermissionError):
        return PermissionError(
            exc.errno, f"{what} {str(path)!r} cannot be read: {exc.strerror or 'Permission denied'}"
        )
    return exc


def check_regular_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` if it names a regular file.

    Raises:
        FileNotFoundError: no such file, a dangling symbolic link, or a directory.
        NotRegularFileError: a FIFO, device, socket or symbolic-link loop.
        PermissionError: the file cannot be read.

    Example:
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     os.mkfifo(f"{d}/pipe")
        ...     check_regular_file(f"{d}/pipe", "weights file")
        Traceback (most recent call last):
        ...
        tp3nets._io._files.NotRegularFileError: weights file '.../pipe' is a FIFO (named pipe), ...
    """
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise _missing(p, what, exc) from None
    if not stat.S_ISREG(st.st_mode):
        _refuse(p, what, st.st_mode)
    return p


def read_regular_file(
    path: str | os.PathLike[str],
    what: str = "file",
    *,
    max_bytes: int | None = None,
    too_big: str = "",
    sha256: str | None = None,
) -> FileContents:
    """Read a regular file whole, once, and hash what was read.

    Args:
        path: the file.
        what: how messages name it (``"weights file"``).
        max_bytes: refuse a larger file before reading any of it.
        too_big: the explanation added to that refusal.
        sha256: the expected digest: checked in a first pass in chunks (memory stays
            bounded when it differs), then again on the bytes returned.

    Raises:
        FileNotFoundError, NotRegularFileError, PermissionError: see
            :func:`check_regular_file`.
        DigestError: the file's sha256 is not ``sha256``.
        ValueError: the file is larger than ``max_bytes``, or changed while read.

    Example:
        >>> import hashlib, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = open(f"{d}/x.bin", "wb").write(b"abc")
        ...     got = read_regular_file(f"{d}/x.bin")
        >>> got.data, got.sha256 == hashlib.sha256(b"abc").hexdigest()
        (b'abc', True)
    """
    p = Path(path).expanduser()
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        if exc.errno in (errno.EISDIR,):
            raise FileNotFoundError(f"{what} {str(p)!r} is a directory, not a file") from None
        if exc.errno == errno.ENXIO:  # a FIFO or socket with no writer/reader on the other end
            raise NotRegularFileError(
                f"{what} {str(p)!r} is a FIFO or socket, not a regular file; give the path "
                f"of a file"
            ) from None
        raise _missing(p, what, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _refuse(p, what, st.st_mode)
        size = st.st_size
        if max_bytes is not None and size > max_bytes:
            raise ValueError(
                f"{what} {str(p)!r} is {size:,} bytes, more than the {max_bytes:,} expected"
                + (f" {too_big}" if too_big else "")
            )
        if sha256 is not None:
            # A first pass in chunks: a file that is not the one expected is refused with
            # bounded memory, however large it is.
            first = hashlib.sha256()
            while chunk := os.read(fd, _CHUNK):
                first.update(chunk)
            if first.hexdigest() != sha256.lower():
                raise DigestError(p, first.hexdigest(), sha256)
            os.lseek(fd, 0, os.SEEK_SET)
        # One read of the announced size (a single allocation), then whatever follows.
        parts = [os.read(fd, size)] if size else []
        total = len(parts[0]) if parts else 0
        while chunk := os.read(fd, _CHUNK):
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise ValueError(
                    f"{what} {str(p)!r} grew past {max_bytes:,} bytes while being read"
                )
            parts.append(chunk)
        if total != size:
            raise ValueError(
                f"{what} {str(p)!r} changed while being read ({size:,} bytes when opened, "
                f"{total:,} read); read it again once it is no longer being written"
            )
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ValueError(
                f"{what} {str(p)!r} changed while being read (its sha256 matched, then the "
                f"bytes read differ); read it again once it is no longer being written"
            )
    finally:
        os.close(fd)
    return FileContents(data, digest)

