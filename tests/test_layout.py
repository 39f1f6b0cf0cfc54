"""The package's layout holds: no import circle, modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import tp3nets

PACKAGE = Path(tp3nets.__file__).resolve().parent
GENERATED = {"weights/_records.py", "weights/_quantized_records.py"}
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
            found.add(target)
            for alias in node.names:  # `from . import x` imports the submodule x
                if (PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))).with_suffix(
                    ".py"
                ).is_file():
                    found.add(f"{target}.{alias.name}")
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
    assert graph["tp3nets.callbacks"] >= {"tp3nets.state"}  # the graph is really read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    """The check above can fail: a made-up circle a -> b -> c -> a is found."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_callbacks_and_shared_types_never_import_the_engine() -> None:
    """History, metrics, FitState and the callbacks sit below the engine (fit,
    train_one_epoch, evaluate): none of them imports tp3nets.training, .epoch or
    .inference."""
    graph = _graph()
    engine = {"tp3nets.training", "tp3nets.epoch", "tp3nets.inference"}
    for below in ("tp3nets.history", "tp3nets.metrics", "tp3nets.state",
                  "tp3nets.callbacks", "tp3nets.checkpoint", "tp3nets.precision"):
        assert not graph[below] & engine, (below, graph[below] & engine)
    assert not graph["tp3nets.history"], graph["tp3nets.history"]


def test_only_the_shortcuts_module_reads_private_torch_optimizer_names() -> None:
    """The optimizer-step shortcuts that read torch's private names live in one module."""
    readers = sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
        if "torch.optim.optimizer" in p.read_text() or "_optimizer_step_code" in p.read_text()
    )
    assert readers == ["_shortcuts.py"], readers


def test_modules_stay_readable() -> None:
    """No module of src/tp3nets is over 700 lines, generated records aside."""
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
        if str(p.relative_to(PACKAGE)) not in GENERATED
        and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long
