"""A Sphinx extension that renders psa-finn's plain-text docstrings as reStructuredText, after napoleon.

The docstrings are written for `help()` and the source reader: `code` in single backquotes, formulas and aligned
tables indented under the sentence that introduces them, lists starting right after a sentence, `*` and `|` as
arithmetic. Read as reStructuredText that is a stream of warnings (unexpected indentation, emphasis without end,
undefined substitutions), so each docstring is rewritten before Sphinx parses it:
- `name` becomes ``name`` (inline code; its content is not parsed further);
- outside inline code, `*`, `|`, a word-final `_` and a lone backquote (code that runs over a line end) are escaped
  (arithmetic, not emphasis, substitutions, links or unclosed interpreted text);
- a block indented deeper than the text before it becomes a literal block (preceded by a bare `::` paragraph, which
  renders as nothing), closed by a blank line; a list gets the blank lines around it that reStructuredText needs.
Field lists (napoleon's `:param x:` output) and directive lines are left as they are.
"""

import re

INLINE_CODE = re.compile(r"(?<![`\\])`([^`\n]+)`(?!`)")
SPECIAL = re.compile(r"(\*|\||`|(?<=\w)_(?=\W|$))")
BULLET = re.compile(r"^\s*(?:[-*+] |\d+\. )")


def _escape(text: str) -> str:
    """`text` with inline code doubled and the specials escaped outside it."""
    pieces, last = [], 0
    for match in INLINE_CODE.finditer(text):
        pieces.append(SPECIAL.sub(r"\\\1", text[last:match.start()]))
        pieces.append(f"``{match.group(1)}``")
        last = match.end()
        if text[last:last + 1].isalnum():
            pieces.append("\\ ")   # an escaped space ends the literal before a suffix (`Layer`s)
    pieces.append(SPECIAL.sub(r"\\\1", text[last:]))
    return "".join(pieces)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_markup(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(":") or stripped.startswith("..")


def plain_to_rst(lines: list) -> list:
    """The reStructuredText lines of a plain-text docstring (see the module docstring)."""
    out, literal_indent = [], None
    for line in lines:
        if literal_indent is not None:
            if not line.strip() or _indent(line) > literal_indent:
                out.append(line)       # inside the literal block: verbatim
                continue
            _close_paragraph(out)
            literal_indent = None
        if not line.strip():
            out.append(line)
            continue
        anchor = next((previous for previous in reversed(out) if previous.strip()), None)
        in_list = _in_list(out)
        if anchor is not None and _indent(line) > _indent(anchor) and not BULLET.match(anchor) \
                and not _is_markup(anchor) and not _is_markup(line) and not in_list:
            _close_paragraph(out)
            out += ["::", "", line]
            literal_indent = _indent(anchor)
            continue
        follows_text = bool(out) and bool(out[-1].strip())
        if follows_text and BULLET.match(line) and not in_list:
            out.append("")          # a list needs a blank line before it
        elif follows_text and in_list and not BULLET.match(line) and _indent(line) <= _list_indent(out):
            out.append("")          # and after it
        out.append(line if _is_markup(line) else _escape(line))
    return out


def _close_paragraph(out: list) -> None:
    if out and out[-1].strip():
        out.append("")


def _paragraph(out: list) -> list:
    """The lines of the last paragraph of `out` (up to the last blank line)."""
    found = []
    for line in reversed(out):
        if not line.strip():
            break
        found.append(line)
    return found


def _in_list(out: list) -> bool:
    """Whether the last paragraph of `out` holds a list item."""
    return any(BULLET.match(line) for line in _paragraph(out))


def _list_indent(out: list) -> int:
    """The indentation of the last list item's bullet in the last paragraph of `out`."""
    return next(_indent(line) for line in _paragraph(out) if BULLET.match(line))


def _process(app, what, name, obj, options, lines):
    lines[:] = plain_to_rst(lines)


def setup(app):
    """Run after napoleon (priority 500), so its Google-style sections are already fields."""
    app.connect("autodoc-process-docstring", _process, priority=600)
    return {"parallel_read_safe": True}
