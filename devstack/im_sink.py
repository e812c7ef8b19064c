"""A local IM sink: Slack, DingTalk, Feishu and WeCom robots on 127.0.0.1.

`make run` points the CS alert channels at it and it prints every alert as the platform would show
it; the alert pipeline's tests read the exact requests it captured and make a platform fail on
demand. One stdlib HTTP server plays all four platforms, each on its own path prefix laid out like
the real webhook URL, so our unmodified adapters work when their configured URL points here:

    Slack     POST /slack/<hook id>                          (hooks.slack.com/services/<hook id>)
    DingTalk  POST /dingtalk/robot/send?access_token=T[&timestamp=MS&sign=S]   (oapi.dingtalk.com)
    Feishu    POST /feishu/open-apis/bot/v2/hook/<id>      (open.feishu.cn, open.larksuite.com)
    WeCom     POST /wecom/cgi-bin/webhook/send?key=KEY     (qyapi.weixin.qq.com)

`url_for(platform, robot)` builds the URL a channel config takes as `webhook_url` and
`config_for` the whole config; `rebase(real_url)` moves a real webhook URL onto the sink.

The platforms' checks are re-implemented here from their documentation, deliberately without our
adapters' helpers, so a mistake in an adapter shows up as a refusal:
- DingTalk: a robot with a secret (`secrets[access_token]`) needs `timestamp` (ms, within an hour
  of the sink's clock) and `sign` = url-encode(base64(HMAC-SHA256(key=secret,
  msg=f"{timestamp}\\n{secret}"))), decoded once from the query; otherwise errcode 310000 with
  HTTP 200. The body must be JSON (Content-Type application/json, else 43004).
- Feishu: a bot with a secret (`secrets[hook id]`) needs body `timestamp` (s, within an hour) and
  `sign` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")); otherwise code 19021.
- WeCom: no signature; at most `per_minute["wecom"]` (20) accepted messages in any 60 s per key,
  then errcode 45009.
- Slack: no signature; `text` or `blocks` required (400 no_text), JSON (400 invalid_payload),
  Block Kit header/section limits (400 invalid_blocks); success is `200 ok` in plain text.
Robots without a configured secret accept unsigned requests, as an unsigned robot does.

Failure modes (`fail(platform, mode, count=None)`, until `recover`): http_500, rate_limited (the
platform's own answer), bad_sign (DingTalk, Feishu), gone (the platform's "webhook removed"),
timeout (handled normally, answered after a delay longer than the client's timeout) and down
(the connection is closed without an answer). Every request is captured, failed ones too.

Guesses, where the platforms' documentation is thin: WeCom answers an unreadable body with
errcode 40035; DingTalk answers a missing access_token like an unknown one (300005); Feishu's
frequency limit is answered with HTTP 200 and code 11232.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

from pydantic import BaseModel

log = logging.getLogger(__name__)  # "devstack.im_sink"

SLACK, DINGTALK, FEISHU, WECOM = "slack", "dingtalk", "feishu", "wecom"
PLATFORMS = (SLACK, DINGTALK, FEISHU, WECOM)
SIGNED = frozenset({DINGTALK, FEISHU})
MODES = ("http_500", "rate_limited", "bad_sign", "gone", "timeout", "down")

SLACK_PREFIX = "/slack/"
DINGTALK_PATH = "/dingtalk/robot/send"
FEISHU_PREFIX = "/feishu/open-apis/bot/v2/hook/"
WECOM_PATH = "/wecom/cgi-bin/webhook/send"

# Real webhook hosts and the sink prefix that replaces scheme and host (`rebase`).
REAL_HOSTS: Mapping[str, str] = {
    "hooks.slack.com": SLACK, "oapi.dingtalk.com": DINGTALK, "open.feishu.cn": FEISHU,
    "open.larksuite.com": FEISHU, "qyapi.weixin.qq.com": WECOM,
}

SIGNATURE_WINDOW = timedelta(hours=1)  # DingTalk and Feishu: timestamp within an hour of now
RATE_WINDOW = timedelta(minutes=1)
DEFAULT_PER_MINUTE: Mapping[str, int] = {WECOM: 20}
DEFAULT_TIMEOUT_DELAY = 12.0  # longer than chalicelib.core.http.TIMEOUT's 10 s read
SLACK_HEADER_MAX_CHARS, SLACK_SECTION_MAX_CHARS = 150, 3000
WECOM_MARKDOWN_MAX_BYTES, WECOM_TEXT_MAX_BYTES = 4096, 2048

LABELS: Mapping[str, str] = {SLACK: "Slack webhook", DINGTALK: "DingTalk robot",
                             FEISHU: "Feishu bot", WECOM: "WeCom robot"}

DINGTALK_TYPES = frozenset({"text", "markdown", "link", "actionCard", "feedCard"})
FEISHU_TYPES = frozenset({"text", "post", "image", "share_chat", "interactive"})
WECOM_TYPES = frozenset({"text", "markdown", "markdown_v2", "image", "news", "file", "voice",
                         "template_card"})

JSON_TYPE = "application/json;charset=UTF-8"
TEXT_TYPE = "text/plain; charset=utf-8"


def _utc_now() -> datetime:
    return datetime.now(UTC)


# Captures ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Received:
    """One request as it arrived, and what the sink did with it."""

    platform: str  # slack | dingtalk | feishu | wecom | unknown
    path: str  # without the query
    query: str  # raw, exactly as sent (still url-encoded)
    headers: Mapping[str, str]
    body: bytes
    json: Any  # the body parsed, or None
    shown_text: str | None  # what was printed, None unless the platform accepted it
    at: datetime  # the sink's clock
    robot: str = ""  # hook id, access_token, key
    method: str = "POST"
    # accepted | timeout (handled, answered late) | down | http_500 | rate_limited | bad_sign |
    # gone | invalid | not_found
    outcome: str = "accepted"
    status: int | None = 200  # None when nothing was answered
    answer: bytes = b""

    @property
    def params(self) -> dict[str, str]:
        """The query decoded once (first value of each name)."""
        return {k: v[0] for k, v in parse_qs(self.query, keep_blank_values=True).items()}


@dataclass(frozen=True)
class _Reply:
    outcome: str
    status: int | None
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: Mapping[str, str] = field(default_factory=dict)
    shown: str | None = None
    delay: float = 0.0


@dataclass
class _Failing:
    mode: str
    remaining: int | None
    delay: float


def _json_reply(outcome: str, answer: Mapping[str, Any], status: int = 200,
                shown: str | None = None) -> _Reply:
    body = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _Reply(outcome, status, body, JSON_TYPE, shown=shown)


def _text_reply(outcome: str, status: int, word: str, headers: Mapping[str, str] | None = None,
                shown: str | None = None) -> _Reply:
    return _Reply(outcome, status, word.encode("utf-8"), TEXT_TYPE, headers or {}, shown)


def _ding(outcome: str, code: int, message: str, shown: str | None = None) -> _Reply:
    return _json_reply(outcome, {"errcode": code, "errmsg": message}, shown=shown)


def _lark(outcome: str, code: int, message: str, status: int = 200,
          shown: str | None = None) -> _Reply:
    return _json_reply(outcome, {"code": code, "msg": message, "data": {}}, status, shown)


# The platforms' own answers for the injected failures.
_RATE_LIMITED: Mapping[str, Callable[[], _Reply]] = {
    SLACK: lambda: _text_reply("rate_limited", 429, "rate_limited", {"Retry-After": "1"}),
    DINGTALK: lambda: _ding("rate_limited", 130101, "send too fast, exceed 20 times per minute"),
    FEISHU: lambda: _lark("rate_limited", 11232, "frequency limited"),
    WECOM: lambda: _ding("rate_limited", 45009, "api freq out of limit"),
}
_BAD_SIGN: Mapping[str, Callable[[], _Reply]] = {
    DINGTALK: lambda: _ding("bad_sign", 310000, "sign not match, more: "
                            "[https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"),
    FEISHU: lambda: _lark("bad_sign", 19021, "sign match fail or timestamp is not within one "
                          "hour from current time"),
}
_STALE_DINGTALK = "invalid timestamp"
_GONE: Mapping[str, Callable[[], _Reply]] = {
    SLACK: lambda: _text_reply("gone", 404, "no_service"),
    DINGTALK: lambda: _ding("gone", 300005, "token is not exist"),
    FEISHU: lambda: _lark("gone", 19001, "param invalid: incoming webhook access token invalid"),
    WECOM: lambda: _ding("gone", 93000, "invalid webhook url"),
}


def _http_500(platform: str) -> _Reply:
    return _text_reply("http_500", 500,
                       "rollup_error" if platform == SLACK else "Internal Server Error")


# Signatures, from the platforms' documentation (not from our adapters) ---------------------------

def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def dingtalk_signature_ok(timestamp: str, sign: str, secret: str) -> bool:
    """`sign` as decoded once from the query: the base64 itself."""
    expected = _b64_hmac(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode())
    return hmac.compare_digest(expected.encode(), sign.encode("utf-8"))


def feishu_signature_ok(timestamp: str, sign: str, secret: str) -> bool:
    expected = _b64_hmac(f"{timestamp}\n{secret}".encode(), b"")
    return hmac.compare_digest(expected.encode(), sign.encode("utf-8"))


def _fresh(timestamp: str, per_second: int, now: datetime) -> bool:
    """`timestamp` (whole seconds or milliseconds since the epoch) within an hour of `now`."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    window = SIGNATURE_WINDOW.total_seconds() * per_second
    return abs(int(timestamp) - now.timestamp() * per_second) <= window


# Showing a message as the platform would ---------------------------------------------------------

_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_EMPHASIS = re.compile(r"(\*\*|__|~~|\*)(?=\S)(.+?)(?<=\S)\1")
_CODE = re.compile(r"`([^`]*)`")
_SLACK_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_SLACK_BARE = re.compile(r"<([^<>]+)>")
_SLACK_EMPHASIS = re.compile(r"(?<!\w)([*_~])(?=\S)(.+?)(?<=\S)\1(?!\w)")
_EMOJI = {":information_source:": "ℹ️", ":large_yellow_circle:": "🟡", ":warning:": "⚠️",
          ":rotating_light:": "🚨", ":white_check_mark:": "✅", ":x:": "❌"}


def markdown_lines(text: str) -> list[str]:
    """DingTalk / WeCom / Feishu markdown as plain lines: no markup, links as "label (url)"."""
    lines: list[str] = []
    for raw in text.splitlines():
        if _RULE.match(raw):
            continue
        line = _HEADING.sub("", _QUOTE.sub("", raw))
        line = _BULLET.sub(r"\1• ", line)
        line = _HTML_TAG.sub("", line)
        line = _IMAGE.sub(lambda m: f"[image {m.group(1)}]".replace(" ]", "]"), line)
        line = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", line)
        previous = None
        while previous != line:  # nested emphasis: **_x_**
            previous, line = line, _EMPHASIS.sub(r"\2", line)
        line = _CODE.sub(r"\1", line).rstrip()
        if line.strip():
            lines.append(line)
    return lines


def _slack_bare(match: re.Match[str]) -> str:
    inner = match.group(1)  # <!here>, <@U123>, <#C123>, <https://...>
    return "@" + inner[1:].split("^")[0] if inner.startswith("!") else inner


def mrkdwn_lines(text: str) -> list[str]:
    """Slack mrkdwn as plain lines."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = _SLACK_LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", raw)
        line = _SLACK_BARE.sub(_slack_bare, line)
        line = _SLACK_EMPHASIS.sub(r"\2", _QUOTE.sub("", line))
        line = line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        for code, emoji in _EMOJI.items():
            line = line.replace(code, emoji)
        if line.strip():
            lines.append(line.rstrip())
    return lines


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _slack_block_lines(blocks: Sequence[Any]) -> tuple[str, list[str]]:
    title, lines = "", []
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        kind, text = block.get("type"), block.get("text")
        body = _text_of(text.get("text")) if isinstance(text, Mapping) else ""
        plain = isinstance(text, Mapping) and text.get("type") == "plain_text"
        if kind == "header" and not title:
            title = " ".join(mrkdwn_lines(body)) if not plain else body
            for code, emoji in _EMOJI.items():
                title = title.replace(code, emoji)
        elif kind in ("section", "context", "header"):
            lines += [body] if plain and body else mrkdwn_lines(body)
            for item in [*block.get("fields", []), *block.get("elements", [])]:
                if isinstance(item, Mapping):
                    lines += mrkdwn_lines(_text_of(item.get("text")))
        elif kind == "actions":
            for item in block.get("elements", []):
                if isinstance(item, Mapping) and isinstance(item.get("text"), Mapping):
                    label = _text_of(item["text"].get("text"))
                    url = _text_of(item.get("url"))
                    lines.append(f"[{label}] ({url})" if url else f"[{label}]")
    return title, lines


def _render_slack(body: Mapping[str, Any]) -> tuple[str, list[str]]:
    blocks = body.get("blocks")
    if isinstance(blocks, list) and blocks:
        return _slack_block_lines(blocks)
    return "", mrkdwn_lines(_text_of(body.get("text")))


def _render_dingtalk(body: Mapping[str, Any]) -> tuple[str, list[str]]:
    kind = body.get("msgtype")
    part = body.get(kind) if isinstance(kind, str) else None
    part = part if isinstance(part, Mapping) else {}
    if kind == "text":
        return "", [line for line in _text_of(part.get("content")).splitlines() if line.strip()]
    lines = markdown_lines(_text_of(part.get("text")))
    for key in ("messageUrl", "singleURL"):
        if part.get(key):
            lines.append(f"{part.get('singleTitle') or 'Open'} ({part[key]})")
    for item in [*part.get("btns", []), *part.get("links", [])]:
        if isinstance(item, Mapping):
            url = item.get("actionURL") or item.get("messageURL", "")
            lines.append(f"{item.get('title', '')} ({url})")
    return _text_of(part.get("title")), lines


def _feishu_post_lines(paragraphs: Any) -> list[str]:
    lines: list[str] = []
    for paragraph in paragraphs if isinstance(paragraphs, list) else []:
        parts: list[str] = []
        for element in paragraph if isinstance(paragraph, list) else []:
            if not isinstance(element, Mapping):
                continue
            tag, text = element.get("tag"), _text_of(element.get("text"))
            if tag == "a":
                parts.append(f"{text} ({element.get('href', '')})")
            elif tag == "at":
                parts.append("@" + str(element.get("user_name") or element.get("user_id", "")))
            elif tag == "img":
                parts.append("[image]")
            elif tag == "md":
                parts.append(" ".join(markdown_lines(text)))
            else:
                parts.append(text)
        line = "".join(parts)
        if line.strip():
            lines.append(line)
    return lines


def _feishu_card(card: Mapping[str, Any]) -> tuple[str, list[str]]:
    header = card.get("header")
    title_part = header.get("title") if isinstance(header, Mapping) else None
    title = _text_of(title_part.get("content")) if isinstance(title_part, Mapping) else ""
    lines: list[str] = []
    body = card.get("body")
    elements = body.get("elements") if isinstance(body, Mapping) else card.get("elements")
    for element in elements if isinstance(elements, list) else []:
        if not isinstance(element, Mapping):
            continue
        text = element.get("text")
        if element.get("tag") == "markdown":
            lines += markdown_lines(_text_of(element.get("content")))
        elif isinstance(text, Mapping):
            lines += markdown_lines(_text_of(text.get("content")))
        for action in element.get("actions", []):
            if isinstance(action, Mapping) and isinstance(action.get("text"), Mapping):
                lines.append(f"[{_text_of(action['text'].get('content'))}] "
                             f"({action.get('url', '')})")
    return title, lines


def _render_feishu(body: Mapping[str, Any]) -> tuple[str, list[str]]:
    kind, content = body.get("msg_type"), body.get("content")
    content = content if isinstance(content, Mapping) else {}
    if kind == "text":
        return "", markdown_lines(_text_of(content.get("text")))
    if kind == "post":
        post = content.get("post")
        if isinstance(post, Mapping) and post:
            first = next(iter(post.values()))
            if isinstance(first, Mapping):
                return _text_of(first.get("title")), _feishu_post_lines(first.get("content"))
        return "", []
    if kind == "interactive":
        card = body.get("card", content)
        return _feishu_card(card) if isinstance(card, Mapping) else ("", [])
    return "", [f"[{kind}]"]


def _render_wecom(body: Mapping[str, Any]) -> tuple[str, list[str]]:
    kind = body.get("msgtype")
    part = body.get(kind) if isinstance(kind, str) else None
    part = part if isinstance(part, Mapping) else {}
    if kind == "text":
        return "", [line for line in _text_of(part.get("content")).splitlines() if line.strip()]
    if kind in ("markdown", "markdown_v2"):
        return "", markdown_lines(_text_of(part.get("content")))
    return "", [f"[{kind}]"]


_RENDER: Mapping[str, Callable[[Mapping[str, Any]], tuple[str, list[str]]]] = {
    SLACK: _render_slack, DINGTALK: _render_dingtalk, FEISHU: _render_feishu, WECOM: _render_wecom,
}


def display(platform: str, name: str, body: Mapping[str, Any]) -> str:
    """The message as the platform shows it: `[DingTalk robot cs-team] title`, then plain lines
    (indented). A first line repeating the title is dropped; without a title the first line is."""
    title, lines = _RENDER[platform](body)
    if not title and lines:
        title, lines = lines[0], lines[1:]
    elif lines and lines[0].strip() == title.strip():
        lines = lines[1:]
    return "\n".join([f"[{LABELS[platform]} {name}] {title}".rstrip(),
                      *(f"  {line}" for line in lines)])


def _short(robot: str) -> str:
    return robot if len(robot) <= 16 else f"{robot[:6]}…{robot[-4:]}"


# The sink ----------------------------------------------------------------------------------------

class ImSink:
    """All four IM platforms on one local port. Thread-safe; start()/stop() or `with`."""

    def __init__(self, secrets: Mapping[str, str] | None = None, *,
                 names: Mapping[str, str] | None = None,
                 show: Callable[[str], None] | None = None,
                 clock: Callable[[], datetime] = _utc_now,
                 per_minute: Mapping[str, int] | None = None,
                 timeout_delay: float = DEFAULT_TIMEOUT_DELAY,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        """`secrets`: robot id (DingTalk access_token, Feishu hook id) -> signing secret;
        `names`: robot id -> the name shown in the header (default: the id, shortened);
        `show`: also called with each shown message (e.g. `print`);
        `per_minute`: platform -> accepted messages per robot in any 60 s (default WeCom 20)."""
        self.secrets: dict[str, str] = dict(secrets or {})
        self.names: dict[str, str] = dict(names or {})
        self.show = show
        self.clock = clock
        self.per_minute: dict[str, int] = dict(DEFAULT_PER_MINUTE if per_minute is None
                                               else per_minute)
        self.timeout_delay = timeout_delay
        self.host, self.port = host, port
        self._received: list[Received] = []
        self._failing: dict[str, _Failing] = {}
        self._sent: dict[tuple[str, str], deque[datetime]] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -----------------------------------------------------------------------------------

    def start(self) -> ImSink:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((self.host, self.port), _Handler, self)
            server = self._server
            self._thread = threading.Thread(
                target=lambda: server.serve_forever(poll_interval=0.05), name="im-sink",
                daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends the sleeps of "timeout" answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ImSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # URLs ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the IM sink is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def urls(self) -> dict[str, str]:
        """Each platform's stand-in for the real scheme and host (see `rebase`)."""
        return {platform: f"{self.url}/{platform}" for platform in PLATFORMS}

    def url_for(self, platform: str, robot: str) -> str:
        """The webhook URL a channel config takes, for the robot's hook id / token / key."""
        if platform == SLACK:
            return f"{self.url}{SLACK_PREFIX}{quote(robot, safe='/')}"
        if platform == DINGTALK:
            return f"{self.url}{DINGTALK_PATH}?access_token={quote(robot, safe='')}"
        if platform == FEISHU:
            return f"{self.url}{FEISHU_PREFIX}{quote(robot, safe='')}"
        if platform == WECOM:
            return f"{self.url}{WECOM_PATH}?key={quote(robot, safe='')}"
        raise ValueError(f"unknown IM platform {platform!r}; known: {PLATFORMS}")

    def rebase(self, real_url: str) -> str:
        """A real webhook URL (https://oapi.dingtalk.com/robot/send?access_token=T, ...) moved
        onto the sink, path and query kept."""
        parts = urlsplit(real_url)
        platform = REAL_HOSTS.get(parts.hostname or "")
        if platform is None:
            raise ValueError(f"not a known IM webhook host: {parts.hostname!r}")
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.url}/{platform}{parts.path}{query}"

    def config_for(self, platform: str, robot: str) -> BaseModel:
        """Our adapter's config for this robot on the sink, with its secret when it has one."""
        from chalicelib.cs.channels import parse_config

        data = {"webhook_url": self.url_for(platform, robot)}
        if platform in SIGNED and robot in self.secrets:
            data["secret"] = self.secrets[robot]
        return parse_config(platform, data)

    # Failures ------------------------------------------------------------------------------------

    def fail(self, platform: str, mode: str, count: int | None = None, *,
             delay: float | None = None) -> None:
        """The next `count` requests to `platform` (all, if None, until `recover`) fail so.
        `delay` (mode "timeout"): seconds before the answer, default `timeout_delay`."""
        if platform not in PLATFORMS:
            raise ValueError(f"unknown IM platform {platform!r}; known: {PLATFORMS}")
        if mode not in MODES:
            raise ValueError(f"unknown failure mode {mode!r}; known: {MODES}")
        if mode == "bad_sign" and platform not in SIGNED:
            raise ValueError(f"{platform} robots are not signed: no bad_sign answer")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None: until recover)")
        with self._lock:
            self._failing[platform] = _Failing(
                mode, count, self.timeout_delay if delay is None else delay)

    def recover(self, platform: str | None = None) -> None:
        with self._lock:
            if platform is None:
                self._failing.clear()
            else:
                self._failing.pop(platform, None)

    # Captures ------------------------------------------------------------------------------------

    def received(self, platform: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if platform is None or r.platform == platform]

    def shown(self, platform: str | None = None) -> list[str]:
        return [r.shown_text for r in self.received(platform) if r.shown_text is not None]

    def wait_for(self, count: int, platform: str | None = None,
                 timeout: float = 5.0) -> list[Received]:
        """At least `count` captured requests (to `platform`), waiting up to `timeout` s."""
        def matching() -> list[Received]:
            return [r for r in self._received if platform is None or r.platform == platform]

        with self._arrived:
            if not self._arrived.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"{len(matching())} of {count} requests arrived "
                                   f"({platform or 'any platform'}) within {timeout} s")
            return matching()

    def clear(self) -> None:
        """Forget the captured requests (failure modes and rate windows stay)."""
        with self._lock:
            self._received.clear()

    def reset(self) -> None:
        """Captures, failure modes and rate windows: as new."""
        with self._lock:
            self._received.clear()
            self._failing.clear()
            self._sent.clear()

    # Handling ------------------------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes) -> _Reply:
        """Decide the answer to one request and capture it (called by the HTTP handler)."""
        parts = urlsplit(target)
        platform, robot = _route(parts.path, parts.query)
        document = _json_object(body)
        at = self.clock()
        with self._lock:
            failing = self._failing.get(platform)
            if failing is not None and failing.remaining is not None:
                failing.remaining -= 1
                if failing.remaining <= 0:
                    del self._failing[platform]
            reply = self._decide(platform, robot, parts.query, headers, body, document, at,
                                 failing)
            self._received.append(Received(
                platform=platform, path=parts.path, query=parts.query, headers=dict(headers),
                body=body, json=document, shown_text=reply.shown, at=at, robot=robot,
                method=method, outcome=reply.outcome, status=reply.status, answer=reply.body))
            self._arrived.notify_all()
        if reply.shown is not None:
            log.info("%s", reply.shown)
            if self.show is not None:
                try:
                    self.show(reply.shown)
                except Exception:  # a broken printer must not change the platform's answer
                    log.exception("IM sink: show() failed")
        return reply

    def _decide(self, platform: str, robot: str, query: str, headers: Mapping[str, str],
                body: bytes, document: dict[str, Any] | None, at: datetime,
                failing: _Failing | None) -> _Reply:
        if platform == "unknown":
            return _text_reply("not_found", 404, "404 page not found")
        if failing is not None and failing.mode != "timeout":
            if failing.mode == "down":
                return _Reply("down", None)
            if failing.mode == "http_500":
                return _http_500(platform)
            table = {"rate_limited": _RATE_LIMITED, "bad_sign": _BAD_SIGN, "gone": _GONE}
            return table[failing.mode][platform]()
        reply = {SLACK: self._slack, DINGTALK: self._dingtalk, FEISHU: self._feishu,
                 WECOM: self._wecom}[platform](robot, query, headers, body, document, at)
        if failing is not None:  # "timeout": handled as usual, answered too late
            return _Reply("timeout", reply.status, reply.body, reply.content_type, reply.headers,
                          reply.shown, failing.delay)
        return reply

    def _admit(self, platform: str, robot: str, at: datetime) -> bool:
        """Count one accepted message against the platform's per-minute limit (lock held)."""
        limit = self.per_minute.get(platform)
        if limit is None:
            return True
        sent = self._sent.setdefault((platform, robot), deque())
        while sent and at - sent[0] >= RATE_WINDOW:
            sent.popleft()
        if len(sent) >= limit:
            return False
        sent.append(at)
        return True

    def _accept(self, platform: str, robot: str, document: Mapping[str, Any],
                at: datetime, ok: Callable[[str], _Reply]) -> _Reply:
        if not self._admit(platform, robot, at):
            return _RATE_LIMITED[platform]()
        return ok(display(platform, self.names.get(robot, _short(robot)), document))

    def _slack(self, robot: str, query: str, headers: Mapping[str, str], body: bytes,
               document: dict[str, Any] | None, at: datetime) -> _Reply:
        if not robot:
            return _text_reply("gone", 404, "no_service")
        if document is None:
            return _text_reply("invalid", 400, "invalid_payload")
        text, blocks = document.get("text"), document.get("blocks")
        if blocks is not None and not _slack_blocks_ok(blocks):
            return _text_reply("invalid", 400, "invalid_blocks")
        if not (isinstance(text, str) and text.strip()) and not blocks:
            return _text_reply("invalid", 400, "no_text")
        return self._accept(SLACK, robot, document, at,
                            lambda shown: _text_reply("accepted", 200, "ok", shown=shown))

    def _dingtalk(self, robot: str, query: str, headers: Mapping[str, str], body: bytes,
                  document: dict[str, Any] | None, at: datetime) -> _Reply:
        if not robot:
            return _ding("gone", 300005, "token is not exist")
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        secret = self.secrets.get(robot)
        if secret is not None:
            timestamp, sign = params.get("timestamp", ""), params.get("sign", "")
            if not _fresh(timestamp, 1000, at):
                return _ding("bad_sign", 310000, _STALE_DINGTALK)
            if not dingtalk_signature_ok(timestamp, sign, secret):
                return _BAD_SIGN[DINGTALK]()
        if not _header(headers, "Content-Type").lower().startswith("application/json"):
            return _ding("invalid", 43004, "无效的HTTP HEADER Content-Type")
        if document is None:
            return _ding("invalid", 40035, "缺少参数 json")
        kind = document.get("msgtype")
        if not isinstance(kind, str) or not kind:
            return _ding("invalid", 40035, "缺少参数 msgtype")
        if kind not in DINGTALK_TYPES:
            return _ding("invalid", 400105, "不支持的消息类型")
        part = document.get(kind)
        required = {"text": ("content",), "markdown": ("title", "text")}.get(kind, ())
        missing = [name for name in required
                   if not (isinstance(part, Mapping) and _text_of(part.get(name)).strip())]
        if not isinstance(part, Mapping) or missing:
            return _ding("invalid", 40035, f"缺少参数 {kind}.{(missing or ['*'])[0]}")
        return self._accept(DINGTALK, robot, document, at,
                            lambda shown: _ding("accepted", 0, "ok", shown))

    def _feishu(self, robot: str, query: str, headers: Mapping[str, str], body: bytes,
                document: dict[str, Any] | None, at: datetime) -> _Reply:
        if not robot:
            return _GONE[FEISHU]()
        if document is None:
            return _lark("invalid", 9499, "Bad Request", status=400)
        secret = self.secrets.get(robot)
        if secret is not None:
            raw = document.get("timestamp")
            timestamp = str(raw) if isinstance(raw, str | int) else ""
            sign = document.get("sign")
            if not (_fresh(timestamp, 1, at) and isinstance(sign, str)
                    and feishu_signature_ok(timestamp, sign, secret)):
                return _BAD_SIGN[FEISHU]()
        kind = document.get("msg_type")
        if not isinstance(kind, str) or kind not in FEISHU_TYPES:
            return _lark("invalid", 19002, "params error, msg_type need")
        if kind == "interactive":
            card = document.get("card", document.get("content"))
            if not isinstance(card, Mapping):
                return _lark("invalid", 19002, "params error, card need")
        elif not isinstance(document.get("content"), Mapping):
            return _lark("invalid", 19002, "params error, content need")
        return self._accept(FEISHU, robot, document, at,
                            lambda shown: _lark("accepted", 0, "success", shown=shown))

    def _wecom(self, robot: str, query: str, headers: Mapping[str, str], body: bytes,
               document: dict[str, Any] | None, at: datetime) -> _Reply:
        if not robot:
            return _GONE[WECOM]()
        if document is None:
            return _ding("invalid", 40035, "invalid args")
        kind = document.get("msgtype")
        if not isinstance(kind, str) or kind not in WECOM_TYPES:
            return _ding("invalid", 40008, "invalid message type")
        part = document.get(kind)
        if kind in ("text", "markdown", "markdown_v2"):
            content = _text_of(part.get("content")) if isinstance(part, Mapping) else ""
            if not content.strip():
                return _ding("invalid", 44004, "empty content")
            limit = WECOM_TEXT_MAX_BYTES if kind == "text" else WECOM_MARKDOWN_MAX_BYTES
            if len(content.encode("utf-8")) > limit:
                return _ding("invalid", 40058,
                             f"{kind}.content exceed max length {limit}")
        return self._accept(WECOM, robot, document, at,
                            lambda shown: _ding("accepted", 0, "ok", shown))


def _slack_blocks_ok(blocks: Any) -> bool:
    if not isinstance(blocks, list) or len(blocks) > 50:
        return False
    for block in blocks:
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            return False
        text = block.get("text")
        if isinstance(text, Mapping):
            limit = (SLACK_HEADER_MAX_CHARS if block["type"] == "header"
                     else SLACK_SECTION_MAX_CHARS)
            if not 0 < len(_text_of(text.get("text"))) <= limit:
                return False
    return True


def _route(path: str, query: str) -> tuple[str, str]:
    """(platform, robot id) for a request path; ("unknown", "") if none matches."""
    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if path.startswith(SLACK_PREFIX):
        hook = path[len(SLACK_PREFIX):]
        return SLACK, hook.removeprefix("services/").strip("/")
    if path == DINGTALK_PATH:
        return DINGTALK, params.get("access_token", "")
    if path.startswith(FEISHU_PREFIX):
        return FEISHU, path[len(FEISHU_PREFIX):].strip("/")
    if path == WECOM_PATH:
        return WECOM, params.get("key", "")
    return "unknown", ""


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


# HTTP --------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 sink: ImSink) -> None:
        self.sink = sink
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ImSink"

    @property
    def sink(self) -> ImSink:
        return cast(_Server, self.server).sink

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request on stderr."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            reply = self.sink._handle(self.command, self.path, dict(self.headers.items()), body)
        except Exception:
            log.exception("IM sink: %s failed", urlsplit(self.path).path)
            reply = _text_reply("error", 500, "IM sink error")
        if reply.status is None:  # "down": no answer at all
            self.close_connection = True
            return
        if reply.delay > 0 and self.sink._stopping.wait(reply.delay):
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up (timeout mode): nobody to answer
            self.close_connection = True
