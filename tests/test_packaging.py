"""Packaging and release: one version, honest metadata, a publish workflow, honest install docs."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

import tp3nets

REPO = Path(__file__).resolve().parent.parent


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_has_one_source() -> None:
    """The version is dynamic, read by hatch from _version.py, and the installed metadata,
    tp3nets.__version__ and that file agree."""
    project = _pyproject()
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/tp3nets/_version.py"
    text = (REPO / "src" / "tp3nets" / "_version.py").read_text(encoding="utf-8")
    (in_file,) = re.findall(r'__version__ = "([^"]+)"', text)
    assert tp3nets.__version__ == in_file == importlib.metadata.version("tp3nets")


def test_project_urls_name_home_source_and_issues() -> None:
    """Homepage, Source and Issues are among the project URLs, as https links."""
    urls = _pyproject()["project"]["urls"]
    for key in ("Homepage", "Source", "Issues", "Documentation", "Changelog"):
        assert urls[key].startswith("https://"), key
    assert urls["Issues"].startswith(urls["Source"])


def test_python_classifiers_are_the_versions_ci_runs() -> None:
    """Each 'Python :: 3.X' classifier is a version the publish workflow and CI use."""
    classifiers = _pyproject()["project"]["classifiers"]
    claimed = {
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    workflow = (REPO / ".github" / "workflows" / "publish.yml").read_text(encoding="utf-8")
    tested = set(re.findall(r'python-version: "(3\.\d+)"', workflow))
    assert claimed
    assert claimed == tested


def test_publish_workflow_uses_trusted_publishing() -> None:
    """The workflow builds, runs twine check and uploads with PyPI's action under an OIDC
    token (id-token: write), without any stored password."""
    text = (REPO / ".github" / "workflows" / "publish.yml").read_text(encoding="utf-8")
    assert "python -m build" in text
    assert "twine check --strict dist/*" in text
    assert "pypa/gh-action-pypi-publish@release/v1" in text
    assert "id-token: write" in text
    assert "password" not in text
    assert "secrets." not in text


def test_twine_is_in_the_extra_ci_installs() -> None:
    """.ci/run runs twine check, so the [test] extra it installs provides twine."""
    assert any(
        d.startswith("twine") for d in _pyproject()["project"]["optional-dependencies"]["test"]
    )
    assert "twine check --strict dist/*" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def _install_section(text: str, marker: str) -> str:
    return text.split(marker, 1)[1].split("\n## " if marker.startswith("##") else "\nPredict", 1)[0]


def test_install_docs_do_not_pretend_the_package_is_on_pypi() -> None:
    """Before the first release the README and Getting started install from a clone or a
    wheel, and say how to get the CPU-only torch wheels first."""
    cpu = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    readme = _install_section((REPO / "README.md").read_text(encoding="utf-8"), "## Install")
    guide = _install_section(
        (REPO / "docs" / "getting_started.rst").read_text(encoding="utf-8"), "Install\n-------"
    )
    for text in (readme, guide):
        assert "not on PyPI yet" in text
        assert cpu in text
        assert "pip install ." in text
        assert "python -m build" in text
        first_install = next(line for line in text.splitlines() if "pip install" in line)
        assert "pip install tp3nets" not in first_install


def test_getting_started_leaves_the_repository_layout_to_contributing() -> None:
    """Getting started speaks to pip users: the repository's ../shared/datasets default is
    on the contributing page."""
    guide = (REPO / "docs" / "getting_started.rst").read_text(encoding="utf-8")
    contributing = (REPO / "docs" / "contributing.rst").read_text(encoding="utf-8")
    assert "shared/datasets" not in guide
    assert "../shared/datasets" in contributing
    index = (REPO / "docs" / "index.rst").read_text(encoding="utf-8")
    for page in ("contributing", "release"):
        assert re.search(rf"^   {page}$", index, re.M), page
