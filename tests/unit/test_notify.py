"""CS channel adapters: signatures against independent vectors, the exact requests, the answers,
the templates, SES arguments, and every channel's request as a local HTTP server receives it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chalicelib.core.clock import epoch_millis
from chalicelib.cs import templates
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.cs.channels import (
    CHANNEL_MODULES,
    ChannelResult,
    Delivery,
    Failure,
    Language,
    Message,
    channel,
    delivery_of,
    dingtalk,
    email,
    feishu,
    parse_config,
    platform_of,
    send,
    slack,
    truncate_utf8,
    wecom,
)

NOW = datetime(2024, 3, 5, 6, 7, 8, 123456, tzinfo=UTC)
NOW_MS = 1709618828123
NOW_S = 1709618828
DING_SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
FEISHU_SECRET = "fs-secret-7Qp"
LINK = "https://cs.example.com/cases/case_1?tab=timeline&x=1"

MESSAGE = Message(
    title="【高】仓库拒单 · 订单 #1001",
    text="订单：#1001\n发生了什么：仓库拒绝了这个订单的发货任务。\n请处理：查看拒单原因。",
    severity=Severity.HIGH, link=LINK, language=Language.ZH, kind="job.rejected",
    mentions=("13800000000",))


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# Signatures, computed independently ------------------------------------------------------------

def _independent_dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    string_to_sign = f"{timestamp_ms}\n{secret}"
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                      digestmod=hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def _independent_feishu_sign(timestamp_s: int, secret: str) -> str:
    string_to_sign = f"{timestamp_s}\n{secret}"
    digest = hmac.new(string_to_sign.encode("utf-8"), digestmod=hashlib.sha256).digest()
    return base64.b64encode(digest).decode("utf-8")


def test_epoch_millis_is_exact() -> None:
    assert epoch_millis(NOW) == NOW_MS
    assert epoch_millis(datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)) == 1_700_000_000_000
    with pytest.raises(ValueError):
        epoch_millis(datetime(2024, 1, 1))


@pytest.mark.parametrize(("timestamp", "secret"), [
    (NOW_MS, DING_SECRET), (1_700_000_000_000, "secret"), (1, "密钥 with spaces+/="),
])
def test_dingtalk_sign_matches_independent_vector(timestamp: int, secret: str) -> None:
    assert dingtalk.sign(timestamp, secret) == _independent_dingtalk_sign(timestamp, secret)


def test_dingtalk_sign_matches_published_vector() -> None:
    # The `dingding` crate's test vector (docs.rs): timestamp 1700000000000, secret "secret".
    assert dingtalk.sign(1_700_000_000_000, "secret") == \
        "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D"


@pytest.mark.parametrize(("timestamp", "secret"), [
    (NOW_S, FEISHU_SECRET), (1599360473, "demo"), (0, "密钥"),
])
def test_feishu_sign_matches_independent_vector(timestamp: int, secret: str) -> None:
    assert feishu.sign(timestamp, secret) == _independent_feishu_sign(timestamp, secret)


def test_feishu_sign_is_not_dingtalks_scheme() -> None:
    # The common mistake: key=secret, message="timestamp\nsecret". Feishu rejects it (19021).
    wrong = base64.b64encode(hmac.new(FEISHU_SECRET.encode(),
                                      f"{NOW_S}\n{FEISHU_SECRET}".encode(),
                                      hashlib.sha256).digest()).decode()
    assert feishu.sign(NOW_S, FEISHU_SECRET) != wrong


# The exact requests ----------------------------------------------------------------------------

def test_slack_request() -> None:
    config = slack.SlackConfig(webhook_url="https://hooks.slack.com/services/T0/B0/XYZ")
    request = slack.CHANNEL.build_request(MESSAGE, config, NOW)
    assert (request.method, request.url) == ("POST", "https://hooks.slack.com/services/T0/B0/XYZ")
    assert dict(request.headers) == {"Content-Type": "application/json; charset=utf-8"}
    assert request.json_body == {
        "text": f"{MESSAGE.title}\n{MESSAGE.text}\n{LINK}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text",
                                        "text": f":warning: {MESSAGE.title}", "emoji": True}},
            # verbatim: Slack links no bare URL, #channel or @name in the case's text.
            {"type": "section", "text": {"type": "mrkdwn", "text": MESSAGE.text,
                                         "verbatim": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"<{LINK}|打开处理>"}},
        ]}


def test_slack_escapes_mrkdwn_and_respects_block_limits() -> None:
    message = MESSAGE.model_copy(update={"title": "T" * 400, "text": "a < b & c > d\n" * 400})
    body = slack.CHANNEL.build_request(
        message, slack.SlackConfig(webhook_url="https://h.example/x"), NOW).json_body
    header, section = body["blocks"][0]["text"]["text"], body["blocks"][1]["text"]["text"]
    assert len(header) <= slack.HEADER_MAX_CHARS and len(section) <= slack.SECTION_MAX_CHARS
    assert section.startswith("a &lt; b &amp; c &gt; d")


def test_dingtalk_request_is_signed_in_the_query() -> None:
    config = dingtalk.DingTalkConfig(
        webhook_url="https://oapi.dingtalk.com/robot/send?access_token=tok123",
        secret=DING_SECRET)
    request = dingtalk.CHANNEL.build_request(MESSAGE, config, NOW)
    expected_sign = _independent_dingtalk_sign(NOW_MS, DING_SECRET)
    assert request.url == ("https://oapi.dingtalk.com/robot/send?access_token=tok123"
                           f"&timestamp={NOW_MS}&sign={expected_sign}")
    assert dict(request.headers) == {"Content-Type": "application/json; charset=utf-8"}
    assert request.json_body == {
        "msgtype": "markdown",
        "markdown": {"title": MESSAGE.title, "text": (
            f"#### {MESSAGE.title}\n\n订单：#1001\n\n发生了什么：仓库拒绝了这个订单的发货任务。\n\n"
            f"请处理：查看拒单原因。\n\n[打开处理]({LINK})\n\n@13800000000")},
        "at": {"atMobiles": ["13800000000"], "isAtAll": False}}


def test_dingtalk_without_secret_sends_the_url_as_configured() -> None:
    config = dingtalk.DingTalkConfig(webhook_url="https://oapi.dingtalk.com/robot/send?access_token=t")
    assert dingtalk.CHANNEL.build_request(MESSAGE, config, NOW).url == \
        "https://oapi.dingtalk.com/robot/send?access_token=t"


def test_feishu_request_is_signed_in_the_body() -> None:
    config = feishu.FeishuConfig(
        webhook_url="https://open.feishu.cn/open-apis/bot/v2/hook/abc-123", secret=FEISHU_SECRET)
    request = feishu.CHANNEL.build_request(MESSAGE, config, NOW)
    assert request.url == "https://open.feishu.cn/open-apis/bot/v2/hook/abc-123"
    assert dict(request.headers) == {"Content-Type": "application/json; charset=utf-8"}
    assert request.json_body == {
        "timestamp": str(NOW_S),
        "sign": _independent_feishu_sign(NOW_S, FEISHU_SECRET),
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": MESSAGE.title, "content": [
            [{"tag": "text", "text": "订单：#1001"}],
            [{"tag": "text", "text": "发生了什么：仓库拒绝了这个订单的发货任务。"}],
            [{"tag": "text", "text": "请处理：查看拒单原因。"}],
            [{"tag": "a", "text": "打开处理", "href": LINK}],
        ]}}}}


def test_feishu_english_uses_the_english_locale_and_no_sign_without_secret() -> None:
    message = MESSAGE.model_copy(update={"language": Language.EN})
    body = feishu.CHANNEL.build_request(
        message, feishu.FeishuConfig(webhook_url="https://open.larksuite.com/open-apis/bot/v2/hook/x"),
        NOW).json_body
    assert set(body) == {"msg_type", "content"}
    assert list(body["content"]["post"]) == ["en_us"]


def test_wecom_request() -> None:
    config = wecom.WeComConfig(webhook_url="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1")
    request = wecom.CHANNEL.build_request(MESSAGE, config, NOW)
    assert request.url == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1"
    assert dict(request.headers) == {"Content-Type": "application/json; charset=utf-8"}
    assert request.json_body == {"msgtype": "markdown", "markdown": {"content": (
        f'<font color="warning">**{MESSAGE.title}**</font>\n{MESSAGE.text}\n[打开处理]({LINK})')}}


def test_wecom_markdown_fits_4096_bytes_and_keeps_title_and_link() -> None:
    message = MESSAGE.model_copy(update={"text": "物流停滞 #1001\n" * 2000})
    content = wecom.CHANNEL.build_request(
        message, wecom.WeComConfig(webhook_url="https://q.example/send?key=k"), NOW
    ).json_body["markdown"]["content"]
    assert len(content.encode("utf-8")) <= wecom.MARKDOWN_MAX_BYTES
    assert content.startswith('<font color="warning">**') and content.endswith(f"({LINK})")
    assert "…" in content


def test_truncate_utf8_cuts_on_character_boundaries() -> None:
    assert truncate_utf8("abc", 3) == "abc"
    cut = truncate_utf8("订单" * 10, 10)
    assert len(cut.encode()) <= 10 and cut.endswith("…")
    cut.encode("utf-8")  # still valid text


def test_unsigned_platforms_refuse_a_secret() -> None:
    with pytest.raises(ValueError, match="not signed"):
        wecom.WeComConfig(webhook_url="https://q.example/send?key=k", secret="s")
    with pytest.raises(ValueError, match="not signed"):
        slack.SlackConfig(webhook_url="https://hooks.slack.com/x", secret="s")
    with pytest.raises(ValueError, match="http"):
        slack.SlackConfig(webhook_url="hooks.slack.com/x")


def test_secrets_stay_out_of_repr() -> None:
    config = dingtalk.DingTalkConfig(
        webhook_url="https://oapi.dingtalk.com/robot/send?access_token=tok123", secret=DING_SECRET)
    request = dingtalk.CHANNEL.build_request(MESSAGE, config, NOW)
    for text in (repr(config), str(config), repr(request)):
        assert "tok123" not in text and DING_SECRET not in text


def test_registry_imports_on_demand_and_parses_configs() -> None:
    assert set(CHANNEL_MODULES) == {"slack", "dingtalk", "feishu", "wecom", "email"}
    for name in CHANNEL_MODULES:
        assert channel(name).name == name
    config = parse_config("feishu", '{"webhook_url": "https://open.feishu.cn/h/1", "secret": "s"}')
    assert isinstance(config, feishu.FeishuConfig) and config.secret_text == "s"
    with pytest.raises(KeyError, match="unknown channel platform"):
        channel("pager")


def test_every_platform_declares_how_it_is_delivered() -> None:
    """Callers read `delivery`, never a platform's name: email is the one SES channel."""
    by_delivery = {name: channel(name).delivery for name in CHANNEL_MODULES}
    assert by_delivery == {"slack": Delivery.HTTP, "dingtalk": Delivery.HTTP,
                           "feishu": Delivery.HTTP, "wecom": Delivery.HTTP, "email": Delivery.SES}
    assert (delivery_of("email"), delivery_of("pager")) == (Delivery.SES, None)
    assert platform_of("wecom:cs-team") == "wecom" and platform_of("email") == "email"
    config = parse_config("email", {"sender": "a@x.example", "verified_identities": ["x.example"],
                                    "to": ["cs@x.example"]})
    assert isinstance(config, email.EmailConfig)
    assert email.CHANNEL.send_email_kwargs(MESSAGE, config, ["duty@x.example"]) == \
        email.send_email_kwargs(MESSAGE, config, ["duty@x.example"])
    with pytest.raises(ValueError, match="not a verified SES identity"):
        parse_config("email", {"sender": "a@y.example", "verified_identities": ["x.example"]})
    with pytest.raises(ValueError, match="not HTTP"):
        send("email", MESSAGE, config, NOW)


# Answers -------------------------------------------------------------------------------------

def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


ANSWERS = [
    # channel, status, body, headers, ok, failure, platform code, retry_after
    ("slack", 200, b"ok", {}, True, None, "ok", None),
    ("slack", 429, b"rate_limited", {"Retry-After": "30"}, False, Failure.RATE_LIMITED, "429",
     30.0),
    ("slack", 400, b"invalid_payload", {}, False, Failure.INVALID_PAYLOAD, "invalid_payload", None),
    ("slack", 400, b"no_text", {}, False, Failure.INVALID_PAYLOAD, "no_text", None),
    ("slack", 403, b"action_prohibited", {}, False, Failure.SECURITY, "action_prohibited", None),
    ("slack", 404, b"no_service", {}, False, Failure.GONE, "no_service", None),
    ("slack", 410, b"channel_is_archived", {}, False, Failure.GONE, "channel_is_archived", None),
    ("slack", 500, b"rollup_error", {}, False, Failure.SERVER, "500", None),
    ("dingtalk", 200, _json({"errcode": 0, "errmsg": "ok"}), {}, True, None, "0", None),
    ("dingtalk", 200, _json({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per "
                             "minute"}), {}, False, Failure.RATE_LIMITED, "130101", 600.0),
    ("dingtalk", 200, _json({"errcode": 310000, "errmsg": "sign not match"}), {}, False,
     Failure.SECURITY, "310000", None),
    ("dingtalk", 200, _json({"errcode": 310000, "errmsg": "keywords not in content"}), {}, False,
     Failure.SECURITY, "310000", None),
    ("dingtalk", 200, _json({"errcode": 300005, "errmsg": "token is not exist"}), {}, False,
     Failure.GONE, "300005", None),
    ("dingtalk", 200, _json({"errcode": 40035, "errmsg": "缺少参数 json"}), {}, False,
     Failure.INVALID_PAYLOAD, "40035", None),
    ("dingtalk", 502, b"<html>bad gateway</html>", {}, False, Failure.SERVER, "502", None),
    ("dingtalk", 200, b"not json", {}, False, Failure.UNEXPECTED, "200", None),
    ("feishu", 200, _json({"code": 0, "msg": "success", "data": {}}), {}, True, None, "0", None),
    ("feishu", 200, _json({"StatusCode": 0, "StatusMessage": "success"}), {}, True, None, "0",
     None),
    ("feishu", 200, _json({"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not "
                           "within one hour from current time"}), {}, False, Failure.SECURITY,
     "19021", None),
    ("feishu", 200, _json({"code": 11232, "msg": "frequency limited"}), {}, False,
     Failure.RATE_LIMITED, "11232", None),
    ("feishu", 400, _json({"code": 9499, "msg": "Bad Request", "data": {}}), {}, False,
     Failure.INVALID_PAYLOAD, "9499", None),
    ("feishu", 429, b"", {"retry-after": "2"}, False, Failure.RATE_LIMITED, "429", 2.0),
    ("wecom", 200, _json({"errcode": 0, "errmsg": "ok"}), {}, True, None, "0", None),
    ("wecom", 200, _json({"errcode": 45009, "errmsg": "api freq out of limit"}), {}, False,
     Failure.RATE_LIMITED, "45009", 60.0),
    ("wecom", 200, _json({"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}),
     {}, False, Failure.INVALID_PAYLOAD, "40058", None),
    ("wecom", 200, _json({"errcode": 93000, "errmsg": "invalid webhook url"}), {}, False,
     Failure.GONE, "93000", None),
    ("wecom", 503, b"", {}, False, Failure.SERVER, "503", None),
]


@pytest.mark.parametrize(("name", "status", "body", "headers", "ok", "failure", "code", "wait"),
                         ANSWERS)
def test_parse_response(name: str, status: int, body: bytes, headers: dict[str, str], ok: bool,
                        failure: Failure | None, code: str, wait: float | None) -> None:
    result = channel(name).parse_response(status, body, headers)
    assert (result.ok, result.error, result.platform_code, result.retry_after) == \
        (ok, failure, code, wait)
    assert result.retryable == (failure in (Failure.RATE_LIMITED, Failure.SERVER))


# Templates -----------------------------------------------------------------------------------

RAISED_TODAY = [
    "job.rejected", "job.not_accepted", "job.late_dispatch", "job.offer_unanswered",
    "change.after_sales", "order.courier_refused", "change.intercept_failed",
    "change.intercept_overdue",
    "return.received", "return.damaged", "order.invalid", "webhook.invalid_payload",
    "delivery.unprocessed", "worker.dead_letter",
]
COURIER = ["shipment.lost", "shipment.refused", "shipment.repeated_delivery_failure",
           "shipment.stalled", "shipment.returned", "shipment.damaged",
           "shipment.not_picked_up", "shipment.address_issue", "shipment.redirected",
           "shipment.pickup_uncollected", "shipment.customs_issue", "shipment.invalid_tracking",
           "shipment.late_vs_promise", "shipment.status_regression"]


@pytest.mark.parametrize("kind", RAISED_TODAY + COURIER)
@pytest.mark.parametrize("language", list(Language))
def test_every_kind_has_a_short_message_with_order_and_link(kind: str,
                                                            language: Language) -> None:
    message = templates.render(kind, order="#1001", severity=Severity.HIGH, link=LINK,
                               language=language, detail="factory-1: out_of_stock")
    assert templates.template_for(kind) is not templates.FALLBACK
    assert "#1001" in message.title and "#1001" in message.text
    assert message.link == LINK and message.kind == kind
    assert len(message.text) < 400  # short: CS reads it on a phone
    todo = "请处理：" if language is Language.ZH else "What to do: "
    assert todo in message.text and "factory-1: out_of_stock" in message.text
    for name in CHANNEL_MODULES:  # and every channel carries both to the reader
        adapter = channel(name)
        if adapter.delivery is Delivery.SES:
            raw = json.dumps(email.send_email_kwargs(message, EMAIL), ensure_ascii=False)
        else:
            config = adapter.config_model.model_validate(
                {"webhook_url": "https://robot.example/hook?key=k"})
            raw = adapter.build_request(message, config, NOW).body_bytes().decode()
        assert "#1001" in raw and LINK in raw


@pytest.mark.parametrize(("kind", "canonical"), [
    ("courier.probably_lost", "shipment.lost"), ("tracking.refused_returned", "shipment.refused"),
    ("shipment.stalled_no_scan", "shipment.stalled"),
    ("courier.return_to_sender", "shipment.returned"),
    ("tracking.refusal_initiated", "shipment.refused"),
    ("courier.pickup_uncollected", "shipment.pickup_uncollected"),
])
def test_courier_spellings_share_templates(kind: str, canonical: str) -> None:
    assert templates.template_for(kind) is templates.TEMPLATES[canonical]


def test_unknown_kind_falls_back_and_names_the_kind() -> None:
    message = templates.render("billing.mystery", order="", subject="shop-7",
                               severity=Severity.LOW, link=LINK, language=Language.EN)
    assert message.title == "[LOW] billing.mystery · shop-7"
    assert "About: shop-7" in message.text and "What to do:" in message.text


def test_render_alert_prefers_the_marketplace_order_number() -> None:
    alert = Alert(kind="return.damaged", severity=Severity.HIGH, subject="return:SF123",
                  summary="Return SF123 from Li received by factory-1: broken; liability: courier",
                  at=NOW, facts={"order_name": "#1001", "order_id": "ord_abc", "packaging": "x"})
    zh = templates.render_alert(alert, link=LINK, language=Language.ZH)
    assert zh.title == "【高】退货破损 · 订单 #1001"
    assert zh.text.splitlines()[0] == "订单：#1001"
    en = templates.render_alert(alert.model_copy(update={"facts": {"order_id": "ord_abc"}}),
                                link=LINK, language=Language.EN)
    assert en.title == "[HIGH] Return damaged · Order ord_abc"


@dataclass(frozen=True)
class _Item:
    kind: str
    order: str
    severity: Severity = Severity.MEDIUM


def test_digest_summarises_by_kind() -> None:
    cases = [_Item("shipment.stalled", f"#{n}") for n in range(300)] + \
        [_Item("shipment.refused", f"#R{n}", Severity.HIGH) for n in range(195)] + \
        [_Item("billing.mystery", "")]
    start, end = datetime(2024, 3, 5, 2, 0, tzinfo=UTC), datetime(2024, 3, 5, 2, 5, tzinfo=UTC)
    zh = templates.digest(cases, start=start, end=end, link=LINK, language=Language.ZH)
    assert zh.title == "【高】异常汇总 10:00–10:05 共 496 条"
    assert zh.text.splitlines()[:3] == ["物流停滞 ×300（#0、#1、#2…）",
                                        "买家拒收 ×195（#R0、#R1、#R2…）", "billing.mystery ×1"]
    en = templates.digest(cases, start=start, end=end, link=LINK, language=Language.EN)
    assert en.title == "[HIGH] Digest 10:00–10:05: 496 cases"
    assert en.text.splitlines()[0] == "Tracking stalled ×300 (#0, #1, #2…)"
    assert zh.link == en.link == LINK
    with pytest.raises(ValueError):
        templates.digest([], start=start, end=end, link=LINK, language=Language.EN)


def test_digest_lists_at_most_eight_kinds() -> None:
    cases = [_Item(f"odd.kind_{n}", "") for n in range(11)]
    at = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)
    message = templates.digest(cases, start=at, end=at, link=LINK, language=Language.EN)
    lines = message.text.splitlines()
    assert len(lines) == 10 and lines[8] == "and 3 more kinds"


# Text from outside is data, on every channel -------------------------------------------------

# A return reported by a partner, for an order named by a Standard Webhooks sender: the buyer's
# name, the reason and the order name are theirs, and every one tries something.
HOSTILE_ORDER = "#77 <@all> [付款链接](http://evil.example/pay) 紧急\n# 伪标题\n> 引用"
HOSTILE_BUYER = "<@all> 张三 @everyone <!channel>"
HOSTILE_REASON = ('**退款** <font color="warning">加急</font> ![图](http://evil.example/x.png) '
                  "`rm` ~~删~~ _斜_ &lt;@all&gt; <https://evil.example|点我> :rotating_light:"
                  "\u2028- 列表\u202e")
HOSTILE = Alert(kind="return.received", severity=Severity.HIGH, subject="return:SF1", at=NOW,
                summary=f"Return SF1 from {HOSTILE_BUYER} received by factory-1: "
                        f"{HOSTILE_REASON}; liability: courier",
                facts={"order_name": HOSTILE_ORDER, "order_id": "ord_77"})
ROTA_MOBILE = "13800000000"


def hostile_message(language: Language = Language.ZH) -> Message:
    return templates.render_alert(HOSTILE, link=LINK, language=language, mentions=(ROTA_MOBILE,))


def test_outside_fields_stay_on_their_lines_in_the_message() -> None:
    message = hostile_message()
    assert "\n" not in message.title
    assert [line.split("：")[0] for line in message.text.split("\n")] == \
        ["订单", "发生了什么", "详情", "请处理"]


def _built(platform: str, message: Message) -> dict[str, Any]:
    adapter = channel(platform)
    if adapter.delivery is Delivery.SES:
        return email.send_email_kwargs(message, EMAIL)
    config = adapter.config_model.model_validate({"webhook_url": "https://robot.example/h?key=k"})
    body = adapter.build_request(message, config, NOW).json_body
    assert isinstance(body, dict)
    return body


def _markdown_lines_are_plain(lines: list[str]) -> None:
    """Lines of outside text in DingTalk/WeCom markdown: the platform finds nothing to read."""
    from devstack.im_sink import markdown_lines

    for line in lines:
        assert markdown_lines(line) == ([line.rstrip()] if line.strip() else []), line
        assert not line.lstrip().startswith(("#", ">", "-", "*", "+")), line


def _check_wecom(body: dict[str, Any]) -> None:
    content = body["markdown"]["content"]
    head, *lines, tail = content.split("\n")
    assert head.startswith('<font color="warning">**【高】收到退货 · 订单 #77 ＜＠all＞ [付款')
    assert tail == f"[打开处理]({LINK})"  # our link, the only one
    assert content.count("](") == 1 and content.count("**") == 2
    assert re.findall(r"<[^<>]*>", content) == ['<font color="warning">', "</font>"]
    assert "@" not in content  # WeCom mentions are <@userid>: none at all
    _markdown_lines_are_plain(lines)


def _check_dingtalk(body: dict[str, Any]) -> None:
    title, text = body["markdown"]["title"], body["markdown"]["text"]
    assert title.startswith("【高】收到退货 · 订单 #77 ＜＠all＞ [付款链接]（")
    heading, *lines, link, mentions = text.split("\n\n")
    assert heading == f"#### {title}"
    assert (link, mentions) == (f"[打开处理]({LINK})", f"@{ROTA_MOBILE}")  # ours, then the rota's
    assert body["at"] == {"atMobiles": [ROTA_MOBILE], "isAtAll": False}
    assert text.count("@") == 1 and text.count("](") == 1 and "<" not in text + title
    _markdown_lines_are_plain([title, *lines])


def _check_feishu(body: dict[str, Any]) -> None:
    (post,) = body["content"]["post"].values()
    elements = [element for paragraph in post["content"] for element in paragraph]
    assert {element["tag"] for element in elements} == {"text", "a"}  # no `at`: no mention
    assert [e for e in elements if e["tag"] == "a"] == [
        {"tag": "a", "text": "打开处理", "href": LINK}]
    assert post["title"].startswith("【高】收到退货 · 订单 #77 <@all> [付款链接](http：//")
    assert len(post["content"]) == 5  # four lines of ours and the link: none added from outside


def _check_slack(body: dict[str, Any]) -> None:
    header, section, link = body["blocks"]
    assert header["text"]["type"] == "plain_text" and ":rotating_light:" not in str(header)
    assert section["text"]["type"] == "mrkdwn" and section["text"]["verbatim"] is True
    assert link == {"type": "section", "text": {"type": "mrkdwn", "text": f"<{LINK}|打开处理>"}}
    for mrkdwn in (section["text"]["text"], body["text"]):
        assert "<" not in mrkdwn and ">" not in mrkdwn  # no <url|label>, <!channel>, <@U…>
        assert not set(mrkdwn) & set("*~`@")
        assert "&lt;＠all&gt;" in mrkdwn and ":rotating_light:" not in mrkdwn


def _check_email(kwargs: dict[str, Any]) -> None:
    from html.parser import HTMLParser

    page = kwargs["Message"]["Body"]["Html"]["Data"]
    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

    Tags().feed(page)
    assert {tag for tag, _ in tags} == {"html", "head", "meta", "title", "body", "h2", "p", "br",
                                        "a"}
    assert [attrs for tag, attrs in tags if tag == "a"] == [[("href", LINK)]]
    assert "&lt;@all&gt;" in page and "&lt;font" in page
    text = kwargs["Message"]["Body"]["Text"]["Data"]
    assert text.endswith(f"打开处理: {LINK}\n") and "\u2028" not in text


CHECKS: dict[str, Any] = {"wecom": _check_wecom, "dingtalk": _check_dingtalk,
                          "feishu": _check_feishu, "slack": _check_slack, "email": _check_email}


@pytest.mark.parametrize("platform", sorted(CHANNEL_MODULES))
def test_hostile_text_is_shown_as_typed_on_every_channel(platform: str) -> None:
    body = _built(platform, hostile_message())
    raw = json.dumps(body, ensure_ascii=False)
    # No live link but ours: every URL from outside is defanged (http：//).
    assert "http://evil" not in raw and "https://evil" not in raw and LINK in raw
    assert "http：//evil.example/pay" in raw
    # No invisible or line-breaking character from outside; mentions: each platform's check.
    assert not {"\u2028", "\u202e"} & set(raw)
    CHECKS[platform](body)


# Email -----------------------------------------------------------------------------------------

EMAIL = email.EmailConfig(sender="CS Alerts <alerts@mail.example.com>",
                          verified_identities=("mail.example.com",), to=("cs@example.com",),
                          reply_to=("cs-lead@example.com",), configuration_set="cs-alerts")


def test_ses_send_email_arguments() -> None:
    message = MESSAGE.model_copy(update={"title": "【高】<b>拒单</b>\n#1001"})
    kwargs = email.send_email_kwargs(message, EMAIL)
    assert kwargs["Source"] == "CS Alerts <alerts@mail.example.com>"
    assert kwargs["Destination"] == {"ToAddresses": ["cs@example.com"]}
    assert kwargs["ReplyToAddresses"] == ["cs-lead@example.com"]
    assert kwargs["ConfigurationSetName"] == "cs-alerts"
    assert kwargs["Tags"] == [{"Name": "kind", "Value": "job_rejected"},
                              {"Name": "severity", "Value": "high"}]
    body = kwargs["Message"]
    assert body["Subject"] == {"Data": "【高】<b>拒单</b> #1001", "Charset": "UTF-8"}
    text, page = body["Body"]["Text"]["Data"], body["Body"]["Html"]["Data"]
    assert f"打开处理: {LINK}" in text and "#1001" in text
    assert "&lt;b&gt;拒单&lt;/b&gt;" in page and "<b>" not in page
    assert f'href="{LINK.replace("&", "&amp;")}"' in page and 'lang="zh-CN"' in page


def test_ses_arguments_match_the_botocore_model() -> None:
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("ses")
    validate_parameters(email.send_email_kwargs(MESSAGE, EMAIL),
                        model.operation_model("SendEmail").input_shape)


def test_ses_accepts_the_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        ses = boto3.client("ses", region_name="us-east-1")
        ses.verify_domain_identity(Domain="mail.example.com")
        answer = ses.send_email(**email.send_email_kwargs(
            MESSAGE, EMAIL.model_copy(update={"configuration_set": None}),
            to=["duty@example.com"]))
    assert answer["MessageId"]


def test_email_sender_must_be_a_verified_identity() -> None:
    email.EmailConfig(sender="a@x.example", verified_identities=("A@X.example",))
    with pytest.raises(ValueError, match="not a verified SES identity"):
        email.EmailConfig(sender="alerts@other.example", verified_identities=("x.example",))
    with pytest.raises(ValueError, match="no email address"):
        email.EmailConfig(sender="CS Alerts", verified_identities=("x.example",))
    with pytest.raises(ValueError, match="no recipients"):
        email.send_email_kwargs(MESSAGE, email.EmailConfig(
            sender="a@x.example", verified_identities=("x.example",)))


# Over the wire: a local HTTP server receives each channel's request ------------------------------

@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Sink:
    url: str
    received: list[Received] = field(default_factory=list)
    replies: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)


SUCCESS = {
    "/slack": (200, b"ok", {"Content-Type": "text/html"}),
    "/dingtalk": (200, b'{"errcode":0,"errmsg":"ok"}', {"Content-Type": "application/json"}),
    "/feishu": (200, b'{"code":0,"data":{},"msg":"success"}', {"Content-Type": "application/json"}),
    "/wecom": (200, b'{"errcode":0,"errmsg":"ok"}', {"Content-Type": "application/json"}),
}


@pytest.fixture
def sink() -> Iterator[Sink]:
    state = Sink(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(Received(self.command, self.path, dict(self.headers), body))
            route = urllib.parse.urlsplit(self.path).path
            status, reply, headers = state.replies.get(route) or SUCCESS[route]
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(reply))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _only(sink: Sink) -> Received:
    assert len(sink.received) == 1
    return sink.received[0]


def test_wire_slack(sink: Sink) -> None:
    config = slack.SlackConfig(webhook_url=f"{sink.url}/slack")
    result = send("slack", MESSAGE, config, NOW, timeout=5)
    got = _only(sink)
    assert result == ChannelResult.success("ok")
    assert (got.method, got.path) == ("POST", "/slack")
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    expected = slack.CHANNEL.build_request(MESSAGE, config, NOW).json_body
    assert got.body == _json_bytes(expected) and json.loads(got.body) == expected
    assert "仓库拒单".encode() in got.body  # raw UTF-8, not \\u escapes
    assert int(got.headers["Content-Length"]) == len(got.body)


def test_wire_dingtalk_signs_the_query(sink: Sink) -> None:
    config = dingtalk.DingTalkConfig(webhook_url=f"{sink.url}/dingtalk?access_token=tok123",
                                     secret=DING_SECRET)
    assert send("dingtalk", MESSAGE, config, NOW, timeout=5).ok
    got = _only(sink)
    path, _, query = got.path.partition("?")
    assert path == "/dingtalk"
    assert query == (f"access_token=tok123&timestamp={NOW_MS}"
                     f"&sign={_independent_dingtalk_sign(NOW_MS, DING_SECRET)}")
    params = urllib.parse.parse_qs(query, strict_parsing=True)
    expected_sign = base64.b64encode(hmac.new(
        DING_SECRET.encode(), f"{params['timestamp'][0]}\n{DING_SECRET}".encode(),
        hashlib.sha256).digest()).decode()
    assert params == {"access_token": ["tok123"], "timestamp": [str(NOW_MS)],
                      "sign": [expected_sign]}  # encoded once: decodes to the base64 itself
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(got.body)["msgtype"] == "markdown"
    assert got.body == _json_bytes(dingtalk.CHANNEL.build_request(MESSAGE, config, NOW).json_body)


def test_wire_feishu_signs_the_body(sink: Sink) -> None:
    config = feishu.FeishuConfig(webhook_url=f"{sink.url}/feishu", secret=FEISHU_SECRET)
    assert send("feishu", MESSAGE, config, NOW, timeout=5).ok
    got = _only(sink)
    assert got.path == "/feishu"
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    body = json.loads(got.body)
    assert (body["timestamp"], body["sign"]) == \
        (str(NOW_S), _independent_feishu_sign(NOW_S, FEISHU_SECRET))
    assert list(body) == ["timestamp", "sign", "msg_type", "content"]
    assert got.body == _json_bytes(feishu.CHANNEL.build_request(MESSAGE, config, NOW).json_body)


def test_wire_wecom(sink: Sink) -> None:
    config = wecom.WeComConfig(webhook_url=f"{sink.url}/wecom?key=k-1")
    assert send("wecom", MESSAGE, config, NOW, timeout=5).ok
    got = _only(sink)
    assert got.path == "/wecom?key=k-1"
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    assert got.body == _json_bytes(wecom.CHANNEL.build_request(MESSAGE, config, NOW).json_body)


def test_wire_rate_limit_and_errors_come_back_as_results(sink: Sink) -> None:
    sink.replies["/slack"] = (429, b"rate_limited", {"Retry-After": "7"})
    sink.replies["/wecom"] = (200, b'{"errcode":45009,"errmsg":"api freq out of limit"}', {})
    limited = send("slack", MESSAGE, slack.SlackConfig(webhook_url=f"{sink.url}/slack"), NOW,
                   timeout=5)
    assert (limited.error, limited.retryable, limited.retry_after) == \
        (Failure.RATE_LIMITED, True, 7.0)
    busy = send("wecom", MESSAGE, wecom.WeComConfig(webhook_url=f"{sink.url}/wecom?key=k"), NOW,
                timeout=5)
    assert (busy.ok, busy.error, busy.platform_code) == (False, Failure.RATE_LIMITED, "45009")


def test_unreachable_robot_is_a_retryable_network_failure_without_the_token() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = wecom.WeComConfig(webhook_url=f"http://127.0.0.1:{port}/send?key=secret-key-1")
    result = send("wecom", MESSAGE, config, NOW, timeout=2)
    assert (result.ok, result.error, result.retryable) == (False, Failure.NETWORK, True)
    assert "secret-key-1" not in repr(result)


def test_outbound_http_goes_through_core_http_only() -> None:
    """One sender (chalicelib.core.http: its timeout, sessions, and no URL in errors): a
    channel that posted with `requests` itself would bypass all three."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "chalicelib"
    paths = [*(root / "cs").rglob("*.py"), root / "flows" / "notifier.py"]
    importing = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] in ("requests", "urllib3", "http") for name in names):
                importing.append(path.name)
    assert len(paths) > 10 and importing == []
