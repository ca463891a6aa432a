"""Turn Markdown into what a person would read aloud: :func:`to_speakable`.

Agents answer in Markdown, and a voice reading "hash hash Results, asterisk asterisk" or a whole URL
is useless. The text is parsed with markdown-it-py (CommonMark, plus GFM tables and strikethrough)
and rebuilt from the parse, so what is syntax and what is text is the parser's call, not a regex's:

- headings, emphasis, strikethrough, block quotes, list markers and table pipes go, their words stay;
  a table row is read as its cells joined by commas;
- ``[text](url)`` becomes ``text``, an image its alt text; a bare URL (``https://…``, ``www.…``) or an
  autolink becomes its host name without ``www.`` (``https://docs.python.org/3/`` → ``docs.python.org``);
- inline code keeps its words (``pip install`` is read as such);
- a fenced or indented code block becomes one short sentence in the text's language: "Code block
  omitted." or, when the prose has at least half as many CJK ideographs as Latin letters, "代码已省略。"
  (several code blocks in a row give one sentence). A text that is *only* code gives nothing to read:
  announcing an omission with nothing around it helps no listener and still costs a paid call;
- HTML tags and comments go (the text between tags stays; ``<script>`` and ``<style>`` go whole);
- emoji (pictographs shown as emoji, flags, keycaps, skin tones, ZWJ sequences) are dropped unless
  ``emoji=True``; text symbols such as ``©`` or ``™`` stay.

Blocks (paragraphs, headings, list items, table rows, the code sentence) are separated by a blank
line, which :mod:`.segment` treats as a boundary; inside a block, runs of spaces become one. The
result may be empty: the caller decides what that means (:func:`speakable_text` makes it an error).

Pure functions, no I/O.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import regex

from .errors import InvalidRequestError

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

__all__ = ["CODE_OMITTED", "speakable_text", "to_speakable"]

CODE_OMITTED = {"en": "Code block omitted.", "zh": "代码已省略。"}
"""The sentence that stands for code blocks, by the text's language."""

_URL = regex.compile(
    r"(?<![A-Za-z0-9@/._-])(?:(?:https?|ftp)://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", regex.IGNORECASE
)
_URL_TRAILING = ".,;:!?'\")]}"
_HTML_DROPPED = regex.compile(r"<!--.*?-->|<(script|style)\b.*?</\1\s*>", regex.IGNORECASE | regex.DOTALL)
_HTML_TAG = regex.compile(r"</?[A-Za-z][^<>]*>|<!--.*?-->|<![^<>]*>|<\?.*?\?>", regex.DOTALL)
_GRAPHEME = regex.compile(r"\X")
_EMOJI = regex.compile(r"[\p{Emoji_Presentation}\p{Regional_Indicator}\p{Emoji_Modifier}]")
_PICTOGRAPH = regex.compile(r"\p{Extended_Pictographic}")
_EMOJI_LEFTOVERS = regex.compile("[\ufe0e\ufe0f\u20e3\u200d]")
_SPACES = regex.compile(r"[^\S\n]+")
_HAN = regex.compile(r"\p{Han}")
_LATIN = regex.compile(r"\p{Latin}")

_CODE = object()  # a placeholder block for code, replaced once the language is known


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # Imported and built on first use (no import-time work); a parser holds no per-document state.
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _host(match: regex.Match[str]) -> str:
    url = match.group()
    stripped = url.rstrip(_URL_TRAILING)
    trailing = url[len(stripped) :]
    full = stripped if "://" in stripped else "http://" + stripped
    try:
        host = urlsplit(full).hostname
    except ValueError:
        host = None
    if not host:
        return url
    return host.removeprefix("www.") + trailing


def _urls_to_hosts(text: str) -> str:
    return _URL.sub(_host, text)


def _strip_html(text: str) -> str:
    text = _HTML_DROPPED.sub(" ", text)
    return html.unescape(_HTML_TAG.sub(" ", text))


def _drop_emoji(text: str) -> str:
    if not text.isascii():
        kept = []
        for cluster in _GRAPHEME.findall(text):
            if _EMOJI.search(cluster) or ("\ufe0f" in cluster and _PICTOGRAPH.search(cluster)):
                continue
            kept.append(_EMOJI_LEFTOVERS.sub("", cluster) if len(cluster) > 1 else cluster)
        text = "".join(kept)
    return text


def _inline(children: list[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type == "text":
            parts.append(_urls_to_hosts(child.content))
        elif child.type == "code_inline":
            parts.append(child.content)
        elif child.type == "image":
            parts.append(_inline(child.children or []))
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        # link_open/close, em/strong/s open and close, html_inline: markup, nothing to say
    return "".join(parts)


def _tidy(block: str, emoji: bool) -> str:
    if not emoji:
        block = _drop_emoji(block)
    lines = (_SPACES.sub(" ", line).strip() for line in block.split("\n"))
    return "\n".join(line for line in lines if line)


def _language(prose: str) -> str:
    han = len(_HAN.findall(prose))
    return "zh" if han and 2 * han >= len(_LATIN.findall(prose)) else "en"


def to_speakable(markdown: str, *, emoji: bool = False) -> str:
    """Return ``markdown`` as plain text to be read aloud (rules: module docstring).

    Args:
        markdown: CommonMark text, with GFM tables and strikethrough; plain text passes mostly
            unchanged (its URLs become host names).
        emoji: Keep emoji instead of dropping them.

    Returns:
        Blocks separated by blank lines; an empty string when nothing is left to read.
    """
    blocks: list[str | object] = []
    row: list[str] | None = None
    for token in _parser().parse(markdown):
        if token.type == "inline":
            text = _tidy(_inline(token.children or []), emoji)
            if row is not None:
                row.append(text)
            elif text:
                blocks.append(text)
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            cells = ", ".join(cell for cell in row or [] if cell)
            if cells:
                blocks.append(cells)
            row = None
        elif token.type in ("fence", "code_block"):
            if not blocks or blocks[-1] is not _CODE:
                blocks.append(_CODE)
        elif token.type == "html_block":
            text = _tidy(_urls_to_hosts(_strip_html(token.content)), emoji)
            if text:
                blocks.append(text)
    prose = [block for block in blocks if isinstance(block, str)]
    if not prose:
        return ""
    phrase = CODE_OMITTED[_language("".join(prose))]
    return "\n\n".join(block if isinstance(block, str) else phrase for block in blocks)


def speakable_text(markdown: str, *, emoji: bool = False) -> str:
    """:func:`to_speakable`, for a request: text whose words were all markup is refused.

    Call it before building the request, so that the refusal comes before any paid call. "Nothing
    to read" means no letter or digit (``str.isalnum``, which covers CJK), the request's own test.
    When ``markdown`` had none to begin with (blank, punctuation, emoji only), it is returned as it
    is, so that the request's validation refuses it in its own words.

    Raises:
        InvalidRequestError: ``markdown`` had words, and none are left once the Markdown is removed
            (field ``text``).
    """
    text = to_speakable(markdown, emoji=emoji)
    if not any(char.isalnum() for char in text):
        if not any(char.isalnum() for char in markdown):
            return markdown
        raise InvalidRequestError(
            "text has nothing to speak once its Markdown is removed (it held only code, markup or URLs); "
            "send words to read, or text_format 'plain' to speak it exactly as written.",
            field="text",
        )
    return text
