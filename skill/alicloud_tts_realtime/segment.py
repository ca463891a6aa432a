"""Cut text into segments a speech service can commit one by one: sentences, at most ``max_chars`` long.

Two faces, one rule: :func:`split_text` cuts a whole text, and :class:`Segmenter` cuts a text that
arrives in pieces (an LLM token stream), handing out each segment as soon as it is safely complete.
Feeding a text to a :class:`Segmenter` in any pieces gives exactly the segments of :func:`split_text`.
Segments are stripped of surrounding whitespace and never empty; joined, they give back the text, its
whitespace aside (whitespace inside a segment is kept as it was). Lengths count code points (``len``).

Where a sentence ends (a "boundary"):

- **CJK ends** ``。！？``: right after the mark, and after the closing quotes and brackets that follow
  it (``。」``). No space is needed. A run of marks (``？！``, ``……。``) is one end.
- **Latin ends** ``. ! ?`` and ellipses (``...``, ``…``): after the run of marks and its closing quotes
  and brackets, when whitespace follows and the next non-space character is not a continuation: a
  lowercase letter, a digit, or one of ``, ; :``. A CJK character straight after the run (``OK!我们``)
  also ends the sentence, unless the run is an ellipsis (``我等了……然后`` goes on). So ``3.14``, ``U.S.A`` and ``example.com`` (no space) are never cut, nor
  ``Wait... what?`` or ``e.g. this`` (lowercase next).
- **Abbreviations**: a single ``.`` after a known abbreviation (:data:`ABBREVIATIONS`, any case) or after
  initials (single letters joined by dots: ``U.S.``, ``e.g.``, ``i.e.``, ``J.``) never ends a sentence,
  whatever follows. The bias is deliberate: a missed cut only makes a segment longer, while a wrong cut
  puts a pause and a fresh intonation after "Dr.".
- **Paragraphs**: a blank line (a newline, optional spaces, another newline) is a boundary.
- The end of the text is a boundary.

A segment longer than ``max_chars`` is cut, within its first ``max_chars`` characters, after the last
clause mark (``，；：、``, or ``, ; :`` followed by whitespace, so ``1,000`` stays whole), else at the
last whitespace, else at the last grapheme-cluster boundary (extended grapheme clusters, via the
``regex`` module's ``\\X``). A cut never splits a cluster, nor a surrogate pair left in a ``str``; only a
single cluster longer than ``max_chars`` (hundreds of combining marks) is cut between code points,
because the maximum is a hard limit of the service.

When is a segment "safely complete" in a stream? When the characters after it that the rule above
looks at have arrived: for a CJK end the next character (is it a closing quote?), for a Latin end the
next non-space character (continuation or not), for a blank line the second newline. The last
sentence of a stream, with nothing after it, comes out of :meth:`Segmenter.flush`.

This module is pure: no I/O, no settings. The limit comes from ``DASHSCOPE_MAX_SEGMENT_CHARS``
through :attr:`~.settings.Settings.max_segment_chars`.
"""

from __future__ import annotations

import regex

__all__ = ["ABBREVIATIONS", "DEFAULT_MAX_CHARS", "Segmenter", "split_text"]

DEFAULT_MAX_CHARS = 300

ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "cf", "approx"}
    | {"inc", "ltd", "co", "corp", "dept", "fig", "vol", "est"}
)
"""Words (lowercase, without the dot) after which a ``.`` does not end a sentence.

Initials and dotted abbreviations (``U.S.``, ``e.g.``, ``i.e.``, ``a.m.``) need no entry: any run of
single letters joined by dots counts.
"""

_LATIN_ENDS = frozenset(".!?…")
_CJK_ENDS = frozenset("。！？")
_ENDS = _LATIN_ENDS | _CJK_ENDS
_CLOSERS = frozenset("\"')]}»›”’）］｝」』】〕〉》〗〙〛")
_LATIN_CLAUSE = frozenset(",;:")
_CJK_CLAUSE = frozenset("，；：、")
_CONTINUATION_PUNCT = frozenset(",;:，；：、")
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
_GRAPHEME = regex.compile(r"\X")
_INITIALS = regex.compile(r"[^\W\d_](?:\.[^\W\d_])*")

# A boundary decision: a position ends a segment, does not, or cannot be told yet (more text needed).
_YES, _NO, _UNKNOWN = 1, 0, -1


def _is_high_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udbff"


def _is_low_surrogate(ch: str) -> bool:
    return "\udc00" <= ch <= "\udfff"


def _word_before(text: str, end: int, start: int) -> str:
    """The letters and dots just before ``text[end]``, not reaching back before ``start``."""
    i = end
    while i > start and (text[i - 1].isalpha() or text[i - 1] == "."):
        i -= 1
    return text[i:end]


def _is_abbreviation(word: str) -> bool:
    return word.lower() in ABBREVIATIONS or _INITIALS.fullmatch(word) is not None


def _end_run(text: str, i: int) -> int:
    """The index after the run of end marks starting at ``i``."""
    while i < len(text) and text[i] in _ENDS:
        i += 1
    return i


def _closers(text: str, i: int) -> int:
    """The index after the closing quotes and brackets starting at ``i``."""
    while i < len(text) and text[i] in _CLOSERS:
        i += 1
    return i


def _sentence_end(text: str, start: int, mark: int, final: bool) -> tuple[int, int, int]:
    """Decide the run of end marks at ``mark``.

    Returns:
        ``(decision, segment_end, next_index)``: whether the run ends a sentence, where the
        segment would end (after the closers), and where scanning resumes.
    """
    run_end = _end_run(text, mark)
    end = _closers(text, run_end)
    if end == len(text) and not final:
        return _UNKNOWN, end, end  # more marks or closers may follow
    run = text[mark:run_end]
    if any(ch in _CJK_ENDS for ch in run):
        return _YES, end, end
    if end == len(text):
        return _YES, end, end
    if run == "." and _is_abbreviation(_word_before(text, mark, start)):
        return _NO, end, end
    following = text[end]
    ellipsis = "…" in run or run.count(".") > 1
    if _CJK.match(following) and not ellipsis:
        return _YES, end, end
    if not following.isspace():
        return _NO, end, end  # 3.14, U.S.A, example.com, "end.)x", "……然后"
    j = end
    while j < len(text) and text[j].isspace():
        j += 1
    if j == len(text):
        return (_YES if final else _UNKNOWN), end, end
    nxt = text[j]
    if nxt.islower() or nxt.isdigit() or nxt in _CONTINUATION_PUNCT:
        return _NO, end, end
    return _YES, end, end


def _blank_line(text: str, newline: int, final: bool) -> int:
    """Decide whether the newline at ``newline`` starts a blank line."""
    j = newline + 1
    while j < len(text) and text[j] in " \t\r\f\v":
        j += 1
    if j == len(text):
        return _YES if final else _UNKNOWN
    return _YES if text[j] == "\n" else _NO


def _first_boundary(text: str, start: int, max_chars: int, final: bool) -> tuple[int, int]:
    """The first position after ``start`` that ends, or may end, a sentence.

    Scanning stops at the first non-space character past ``max_chars``: whatever boundary comes
    later, that segment is too long and gets a hard cut (this keeps long unpunctuated text linear).

    Returns:
        ``(decision, end)``: ``_YES`` or ``_UNKNOWN`` with the segment's end, or ``_NO`` with
        the end of what was scanned when no boundary came first (the end of a final text is one).
    """
    i = start
    n = len(text)
    limit = start + max_chars
    while i < n:
        ch = text[i]
        if i >= limit and not ch.isspace():
            return _NO, i + 1
        if ch in _ENDS:
            decision, end, i = _sentence_end(text, start, i, final)
            if decision != _NO:
                return decision, end
            continue
        if ch == "\n":
            decision = _blank_line(text, i, final)
            if decision != _NO:
                return decision, i
        i += 1
    return (_YES if final else _NO), n


def _breakable(text: str, i: int) -> bool:
    """Whether a cut between ``text[i-1]`` and ``text[i]`` keeps a surrogate pair whole."""
    return not (0 < i < len(text) and _is_high_surrogate(text[i - 1]) and _is_low_surrogate(text[i]))


def _hard_cut(text: str, start: int, max_chars: int) -> int:
    """Where to cut a segment starting at ``start`` (non-space) that is longer than ``max_chars``.

    Looks only at ``text[start : start + max_chars + 1]`` (the one character past the limit tells
    whether a cluster or a Latin clause continues), so a stream decides it as soon as that is here.
    """
    limit = start + max_chars
    window = text[start : limit + 1]
    clusters = {start}
    for match in _GRAPHEME.finditer(window):
        if start + match.end() <= limit:  # the last cluster may be cut short by the window
            clusters.add(start + match.end())
    boundaries = {b for b in clusters if _breakable(text, b)}
    # 1. After the last clause mark (with the closers after it) that fits.
    for j in range(limit - 1, start, -1):
        ch = text[j]
        if ch not in _CJK_CLAUSE and ch not in _LATIN_CLAUSE:
            continue
        cut = _closers(text, j + 1)
        if cut > limit:
            cut = j + 1
        if ch in _LATIN_CLAUSE and not (cut < len(text) and text[cut].isspace()):
            continue
        if cut in boundaries:
            return cut
    # 2. At the last whitespace that fits.
    for j in range(limit, start, -1):
        if text[j].isspace() and j in boundaries:
            return j
    # 3. At the last cluster boundary that fits; a single over-long cluster between code points.
    best = max(boundaries)
    if best > start:
        return best
    return limit - 1 if not _breakable(text, limit) and max_chars > 1 else limit


def _next_cut(text: str, start: int, max_chars: int, final: bool) -> int | None:
    """The end of the segment that starts at ``start`` (a non-space character), or None until more text comes.

    The answer for a partial text is either None or the answer for every longer text that starts
    with it: this is what makes a stream's segments those of the whole text.
    """
    decision, end = _first_boundary(text, start, max_chars, final)
    if len(text[start:end].rstrip()) > max_chars:
        return _hard_cut(text, start, max_chars)
    return end if decision == _YES else None


def _check_max(max_chars: int) -> int:
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be a positive integer, not {max_chars!r}")
    return max_chars


class Segmenter:
    """Cuts a text that arrives in pieces into the segments :func:`split_text` gives for the whole text.

    Call :meth:`push` with each piece as it arrives and commit the segments it returns at once; call
    :meth:`flush` at the end of the input for the rest. After :meth:`flush` the segmenter is empty and
    can take a new text. Only the pending, not yet complete text is kept.

    Args:
        max_chars: The longest segment, in code points; at least 1.

    Raises:
        ValueError: ``max_chars`` is not a positive integer.
    """

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._max = _check_max(max_chars)
        self._buffer = ""

    @property
    def max_chars(self) -> int:
        return self._max

    @property
    def pending(self) -> str:
        """The text received but not yet handed out in a segment (it may be only whitespace)."""
        return self._buffer

    def push(self, text: str) -> list[str]:
        """Add ``text`` and return the segments it completed, in order (often none)."""
        self._buffer += text
        return self._cut(final=False)

    def flush(self) -> list[str]:
        """Return the segments of the rest of the text, as if it had ended here, and empty the segmenter."""
        segments = self._cut(final=True)
        self._buffer = ""
        return segments

    def _cut(self, *, final: bool) -> list[str]:
        segments: list[str] = []
        text = self._buffer
        start = 0
        while True:
            while start < len(text) and text[start].isspace():
                start += 1
            if start == len(text):
                break
            end = _next_cut(text, start, self._max, final)
            if end is None:
                break
            segment = text[start:end].strip()
            if segment:
                segments.append(segment)
            start = end
        self._buffer = text[start:]
        return segments


def split_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Cut ``text`` into sentence segments of at most ``max_chars`` code points (rules: module docstring).

    Returns:
        The segments in order: stripped, never empty; joined they give ``text`` back, whitespace aside.
        An empty or blank text gives no segments.

    Raises:
        ValueError: ``max_chars`` is not a positive integer.
    """
    segmenter = Segmenter(max_chars)
    return segmenter.push(text) + segmenter.flush()
