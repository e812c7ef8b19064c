"""One escaping function per channel format (chalicelib/cs/channels/escaping.py): text from
outside is shown as typed. Properties over odd Unicode and markup characters, read back by the
local IM sink's model of each platform (devstack/im_sink.py, written from the platforms' own
documentation and independent of our adapters); and our own words pass unchanged."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.cs import templates
from chalicelib.cs.alerts import Severity
from chalicelib.cs.channels import Language, escaping
from devstack import im_sink

HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # control, format, surrogate, separators

# Markup of every platform we send to, and characters that hide, reorder or break lines.
PIECES = [
    *"#>*_~`[]()!<>@&\\|-+=.:/ 1a中\n\t\r\x0b\x0c\x1c\x1e\x7f\x85\xa0\u2003\u3000",
    "\xa0# ", "\u3000> ",
    "\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\u2066", "\u2028", "\u2029",
    "\ud800", "\U000e0041",
    "://", "http://evil.example/pay", "www.evil.example", "<@all>", "@all", "@everyone",
    "<!channel>", "<!here>", "<@U123>", "<https://evil.example|点我>", "](", "[付款链接]",
    "(http://evil.example/pay)", "![x](http://evil.example/x.png)", "**", "__", "~~", "```",
    "# ", "### ", "> ", "- ", "1. ", "---", "===", "    ", "[1]: http://evil.example",
    '<font color="warning">', "</font>", "<a href='x'>", "&lt;", "&#64;", "&amp;", ":warning:",
    ":rotating_light:", ":a:b:", "\\*", "\\[",
]
TEXTS = st.lists(st.one_of(st.sampled_from(PIECES), st.characters(), st.text(max_size=3)),
                 max_size=30).map("".join)
PROPERTY = settings(max_examples=400, derandomize=True, deadline=None, database=None)

ESCAPES: dict[str, Callable[[str], str]] = {
    "wecom": escaping.wecom_markdown, "dingtalk": escaping.dingtalk_markdown,
    "feishu": escaping.feishu_text, "slack": escaping.slack_mrkdwn,
    "slack_plain": escaping.slack_plain, "email": escaping.email_html,
    "inert": escaping.inert,
}


def hidden(char: str) -> bool:
    return char != "\n" and unicodedata.category(char) in HIDDEN


def assert_inert(escaped: str) -> None:
    """What no format may pass on: hidden or line-breaking characters (only "\\n" breaks a line)
    and a URL a client would link."""
    assert not [c for c in escaped if hidden(c)]
    assert "://" not in escaped
    escaped.encode("utf-8")  # an unpaired surrogate could not even be sent


def shown_lines(text: str) -> list[str]:
    """The lines a renderer that interprets nothing would show (the sink's normalisation)."""
    return [line.rstrip() for line in text.split("\n") if line.strip()]


# Properties --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["wecom", "dingtalk"])
@PROPERTY
@given(text=TEXTS)
def test_markdown_is_shown_as_typed(name: str, text: str) -> None:
    escaped = ESCAPES[name](text)
    assert_inert(escaped)
    # The platform's markdown, as the sink models it, finds nothing to interpret.
    assert im_sink.markdown_lines(escaped) == shown_lines(escaped)
    # ... and the documented constructs cannot start anywhere in it.
    assert not set(escaped) & set("<>*`~\\@")  # tags, <@userid>, emphasis, code, escapes, @mobile
    assert not re.search(r"\]\s*\(", escaped)  # [label](url), ![](image)
    assert not re.search(r"_(?![^\W_])|(?<![^\W_])_", escaped)  # _ outside a word
    assert not re.search(r"&#?[0-9A-Za-z]+;", escaped)  # an entity decoded back into markup
    for line in escaped.split("\n"):
        assert not re.match(r"[\s#>\-+=]|\d+[.)]|\[[^\]]*\]:", line), line
    assert ESCAPES[name](escaped) == escaped  # escaping twice changes nothing


@PROPERTY
@given(text=TEXTS)
def test_slack_mrkdwn_is_shown_as_typed(text: str) -> None:
    escaped = escaping.slack_mrkdwn(text)
    assert_inert(escaped)
    assert "<" not in escaped and ">" not in escaped  # links, <@U…>, <!here>, <!channel>
    assert not re.search(r"&(?!amp;|lt;|gt;)", escaped)  # every & is one of the three entities
    decoded = escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    # Slack's mrkdwn, as the sink models it, only decodes the three entities.
    assert im_sink.mrkdwn_lines(escaped) == shown_lines(decoded)
    assert not set(decoded) & set("*~`@")
    assert not re.search(r"_(?![^\W_])|(?<![^\W_])_", decoded)
    assert not re.search(r":[A-Za-z][A-Za-z0-9_+'-]*:", decoded)  # :emoji: codes
    for line in decoded.split("\n"):
        assert not line.lstrip().startswith(">"), line


@PROPERTY
@given(text=TEXTS)
def test_slack_plain_text_keeps_no_emoji_code(text: str) -> None:
    escaped = escaping.slack_plain(text)
    assert_inert(escaped)
    assert not re.search(r":[A-Za-z][A-Za-z0-9_+'-]*:", escaped)


@PROPERTY
@given(text=TEXTS)
def test_feishu_text_changes_only_what_every_client_acts_on(text: str) -> None:
    escaped = escaping.feishu_text(text)
    assert_inert(escaped)
    if not any(hidden(c) for c in text) and "://" not in text:
        assert escaped == text  # a post's text element is shown as typed: nothing else to do


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self.tags.append("/" + tag)

    def handle_data(self, data: str) -> None:
        self.data.append(data)


@PROPERTY
@given(text=TEXTS)
def test_email_html_is_text_not_tags(text: str) -> None:
    escaped = escaping.email_html(text)
    assert_inert(escaped)
    assert not set(escaped) & set("<>\"'")
    parser = _Tags()
    parser.feed(escaped)
    parser.close()
    assert parser.tags == []
    assert "".join(parser.data) == html.unescape(escaped) == escaping.inert(text)
    if not any(hidden(c) for c in text) and "://" not in text:
        assert html.unescape(escaped) == text


# Examples ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Item:
    kind: str
    order: str
    severity: Severity = Severity.MEDIUM


def our_words() -> list[str]:
    """Every sentence our templates write, and the data CS reads every day."""
    words = []
    for template in [*templates.TEMPLATES.values(), templates.FALLBACK]:
        for part in (template.label, template.what, template.todo):
            words += part.values()
    at = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)
    for language in Language:
        message = templates.render("return.damaged", order="#1001", severity=Severity.HIGH,
                                   link="https://cs.example.com/c?x=1&y=2", language=language,
                                   detail="factory-1: out_of_stock (ord_abc, SKU A-1) 10:00:05")
        digest = templates.digest([_Item("shipment.stalled", "#1001"), _Item("odd.kind", "")],
                                  start=at, end=at, link="", language=language)
        words += [message.title, message.text, digest.title, digest.text]
    return words


@pytest.mark.parametrize("name", list(ESCAPES))
def test_our_own_words_and_everyday_data_pass_unchanged(name: str) -> None:
    escape = ESCAPES[name]
    for text in [*our_words(), "[HIGH] Return damaged · Order ord_abc_1", "订单：#1001",
                 "Return SF123 from Li received by factory-1: broken; liability: courier"]:
        expected = html.escape(text) if name == "email" else text
        assert escape(text) == expected, text


SINK_EXAMPLE = "订单 #77 <@all> [付款链接](http://evil.example/pay) 紧急"


@pytest.mark.parametrize(("name", "expected"), [
    ("wecom", "订单 #77 ＜＠all＞ [付款链接]（http：//evil.example/pay) 紧急"),
    ("dingtalk", "订单 #77 ＜＠all＞ [付款链接]（http：//evil.example/pay) 紧急"),
    ("feishu", "订单 #77 <@all> [付款链接](http：//evil.example/pay) 紧急"),
    ("slack", "订单 #77 &lt;＠all&gt; [付款链接](http：//evil.example/pay) 紧急"),
    ("email", "订单 #77 &lt;@all&gt; [付款链接](http：//evil.example/pay) 紧急"),
])
def test_the_sink_example_in_each_format(name: str, expected: str) -> None:
    assert ESCAPES[name](SINK_EXAMPLE) == expected


def test_line_structure_from_outside_stays_on_its_line() -> None:
    text = "#78\u2028# 伪标题\r> 引用\x85- 列表\u2029 1. 项\u202e\u200b"
    assert escaping.one_line(text) == "#78 # 伪标题 > 引用 - 列表 1. 项\u202e\u200b"
    assert escaping.inert(text) == "#78 # 伪标题 > 引用 - 列表  1. 项"
    assert escaping.wecom_markdown("# 标题\n> 引用\n- 列表\n1. 项\n    代码\n[1]: x") == \
        "＃ 标题\n＞ 引用\n－ 列表\n1． 项\n代码\n[1]： x"
