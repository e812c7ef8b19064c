"""Text from outside is data, never markup: one escaping function per format our adapters send.

A message's title and text are plain text (chalicelib.cs.channels.Message) and much of them came
from outside: an order name or buyer note from a marketplace, a partner's return report (buyer
name, reason, order name), a warehouse reject detail, an address in an intercept summary. Each
adapter passes the title and the text through its format's function below and only then adds
its own markup around them: WeCom's coloured bold title, DingTalk's heading, the link to the
case, the rota's @mentions (Message.mentions: the only mentions there are). So a link, heading,
emphasis, quote, HTML tag, mention or line break in that text is shown as typed.

What each platform interprets (its own documentation; a platform we do not send to in a format is
not covered here):
- WeCom group robot `markdown`: headings (`#` to `######` and a space), `**bold**`, `*italic*`,
  `[text](url)`, `` `code` ``, `> quote`, `<font color="info|comment|warning">`, and the
  `<@userid>` mention; `\\n` breaks a line.
- DingTalk custom robot `markdown`: headings, `> quote`, `**bold**`, `*italic*`, `[text](url)`,
  `![](image)`, `- item` and `1. item` lists, `<font>`; a mention is `@mobile` in the text
  together with `at.atMobiles` (`isAtAll` for everyone).
- Feishu custom bot `post`: `text` elements and the title are shown as typed (HTML entities are
  decoded only with `un_escape`, which we never set); links and mentions are separate `a` and
  `at` elements, which only the adapter writes.
- Slack `mrkdwn`: `&`, `<` and `>` are control characters, to be sent as `&amp;`, `&lt;`, `&gt;`
  (`<url|label>`, `<@U…>`, `<!here>`, `<!channel>` all start with `<`); `*bold*`, `_italic_`,
  `~strike~`, `` `code` ``, `> quote` at the start of a line, `:emoji:` codes; with
  `verbatim: false` (the default) bare URLs, #channels and some @mentions are linked too.
- Email HTML: tags and entities; we escape `&`, `<`, `>`, `"` and `'`.
Every IM client also turns a bare `scheme://` URL into a live link.

Where a platform documents an escape (Slack's three entities, HTML's entities) it is used. WeCom
and DingTalk document none: a backslash is not in their syntax, and a parser that ignores it would
still read `\\[x\\](y)` as a link. Nor does Slack for its emphasis characters. There a character
that would start a construct is replaced by its full-width form (＜ ＊ （ ＠ ...), which reads the
same and which no construct of any of these platforms uses. Only what could act is changed: our
own words and everyday data (`#1001`, `[HIGH]`, `ord_abc`, `(stock, SKU)`, `10:00`) pass as they
are.

Before any format's own work, `inert` drops what every client would act on or hide: format
characters (zero-width and bidirectional controls: invisible, they hide or reorder what CS reads,
and a client that strips them must not find markup afterwards), other control and line-break
characters (only "\\n" breaks a line, and only where our template put it), unpaired surrogates
(not UTF-8 at all: the request could not even be encoded), and `://`, so no client links a URL
CS did not get from us.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Unicode categories hidden from the reader or breaking lines: control, format, surrogate,
# line and paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SCHEME = "://"
_DEFANGED_SCHEME = "\uff1a//"  # full-width colon: "http：//evil.example" is read, not followed

# Full-width forms, the same character to a reader and to no markup parser.
_WIDE = {c: chr(ord(c) + 0xFEE0) for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}


def _wide(char: str) -> str:
    return _WIDE[char]


def one_line(text: str) -> str:
    """A field that must stay on its line (a title, an order number): whitespace runs, line
    breaks included, become one space."""
    return " ".join(text.split())


def _visible(char: str) -> str:
    category = unicodedata.category(char)
    if char == "\n" or category not in _HIDDEN:
        return char
    if category == "Cf":
        return ""
    return "\ufffd" if category == "Cs" else " "


def inert(text: str) -> str:
    """What every platform needs before its format's own escaping (see the module docstring);
    the whole of it for Feishu's post text."""
    visible = "".join(_visible(char) for char in text)
    return visible.replace(_SCHEME, _DEFANGED_SCHEME)


# Markdown (WeCom, DingTalk) ---------------------------------------------------------------------

# Anywhere in a line: tags and the <@userid> mention (<), quotes and tag ends (>), bold and italic
# (*), code (`), strike-through (~), a backslash that would escape our own markup after it (\),
# mentions (@).
_MD_ANYWHERE = re.compile(r"[<>*`~\\@]")
# `_` opens emphasis unless it sits inside a word (ord_abc, out_of_stock stay as they are).
_MD_UNDERSCORE = re.compile(r"_(?![^\W_])|(?<![^\W_])_")
# A link or image needs "](" (CommonMark allows nothing between; a lax parser, spaces).
_MD_LINK = re.compile(r"\](\s*)\(")
# An entity would be decoded into the character we just replaced.
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# At the start of a line: a heading, quote, list item, rule or setext underline (# > - + = *), an
# ordered item ("1." "1)"), a reference definition ("[x]: url").
_MD_LINE_START = re.compile(r"^[#>\-+=*]")
_MD_ORDERED = re.compile(r"^(\d+)([.)])")
_MD_REFERENCE = re.compile(r"^(\[[^\]]*\]):")


def _markdown_line(line: str) -> str:
    # Indentation: four spaces make a code block, and a lax parser counts any Unicode space
    # (a no-break or ideographic space before "#" still opens a heading).
    line = line.lstrip()
    line = _MD_LINE_START.sub(lambda m: _wide(m.group()), line)
    line = _MD_ORDERED.sub(lambda m: m.group(1) + _wide(m.group(2)), line)
    line = _MD_REFERENCE.sub(lambda m: m.group(1) + _wide(":"), line)
    line = _MD_ANYWHERE.sub(lambda m: _wide(m.group()), line)
    line = _MD_UNDERSCORE.sub(_wide("_"), line)
    line = _MD_LINK.sub(lambda m: "]" + m.group(1) + _wide("("), line)
    return _MD_ENTITY.sub(_wide("&"), line)


def _markdown(text: str) -> str:
    return "\n".join(_markdown_line(line) for line in inert(text).split("\n"))


def wecom_markdown(text: str) -> str:
    """Text for a WeCom robot's `markdown` content: no heading, bold, italic, link, code, quote,
    <font> or <@userid> mention of its own."""
    return _markdown(text)


def dingtalk_markdown(text: str) -> str:
    """Text for a DingTalk robot's `markdown` text and title: no heading, quote, bold, italic,
    link, image, list, <font> or @mobile of its own (mentions are `at.atMobiles`, from the
    rota)."""
    return _markdown(text)


# Feishu ------------------------------------------------------------------------------------------

def feishu_text(text: str) -> str:
    """Text for a Feishu post's title and `text` elements, which Feishu shows as typed: only what
    every client acts on (`inert`)."""
    return inert(text)


# Slack -------------------------------------------------------------------------------------------

# *bold* ~strike~ `code` and @here-style mentions; `_` as for markdown.
_SLACK_ANYWHERE = re.compile(r"[*~`@]")
_SLACK_QUOTE = re.compile(r"^(\s*)>")
_SLACK_EMOJI = re.compile(r":(?=[A-Za-z][A-Za-z0-9_+'-]*:)")  # every colon that opens a code


def slack_plain(text: str) -> str:
    """Text for a Slack `plain_text` object with emoji on (the header): no markup is read there
    but `:emoji:` codes."""
    return _SLACK_EMOJI.sub(_wide(":"), inert(text))


def _slack_line(line: str) -> str:
    line = _SLACK_QUOTE.sub(lambda m: m.group(1) + _wide(">"), line)
    line = _SLACK_ANYWHERE.sub(lambda m: _wide(m.group()), line)
    line = _MD_UNDERSCORE.sub(_wide("_"), line)
    # The three control characters, as Slack documents them; `&` first.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_mrkdwn(text: str) -> str:
    """Text for a Slack `mrkdwn` text object (and the message's top-level `text`): no link,
    mention, emphasis, code, quote or emoji code of its own."""
    return "\n".join(_slack_line(line) for line in slack_plain(text).split("\n"))


# Email -------------------------------------------------------------------------------------------

def email_html(text: str) -> str:
    """Text for the HTML part of an email: no tag or entity of its own (and, like everywhere, no
    link a mail client would make of a bare URL)."""
    return html.escape(inert(text), quote=True)


def spreadsheet_cell(text: str) -> str:
    """Text for a CSV or spreadsheet cell: on one line, and never run as a formula (a cell that
    starts with = + - @ is one to a spreadsheet: CSV injection), so it is quoted with a leading
    apostrophe, which spreadsheets show as text."""
    flat = inert(one_line(text))
    return "'" + flat if flat[:1] in ("=", "+", "-", "@", "\t", "\r") else flat
