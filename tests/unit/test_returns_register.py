"""The daily returns register's words: rows from stored returns, the CSV, the email."""

from __future__ import annotations

import csv
import email
import email.policy
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest

from chalicelib.cs import returns_register as register
from chalicelib.cs.channels.email import EmailConfig
from chalicelib.warehouse import returns
from chalicelib.warehouse.dispatch import DispatchRules
from chalicelib.warehouse.returns import ReturnReport

CALENDAR = DispatchRules()
DAY = date(2026, 12, 8)
CONFIG = EmailConfig(sender="Returns <returns@brand.cn>", verified_identities=("brand.cn",),
                     to=("sales@brand.cn",))


def stored(tracking: str, at: datetime, **changes: Any) -> dict[str, Any]:
    report = ReturnReport.model_validate({
        "return_tracking_number": tracking, "buyer_name": "林伟",
        "items": [{"sku": "LS-WHT-M", "quantity": 1}], "reason": "尺码不合适",
        "packaging": "intact", **changes})
    return returns.record(report, "factory-1", at, CALENDAR, returns.ReturnsRules())


LATE = stored("YT0002", datetime(2026, 12, 7, 7, 0, tzinfo=UTC), complaint="领口开线")  # 15:00
EARLY = stored("YT0001", datetime(2026, 12, 8, 2, 0, tzinfo=UTC))  # 10:00, no complaint


def test_rows_are_in_arrival_order_with_local_times_and_liability() -> None:
    rows = register.rows_of([EARLY, LATE], CALENDAR)
    assert [(r.received, r.return_tracking_number, r.liability, r.queued) for r in rows] == [
        ("2026-12-07 15:00", "YT0002", "工厂 factory", True),
        ("2026-12-08 10:00", "YT0001", "无 none", False)]
    assert rows[0].items == "LS-WHT-M ×1" and rows[0].complaint == "领口开线"


@pytest.mark.parametrize("hostile", ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\t=x"])
def test_the_csv_defuses_formulas_and_keeps_each_return_on_its_line(hostile: str) -> None:
    row = register.row_of(stored("YT0003", datetime(2026, 12, 8, 2, 0, tzinfo=UTC),
                                 reason=f"{hostile}\nsecond line"), CALENDAR)
    text = register.to_csv([row])
    assert text.startswith("\ufeff")  # Excel reads it as UTF-8
    (header, line) = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    reason = line[header.index("原因 reason")]
    assert reason.startswith("'") and "\n" not in reason


def test_the_email_has_text_html_and_the_csv_attached() -> None:
    rows = register.rows_of([LATE, stored("YT0009", datetime(2026, 12, 8, 2, 0, tzinfo=UTC),
                                          buyer_name="<b>x</b>")], CALENDAR)
    mail = email.message_from_bytes(bytes(register.message(DAY, rows, CONFIG)),
                                    policy=email.policy.default)
    assert mail["Subject"] == "退货登记 2026-12-08：2 件 / Returns register 2026-12-08: 2"
    assert (mail["From"], mail["To"]) == ("Returns <returns@brand.cn>", "sales@brand.cn")
    parts = {part.get_content_type(): part for part in mail.walk()}
    assert "YT0002" in parts["text/plain"].get_content()
    assert "&lt;b&gt;x&lt;/b&gt;" in parts["text/html"].get_content()
    assert "<b>x</b>" not in parts["text/html"].get_content()
    attached = parts["text/csv"]
    assert attached.get_filename() == "returns-2026-12-08.csv"
    assert attached.get_content_charset() == "utf-8"
    payload = attached.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload.decode("utf-8") == register.to_csv(rows)


def test_an_empty_register_says_so() -> None:
    assert "No returns" in register.plain_text(DAY, [])
    assert register.to_csv([]).count("\r\n") == 1  # the header alone


def test_a_register_needs_recipients() -> None:
    nobody = EmailConfig(sender="returns@brand.cn", verified_identities=("brand.cn",))
    with pytest.raises(ValueError, match="recipients"):
        register.message(DAY, [], nobody)
