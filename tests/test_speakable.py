"""Markdown made to be spoken: each rule, English and Chinese, and the refusal of empty results."""

from __future__ import annotations

import pytest

from alicloud_tts_realtime import InvalidRequestError
from alicloud_tts_realtime.segment import split_text
from alicloud_tts_realtime.speakable import speakable_text, to_speakable


def test_headings_emphasis_and_quotes_go() -> None:
    text = "# Results\n\n## *Fast* and **bold** ~~old~~\n\n> A _quoted_ line."
    assert to_speakable(text) == "Results\n\nFast and bold old\n\nA quoted line."


def test_list_markers_go_and_items_become_blocks() -> None:
    assert to_speakable("- one\n- two\n  * nested\n\n1. first\n2) second") == "one\n\ntwo\n\nnested\n\nfirst\n\nsecond"


def test_table_pipes_go() -> None:
    table = "| Name | Score |\n|------|------:|\n| Ann  | 3 |\n| 小明 | 5 |"
    assert to_speakable(table) == "Name, Score\n\nAnn, 3\n\n小明, 5"


def test_links_and_urls() -> None:
    assert to_speakable("Read [the docs](https://docs.python.org/3/).") == "Read the docs."
    assert to_speakable("See https://docs.python.org/3/library/re.html, then ask.") == "See docs.python.org, then ask."
    assert to_speakable("Visit www.example.com/path or <https://www.alibabacloud.com/help>.") == (
        "Visit example.com or alibabacloud.com."
    )
    assert to_speakable("(https://a.example.org:8443/x?q=1)") == "(a.example.org)"
    assert to_speakable("访问https://help.aliyun.com/zh了解更多。") == "访问help.aliyun.com了解更多。"
    assert to_speakable("Write to me@example.com.") == "Write to me@example.com."
    assert to_speakable("![A cat on a mat](cat.png)") == "A cat on a mat"


def test_inline_code_keeps_its_words() -> None:
    assert to_speakable("Run `pip install regex` first.") == "Run pip install regex first."


def test_code_blocks_become_one_phrase_in_the_texts_language() -> None:
    english = "Try this:\n\n```python\nprint('hi')\n```\n\n```\nmore\n```\n\nThat is all."
    assert to_speakable(english) == "Try this:\n\nCode block omitted.\n\nThat is all."
    chinese = "运行下面的 Python 脚本：\n\n    print('hi')\n\n然后检查输出。"
    assert to_speakable(chinese) == "运行下面的 Python 脚本：\n\n代码已省略。\n\n然后检查输出。"
    assert to_speakable("```\nonly code\n```") == ""


def test_html_tags_go_their_text_stays() -> None:
    text = "Hello <b>world</b> &amp; friends.\n\n<div>\n<p>Inside <i>a</i> div</p>\n<!-- hidden -->\n</div>\n\n<script>alert(1)</script>"
    assert to_speakable(text) == "Hello world & friends.\n\nInside a div"


def test_emoji_dropped_by_default() -> None:
    text = "Done 🎉! Thumbs 👍🏽 up, family 👨‍👩‍👧 here, flag 🇨🇳, keycap 1️⃣, heart ❤️. © 2026 ACME™"
    assert to_speakable(text) == "Done ! Thumbs up, family here, flag , keycap 1, heart . © 2026 ACME™"
    assert to_speakable("Done 🎉!", emoji=True) == "Done 🎉!"


def test_plain_text_passes_and_segments_follow_blocks() -> None:
    assert to_speakable("Just a sentence. 还有中文。") == "Just a sentence. 还有中文。"
    spoken = to_speakable("# Title\n\n- item one\n- item two\n\nA paragraph.")
    assert split_text(spoken) == ["Title", "item one", "item two", "A paragraph."]


def test_nothing_left_is_a_clear_error() -> None:
    for text in ("```\nprint(1)\n```", "<br>", "[](https://example.com) 🎉", "    indented code"):
        with pytest.raises(InvalidRequestError, match="nothing to speak once its Markdown is removed") as info:
            speakable_text(text)
        assert info.value.field == "text"
    assert speakable_text("**Hi**") == "Hi"
    # Nothing to read before cleaning either: returned as is, for the request's own refusal.
    for text in ("   ", "🎉🎉", "---", "...!?"):
        assert speakable_text(text) == text
