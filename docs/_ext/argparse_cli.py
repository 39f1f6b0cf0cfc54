"""Document an argparse command line from its parser, at build time.

Usage in a page::

    .. argparse-cli:: tp3nets.cli:build_parser
       :prog: tp3nets

The directive imports the function, calls it to get the
:class:`argparse.ArgumentParser`, and emits one section per parser: the command itself,
then each subcommand (recursively), each with its one-line help and the full ``--help``
text as a literal block, exactly as the terminal shows it. Nothing is written by hand, so
the page cannot drift from the code.

If the module does not exist (a checkout that predates it) the directive says so in the
page and logs an informational message, instead of failing the build; any other error
(the module exists but fails to import, the function is missing) is a warning, hence an
error under ``-W``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

HELP_WIDTH = 88


@contextmanager
def _help_environment(prog: str | None) -> Iterator[None]:
    """A fixed help width and, while the parser is built, ``sys.argv[0] = prog``."""
    saved_columns = os.environ.get("COLUMNS")
    saved_argv = sys.argv[:]
    os.environ["COLUMNS"] = str(HELP_WIDTH)
    if prog:
        sys.argv[:1] = [prog]
    try:
        yield
    finally:
        sys.argv[:] = saved_argv
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, parser)`` of each subcommand, in definition order."""
    found: list[tuple[str, str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: (a.help or "") for a in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias of a subcommand already listed
                continue
            seen.add(id(sub))
            found.append((name, helps.get(name, ""), sub))
    return found


def load_parser(spec: str, prog: str | None = None) -> argparse.ArgumentParser:
    """Import ``module:function`` and call the function for the parser."""
    module_name, _, func_name = spec.partition(":")
    if not func_name:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    with _help_environment(prog):
        module = importlib.import_module(module_name)
        parser = getattr(module, func_name)()
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"{spec} returned {type(parser).__name__}, not an ArgumentParser")
    if prog:
        parser.prog = prog
    return parser


def format_help(parser: argparse.ArgumentParser) -> str:
    with _help_environment(None):
        return parser.format_help().rstrip()


class ArgparseCliDirective(SphinxDirective):
    required_arguments = 1
    option_spec = {"prog": directives.unchanged}  # noqa: RUF012 (docutils API)

    def run(self) -> list[nodes.Node]:
        spec = self.arguments[0]
        prog = self.options.get("prog")
        module_name = spec.partition(":")[0]
        try:
            parser = load_parser(spec, prog)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            logger.info("argparse-cli: %s does not exist yet; the page says so", module_name)
            para = nodes.paragraph(
                text=f"The command line ({module_name}) is not part of this version."
            )
            return [para]
        except Exception as exc:
            logger.warning("argparse-cli: cannot load %s: %s", spec, exc,
                           location=self.get_location())
            return []
        # Rebuilt when the parser's module changes.
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, "__file__", None):
            self.env.note_dependency(module.__file__)
        return list(self._sections(parser, [parser.prog]))

    def _sections(
        self, parser: argparse.ArgumentParser, path: list[str], summary: str = ""
    ) -> Iterator[nodes.Node]:
        title = " ".join(path)
        section = nodes.section(ids=[nodes.make_id("cli " + title)], names=[title])
        section += nodes.title(text=title)
        if summary:
            section += nodes.paragraph(text=summary)
        help_text = format_help(parser)
        block = nodes.literal_block(help_text, help_text)
        block["language"] = "text"
        section += block
        subs = _subcommands(parser)
        if subs:
            items = nodes.bullet_list()
            for name, help_line, _ in subs:
                ref = nodes.reference(
                    "", "", nodes.literal(text=" ".join([*path, name])),
                    refid=nodes.make_id("cli " + " ".join([*path, name])),
                )
                para = nodes.paragraph()
                para += ref
                if help_line:
                    para += nodes.Text(f": {help_line}")
                items += nodes.list_item("", para)
            section += items
        yield section
        for name, help_line, sub in subs:
            yield from self._sections(sub, [*path, name], help_line)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("argparse-cli", ArgparseCliDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
