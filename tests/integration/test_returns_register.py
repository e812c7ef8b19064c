"""Returns against the local stack: the window (a return after 14:30 is queued to the next
day's, and the factory's answer says so) and the daily register, which reaches sales' mailbox in
the local SES once, with the right rows in its CSV, and can be rebuilt for a past day."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.access import accounts_store
from chalicelib.flows import notifier, returns_register
from chalicelib.flows import warehouse as warehouse_flow
from chalicelib.warehouse import job_store, returns
from chalicelib.warehouse.returns import ReturnReport
from tests.report_files import mails_to

DOMAIN = "returns-test.local"


def shanghai(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock moment in Asia/Shanghai (UTC+8), as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


@pytest.fixture
def sales(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's own sales mailbox, as the register channel, and a day of its own (the
    register reads every partner's returns of a day: other tests' must not be on it)."""
    uid = uuid.uuid4().hex[:8]
    channel, address = f"email:sales-{uid}", f"sales-{uid}@{DOMAIN}"
    boto3.client("ses").verify_domain_identity(Domain=DOMAIN)
    notifier.configure_channels({channel: {"sender": f"Returns <returns@{DOMAIN}>",
                                           "verified_identities": [DOMAIN], "to": [address]}})
    monkeypatch.setenv("RETURNS_RULES_JSON", json.dumps({"register_channel": channel,
                                                         "catch_up_days": 0}))
    returns.returns_rules.cache_clear()
    accounts_store.forget()
    yield address
    returns.returns_rules.cache_clear()


@pytest.fixture
def day() -> date:
    """A Monday years ahead, of this test alone."""
    return date(2031, 1, 6) + timedelta(weeks=random.randrange(2000))


def report(tracking: str, buyer: str, **changes: Any) -> ReturnReport:
    return ReturnReport.model_validate({
        "return_tracking_number": tracking, "buyer_name": buyer,
        "items": [{"sku": "LS-WHT-M", "quantity": 1}, {"sku": "LS-BLK-L", "quantity": 2}],
        "reason": "质量问题", "packaging": "intact", **changes})


def csv_rows(mail: Message) -> list[dict[str, str]]:
    (attached,) = [part for part in mail.walk() if part.get_filename()]
    payload = attached.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return list(csv.DictReader(io.StringIO(payload.decode("utf-8-sig"))))


def test_a_return_after_the_window_is_queued_to_the_next_one_and_the_answer_says_so(
        client: Client, make_key: Any, monkeypatch: pytest.MonkeyPatch, day: date) -> None:
    partner = f"factory-{uuid.uuid4().hex[:6]}"
    key = make_key("partner", partner)
    monkeypatch.setattr("chalicelib.api.warehouse.utcnow", lambda: shanghai(day, 15))
    body = {"return_tracking_number": f"YT{uuid.uuid4().int % 10**13}", "buyer_name": "林伟",
            "items": [{"sku": "LS-WHT-M", "quantity": 1}], "reason": "collar torn",
            "complaint": "领口开线", "packaging": "damaged", "damage_location": "in_transit"}
    answer = client.http.post("/warehouse/v1/returns", body=json.dumps(body).encode(),
                              headers={"Authorization": f"Bearer {key}",
                                       "Content-Type": "application/json"})
    assert answer.status_code == 201, answer.body
    stored = json.loads(answer.body)
    tomorrow = day + timedelta(days=1)
    assert stored["window"] == {"day": tomorrow.isoformat(),
                                "opens_at": f"{tomorrow.isoformat()}T01:00:00Z",
                                "closes_at": f"{tomorrow.isoformat()}T06:30:00Z",
                                "queued": True}
    assert (stored["liability"], stored["complaint"]) == ("courier", "领口开线")
    # Stored under the day it belongs to, not the day it arrived.
    assert [r["return_tracking_number"] for r in job_store.returns_on(tomorrow.isoformat())] \
        == [body["return_tracking_number"]]
    assert job_store.returns_on(day.isoformat()) == []


def test_the_daily_register_reaches_sales_once_with_the_days_returns(
        sales: str, day: date) -> None:
    tomorrow = day + timedelta(days=1)
    late = report(f"YT{uuid.uuid4().int % 10**12}", "林伟", complaint="领口开线")
    morning = report(f"SF{uuid.uuid4().int % 10**12}", "=HYPERLINK(\"x\")", packaging="damaged",
                     damage_location="at_buyer", complaint="摔坏了")
    in_window = report(f"ZT{uuid.uuid4().int % 10**12}", "王芳")  # no complaint
    warehouse_flow.register_return("factory-a", in_window, shanghai(day, 10))
    warehouse_flow.register_return("factory-a", late, shanghai(day, 15))  # after 14:30
    warehouse_flow.register_return("factory-b", morning, shanghai(tomorrow, 8, 30))

    assert returns_register.run(shanghai(tomorrow, 14, 44)) == []  # its window just closed
    sent = returns_register.run(shanghai(tomorrow, 14, 45))
    assert [(s.day, s.returns) for s in sent] == [(tomorrow, 2)]
    subject = f"Returns register {tomorrow.isoformat()}"
    (mail,) = [m for m in mails_to(sales) if subject in str(m["Subject"])]
    rows = csv_rows(mail)
    assert [(r["退货单号 return tracking"], r["买家 buyer"], r["责任方 liability"],
             r["商品 items"], r["窗口外 queued"]) for r in rows] == [
        (late.return_tracking_number, "林伟", "工厂 factory", "LS-WHT-M ×1; LS-BLK-L ×2",
         "是 yes"),
        (morning.return_tracking_number, "'=HYPERLINK(\"x\")", "买家 buyer",
         "LS-WHT-M ×1; LS-BLK-L ×2", "是 yes")]
    assert rows[0]["原因 reason"] == "质量问题" and rows[0]["投诉 complaint"] == "领口开线"
    text = next(part for part in mail.walk() if part.get_content_type() == "text/plain")
    assert late.return_tracking_number in str(text.get_payload(decode=True), "utf-8")

    # A second run, and a later one, send nothing more.
    assert returns_register.run(shanghai(tomorrow, 14, 50)) == []
    assert returns_register.run(shanghai(tomorrow, 23, 0)) == []
    assert len([m for m in mails_to(sales) if subject in str(m["Subject"])]) == 1
    assert job_store.register_state(tomorrow.isoformat())["state"] == "sent"  # type: ignore

    # Each day's register is rebuilt from the stored returns whenever asked.
    assert [r.return_tracking_number for r in returns_register.register_of(day)] == \
        [in_window.return_tracking_number]
    assert [r.return_tracking_number for r in returns_register.register_of(tomorrow)] == \
        [late.return_tracking_number, morning.return_tracking_number]


def test_a_failed_send_leaves_the_day_to_the_next_run(sales: str, day: date,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse_flow.register_return("factory-a", report(f"YT{uuid.uuid4().int % 10**12}", "林伟"),
                                   shanghai(day, 10))

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("SES is down")

    send = returns_register._send
    monkeypatch.setattr(returns_register, "_send", refuse)
    with pytest.raises(RuntimeError):
        returns_register.run(shanghai(day, 14, 45))
    assert job_store.register_state(day.isoformat()) is None  # the claim was given back
    monkeypatch.setattr(returns_register, "_send", send)
    assert [s.returns for s in returns_register.run(shanghai(day, 14, 50))] == [1]
