"""The package's layout holds: no import circle, modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import tp3nets

PACKAGE = Path(tp3nets.__file__).resolve().parent
# Generated modules exempt from the size rule: none, the weights records are JSON package
# data (tp3nets/weights/records/).
GENERATED: frozenset[str] = frozenset()
MAX_LINES = 700


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The tp3nets modules that ``path`` imports, anywhere in the file (function-local
    imports count: they would only hide a circle)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tp3nets"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("tp3nets"):
                continue
            names_only = True
            for alias in node.names:  # `from . import x` imports the submodule x
                sub = PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))
                if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                    found.add(f"{target}.{alias.name}")
                else:
                    names_only = False
            # `from . import x` inside a package needs only x: the package is the
            # importer's own, already being imported.
            if not names_only or not (node.level and name.startswith(target + ".")):
                found.add(target)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # An import of a package runs its __init__: an edge to it too.
        graph[name] = {m for m in _imports(path) if m in modules}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package's __init__ importing its own submodules
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if state.get(nxt) is None and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)) is not None:
            return found
    return None


def test_no_import_circle_in_the_package() -> None:
    """No module of tp3nets imports, directly or through others, a module that imports it
    back (function-local imports included): the engine's parts sit in layers."""
    graph = _graph()
    assert graph["tp3nets.engine.callbacks._base"] >= {"tp3nets.engine._state"}  # really read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    """The check above can fail: a made-up circle a -> b -> c -> a is found."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_callbacks_and_shared_types_never_import_the_engine() -> None:
    """History, metrics, FitState and the callbacks sit below the loop (fit,
    train_one_epoch, evaluate): none of them imports the engine's package, _training,
    _epoch or _inference."""
    graph = _graph()
    loop = {"tp3nets.engine", "tp3nets.engine._training", "tp3nets.engine._epoch",
            "tp3nets.engine._inference"}
    callbacks = {m for m in graph if m.startswith("tp3nets.engine.callbacks")}
    below = {"tp3nets.engine._history", "tp3nets.engine._metrics", "tp3nets.engine._state",
             "tp3nets.engine._checkpoint", "tp3nets.engine._precision", *callbacks}
    for module in sorted(below):
        assert not graph[module] & loop, (module, graph[module] & loop)
    assert not graph["tp3nets.engine._history"], graph["tp3nets.engine._history"]


def test_layers_of_the_package() -> None:
    """The subpackages sit in layers: data and the private helpers below the models,
    the models below deploy, deploy below the engine, and nothing below imports what
    sits above it."""
    graph = _graph()
    order = ["tp3nets._util", "tp3nets._io", "tp3nets.data", "tp3nets.weights",
             "tp3nets.models", "tp3nets.deploy", "tp3nets.engine",
             "tp3nets.calibration", "tp3nets.reading", "tp3nets.demo", "tp3nets.cli"]

    def layer(module: str) -> int | None:
        hits = [i for i, p in enumerate(order) if module == p or module.startswith(p + ".")]
        return hits[-1] if hits else None

    upward = sorted(
        (m, n) for m, targets in graph.items() for n in targets
        if layer(m) is not None and layer(n) is not None and layer(n) > layer(m)  # type: ignore[operator]
    )
    assert upward == []


def test_the_top_level_is_a_handful_of_named_parts() -> None:
    """src/tp3nets holds subpackages and a few modules, each named for what it holds."""
    top = sorted(p.name for p in PACKAGE.iterdir()
                 if p.name != "__pycache__" and (p.suffix == ".py" or p.is_dir()))
    assert top == [
        "__init__.py", "__main__.py", "_deprecated.py", "_io", "_util", "_version.py",
        "calibration.py", "cli", "data", "demo.py", "deploy", "engine", "models",
        "reading.py", "weights",
    ]


def test_only_the_shortcuts_module_reads_private_torch_optimizer_names() -> None:
    """The optimizer-step shortcuts that read torch's private names live in one module."""
    readers = sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
        if "torch.optim.optimizer" in p.read_text() or "_optimizer_step_code" in p.read_text()
    )
    assert readers == ["engine/_shortcuts.py"], readers


def test_modules_stay_readable() -> None:
    """No module of src/tp3nets is over 700 lines, generated records aside."""
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
        if str(p.relative_to(PACKAGE)) not in GENERATED
        and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long
