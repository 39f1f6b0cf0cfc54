"""Every image mode Pillow opens is read as the picture it is, or refused in one line.

A sample digit (dark ink on light paper) is saved in each mode, in a format that keeps
the mode, then read through :func:`~tp3nets.data.open_image` and
:class:`~tp3nets.data.MNISTPreprocess`: the model input must be the gray picture's,
and ``tp3nets predict`` must read the same digit. Multi-frame files give their first
frame (or the one asked for); broken files are one line naming the file.

Each case records ``bad_input`` (category ``images``) for ``tests/_fault_report.py``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from _support import one_error_line
from tp3nets import cli
from tp3nets.data import ImageFileError, MNISTPreprocess, open_image, samples, standard_mode

Recorder = Callable[[str, object], None]
DIGIT = 3


def _gray() -> Image.Image:
    return Image.open(list(samples.digit_paths())[DIGIT]).convert("L")


def _arr() -> np.ndarray:
    return np.asarray(_gray(), dtype=np.float64)


def _from(arr: np.ndarray, mode: str) -> Image.Image:
    return Image.fromarray(arr, mode=mode) if mode in ("F", "I") else Image.fromarray(arr)


def _i16(byteorder: str) -> Image.Image:
    a = (_arr() * 257).astype(f"{byteorder}u2")
    h, w = a.shape
    return Image.frombytes("I;16B" if byteorder == ">" else "I;16", (w, h), a.tobytes())


def _palette_transparent() -> Image.Image:
    # Paper fully transparent (its palette index in tRNS), the ink opaque and dark.
    p = _gray().point(lambda v: 1 if v < 128 else 0).convert("P")
    p.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    p.info["transparency"] = 0
    return p


#: mode name → (the picture in that mode, the file format that keeps it).
MODES: dict[str, tuple[Callable[[], Image.Image], str]] = {
    "1": (lambda: _gray().convert("1", dither=Image.Dither.NONE), "PNG"),
    "L": (_gray, "PNG"),
    "LA": (lambda: _gray().convert("LA"), "PNG"),
    "La": (lambda: _gray().convert("LA").convert("La"), ""),
    "P": (lambda: _gray().convert("RGB").convert("P"), "PNG"),
    "P with transparency": (_palette_transparent, "PNG"),
    "PA": (lambda: _gray().convert("RGB").convert("P").convert("PA"), ""),
    "RGB": (lambda: _gray().convert("RGB"), "PNG"),
    "RGBA": (lambda: _gray().convert("RGBA"), "PNG"),
    "RGBa": (lambda: _gray().convert("RGBA").convert("RGBa"), ""),
    "RGBX": (lambda: _gray().convert("RGBX"), ""),
    "CMYK (TIFF)": (lambda: _gray().convert("RGB").convert("CMYK"), "TIFF"),
    "CMYK (JPEG)": (lambda: _gray().convert("RGB").convert("CMYK"), "JPEG"),
    "YCbCr": (lambda: _gray().convert("RGB").convert("YCbCr"), ""),
    "LAB": (lambda: _gray().convert("RGB").convert("LAB"), "TIFF"),
    "HSV": (lambda: _gray().convert("RGB").convert("HSV"), ""),
    "I (8-bit values)": (lambda: _gray().convert("I"), "TIFF"),
    "I (16-bit values)": (lambda: _from((_arr() * 257).astype(np.int32), "I"), "TIFF"),
    "I (negative values)": (lambda: _from((_arr() * 100 - 20000).astype(np.int32), "I"), "TIFF"),
    "I;16 (PNG)": (lambda: _i16("<"), "PNG"),
    "I;16 (TIFF)": (lambda: _i16("<"), "TIFF"),
    "I;16B": (lambda: _i16(">"), "TIFF"),
    "F in [0, 1]": (lambda: _from((_arr() / 255).astype(np.float32), "F"), "TIFF"),
    "F in [0, 255]": (lambda: _from(_arr().astype(np.float32), "F"), "TIFF"),
    "F in [-1, 1]": (lambda: _from((_arr() / 127.5 - 1).astype(np.float32), "F"), "TIFF"),
}


def _picture(name: str, tmp_path: Path) -> Any:
    make, fmt = MODES[name]
    img = make()
    if not fmt:  # a mode no format writes: given in memory
        return img
    path = tmp_path / f"digit.{fmt.lower()}"
    img.save(path, fmt)
    return path


def _model_input(item: Any) -> torch.Tensor:
    img = open_image(item) if isinstance(item, Path) else item
    return MNISTPreprocess()(img)


@pytest.mark.parametrize("name", sorted(MODES))
def test_every_mode_reads_as_the_gray_picture(
    name: str, tmp_path: Path, record_property: Recorder
) -> None:
    """In every mode the model sees the gray picture's input (a dark digit on light
    paper stays one; 16-bit and float values scaled by their depth, nothing clipped)."""
    record_property("bad_input", "images")
    reference = MNISTPreprocess()(_gray())
    x = _model_input(_picture(name, tmp_path))
    assert x.shape == reference.shape
    corr = float(torch.corrcoef(torch.stack([x.flatten(), reference.flatten()]))[0, 1])
    assert corr > 0.95, corr


@pytest.mark.parametrize("name", ["LAB", "CMYK (JPEG)", "I;16 (PNG)", "F in [0, 255]", "La"])
def test_a_standard_mode_keeps_dark_ink_dark(name: str) -> None:
    """standard_mode gives L, LA, RGB, RGBA or F in [0, 1], with the ink darker."""
    out = standard_mode(MODES[name][0]())
    assert out.mode in ("L", "LA", "RGB", "RGBA", "F")
    values = np.asarray(out.convert("F") if out.mode != "F" else out, dtype=np.float64)
    ink = _arr() < 100
    assert values[ink].mean() < values[~ink].mean()
    if out.mode == "F":
        assert 0.0 <= values.min() <= values.max() <= 1.0


def _frames(fmt: str, tmp_path: Path) -> Path:
    """A three-frame file whose first frame is the digit, the others blank."""
    # Two different blanks: GIF writers merge identical frames.
    rest = [Image.new("L", _gray().size, v) for v in (250, 255)]
    first = _gray()
    if fmt == "GIF":
        first, rest = first.convert("P"), [r.convert("P") for r in rest]
    path = tmp_path / f"anim.{fmt.lower()}"
    first.save(path, fmt, save_all=True, append_images=rest)
    return path


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF"])
def test_a_multi_frame_file_gives_its_first_frame(
    fmt: str, tmp_path: Path, record_property: Recorder
) -> None:
    """An animated GIF, an APNG, a multi-page TIFF: the first frame, unless ``frame``
    names another; a frame that is not there is one clear error."""
    record_property("bad_input", "images")
    path = _frames(fmt, tmp_path)
    first = open_image(path)
    assert np.asarray(first.convert("L")).min() < 100  # the digit's ink
    assert getattr(first, "n_frames", 1) == 1
    assert np.asarray(open_image(path, frame=2).convert("L")).min() >= 250  # blank
    with pytest.raises(ImageFileError, match=r"has 3 frames, so frame must be a whole "
                                             r"number from 0 to 2, got 3"):
        open_image(path, frame=3)


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["LAB", "CMYK (TIFF)", "I;16 (PNG)", "F in [0, 255]",
                                  "P with transparency", "1"])
def test_predict_reads_every_mode(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], record_property: Recorder
) -> None:
    """``tp3nets predict`` reads the digit in each mode as in gray, no traceback."""
    record_property("bad_input", "images")
    _gray().save(tmp_path / "gray.png")
    code, gray_out, _ = _run_cli(capsys, "predict", "convnet4", tmp_path / "gray.png")
    assert code == 0
    path = _picture(name, tmp_path)
    code, out, err = _run_cli(capsys, "predict", "convnet4", path)
    assert code == 0, err
    assert out.split(":", 1)[1] == gray_out.split(":", 1)[1], (out, gray_out)


def _bomb_png() -> bytes:
    """A small PNG of 10000 x 10000 pixels (past Pillow's 89 million)."""
    return _bytes_of(Image.new("1", (10_000, 10_000)), "PNG")


BROKEN: dict[str, tuple[Callable[[], bytes], str]] = {
    "a truncated PNG": (lambda: _bytes_of(_gray(), "PNG")[:200], "cannot read image"),
    "a truncated TIFF": (lambda: _bytes_of(_gray(), "TIFF")[:300], "cannot read image"),
    "a text file named .png": (lambda: b"hello, not an image\n", "not an image file"),
    "an empty file": (lambda: b"", "not an image file"),
    "a decompression bomb": (_bomb_png, "decompression bomb"),
}


def _bytes_of(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_image_is_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], record_property: Recorder
) -> None:
    """Truncated and corrupt files, non-images with image names, decompression bombs:
    ImageFileError in Python; one line naming the file, exit 1, from the CLI."""
    record_property("bad_input", "images")
    make, words = BROKEN[case]
    path = tmp_path / "digit.png"
    path.write_bytes(make())
    with pytest.raises(ImageFileError, match=words):
        open_image(path)
    code, _, err = _run_cli(capsys, "predict", "convnet4", path)
    assert code != 0
    one_error_line(err, str(path))
