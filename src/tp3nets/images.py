"""Opening a user's image file: one clear error for every way it can go wrong.

:func:`open_image` is what ``tp3nets predict`` reads its images with; use it before
``weights.transforms()`` for files from outside (uploads, scans)::

    from tp3nets.images import open_image

    x = weights.transforms()(open_image("upload.png")).unsqueeze(0)
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

from ._files import NotRegularFileError, read_regular_file

__all__ = ["ImageFileError", "open_image"]

#: The largest image file read (bytes): far beyond any photo of a digit.
MAX_IMAGE_BYTES = 256 << 20


class ImageFileError(ValueError):
    """An image file that cannot be used: missing, not a regular file, not an image,
    truncated or corrupt, too large (a decompression bomb), or holding NaN/inf pixels."""


class _ImageNotFoundError(ImageFileError, FileNotFoundError):
    """A missing image: an :class:`ImageFileError` that is also a FileNotFoundError."""


def open_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Any:
    """Read an image file whole and return it as a loaded PIL image.

    The file is read once into memory (a FIFO is refused, never waited on); the image's
    size is checked from its header before any pixel is decoded; float images (TIFF mode
    ``F``) must hold finite values.

    Args:
        path: the image file.
        max_pixels: the most pixels accepted; default Pillow's ``Image.MAX_IMAGE_PIXELS``
            (about 89 million), past which Pillow itself only warns.

    Returns:
        A ``PIL.Image.Image``, loaded, not tied to the file.

    Raises:
        ImageFileError: the one error for every case, its message naming the file and
            what is wrong with it (it is also a ``FileNotFoundError`` when the file is
            missing).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as d:
        ...     Image.new("L", (30, 20)).save(f"{d}/x.png")
        ...     open_image(f"{d}/x.png").size
        (30, 20)
    """
    from PIL import Image, UnidentifiedImageError

    shown = repr(str(path))
    try:
        data = read_regular_file(path, "image", max_bytes=MAX_IMAGE_BYTES).data
    except FileNotFoundError as exc:
        if os.path.isdir(path):
            raise ImageFileError(f"{shown} is a directory, not an image file") from None
        raise _ImageNotFoundError(str(exc)) from None
    except PermissionError as exc:
        raise ImageFileError(f"cannot read image {shown}: {exc.strerror or exc}") from None
    except (NotRegularFileError, ValueError, OSError) as exc:
        raise ImageFileError(str(exc)) from None
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow warns past MAX_IMAGE_PIXELS and refuses past twice that: both refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if limit is not None and width * height > limit:
                raise ImageFileError(
                    f"image {shown} is {width}x{height} pixels ({width * height:,}), more "
                    f"than the {limit:,} accepted (a decompression bomb, or a far larger "
                    f"image than a digit needs)"
                )
            img.load()
    except ImageFileError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageFileError(
            f"image {shown} is refused as a decompression bomb: {_one_line(exc)}"
        ) from None
    except UnidentifiedImageError:
        raise ImageFileError(f"{shown} is not an image file that Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or corrupt files (Pillow raises OSError, sometimes SyntaxError).
        raise ImageFileError(f"cannot read image {shown}: {_one_line(exc)}") from None
    if img.mode == "F" or img.mode.startswith("F;"):
        _check_finite_pixels(img, shown)
    return img


def _check_finite_pixels(img: Any, shown: str) -> None:
    import numpy as np

    pixels = np.asarray(img.convert("F"), dtype=np.float32)
    bad = int((~np.isfinite(pixels)).sum())
    if bad:
        raise ImageFileError(
            f"image {shown} holds {bad:,} NaN or infinite pixel value"
            f"{'s' if bad != 1 else ''} (of {pixels.size:,}); images must hold finite values"
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
