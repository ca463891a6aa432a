"""Segmentation: example tests for each rule (English, Chinese, mixed) and hypothesis properties."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from alicloud_tts_realtime.segment import Segmenter, split_text


def _squash(text: str) -> str:
    return "".join(text.split())


# ---------------------------------------------------------------------------------------------
# Sentence ends


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world. How are you? Fine! Bye.", ["Hello world.", "How are you?", "Fine!", "Bye."]),
        ("你好。今天天气很好！你呢？我很好", ["你好。", "今天天气很好！", "你呢？", "我很好"]),
        ("I speak English. 我也说中文。Both work!", ["I speak English.", "我也说中文。", "Both work!"]),
        ("OK!我们走吧。", ["OK!", "我们走吧。"]),  # a Latin end straight before CJK
        ("Really?! Yes.", ["Really?!", "Yes."]),  # a run of marks is one end
        ("真的吗？！真的。", ["真的吗？！", "真的。"]),
    ],
)
def test_sentence_ends(text: str, expected: list[str]) -> None:
    assert split_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("(This is an aside.) Next one.", ["(This is an aside.)", "Next one."]),
        ("她说：“好的。”然后走了。", ["她说：“好的。”", "然后走了。"]),
        ("《红楼梦》很长。」下一句。", ["《红楼梦》很长。」", "下一句。"]),
        ("'Yes!' He nodded.", ["'Yes!'", "He nodded."]),
    ],
)
def test_closing_quotes_and_brackets_stay_with_their_sentence(text: str, expected: list[str]) -> None:
    assert split_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Dr. Smith is here.",
        "Mr. and Mrs. Brown came.",
        "Fruit, e.g. apples, is good.",
        "Fruit, i.e. Apples, is good.",  # a dotted abbreviation holds even before a capital
        "She moved to the U.S. Last year she was in Paris.",  # the documented bias: no cut after U.S.
        "Cats, dogs, etc. Are all pets.",
        "J. R. R. Tolkien wrote it.",
        "It costs 3.14 dollars.",
        "Version 2.0.1 is out.",
        "See example.com for more.",
        "Wait... what happened?",
        "Wait… what happened?",
        "He paused. and went on.",  # lowercase next: a continuation
        "Chapter 3. 5 pages long.",  # a digit next
        "我等了……然后他来了。",  # a CJK ellipsis with no space
    ],
)
def test_no_cut(text: str) -> None:
    assert split_text(text) == [text]


def test_ellipsis_before_a_new_sentence_is_an_end() -> None:
    assert split_text("I waited... Then I left.") == ["I waited...", "Then I left."]
    assert split_text("I waited… Then I left.") == ["I waited…", "Then I left."]


def test_paragraphs() -> None:
    text = "First paragraph without a stop\n\nSecond one\nstill second\n  \n第三段"
    assert split_text(text) == ["First paragraph without a stop", "Second one\nstill second", "第三段"]
    assert split_text("Dr.\n\nNext") == ["Dr.", "Next"]  # a blank line wins over the abbreviation
    assert split_text("a\r\n\r\nb") == ["a", "b"]


def test_blank_and_empty() -> None:
    assert split_text("") == []
    assert split_text(" \n\n\t ") == []


# ---------------------------------------------------------------------------------------------
# The hard maximum


def test_long_sentence_cut_at_clause_mark() -> None:
    text = "one two three, four five six; seven eight nine"
    assert split_text(text, 20) == ["one two three,", "four five six;", "seven eight nine"]
    assert split_text("一二三四，五六七八、九十一二：三四", 6) == ["一二三四，", "五六七八、", "九十一二：", "三四"]


def test_latin_comma_needs_a_space() -> None:
    assert split_text("pay 1,000,000 dollars now", 14) == ["pay 1,000,000", "dollars now"]


def test_long_sentence_cut_at_whitespace_then_between_characters() -> None:
    assert split_text("aaaa bbbb cccc dddd", 10) == ["aaaa bbbb", "cccc dddd"]
    assert split_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert split_text("中文没有空格也没有标点符号", 5) == ["中文没有空", "格也没有标", "点符号"]


def test_cut_never_splits_a_grapheme_cluster() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one cluster of five code points
    text = "ab" + family + "cd"
    assert split_text(text, 5) == ["ab", family, "cd"]
    assert split_text(text, 7) == ["ab" + family, "cd"]
    accented = "e\u0301" * 5  # é as e + combining acute
    assert all(len(s) % 2 == 0 for s in split_text(accented, 3))
    flags = "🇫🇷🇩🇪🇯🇵"
    assert split_text(flags, 3) == ["🇫🇷", "🇩🇪", "🇯🇵"]


def test_cut_never_splits_a_surrogate_pair() -> None:
    pair = "\ud83d\ude00"  # a surrogate pair left in a str (e.g. from JSON or surrogatepass)
    assert split_text("a" + pair * 3, 2) == ["a", pair, pair, pair]


def test_oversized_cluster_is_cut_between_code_points() -> None:
    zalgo = "a" + "\u0301" * 20
    segments = split_text(zalgo, 8)
    assert "".join(segments) == zalgo and max(map(len, segments)) <= 8


def test_max_chars_must_be_positive() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive integer"):
            split_text("x", bad)
    with pytest.raises(ValueError):
        Segmenter(0)


def test_long_unpunctuated_text_is_linear() -> None:
    text = "word " * 40_000  # 200,000 characters, no sentence end
    segments = split_text(text, 300)
    assert len(segments) == len(text) // 300 + 1 and max(map(len, segments)) <= 300


# ---------------------------------------------------------------------------------------------
# Streaming


def test_stream_hands_out_each_sentence_once_it_is_safe() -> None:
    seg = Segmenter()
    assert seg.push("Hello there") == []
    assert seg.push(". ") == []  # the next non-space character decides
    assert seg.push("How") == ["Hello there."]
    assert seg.push(" are you? I'm fine, Dr.") == ["How are you?"]
    assert seg.push(" Smith. ") == []
    assert seg.push("你好。") == ["I'm fine, Dr. Smith."]
    assert seg.push("”") == []  # a closer joins the sentence before it
    assert seg.push("再见") == ["你好。”"]
    assert seg.push("\n\n") == ["再见"]
    assert seg.flush() == []
    assert seg.push("Last words.") == []
    assert seg.flush() == ["Last words."]
    assert seg.pending == ""


def test_stream_cuts_an_overlong_sentence_as_soon_as_it_can() -> None:
    seg = Segmenter(10)
    assert seg.push("aaaa bbbb c") == ["aaaa bbbb"]
    assert seg.flush() == ["c"]


# ---------------------------------------------------------------------------------------------
# Properties

_ALPHABET = st.sampled_from(
    [
        *"abcXYZ 0129\n\t.!?…,;:\"')]}」”》（中文字。！？，；：、",
        "e.g.",
        "Dr.",
        "U.S.",
        "...",
        "\n\n",
        "\u0301",
        "\u200d",
        "\U0001f468",
        "\ufe0f",
        "🇫",
        "🇷",
        "\ud83d",
        "\ude00",
    ]
)
_TEXT = st.lists(_ALPHABET, max_size=80).map("".join)
_MAX = st.integers(min_value=1, max_value=40)


@settings(max_examples=400, deadline=None)
@given(_TEXT, _MAX)
def test_property_segments_give_back_the_text(text: str, max_chars: int) -> None:
    segments = split_text(text, max_chars)
    assert "".join(segments) == "".join(s for s in segments)  # sanity
    assert _squash("".join(segments)) == _squash(text)
    assert all(segments), "no segment is empty"
    assert all(s == s.strip() for s in segments)
    assert all(len(s) <= max_chars for s in segments)


@settings(max_examples=400, deadline=None)
@given(_TEXT, _MAX, st.data())
def test_property_any_pieces_give_the_same_segments(text: str, max_chars: int, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    seg = Segmenter(max_chars)
    streamed = [s for piece in pieces for s in seg.push(piece)] + seg.flush()
    assert streamed == split_text(text, max_chars)


@settings(max_examples=200, deadline=None)
@given(_TEXT, st.integers(min_value=8, max_value=40))
def test_property_cuts_fall_on_cluster_boundaries(text: str, max_chars: int) -> None:
    # With no cluster longer than the maximum, every cut falls between clusters.
    if any(len(c) > max_chars for c in regex.findall(r"\X", text)):
        return
    position = 0
    for segment in split_text(text, max_chars):
        position = text.index(segment, position)
        for edge in (position, position + len(segment)):
            before = regex.findall(r"\X", text[:edge])
            assert "".join(before) == text[:edge]
            assert not (
                0 < edge < len(text) and "\ud800" <= text[edge - 1] <= "\udbff" and "\udc00" <= text[edge] <= "\udfff"
            )
        position += len(segment)
