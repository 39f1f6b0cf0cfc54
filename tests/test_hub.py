"""hubconf.py: torch.hub.load(repo, "convnet4", weights="DEFAULT", source="local")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tp3nets

REPO = Path(__file__).resolve().parent.parent


def _hubconf() -> dict[str, object]:
    import runpy

    return runpy.run_path(str(REPO / "hubconf.py"))


def test_hub_entry_points_are_the_four_builders() -> None:
    """The names torch.hub.list would show (public callables of hubconf.py) are every
    registered builder and the two weight look-ups, and they are the library's own."""
    namespace = _hubconf()
    entries = sorted(n for n, v in namespace.items() if callable(v) and not n.startswith("_"))
    assert entries == sorted([*tp3nets.list_models(), "get_model_weights", "get_weight"])
    for name in tp3nets.list_models():
        assert namespace[name] is tp3nets.get_model_builder(name)


@pytest.mark.parametrize("name", tp3nets.list_models())
def test_hub_load_default_weights_match_the_builder(name: str) -> None:
    """Each entry point with weights="DEFAULT" gives the bundled weights, tensor for tensor."""
    hub_model = torch.hub.load(str(REPO), name, weights="DEFAULT", source="local")
    want = tp3nets.get_model(name, weights="DEFAULT")
    assert type(hub_model).__name__ == type(want).__name__
    got_sd, want_sd = hub_model.state_dict(), want.state_dict()
    assert got_sd.keys() == want_sd.keys()
    for key in want_sd:
        torch.testing.assert_close(got_sd[key], want_sd[key], rtol=0, atol=0)


def test_hub_load_without_weights_is_untrained_and_takes_kwargs() -> None:
    """Keyword arguments reach the builder, as for torchvision's entry points."""
    model = torch.hub.load(str(REPO), "convnet2", num_classes=3, source="local")
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_hub_get_weight_resolves_names() -> None:
    """The weight look-up entry point resolves a full weights name."""
    get_weight = torch.hub.load(str(REPO), "get_weight", "ConvNet4_Weights.DEFAULT", source="local")
    assert get_weight is tp3nets.ConvNet4_Weights.MNIST_REAL_V8


def test_hubconf_declares_the_package_dependencies() -> None:
    """hubconf's dependencies are the import names of pyproject's [project] dependencies,
    each importable here (torch.hub checks them before loading)."""
    import importlib.util
    import re

    import tomllib

    import_names = {"pillow": "PIL", "typing-extensions": "typing_extensions"}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dists = [
        re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower()
        for d in pyproject["project"]["dependencies"]
    ]
    want = sorted(import_names.get(d, d) for d in dists)
    deps = _hubconf()["dependencies"]
    assert isinstance(deps, list)
    assert sorted(deps) == want
    for dep in deps:
        assert importlib.util.find_spec(dep) is not None, dep
