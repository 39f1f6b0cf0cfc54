"""The sample digits shipped inside the package (tp3nets.data.samples)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import tp3nets
from tp3nets.data import samples

REPO = Path(__file__).resolve().parent.parent


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_samples_are_inside_the_package() -> None:
    """The ten files live in the tp3nets package folder, not in the repository's examples."""
    package = Path(tp3nets.__file__).resolve().parent
    paths = samples.digit_paths()
    assert [p.name for p in paths] == [f"digit_{d}.png" for d in range(10)]
    for p in paths:
        assert p.is_file()
        assert p.resolve().is_relative_to(package / "data" / "samples" / "digits")


def test_package_copies_match_the_rendered_examples() -> None:
    """The packaged PNGs are byte for byte those examples/digits/make_digits.py rendered."""
    for d in range(10):
        assert _sha(samples.digit_path(d)) == _sha(REPO / "examples" / "digits" / f"digit_{d}.png")


@pytest.mark.parametrize("label", range(10))
def test_digit_is_the_image_of_its_file(label: int) -> None:
    """digit(d) is the decoded digit_<d>.png, read fully (its pixels, size and mode)."""
    from PIL import Image

    got = samples.digit(label)
    with Image.open(REPO / "examples" / "digits" / f"digit_{label}.png") as want:
        assert got.size == want.size
        assert got.mode == want.mode
        assert got.tobytes() == want.tobytes()
    assert getattr(got, "fp", None) is None  # a copy: no open file left behind


@pytest.mark.parametrize("bad", [-1, 10, 42])
def test_digit_out_of_range_says_what_is_expected(bad: int) -> None:
    """A label outside 0-9 is refused with the range and the value given."""
    with pytest.raises(ValueError, match=rf"0 to 9, got {bad}"):
        samples.digit(bad)
    with pytest.raises(ValueError, match=rf"0 to 9, got {bad}"):
        samples.digit_path(bad)


@pytest.mark.parametrize("bad", ["7", 7.0, True, None])
def test_digit_non_int_is_a_type_error(bad: object) -> None:
    """A label that is not an int (a str, a float, a bool) is a TypeError naming it."""
    with pytest.raises(TypeError, match="int from 0 to 9"):
        samples.digit(bad)  # type: ignore[arg-type]


def test_digits_lists_the_ten_images_in_order() -> None:
    """digits() equals [digit(0), ..., digit(9)]."""
    got = samples.digits()
    assert len(got) == 10
    for d, image in enumerate(got):
        assert image.tobytes() == samples.digit(d).tobytes()


def test_digit_batch_is_the_preprocessed_images_with_labels() -> None:
    """digit_batch() stacks MNISTPreprocess of each image; the labels are 0..9 (int64)."""
    x, y = samples.digit_batch()
    assert x.shape == (10, 1, 28, 28)
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert y.tolist() == list(range(10))
    preprocess = tp3nets.MNISTPreprocess()
    for d in range(10):
        torch.testing.assert_close(x[d], preprocess(samples.digit(d)), rtol=0, atol=0)


def test_digit_batch_takes_a_transform() -> None:
    """A given transform is applied to each image; one that returns no tensor is refused."""
    x, _ = samples.digit_batch(lambda im: torch.tensor([im.width, im.height]))
    assert x.tolist()[7] == list(samples.digit(7).size)
    with pytest.raises(TypeError, match="must return a tensor, got tuple for digit 0"):
        samples.digit_batch(lambda im: im.size)


@pytest.mark.parametrize("name", tp3nets.list_models())
def test_pretrained_models_read_the_samples(name: str) -> None:
    """The bundled weights read most of the samples, ConvNet4 all ten."""
    weights = tp3nets.get_model_weights(name).DEFAULT
    model = tp3nets.get_model(name, weights=weights)
    x, y = samples.digit_batch(weights.transforms())
    correct = int((tp3nets.predict(model, x).argmax(1) == y).sum())
    assert correct >= (10 if name == "convnet4" else 7), (name, correct)


def test_samples_live_in_data_and_the_old_path_warns() -> None:
    """tp3nets.data.samples is reachable after a bare ``import tp3nets``; 0.1's
    ``tp3nets.samples`` still works for one release, with a DeprecationWarning."""
    assert tp3nets.data.samples is samples
    assert "samples" not in tp3nets.__all__
    with pytest.warns(DeprecationWarning, match=r"tp3nets\.samples is a deprecated alias"):
        old = tp3nets.samples  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match=r"import it from tp3nets\.data\.samples"):
        assert old.digit_batch is samples.digit_batch


def _readme_block(heading: str, language: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_readme_quickstart_runs_from_any_folder(tmp_path: Path) -> None:
    """The README's Python quickstart, run in an empty folder, prints the digit it reads."""
    code = _readme_block("Quickstart", "python")
    assert "samples.digit(7)" in code
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7"


@pytest.mark.slow
def test_samples_work_from_the_built_wheel(tmp_path: Path) -> None:
    """A wheel built from the tree holds the ten PNGs; run from another folder, the
    installed copy (not the source tree) finds them and ConvNet4 reads all ten."""
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("tp3nets-*.whl")
    assert wheel.name.startswith(f"tp3nets-{tp3nets.__version__}-")  # version: _version.py
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for d in range(10):
        assert f"tp3nets/data/samples/digits/digit_{d}.png" in names
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:  # a pure-Python wheel installs by unpacking it
        zf.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import pathlib, tp3nets\n"
        "where = pathlib.Path(tp3nets.__file__).resolve()\n"
        f"assert where.is_relative_to(pathlib.Path({str(site)!r}).resolve()), where\n"
        "x, y = tp3nets.data.samples.digit_batch()\n"
        "model = tp3nets.convnet4(weights='DEFAULT')\n"
        "print(int((tp3nets.predict(model, x).argmax(1) == y).sum()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"
