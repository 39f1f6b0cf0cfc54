"""Opening a user's image file: one clear error for every way it can go wrong.

:func:`open_image` is what ``tp3nets predict`` reads its images with; use it before
``weights.transforms()`` for files from outside (uploads, scans)::

    from tp3nets.data import open_image

    x = weights.transforms()(open_image("upload.png")).unsqueeze(0)
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Final

from .._io._files import NotRegularFileError, read_regular_file

__all__ = ["ImageFileError", "open_image", "standard_mode"]

#: The largest image file read (bytes): far beyond any photo of a digit.
MAX_IMAGE_BYTES = 256 << 20


class ImageFileError(ValueError):
    """An image file that cannot be used: missing, not a regular file, not an image,
    truncated or corrupt, too large (a decompression bomb), or holding NaN/inf pixels."""


class _ImageNotFoundError(ImageFileError, FileNotFoundError):
    """A missing image: an :class:`ImageFileError` that is also a FileNotFoundError."""


def open_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = None, frame: int = 0
) -> Any:
    """Read an image file whole and return it as a loaded PIL image.

    The file is read once into memory (a FIFO is refused, never waited on); the image's
    size is checked from its header before any pixel is decoded; float images (TIFF mode
    ``F``) must hold finite values; the image's mode must be one :func:`standard_mode`
    reads (every mode Pillow opens is). A file of several frames (an animated GIF or
    PNG, a multi-page TIFF) gives one picture: its first frame, or the one ``frame``
    names.

    Args:
        path: the image file.
        max_pixels: the most pixels accepted; default Pillow's ``Image.MAX_IMAGE_PIXELS``
            (about 89 million), past which Pillow itself only warns.
        frame: which frame of a multi-frame file, from 0.

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
            img: Any = Image.open(io.BytesIO(data))
            width, height = img.size
            if limit is not None and width * height > limit:
                raise ImageFileError(
                    f"image {shown} is {width}x{height} pixels ({width * height:,}), more "
                    f"than the {limit:,} accepted (a decompression bomb, or a far larger "
                    f"image than a digit needs)"
                )
            if width == 0 or height == 0:
                raise ImageFileError(f"image {shown} is {width}x{height}: it has no pixels")
            _seek(img, frame, shown)
            img.load()
            if getattr(img, "n_frames", 1) > 1:
                img = img.copy()  # the frame alone, not tied to the file's others
            standard_mode(img.crop((0, 0, 1, 1)))  # refuses a mode it cannot read, cheaply
    except ImageFileError as exc:
        if shown not in str(exc):
            raise ImageFileError(f"image {shown}: {exc}") from None
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


def _seek(img: Any, frame: int, shown: str) -> None:
    frames = int(getattr(img, "n_frames", 1))
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < frames:
        raise ImageFileError(
            f"image {shown} has {frames} frame{'s' if frames != 1 else ''}, so frame must "
            f"be a whole number from 0 to {frames - 1}, got {frame!r}"
        )
    if frames > 1:
        img.seek(frame)


#: Pillow modes read as they are (after an alpha or palette conversion, as gray or RGB).
_GRAY: Final = frozenset({"1", "L", "LA", "La"})
_ALPHA: Final = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def standard_mode(img: Any) -> Any:
    """``img`` in one of the modes tp3nets reads: ``L``, ``LA``, ``RGB``, ``RGBA``, or
    ``F`` holding values in [0, 1]. Every mode Pillow opens has its rule:

    * ``1``, ``L``, ``P`` with a gray palette → ``L``; with transparency (``LA``,
      ``La``, a palette's transparent index) → ``LA``.
    * ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``, ``HSV``, colour ``P`` → ``RGB``; with
      transparency (``RGBA``, ``RGBa``, ``PA``, a ``tRNS`` chunk) → ``RGBA``.
    * ``LAB`` → its ``L`` (lightness) channel: dark ink on light paper stays so.
    * ``I;16`` and its variants (``I;16B``, ``I;16L``, ``I;16N``) → ``F``, divided by
      65535; ``I`` and ``F`` → ``F``, divided by the smallest of 1 (``F`` only), 255 and
      65535 that holds the largest value (else by that value), or stretched from their
      smallest to their largest value where some are negative. Nothing is clipped.

    Raises:
        ImageFileError: a mode Pillow cannot convert (a ``ValueError``), naming it.

    Example:
        >>> from PIL import Image
        >>> standard_mode(Image.new("LAB", (2, 2), (30, 0, 0))).getpixel((0, 0))
        30
        >>> standard_mode(Image.new("I;16", (2, 2), 32768)).getpixel((0, 0))
        0.500007...
    """
    mode = img.mode
    if mode == "LAB":
        return img.getchannel("L")
    if mode in ("I", "F") or mode.startswith(("I;", "F;")):
        return _scaled(img)
    transparent = mode in _ALPHA or "transparency" in img.info
    gray = mode in _GRAY or (
        mode in ("P", "PA") and img.palette is not None and img.palette.mode == "L")
    target = ("LA" if gray else "RGBA") if transparent else ("L" if gray else "RGB")
    if mode == target:
        return img
    try:
        return img.convert(target)
    except ValueError:
        raise ImageFileError(
            f"image mode {mode!r} is not one tp3nets reads (Pillow cannot convert it to "
            f"{target}); save the image as 8-bit gray or RGB"
        ) from None


def _scaled(img: Any) -> Any:
    """An integer or float image as ``F`` in [0, 1], by its bit depth or its range."""
    import numpy as np
    from PIL import Image

    x = np.asarray(img.convert("F"), dtype=np.float32)
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)):
        return img.convert("F")  # NaN/inf: refused by the caller's finiteness check
    if low < 0:
        x = (x - low) / (high - low) if high > low else np.zeros_like(x)
    else:
        tops = [65535.0] if img.mode.startswith("I;16") else (
            [1.0, 255.0, 65535.0] if img.mode.startswith("F") else [255.0, 65535.0])
        x = x / next((t for t in tops if high <= t), high)
    return Image.fromarray(x.astype(np.float32), mode="F")


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
