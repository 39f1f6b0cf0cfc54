"""Sphinx directives that generate the tp3nets pages' figures from the code, at build time.

``.. tp3nets-models-table::``
    One row per bundled weight set: parameters, file size, MNIST test and validation
    accuracy (from each weights enum's ``meta``), evaluation throughput (from
    ``benchmarks/results/evaluate.json`` when it exists, else "n/a").
``.. tp3nets-weights-details::``
    One section per weight set: recipe command, hyperparameters, seed, torch version,
    training time and hardware, file and sha256, credits, all from ``meta``.
``.. tp3nets-benchmarks::``
    Every ``benchmarks/results/*.json`` as a table, with the machine it came from.
``.. markdown-include:: ../CHANGELOG.md``
    A Keep a Changelog file (headings, paragraphs, bullet lists, ``code``, links, bold)
    turned into document nodes, without a Markdown parser dependency.

At the end of reading, the extension also checks that every public name (``tp3nets.__all__``
and the ``__all__`` of the documented submodules) has an API entry, and warns (an error
under ``-W``) for any that does not.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import tp3nets_meta as meta_mod
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# node helpers


def _cell(content: str | nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    para = nodes.paragraph()
    para += content if isinstance(content, nodes.Node) else nodes.Text(content)
    entry += para
    return entry


def make_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str | nodes.Node]],
    *,
    classes: Sequence[str] = (),
) -> nodes.table:
    table = nodes.table(classes=["tp3nets-table", *classes])
    tgroup = nodes.tgroup(cols=len(header))
    table += tgroup
    for _ in header:
        tgroup += nodes.colspec(colwidth=1)
    thead = nodes.thead()
    tgroup += thead
    hrow = nodes.row()
    for h in header:
        hrow += _cell(h)
    thead += hrow
    tbody = nodes.tbody()
    tgroup += tbody
    for row in rows:
        r = nodes.row()
        for value in row:
            r += _cell(value)
        tbody += r
    return table


def py_ref(target: str, text: str, reftype: str = "class") -> addnodes.pending_xref:
    ref = addnodes.pending_xref(
        "", refdomain="py", reftype=reftype, reftarget=target, refexplicit=True,
        refwarn=True,
    )
    ref += nodes.literal(text=text)
    return ref


def _field_list(items: Iterable[tuple[str, str | nodes.Node]]) -> nodes.field_list:
    fl = nodes.field_list()
    for name, value in items:
        body = nodes.field_body()
        if isinstance(value, nodes.Element) and not isinstance(value, nodes.TextElement):
            body += value
        else:
            para = nodes.paragraph()
            para += value if isinstance(value, nodes.Node) else nodes.Text(value)
            body += para
        fl += nodes.field("", nodes.field_name(text=name), body)
    return fl


def _section(title: str, ident: str) -> nodes.section:
    section = nodes.section(ids=[nodes.make_id(ident)], names=[nodes.fully_normalize_name(ident)])
    section += nodes.title(text=title)
    return section


# --------------------------------------------------------------------------------------
# models


class ModelsTableDirective(SphinxDirective):
    """The models table, generated from the weights enums' meta.

    ``:columns:`` keeps some of its columns, by header, comma-separated (the home page's
    models at a glance).
    """

    option_spec = {"columns": directives.unchanged}  # noqa: RUF012 (docutils API)

    def run(self) -> list[nodes.Node]:
        self._note_sources()
        rows = meta_mod.weights_rows()
        cells = meta_mod.table_cells(rows)
        body = []
        for r, c in zip(rows, cells, strict=True):
            builder = py_ref(f"tp3nets.{r.model}", r.model, "func")
            weights = nodes.inline()
            weights += py_ref(f"tp3nets.{r.enum_name}", r.qualified)
            if r.is_default:
                weights += nodes.Text(" (DEFAULT)")
            body.append([builder, weights, *c[2:]])
        header = list(meta_mod.TABLE_HEADER)
        if "columns" in self.options:
            keep = [c.strip() for c in self.options["columns"].split(",")]
            unknown = [c for c in keep if c not in header]
            if unknown:
                raise self.error(f"unknown columns {unknown}; the columns are {header}")
            idx = [header.index(c) for c in keep]
            header = keep
            body = [[row[i] for i in idx] for row in body]
            classes = ["tp3nets-models", "tp3nets-models-glance"]
        else:
            classes = ["tp3nets-models"]
        table = make_table(header, body, classes=classes)
        out: list[nodes.Node] = [table]
        if "Eval throughput" not in header:
            return out
        notes = []
        if any(r.provisional for r in rows):
            notes.append(
                "Weight sets marked provisional are placeholders (random initialisations) "
                "shipped until their training run finishes; their accuracy is not measured."
            )
        source = meta_mod.throughput_source()
        if source:
            notes.append(source)
        else:
            notes.append(
                "Evaluation throughput: n/a, benchmarks/results/evaluate.json was not found "
                "when these pages were built (see Benchmarks)."
            )
        for text in notes:
            out.append(nodes.paragraph(text=text, classes=["tp3nets-note"]))
        return out

    def _note_sources(self) -> None:
        for path in meta_mod.record_files():
            self.env.note_dependency(str(path))
        if meta_mod.EVALUATE_JSON.is_file():
            self.env.note_dependency(str(meta_mod.EVALUATE_JSON))


_HIDDEN_RECIPE_KEYS = {"command", "seed", "torch_version", "hardware", "training_seconds",
                       "calibration"}


class WeightsDetailsDirective(SphinxDirective):
    """One section per weight set: how it was made, and what it scored."""

    def run(self) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for r in meta_mod.weights_rows():
            out.append(self._section(r))
        return out

    def _section(self, r: meta_mod.WeightsRow) -> nodes.section:
        label = f"weights-{r.enum_name.lower()}-{r.member.lower()}"
        section = nodes.section(ids=[label], names=[label])
        section += nodes.title(text=r.qualified)
        self.state.document.note_explicit_target(section)
        m = r.meta
        recipe = dict(m.get("recipe") or {})
        metrics = m.get("metrics") or {}
        intro = nodes.paragraph()
        intro += nodes.Text("Build with ")
        intro += nodes.literal(text=f'tp3nets.{r.model}(weights="{r.qualified}")')
        intro += nodes.Text(" or ")
        intro += nodes.literal(text=f"tp3nets.get_model({r.model!r}, weights={r.member!r})")
        intro += nodes.Text(". Preprocessing: ")
        intro += nodes.literal(text=f"{r.qualified}.transforms()")
        intro += nodes.Text(".")
        section += intro
        if r.provisional:
            section += nodes.paragraph(
                text="Provisional: this file is a random initialisation that stands in until "
                "its training run finishes; the figures below are placeholders."
            )
        command = str(recipe.get("command", meta_mod.NOT_AVAILABLE))
        shown = command if r.provisional else f"$ {command}"
        block = nodes.literal_block(shown, shown)
        block["language"] = "text" if r.provisional else "console"
        section += nodes.rubric(text="Recipe")
        section += block
        hyper: str | nodes.Node = meta_mod.NOT_AVAILABLE
        settings = [(k, v) for k, v in recipe.items() if k not in _HIDDEN_RECIPE_KEYS]
        if settings:
            hyper = nodes.bullet_list()
            for k, v in settings:
                para = nodes.paragraph()
                para += nodes.literal(text=str(k))
                para += nodes.Text(f": {v}")
                hyper += nodes.list_item("", para)
        mnist = metrics.get("MNIST") or {}
        items: list[tuple[str, str | nodes.Node]] = [
            ("Hyperparameters", hyper),
            ("Seed", str(recipe.get("seed", meta_mod.NOT_AVAILABLE))),
            ("torch version", str(recipe.get("torch_version", meta_mod.NOT_AVAILABLE))),
            ("Training time", meta_mod.fmt_seconds(recipe.get("training_seconds"))),
            ("Hardware", str(recipe.get("hardware", meta_mod.NOT_AVAILABLE))),
            ("MNIST test acc@1", meta_mod.fmt_acc(r.test_acc, r.provisional)),
            ("MNIST test loss", meta_mod.NOT_AVAILABLE if r.provisional
             else str(mnist.get("loss", meta_mod.NOT_AVAILABLE))),
            ("Validation acc@1", meta_mod.fmt_acc(r.val_acc, r.provisional)),
            ("Epochs recorded", str(len(m.get("history") or []))),
            ("Parameters", meta_mod.fmt_int(r.num_params)),
            ("File", f"{r.file} ({meta_mod.fmt_size(r.file_size)}), sha256 {r.sha256}"),
            ("Categories", ", ".join(map(str, m.get("categories", ()))) or meta_mod.NOT_AVAILABLE),
            ("Dataset", str(m.get("dataset_license") or m.get("dataset", "MNIST"))),
            ("Credit", f"architecture from the lab report {meta_mod.LAB_REPORT}"),
        ]
        tta = m.get("time_to_accuracy")
        if tta:
            seconds = ", ".join(meta_mod.fmt_seconds(t) for t in tta.get("seconds") or [])
            items.append((
                "Time to accuracy",
                f"from scratch to {tta.get('target_acc')} % MNIST test acc@1 in a median "
                f"{meta_mod.fmt_seconds(tta.get('median_seconds'))} over seeds "
                f"{tta.get('seeds')} ({seconds}) on {tta.get('hardware')}; "
                f"command: {tta.get('command')}" if tta.get("reached")
                else f"target {tta.get('target_acc')} % not reached by every seed",
            ))
        calibration = recipe.get("calibration")
        if calibration:
            items.append((
                "Calibration",
                f"temperature {calibration.get('temperature')} folded into the last layer, "
                f"fitted ({calibration.get('criterion')}) on the "
                f"{calibration.get('fitted_on')}; MNIST test ECE "
                f"{(calibration.get('MNIST_before') or {}).get('ece')} % as trained, "
                f"{mnist.get('ece')} % calibrated; command: {calibration.get('command')}",
            ))
        section += _field_list(items)
        return section


# --------------------------------------------------------------------------------------
# benchmarks


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return "" if value is None else str(value)


class BenchmarksDirective(SphinxDirective):
    """Results files (default ``benchmarks/results/*.json``) as measured, with their machine.

    The optional argument is a glob relative to the repository root.
    """

    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        pattern = self.arguments[0] if self.arguments else "benchmarks/results/*.json"
        files = sorted(meta_mod.REPO.glob(pattern))
        if not files:
            return [nodes.paragraph(
                text=f"No results ({pattern}) were found when these pages were built: run "
                "the measuring scripts and rebuild the docs to show them here.",
                classes=["tp3nets-note"],
            )]
        out: list[nodes.Node] = []
        for path in files:
            self.env.note_dependency(str(path))
            data = meta_mod.load_json(path)
            if data is None:
                logger.warning("tp3nets-benchmarks: %s is not valid JSON", path,
                               location=self.get_location())
                continue
            rel = path.relative_to(meta_mod.REPO).as_posix()
            section = _section(rel, f"results {rel}")
            machine = meta_mod.machine_of(data)
            section += nodes.paragraph(
                text=f"Machine: {machine}" if machine else "Machine: not recorded in the file."
            )
            records = meta_mod.benchmark_records(data)
            if records:
                columns: list[str] = []
                for rec in records:
                    for k, v in rec.items():
                        if _scalar(v) and k not in columns:
                            columns.append(k)
                rows = [[_fmt_value(rec.get(k)) for k in columns] for rec in records]
                section += make_table(columns, rows)
            if isinstance(data, dict):
                fields = [(k, _fmt_value(v)) for k, v in data.items() if _scalar(v)]
                for key in ("settings", "options", "config", "args"):
                    value = data.get(key)
                    if isinstance(value, dict):
                        fields.append((key, ", ".join(
                            f"{k}={_fmt_value(v)}" for k, v in value.items() if _scalar(v))))
                if fields:
                    section += _field_list(fields)
            out.append(section)
        return out


class TimeToAccuracyDirective(SphinxDirective):
    """``recipes/results/time_to_accuracy.json`` as one table: each model, its target,
    every seed's time and the median, with the settings and the machine."""

    def run(self) -> list[nodes.Node]:
        path = meta_mod.REPO / "recipes" / "results" / "time_to_accuracy.json"
        self.env.note_dependency(str(path))
        data = meta_mod.load_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            return [nodes.paragraph(
                text="No time-to-accuracy results were found when these pages were built: "
                "run python recipes/time_to_accuracy.py and rebuild the docs.",
                classes=["tp3nets-note"],
            )]
        header = ["model", "target (test acc@1)", "seconds per seed", "median", "settings"]
        rows = []
        for name, run in data["models"].items():
            per_seed = ", ".join(
                f"{r['seconds']:.0f} s (seed {r['seed']}, {r['evaluations'][-1]['acc']:.2f} %)"
                if r["reached"] else f"not reached (seed {r['seed']})" for r in run["runs"])
            median = run["median_seconds"]
            settings = run.get("settings", {})
            shown = ", ".join(f"{k}={_fmt_value(v) if _scalar(v) else v}"
                              for k, v in settings.items() if k != "target")
            rows.append([name, f"{run['target_acc']} %", per_seed,
                         f"{median:.0f} s" if median != float("inf") else "not reached",
                         shown])
        out: list[nodes.Node] = [make_table(header, rows)]
        fields = [("Fastest zoo model to 99 %", str(data.get("fastest_to_99"))),
                  ("Rule", str(data.get("rule", ""))),
                  ("Command", nodes.literal(text=str(data.get("command", "")))),
                  ("Machine", f"{data.get('hardware')}, torch {data.get('torch_version')}")]
        out.append(_field_list(fields))
        return out


# --------------------------------------------------------------------------------------
# Markdown (the changelog)

_INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\*\*(?P<bold>[^*]+)\*\*"
    r"|\[(?P<text>[^\]]+)\]\((?P<url>[^)\s]+)\)"
    r"|\[(?P<ref>[^\]]+)\]"
)


def inline_nodes(text: str, links: dict[str, str]) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    pos = 0
    for m in _INLINE.finditer(text):
        if m.start() > pos:
            out.append(nodes.Text(text[pos : m.start()]))
        if m.group("code") is not None:
            out.append(nodes.literal(text=m.group("code")))
        elif m.group("bold") is not None:
            out.append(nodes.strong(text=m.group("bold")))
        elif m.group("url") is not None:
            out.append(nodes.reference("", m.group("text"), refuri=m.group("url")))
        else:
            label = m.group("ref")
            url = links.get(label.lower())
            out.append(nodes.reference("", label, refuri=url) if url else nodes.Text(label))
        pos = m.end()
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


def markdown_nodes(source: str, id_prefix: str) -> list[nodes.Node]:
    """Keep-a-Changelog Markdown → nodes. The first ``#`` heading is dropped (the page has
    its own title); ``##`` and deeper become nested sections."""
    links: dict[str, str] = {}
    lines = []
    for line in source.splitlines():
        m = re.match(r"^\[([^\]]+)\]:\s*(\S+)\s*$", line)
        if m:
            links[m.group(1).lower()] = m.group(2)
        else:
            lines.append(line)
    root = nodes.container()
    stack: list[tuple[int, nodes.Element]] = [(1, root)]
    blocks: list[tuple[str, list[str]]] = []  # ("p"|"li"|"h<n>", lines)
    for line in lines:
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            blocks.append((f"h{len(heading.group(1))}", [heading.group(2)]))
        elif not stripped:
            blocks.append(("blank", []))
        elif re.match(r"^[-*+]\s+", stripped) and not line.startswith("  "):
            blocks.append(("li", [re.sub(r"^[-*+]\s+", "", stripped)]))
        elif blocks and blocks[-1][0] in ("li", "p"):
            blocks[-1][1].append(stripped)
        else:
            blocks.append(("p", [stripped]))
    counter = 0
    current_list: nodes.bullet_list | None = None
    for kind, text_lines in blocks:
        parent = stack[-1][1]
        if kind != "li":
            current_list = None
        if kind.startswith("h"):
            level = int(kind[1:])
            if level == 1:
                continue
            while len(stack) > 1 and stack[-1][0] >= level:
                stack.pop()
            counter += 1
            title = text_lines[0]
            section = nodes.section(ids=[nodes.make_id(f"{id_prefix}-{counter}-{title}")])
            title_node = nodes.title()
            title_node.extend(inline_nodes(title, links))
            section += title_node
            stack[-1][1].append(section)
            stack.append((level, section))
        elif kind == "li":
            if current_list is None:
                current_list = nodes.bullet_list(bullet="-")
                parent.append(current_list)
            para = nodes.paragraph()
            para.extend(inline_nodes(" ".join(text_lines), links))
            current_list += nodes.list_item("", para)
        elif kind == "p":
            para = nodes.paragraph()
            para.extend(inline_nodes(" ".join(text_lines), links))
            parent.append(para)
    return list(root.children)


class MarkdownIncludeDirective(SphinxDirective):
    """Include a (Keep a Changelog) Markdown file, converted to nodes."""

    required_arguments = 1
    option_spec = {"missing-ok": directives.flag}  # noqa: RUF012 (docutils API)

    def run(self) -> list[nodes.Node]:
        rel, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        file = Path(path)
        if not file.is_file():
            if "missing-ok" in self.options:
                return [nodes.paragraph(text=f"{self.arguments[0]} is not in this checkout.")]
            logger.warning("markdown-include: %s not found", path, location=self.get_location())
            return []
        self.env.note_dependency(rel)
        return markdown_nodes(file.read_text(encoding="utf-8"), nodes.make_id(file.stem))


# --------------------------------------------------------------------------------------
# API pages


def _reexported(module_name: str) -> list[str]:
    import tp3nets

    module = importlib.import_module(module_name)
    top = set(tp3nets.__all__)
    return [
        n for n in getattr(module, "__all__", [])
        if n in top and getattr(tp3nets, n) is getattr(module, n)
    ]


def _parse_rst(directive: SphinxDirective, text: str, source: str) -> list[nodes.Node]:
    from docutils.statemachine import StringList
    from sphinx.util.nodes import nested_parse_with_titles

    container = nodes.section()
    container.document = directive.state.document
    nested_parse_with_titles(directive.state, StringList(text.splitlines(), source=source),
                             container)
    return list(container.children)


def _reexports_paragraph(module_name: str) -> list[nodes.Node]:
    names = _reexported(module_name)
    if not names:
        return []
    para = nodes.paragraph()
    para += nodes.Text(f"Also listed in {module_name}'s __all__ (their home), and re-exported "
                       "by the top-level package, where they are documented: ")
    for i, name in enumerate(names):
        if i:
            para += nodes.Text(", ")
        para += py_ref(f"tp3nets.{name}", name, "obj")
    para += nodes.Text(".")
    return [para]


class ModuleDirective(SphinxDirective):
    """A submodule's page body: its docstring and every name of its ``__all__``.

    Names that the top-level package re-exports are listed with links instead of being
    documented twice. A module that this version does not have gets a one-line note.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            logger.info("tp3nets-module: %s is not in this version", name)
            return [nodes.paragraph(text=f"{name} is not part of this version of tp3nets.")]
        import inspect

        module = importlib.import_module(name)
        reexported = _reexported(name)
        # Constants and type aliases: autodata, with their values (automodule skips
        # module attributes that have no doc-comment).
        data = [
            n for n in getattr(module, "__all__", [])
            if n not in reexported and not n.startswith("__")
            and not (inspect.isclass(getattr(module, n)) or inspect.isroutine(getattr(module, n)))
        ]
        if getattr(module, "__file__", None):
            self.env.note_dependency(module.__file__)
        lines = [f".. automodule:: {name}", "   :members:", "   :undoc-members:"]
        if reexported or data:
            lines.append(f"   :exclude-members: {', '.join(reexported + data)}")
        lines.append("")
        for n in data:
            lines += [f".. autodata:: {name}.{n}", ""]
        body = _parse_rst(self, "\n".join(lines) + "\n", name)
        # The re-export note goes after the module docstring, before the members.
        return _reexports_paragraph(name) + body


class WeightsEnumDirective(SphinxDirective):
    """A ``*_Weights`` enum with its members, each described from its meta (the members'
    values, whole :class:`~tp3nets.Weights` records, are not dumped)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        qualified = self.arguments[0]
        enum_cls = _resolve(qualified)
        rows = {r.member: r for r in meta_mod.weights_rows() if r.enum_name == enum_cls.__name__}
        lines = [f".. autoclass:: {qualified}", ""]
        for name, member in enum_cls.__members__.items():
            lines += [f"   .. autoattribute:: {name}", "      :no-value:", ""]
            if name != member.name:
                lines.append(f"      Alias of :attr:`{member.name}`, the recommended weights.")
            else:
                r = rows[name]
                label = f"weights-{r.enum_name.lower()}-{r.member.lower()}"
                lines.append(
                    f"      Trained on MNIST; test acc@1 "
                    f"{meta_mod.fmt_acc(r.test_acc, r.provisional)}; "
                    f"{meta_mod.fmt_int(r.num_params)} parameters; file ``{r.file}`` "
                    f"({meta_mod.fmt_size(r.file_size)}). Recipe and figures: :ref:`{label}`."
                )
            lines.append("")
        return _parse_rst(self, "\n".join(lines), qualified)


# --------------------------------------------------------------------------------------
# API coverage


def _resolve(name: str) -> Any:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def check_api_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    modules: list[str] = app.config.tp3nets_api_modules
    if not modules:
        return
    objects = env.get_domain("py").objects
    documented: set[int] = set()
    names: set[str] = set(objects)
    for full in objects:
        try:
            documented.add(id(_resolve(full)))
        except Exception:
            continue
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a module not in this version (export, cli)
            raise
        for name in getattr(module, "__all__", []):
            if name.startswith("__"):
                continue
            full = f"{module_name}.{name}"
            if full in names:
                continue
            obj = getattr(module, name)
            if isinstance(obj, (str, int, float, tuple)) or id(obj) not in documented:
                logger.warning("API reference: %s is public (in __all__) but not documented",
                               full, type="tp3nets", subtype="api")


def drop_builtin_docstrings(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """A constant without a doc-comment shows its type's docstring ("str(object='') -> str",
    "Built-in immutable sequence."); show nothing instead."""
    import inspect

    if what not in ("data", "attribute") or not lines:
        return
    type_doc = inspect.getdoc(type(obj))
    if type_doc and lines[0].strip() == type_doc.splitlines()[0].strip():
        lines[:] = []


def skip_module_plumbing(
    app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Leave out ``forward``/``extra_repr``: calling the module is the documented API."""
    if what == "class" and name in ("forward", "extra_repr"):
        return True
    return None


def resolve_in_package(
    app: Sphinx, env: BuildEnvironment, node: addnodes.pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    """Resolve a docstring's short reference (``FitState``) from wherever it is shown.

    A docstring written in ``tp3nets.engine`` says ``:class:`FitState```; shown under its
    re-export ``tp3nets.fit``, Sphinx looks for ``tp3nets.FitState``. Try the public
    modules in turn before giving up.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    if target.startswith("tp3nets."):
        return None
    domain = env.get_domain("py")
    for module in app.config.tp3nets_api_modules:
        full = f"{module}.{target}"
        if full in domain.objects:  # type: ignore[attr-defined]
            new = node.deepcopy()
            new["reftarget"] = full
            return domain.resolve_xref(env, node.get("refdoc", ""), app.builder,
                                       node["reftype"], full, new, contnode)
    return None


#: API pages of tp3nets 0.1 that moved with the 0.2 layout: old page -> new page. Each old
#: address gets a page that sends the reader on, so links from elsewhere keep working.
MOVED_PAGES: dict[str, str] = {
    "api/training": "api/engine",
    "api/checkpoint": "api/engine",
    "api/ema": "api/callbacks",
    "api/augment": "api/data",
    "api/transforms": "api/data",
    "api/images": "api/data",
    "api/export": "api/deploy",
    "api/runtime": "api/deploy",
}


def write_redirects(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for old, new in MOVED_PAGES.items():
        target = out / f"{old}.html"
        if target.exists():
            continue
        rel = Path(new).name + ".html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"refresh\" content=\"0; url={rel}\">"
            f"<link rel=\"canonical\" href=\"{rel}\"><title>Moved</title></head>"
            f"<body><p>This page moved to <a href=\"{rel}\">{new}</a> in tp3nets 0.2."
            "</p></body></html>\n",
            encoding="utf-8",
        )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", write_redirects)
    app.connect("autodoc-skip-member", skip_module_plumbing)
    app.connect("missing-reference", resolve_in_package)
    app.connect("autodoc-process-docstring", drop_builtin_docstrings)
    app.add_config_value("tp3nets_api_modules", [], "env", types=frozenset({list}))
    app.add_directive("tp3nets-models-table", ModelsTableDirective)
    app.add_directive("tp3nets-weights-details", WeightsDetailsDirective)
    app.add_directive("tp3nets-benchmarks", BenchmarksDirective)
    app.add_directive("tp3nets-time-to-accuracy", TimeToAccuracyDirective)
    app.add_directive("markdown-include", MarkdownIncludeDirective)
    app.add_directive("tp3nets-module", ModuleDirective)
    app.add_directive("tp3nets-weights-enum", WeightsEnumDirective)
    app.connect("env-check-consistency", check_api_coverage)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
