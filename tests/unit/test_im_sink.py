"""The local IM sink, driven through our real adapters and `chalicelib.cs.channels.send` over HTTP:
what each platform receives, the signatures it verifies on its own, its rate limit, the failure
modes as our adapters read them, and what it shows."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus, urlsplit

import pytest
import requests

from chalicelib.cs.alerts import Severity
from chalicelib.cs.channels import (
    JSON_CONTENT_TYPE,
    ChannelResult,
    Failure,
    Language,
    Message,
    WebhookConfig,
    channel,
    send,
)
from chalicelib.cs.channels.dingtalk import DingTalkConfig
from chalicelib.cs.channels.feishu import FeishuConfig
from chalicelib.cs.channels.slack import SlackConfig
from chalicelib.cs.channels.wecom import WeComConfig
from chalicelib.cs.templates import render
from devstack import im_sink
from devstack.im_sink import ImSink

NOW = datetime(2024, 3, 5, 6, 7, 8, 123456, tzinfo=UTC)
NOW_MS = 1709618828123
LINK = "https://cs.example.com/cases/case_1?tab=timeline&x=1"
DING_TOKEN, DING_SECRET = "tok-cs", "SECd41d8cd98f00b204e9800998ecf8427e"
FEISHU_HOOK, FEISHU_SECRET = "3f0c2a9e-hook", "fs-secret-7Qp"
SLACK_HOOK, WECOM_KEY = "T0/B0/XYZ", "k-1"
ROBOTS = {"slack": SLACK_HOOK, "dingtalk": DING_TOKEN, "feishu": FEISHU_HOOK, "wecom": WECOM_KEY}
NAMES = {DING_TOKEN: "cs-team", FEISHU_HOOK: "cs-team", SLACK_HOOK: "#cs-alerts",
         WECOM_KEY: "cs-team"}

MESSAGE = Message(
    title="【高】仓库拒单 · 订单 #1001",
    text="订单：#1001\n发生了什么：仓库拒绝了这个订单的发货任务。\n请处理：查看拒单原因。",
    severity=Severity.HIGH, link=LINK, language=Language.ZH, kind="job.rejected",
    mentions=("13800000000",))
BODY_LINES = ["  订单：#1001", "  发生了什么：仓库拒绝了这个订单的发货任务。",
              "  请处理：查看拒单原因。", f"  打开处理 ({LINK})"]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def shown() -> list[str]:
    return []


@pytest.fixture
def sink(clock: Clock, shown: list[str]) -> Iterator[ImSink]:
    with ImSink({DING_TOKEN: DING_SECRET, FEISHU_HOOK: FEISHU_SECRET}, names=NAMES,
                show=shown.append, clock=clock, timeout_delay=2.0) as started:
        yield started


def _send(sink: ImSink, platform: str, config: object = None,
          message: Message = MESSAGE, timeout: float = 5.0) -> ChannelResult:
    chosen = config if config is not None else sink.config_for(platform, ROBOTS[platform])
    return send(platform, message, chosen, NOW, timeout=timeout)


def _only(sink: ImSink, platform: str | None = None) -> im_sink.Received:
    received = sink.received(platform)
    assert len(received) == 1, received
    return received[0]


def _url(config: object) -> str:
    assert isinstance(config, WebhookConfig)
    return config.url


def _ding_sign(timestamp: int | str, secret: str) -> str:
    """Base64 HMAC-SHA256(key=secret, msg="ts\\nsecret"), not yet url-encoded."""
    return base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                                     hashlib.sha256).digest()).decode()


def _feishu_sign(timestamp: int | str, secret: str) -> str:
    return base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"",
                                     hashlib.sha256).digest()).decode()


# Every platform takes what our adapter builds ---------------------------------------------------

@pytest.mark.parametrize(("platform", "code", "answer"), [
    ("slack", "ok", b"ok"),
    ("dingtalk", "0", b'{"errcode":0,"errmsg":"ok"}'),
    ("feishu", "0", b'{"code":0,"msg":"success","data":{}}'),
    ("wecom", "0", b'{"errcode":0,"errmsg":"ok"}'),
])
def test_each_platform_accepts_the_adapters_request_exactly_as_built(
        sink: ImSink, platform: str, code: str, answer: bytes) -> None:
    config = sink.config_for(platform, ROBOTS[platform])
    assert _send(sink, platform, config) == ChannelResult.success(code)
    built = channel(platform).build_request(MESSAGE, config, NOW)
    url = urlsplit(built.url)
    got = _only(sink)
    assert (got.platform, got.robot, got.outcome, got.status) == \
        (platform, ROBOTS[platform], "accepted", 200)
    assert (got.method, got.path, got.query, got.body) == \
        (built.method, url.path, url.query, built.body_bytes())
    assert got.headers["Content-Type"] == JSON_CONTENT_TYPE
    assert got.json == built.json_body and got.answer == answer and got.at == NOW
    assert got.shown_text is not None and got.shown_text.splitlines()[1:] == (
        [*BODY_LINES, "  @13800000000"] if platform == "dingtalk" else BODY_LINES)


def test_configs_point_at_the_sink_in_the_platforms_url_shapes(sink: ImSink) -> None:
    configs = {platform: sink.config_for(platform, robot) for platform, robot in ROBOTS.items()}
    assert isinstance(configs["slack"], SlackConfig)
    assert isinstance(configs["wecom"], WeComConfig) and configs["wecom"].secret is None
    assert isinstance(configs["dingtalk"], DingTalkConfig)
    assert configs["dingtalk"].secret_text == DING_SECRET
    assert isinstance(configs["feishu"], FeishuConfig)
    assert configs["feishu"].secret_text == FEISHU_SECRET
    urls = {name: _url(config) for name, config in configs.items()}
    base = sink.url
    assert urls == {"slack": f"{base}/slack/T0/B0/XYZ",
                  "dingtalk": f"{base}/dingtalk/robot/send?access_token=tok-cs",
                  "feishu": f"{base}/feishu/open-apis/bot/v2/hook/3f0c2a9e-hook",
                  "wecom": f"{base}/wecom/cgi-bin/webhook/send?key=k-1"}
    # The real URLs map onto the same robots.
    assert sink.rebase("https://oapi.dingtalk.com/robot/send?access_token=tok-cs") == \
        urls["dingtalk"]
    assert sink.rebase("https://open.feishu.cn/open-apis/bot/v2/hook/3f0c2a9e-hook") == \
        urls["feishu"]
    assert sink.rebase("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1") == \
        urls["wecom"]
    assert sink.urls()["slack"] == f"{base}/slack"
    with pytest.raises(ValueError, match="not a known IM webhook host"):
        sink.rebase("https://example.com/hook")
    with pytest.raises(ValueError, match="unknown IM platform"):
        sink.url_for("teams", "x")


def test_a_rebased_real_slack_url_reaches_the_same_hook(sink: ImSink) -> None:
    config = SlackConfig(webhook_url=sink.rebase("https://hooks.slack.com/services/T0/B0/XYZ"))
    assert _send(sink, "slack", config).ok
    got = _only(sink)
    assert (got.path, got.robot) == ("/slack/services/T0/B0/XYZ", SLACK_HOOK)
    assert got.shown_text is not None and got.shown_text.startswith("[Slack webhook #cs-alerts] ")


def test_requests_are_kept_in_order_and_cleared(sink: ImSink) -> None:
    for platform in ("wecom", "slack", "feishu", "dingtalk", "wecom"):
        assert _send(sink, platform).ok
    assert [r.platform for r in sink.received()] == \
        ["wecom", "slack", "feishu", "dingtalk", "wecom"]
    assert len(sink.received("wecom")) == 2 and len(sink.shown("wecom")) == 2
    assert sink.wait_for(5, timeout=0.1)[-1].platform == "wecom"
    sink.clear()
    assert sink.received() == []
    with pytest.raises(TimeoutError, match="0 of 1"):
        sink.wait_for(1, "slack", timeout=0.05)


# Signatures, verified by the sink's own code ---------------------------------------------------

def test_sink_verifies_signatures_without_the_adapters_helpers() -> None:
    tree = ast.parse(Path(im_sink.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not any(name and name.startswith(("chalicelib.cs.channels.",
                                             "chalicelib.core.signatures"))
                   for name in imported)
    # The `dingding` crate's published vector: timestamp 1700000000000, secret "secret".
    published = "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="
    assert im_sink.dingtalk_signature_ok("1700000000000", published, "secret")
    assert not im_sink.dingtalk_signature_ok("1700000000001", published, "secret")
    assert not im_sink.dingtalk_signature_ok("1700000000000", published.replace("+", " "),
                                             "secret")
    assert im_sink.feishu_signature_ok("1599360473", _feishu_sign(1599360473, "demo"), "demo")
    # DingTalk's scheme (secret as the message, not in the key) is not Feishu's.
    assert not im_sink.feishu_signature_ok("1599360473", _ding_sign(1599360473, "demo"), "demo")


@pytest.mark.parametrize(("platform", "code"), [("dingtalk", "310000"), ("feishu", "19021")])
def test_a_wrong_secret_is_refused_and_read_as_a_security_failure(
        sink: ImSink, shown: list[str], platform: str, code: str) -> None:
    model = channel(platform).config_model
    config = model.model_validate({"webhook_url": sink.url_for(platform, ROBOTS[platform]),
                                   "secret": "not-the-secret"})
    result = _send(sink, platform, config)
    assert (result.ok, result.error, result.platform_code, result.retryable) == \
        (False, Failure.SECURITY, code, False)
    got = _only(sink)
    assert (got.outcome, got.status, got.shown_text) == ("bad_sign", 200, None)
    assert shown == []


@pytest.mark.parametrize(("platform", "code"), [("dingtalk", "310000"), ("feishu", "19021")])
def test_an_unsigned_request_to_a_signing_robot_is_refused(sink: ImSink, platform: str,
                                                           code: str) -> None:
    model = channel(platform).config_model
    config = model.model_validate({"webhook_url": sink.url_for(platform, ROBOTS[platform])})
    result = _send(sink, platform, config)
    assert (result.error, result.platform_code) == (Failure.SECURITY, code)


@pytest.mark.parametrize("platform", ["dingtalk", "feishu"])
def test_a_robot_without_a_secret_takes_unsigned_requests(sink: ImSink, platform: str) -> None:
    model = channel(platform).config_model
    config = model.model_validate({"webhook_url": sink.url_for(platform, "open-robot")})
    assert _send(sink, platform, config).ok


@pytest.mark.parametrize(("platform", "code"), [("dingtalk", "310000"), ("feishu", "19021")])
def test_timestamps_must_be_within_an_hour_of_the_platforms_clock(
        sink: ImSink, clock: Clock, platform: str, code: str) -> None:
    clock.now = NOW + timedelta(minutes=59)
    assert _send(sink, platform).ok
    clock.now = NOW - timedelta(minutes=59)
    assert _send(sink, platform).ok
    clock.now = NOW + timedelta(minutes=61)
    stale = _send(sink, platform)
    assert (stale.error, stale.platform_code) == (Failure.SECURITY, code)
    clock.now = NOW - timedelta(minutes=61)
    assert _send(sink, platform).error is Failure.SECURITY
    assert [r.outcome for r in sink.received()] == ["accepted", "accepted", "bad_sign",
                                                    "bad_sign"]


def test_dingtalk_sign_must_be_url_encoded_exactly_once(sink: ImSink) -> None:
    # A timestamp whose signature has a "+" (a space if left unencoded) and a "/".
    timestamp = next(t for t in range(NOW_MS, NOW_MS + 10_000)
                     if "+" in _ding_sign(t, DING_SECRET) and "/" in _ding_sign(t, DING_SECRET))
    sign = _ding_sign(timestamp, DING_SECRET)
    base = sink.url_for("dingtalk", DING_TOKEN)
    body = channel("dingtalk").build_request(
        MESSAGE, DingTalkConfig(webhook_url=base), NOW).body_bytes()
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    answers = {}
    for name, encoded in (("once", quote_plus(sign)), ("raw", sign),
                          ("twice", quote_plus(quote_plus(sign)))):
        reply = requests.post(f"{base}&timestamp={timestamp}&sign={encoded}", data=body,
                              headers=headers, timeout=5)
        answers[name] = reply.json()["errcode"]
    assert answers == {"once": 0, "raw": 310000, "twice": 310000}
    assert sink.received()[0].params["sign"] == sign


# WeCom's rate limit ------------------------------------------------------------------------------

def test_wecom_takes_twenty_messages_a_minute_per_key(sink: ImSink, clock: Clock) -> None:
    for second in range(20):
        clock.now = NOW + timedelta(seconds=second)
        assert _send(sink, "wecom").ok
    clock.now = NOW + timedelta(seconds=59)
    limited = _send(sink, "wecom")
    assert (limited.ok, limited.error, limited.platform_code, limited.retryable,
            limited.retry_after) == (False, Failure.RATE_LIMITED, "45009", True, 60.0)
    assert sink.received()[-1].outcome == "rate_limited"
    assert sink.received()[-1].shown_text is None
    assert _send(sink, "wecom", sink.config_for("wecom", "other-key")).ok  # per key
    clock.now = NOW + timedelta(seconds=60)  # the first message left the window
    assert _send(sink, "wecom").ok
    assert _send(sink, "wecom").error is Failure.RATE_LIMITED
    assert len(sink.shown("wecom")) == 22


def test_other_platforms_are_not_limited_by_default(sink: ImSink) -> None:
    for _ in range(25):
        assert _send(sink, "dingtalk").ok


def test_a_per_minute_limit_can_be_set_for_dingtalk(clock: Clock) -> None:
    with ImSink({DING_TOKEN: DING_SECRET}, clock=clock, per_minute={"dingtalk": 2}) as sink:
        assert _send(sink, "dingtalk").ok and _send(sink, "dingtalk").ok
        third = _send(sink, "dingtalk")
        assert (third.error, third.platform_code, third.retry_after) == \
            (Failure.RATE_LIMITED, "130101", 600.0)
        assert _send(sink, "wecom").ok  # the WeCom default is replaced, not added to


# Failure modes, as our adapters read them -------------------------------------------------------

FAILURES = [
    # platform, mode, error, platform code, retry_after
    ("slack", "http_500", Failure.SERVER, "500", None),
    ("dingtalk", "http_500", Failure.SERVER, "500", None),
    ("feishu", "http_500", Failure.SERVER, "500", None),
    ("wecom", "http_500", Failure.SERVER, "500", None),
    ("slack", "rate_limited", Failure.RATE_LIMITED, "429", 1.0),
    ("dingtalk", "rate_limited", Failure.RATE_LIMITED, "130101", 600.0),
    ("feishu", "rate_limited", Failure.RATE_LIMITED, "11232", None),
    ("wecom", "rate_limited", Failure.RATE_LIMITED, "45009", 60.0),
    ("dingtalk", "bad_sign", Failure.SECURITY, "310000", None),
    ("feishu", "bad_sign", Failure.SECURITY, "19021", None),
    ("slack", "gone", Failure.GONE, "no_service", None),
    ("dingtalk", "gone", Failure.GONE, "300005", None),
    ("feishu", "gone", Failure.GONE, "19001", None),
    ("wecom", "gone", Failure.GONE, "93000", None),
    ("slack", "down", Failure.NETWORK, "ConnectionError", None),
    ("dingtalk", "down", Failure.NETWORK, "ConnectionError", None),
    ("feishu", "down", Failure.NETWORK, "ConnectionError", None),
    ("wecom", "down", Failure.NETWORK, "ConnectionError", None),
]
RETRYABLE = {Failure.SERVER, Failure.RATE_LIMITED, Failure.NETWORK}


@pytest.mark.parametrize(("platform", "mode", "error", "code", "retry_after"), FAILURES)
def test_failure_modes_come_back_as_our_channel_results(
        sink: ImSink, shown: list[str], platform: str, mode: str, error: Failure, code: str,
        retry_after: float | None) -> None:
    sink.fail(platform, mode, count=1)
    result = _send(sink, platform)
    assert (result.ok, result.error, result.platform_code, result.retry_after) == \
        (False, error, code, retry_after)
    assert result.retryable is (error in RETRYABLE)
    got = _only(sink)
    assert (got.platform, got.outcome, got.shown_text) == (platform, mode, None)
    assert (got.status is None) is (mode == "down")
    assert got.body == channel(platform).build_request(
        MESSAGE, sink.config_for(platform, ROBOTS[platform]), NOW).body_bytes()
    assert shown == []
    assert _send(sink, platform).ok  # count=1: the next one goes through


@pytest.mark.parametrize("platform", list(ROBOTS))
def test_timeout_answers_after_the_clients_timeout(sink: ImSink, platform: str) -> None:
    sink.fail(platform, "timeout", count=1, delay=1.0)
    result = _send(sink, platform, timeout=0.2)
    assert (result.ok, result.error, result.platform_code, result.retryable) == \
        (False, Failure.NETWORK, "timeout", True)
    got = _only(sink)
    # The platform got it and shows it: only the answer was late (so a retry may duplicate it).
    assert got.outcome == "timeout" and got.status == 200 and got.shown_text is not None
    assert _send(sink, platform, timeout=5).ok


def test_no_answer_says_what_happened_and_never_shows_the_robots_url(sink: ImSink) -> None:
    config = sink.config_for("dingtalk", DING_TOKEN)
    sink.fail("dingtalk", "timeout", count=1, delay=1.0)
    late = _send(sink, "dingtalk", config, timeout=0.2)
    sink.fail("dingtalk", "down", count=1)
    down = _send(sink, "dingtalk", config)
    assert (late.platform_code, late.detail) == ("timeout", "no answer in time")
    assert (down.platform_code, down.detail) == ("ConnectionError", "")
    for result in (late, down):  # the URL holds the token, the signed query the signature
        assert DING_TOKEN not in repr(result) and sink.url not in repr(result)


def test_failures_last_for_count_requests_or_until_recover(sink: ImSink) -> None:
    sink.fail("wecom", "http_500", count=2)
    assert [_send(sink, "wecom").error for _ in range(3)] == \
        [Failure.SERVER, Failure.SERVER, None]
    sink.fail("slack", "gone")
    sink.fail("feishu", "down")
    assert [_send(sink, "slack").error for _ in range(3)] == [Failure.GONE] * 3
    assert _send(sink, "dingtalk").ok  # other platforms unaffected
    sink.recover("slack")
    assert _send(sink, "slack").ok
    assert _send(sink, "feishu").error is Failure.NETWORK
    sink.recover()
    assert _send(sink, "feishu").ok
    assert [r.outcome for r in sink.received("wecom")] == ["http_500", "http_500", "accepted"]


def test_fail_refuses_what_a_platform_cannot_do(sink: ImSink) -> None:
    with pytest.raises(ValueError, match="not signed"):
        sink.fail("wecom", "bad_sign")
    with pytest.raises(ValueError, match="not signed"):
        sink.fail("slack", "bad_sign")
    with pytest.raises(ValueError, match="unknown failure mode"):
        sink.fail("slack", "flaky")
    with pytest.raises(ValueError, match="unknown IM platform"):
        sink.fail("teams", "down")
    with pytest.raises(ValueError, match="at least 1"):
        sink.fail("slack", "down", count=0)


def test_a_stopped_sink_refuses_connections(clock: Clock) -> None:
    sink = ImSink(clock=clock).start()
    config = sink.config_for("wecom", WECOM_KEY)
    sink.stop()
    result = send("wecom", MESSAGE, config, NOW, timeout=2)
    assert (result.error, result.retryable) == (Failure.NETWORK, True)
    with pytest.raises(RuntimeError, match="not started"):
        _ = sink.url


# The platforms' own validation -----------------------------------------------------------------

def _post(url: str, body: bytes, content_type: str = JSON_CONTENT_TYPE) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=5)


def test_slack_refuses_what_slack_refuses(sink: ImSink) -> None:
    url = sink.url_for("slack", SLACK_HOOK)
    answers = [(r.status_code, r.text) for r in (
        _post(url, b"{not json"), _post(url, b'{"text": ""}'),
        _post(url, json.dumps({"text": "x", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "T" * 151}}]}).encode()))]
    assert answers == [(400, "invalid_payload"), (400, "no_text"), (400, "invalid_blocks")]
    assert [channel("slack").parse_response(400, r.answer).error for r in sink.received()] == \
        [Failure.INVALID_PAYLOAD] * 3
    assert {r.outcome for r in sink.received()} == {"invalid"}
    assert (_post(f"{sink.url}/slack/", b'{"text":"x"}').status_code,
            _post(f"{sink.url}/nowhere", b"{}").status_code) == (404, 404)
    assert sink.received()[-1].platform == "unknown"


def test_dingtalk_wecom_feishu_refuse_malformed_messages(sink: ImSink) -> None:
    ding = f"{sink.url}/dingtalk/robot/send?access_token=open"
    assert _post(ding, b'{"msgtype":"markdown","markdown":{"title":"t"}}').json()["errcode"] \
        == 40035
    assert _post(ding, b'{"msgtype":"voice"}').json()["errcode"] == 400105
    assert _post(ding, b'{"msgtype":"text","text":{"content":"x"}}',
                 "text/plain").json()["errcode"] == 43004
    wecom = sink.url_for("wecom", "k")
    too_long = json.dumps({"msgtype": "markdown", "markdown": {"content": "订" * 1366}})
    assert _post(wecom, too_long.encode()).json()["errcode"] == 40058
    assert _post(wecom, b'{"msgtype":"markdown","markdown":{"content":" "}}'
                 ).json()["errcode"] == 44004
    assert _post(wecom, b'{"msgtype":"bogus"}').json()["errcode"] == 40008
    feishu = sink.url_for("feishu", "open")
    bad = _post(feishu, b"[]")
    assert (bad.status_code, bad.json()["code"]) == (400, 9499)
    assert _post(feishu, b'{"content":{}}').json()["code"] == 19002
    codes = [channel(r.platform).parse_response(r.status or 0, r.answer).error
             for r in sink.received()]
    assert codes == [Failure.INVALID_PAYLOAD, Failure.INVALID_PAYLOAD, Failure.UNEXPECTED,
                     Failure.INVALID_PAYLOAD, Failure.INVALID_PAYLOAD, Failure.INVALID_PAYLOAD,
                     Failure.INVALID_PAYLOAD, Failure.INVALID_PAYLOAD]
    assert sink.shown() == []


def test_our_longest_wecom_message_still_fits(sink: ImSink) -> None:
    long = MESSAGE.model_copy(update={"text": "物流停滞 #1001\n" * 2000})
    assert _send(sink, "wecom", message=long).ok


# What is shown ---------------------------------------------------------------------------------

def test_shown_text_is_plain_as_each_platform_displays_it(
        sink: ImSink, shown: list[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devstack.im_sink")
    for platform in ("dingtalk", "wecom", "feishu", "slack"):
        assert _send(sink, platform).ok
    title = MESSAGE.title
    assert shown == [
        "\n".join([f"[DingTalk robot cs-team] {title}", *BODY_LINES, "  @13800000000"]),
        "\n".join([f"[WeCom robot cs-team] {title}", *BODY_LINES]),
        "\n".join([f"[Feishu bot cs-team] {title}", *BODY_LINES]),
        "\n".join([f"[Slack webhook #cs-alerts] ⚠️ {title}", *BODY_LINES]),
    ]
    for text in shown:
        for markup in ("**", "####", "<font", "](", "<http", "|打开处理>", ":warning:"):
            assert markup not in text
    assert [record.getMessage() for record in caplog.records
            if record.name == "devstack.im_sink"] == shown
    assert sink.shown() == shown


# Issue 12: an order name from a Standard Webhooks sender showed, on WeCom and DingTalk,
#   订单 #77 <@all> 付款链接 (http://evil.example/pay) 紧急
# with the link live and <@all> in the title. Text from outside is shown as typed.
EVIL_ORDER = "#77 <@all> [付款链接](http://evil.example/pay) 紧急"
SHOWN_ORDER = "#77 ＜＠all＞ [付款链接]（http：//evil.example/pay) 紧急"  # full-width: inert


def _evil_message() -> Message:
    return render("job.rejected", order=EVIL_ORDER, severity=Severity.HIGH, link=LINK,
                  language=Language.ZH, mentions=("13800000000",))


@pytest.mark.parametrize(("platform", "label", "after"), [
    ("wecom", "WeCom robot cs-team", []),
    ("dingtalk", "DingTalk robot cs-team", ["  @13800000000"]),  # the rota's mention, ours
])
def test_the_sink_example_is_shown_as_typed_on_wecom_and_dingtalk(
        sink: ImSink, platform: str, label: str, after: list[str]) -> None:
    assert _send(sink, platform, message=_evil_message()).ok
    (shown,) = sink.shown(platform)
    assert shown.splitlines() == [
        f"[{label}] 【高】仓库拒单 · 订单 {SHOWN_ORDER}",
        f"  订单：{SHOWN_ORDER}",
        "  发生了什么：仓库拒绝了这个订单的发货任务。",
        "  请处理：查看拒单原因（缺货、地址、货号），联系买家或修正后重新下发。",
        f"  打开处理 ({LINK})",
        *after,
    ]
    assert "<@all>" not in shown and "付款链接 (http://evil.example/pay)" not in shown
    body = _only(sink).json
    assert "http://evil" not in json.dumps(body, ensure_ascii=False)
    if platform == "dingtalk":
        assert body["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
        assert "<@all>" not in body["markdown"]["title"]


@pytest.mark.parametrize("platform", ["feishu", "slack"])
def test_the_sink_example_has_no_live_link_on_feishu_and_slack(sink: ImSink,
                                                                platform: str) -> None:
    assert _send(sink, platform, message=_evil_message()).ok
    (shown,) = sink.shown(platform)
    # Feishu's post text and Slack's plain_text header show "<@all>" as typed: no mention there.
    assert "[付款链接](http：//evil.example/pay)" in shown and "http://evil" not in shown
    assert shown.splitlines()[-1] == f"  打开处理 ({LINK})"
    # In Slack's mrkdwn section "<@all>" would be read: there it is "&lt;＠all&gt;".
    ordered = "<＠all>" if platform == "slack" else "<@all>"
    link = "[付款链接](http：//evil.example/pay)"
    assert shown.splitlines()[1] == f"  订单：#77 {ordered} {link} 紧急"


def test_robot_names_default_to_a_shortened_id(clock: Clock) -> None:
    with ImSink(clock=clock) as sink:
        key = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
        assert _send(sink, "wecom", sink.config_for("wecom", key)).ok
        assert sink.shown()[0].startswith("[WeCom robot 693a91…5aaa] ")


def test_markdown_is_flattened_to_plain_lines() -> None:
    text = ("### 标题 **加粗**\n\n> 引用 *斜体* ~~删~~ `code`\n- 一项\n* 二项\n---\n"
            "![截图](https://img.example/a.png)\n"
            '<font color="info">[详情](https://x.example/a_b?c=1&d=2)</font>\n\n')
    assert im_sink.markdown_lines(text) == [
        "标题 加粗", "引用 斜体 删 code", "• 一项", "• 二项", "[image 截图]",
        "详情 (https://x.example/a_b?c=1&d=2)"]
    assert im_sink.mrkdwn_lines("*bold* _it_ ~no~ a &lt; b &amp; c\n<https://x.example|Open> "
                                "<!here> <@U1> order_id_1") == [
        "bold it no a < b & c", "Open (https://x.example) @here @U1 order_id_1"]


def test_other_message_shapes_are_shown_too() -> None:
    ding_text = {"msgtype": "text", "text": {"content": "告警：#1001\n第二行"}}
    assert im_sink.display("dingtalk", "ops", ding_text) == \
        "[DingTalk robot ops] 告警：#1001\n  第二行"
    card = {"msg_type": "interactive", "card": {
        "header": {"title": {"tag": "plain_text", "content": "【高】拒单"}},
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "**订单** #1001"}},
                     {"tag": "action", "actions": [{"tag": "button", "url": LINK,
                                                    "text": {"tag": "plain_text",
                                                             "content": "打开"}}]}]}}
    assert im_sink.display("feishu", "cs", card) == \
        f"[Feishu bot cs] 【高】拒单\n  订单 #1001\n  [打开] ({LINK})"
    assert im_sink.display("feishu", "cs", {"msg_type": "text", "content": {"text": "hi"}}) == \
        "[Feishu bot cs] hi"
    assert im_sink.display("slack", "h", {"text": "*Paid* <https://x.example|#1001>"}) == \
        "[Slack webhook h] Paid #1001 (https://x.example)"


def test_concurrent_deliveries_are_all_captured(sink: ImSink) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def deliver(index: int) -> None:
        config = sink.config_for("feishu", f"hook-{index}")
        ok = _send(sink, "feishu", config).ok
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [True] * 12
    assert sorted(r.robot for r in sink.wait_for(12, "feishu", timeout=1)) == \
        sorted(f"hook-{n}" for n in range(12))
