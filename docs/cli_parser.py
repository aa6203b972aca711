"""The parser the docs' CLI reference renders: `psa_finn.build.reference_parser` with its help texts escaped for
reStructuredText (sphinx-argparse parses them as such; on a terminal `*` and `|` are plain characters)."""

import argparse

from plain_docstrings import _escape

from psa_finn.build import reference_parser


def _escape_parser(parser: argparse.ArgumentParser, seen: set) -> None:
    if id(parser) in seen:
        return
    seen.add(id(parser))
    for attribute in ("description", "epilog"):
        if getattr(parser, attribute):
            setattr(parser, attribute, _escape(getattr(parser, attribute)))
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = _escape(action.help)
        for sub in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict) and isinstance(action.choices[sub], argparse.ArgumentParser):
                _escape_parser(action.choices[sub], seen)
        for choice in getattr(action, "_choices_actions", []):
            choice.help = _escape(choice.help) if choice.help else choice.help


def documented_parser() -> argparse.ArgumentParser:
    """reference_parser() with every help text, description and epilog escaped."""
    parser = reference_parser()
    _escape_parser(parser, set())
    return parser
