"""Text people typed (a deletion request's reason), made safe to show: stored as given, but printed with control
characters escaped, so an OSC, BEL or CR sequence cannot act on an operator's terminal or rewrite a line, and
kept inside its cell in a Markdown table. Standard library only: `iau requests list` imports it."""

from __future__ import annotations


def escaped(text: str) -> str:
    """`text` with every non-printable character (ESC, BEL, CR, newline, tab, bidi overrides...) as its Python
    escape (\\x1b, \\x07, \\r, \\n, \\u202e); printable text, spaces included, unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def markdown_cell(text: object) -> str:
    """A value for one cell of a Markdown table: escaped as above, and `|` escaped so it cannot add columns."""
    return escaped(str(text)).replace("|", "\\|")
