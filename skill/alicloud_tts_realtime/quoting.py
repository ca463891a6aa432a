"""The one way to quote a caller's or the service's value in a message or a log line.

:func:`quote` gives a short, escaped excerpt: at most :data:`QUOTE_LIMIT` characters of the value,
control and invisible characters escaped (so a NUL or a newline cannot forge a log line), and the
full length when the value was cut (so a 1 MB argument yields a ~100-character sentence).
"""

from __future__ import annotations

__all__ = ["QUOTE_LIMIT", "quote"]

QUOTE_LIMIT = 80


def _escaped(char: str) -> str:
    if char == "'":
        return "\\'"
    if char == "\\":
        return "\\\\"
    if char.isprintable():
        return char
    # \x00, \n, \u200b, \ud800 (a lone surrogate) …: unicode_escape never fails and is pure ASCII.
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``value`` in single quotes, escaped, cut to about ``limit`` characters.

    >>> quote("Chery")
    "'Chery'"
    >>> quote("a\\nb")
    "'a\\\\nb'"
    >>> quote("x" * 1000, limit=5)
    "'xxxxx…' (1000 characters)"
    """
    text = value if isinstance(value, str) else str(value)
    pieces: list[str] = []
    size = 0
    for char in text:
        piece = _escaped(char)
        if size + len(piece) > limit:
            return f"'{''.join(pieces)}…' ({len(text)} characters)"
        pieces.append(piece)
        size += len(piece)
    return f"'{''.join(pieces)}'"
