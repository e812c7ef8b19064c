"""The daily returns register sales receives (domain notes: returns are registered every day
and passed to sales for after-sales handling): one window day's returns, each with the buyer's
name, the return tracking number, the items, the reason and the liability, as an email with the
same rows attached as CSV. Pure: no I/O; chalicelib/flows/returns_register.py reads the day's
returns and sends it through SES (`SendRawEmail`: the attachment needs a MIME message).

Every cell is the buyer's or the factory's text: the HTML escapes it, the plain text and CSV
keep it on its line, and the CSV defuses spreadsheet formulas (a cell starting with = + - @).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Sequence
from datetime import date
from email.message import EmailMessage
from typing import Any

from pydantic import BaseModel, ConfigDict

from chalicelib.core.calendar import WorkCalendar
from chalicelib.core.clock import parse_iso
from chalicelib.cs.channels.email import EmailConfig, envelope
from chalicelib.cs.channels.escaping import email_html, inert, one_line, spreadsheet_cell

LIABLE = {"factory": "工厂 factory", "courier": "快递 courier", "buyer": "买家 buyer",
          "undetermined": "待定 undetermined", "none": "无 none"}
PACKAGING = {"intact": "完好 intact", "damaged": "破损 damaged"}
WHERE = {"in_transit": "运输中 in transit", "at_warehouse": "仓库 at the warehouse",
         "at_buyer": "买家处 at the buyer", "unknown": "不明 unknown"}


class Row(BaseModel):
    """One return as the register shows it."""

    model_config = ConfigDict(frozen=True)

    received: str  # local wall clock, "YYYY-MM-DD HH:MM"
    queued: bool  # reported outside the window
    partner: str
    return_tracking_number: str
    buyer_name: str
    order_name: str
    items: str  # "SKU ×qty; ..."
    reason: str
    complaint: str
    packaging: str
    damage_location: str
    liability: str


COLUMNS: tuple[tuple[str, str], ...] = (
    ("received", "登记时间 received"), ("return_tracking_number", "退货单号 return tracking"),
    ("buyer_name", "买家 buyer"), ("order_name", "订单 order"), ("items", "商品 items"),
    ("reason", "原因 reason"), ("complaint", "投诉 complaint"), ("packaging", "包装 packaging"),
    ("damage_location", "破损位置 damaged where"), ("liability", "责任方 liability"),
    ("partner", "仓库 warehouse"), ("queued", "窗口外 queued"))


def row_of(record: dict[str, Any], calendar: WorkCalendar) -> Row:
    """A stored return (job_store.returns_on) as a register row."""
    received = calendar.local(parse_iso(str(record["received_at"])))
    window = record.get("window") or {}
    return Row(
        received=received.strftime("%Y-%m-%d %H:%M"), queued=bool(window.get("queued")),
        partner=str(record["partner_id"]),
        return_tracking_number=str(record["return_tracking_number"]),
        buyer_name=str(record["buyer_name"]), order_name=str(record.get("order_name", "")),
        items="; ".join(f"{item['sku']} ×{item['quantity']}" for item in record["items"]),
        reason=str(record["reason"]), complaint=str(record.get("complaint", "")),
        packaging=PACKAGING.get(str(record["packaging"]), str(record["packaging"])),
        damage_location=WHERE.get(str(record.get("damage_location", "unknown")), "unknown"),
        liability=LIABLE.get(str(record.get("liability", "")), "待定 undetermined"))


def rows_of(records: Iterable[dict[str, Any]], calendar: WorkCalendar) -> list[Row]:
    """In the order the returns arrived (ties: by tracking number, so a rerun is identical)."""
    rows = [row_of(record, calendar) for record in records]
    return sorted(rows, key=lambda row: (row.received, row.return_tracking_number))


def _cell(row: Row, field: str) -> str:
    value = getattr(row, field)
    if isinstance(value, bool):
        return "是 yes" if value else ""
    return str(value)


def to_csv(rows: Sequence[Row]) -> str:
    """The register as CSV, with a byte-order mark so Excel reads the Chinese as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([label for _, label in COLUMNS])
    for row in rows:
        writer.writerow([spreadsheet_cell(_cell(row, field)) for field, _ in COLUMNS])
    return "\ufeff" + out.getvalue()


def subject(day: date, rows: Sequence[Row]) -> str:
    return f"退货登记 {day.isoformat()}：{len(rows)} 件 / Returns register {day.isoformat()}: " \
           f"{len(rows)}"


def plain_text(day: date, rows: Sequence[Row]) -> str:
    lines = [subject(day, rows), ""]
    if not rows:
        lines.append("今天没有退货。 No returns in this window.")
    for row in rows:
        lines.append(" | ".join(inert(one_line(_cell(row, field))) for field, _ in COLUMNS))
    lines += ["", "明细见附件 CSV。 The rows are attached as CSV."]
    return "\n".join(lines) + "\n"


def html_body(day: date, rows: Sequence[Row]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{email_html(one_line(_cell(row, field)))}</td>"
                         for field, _ in COLUMNS) + "</tr>\n" for row in rows)
    table = (f'<table border="1" cellpadding="4" style="border-collapse:collapse">'
             f"<tr>{head}</tr>\n{body}</table>") if rows else \
        "<p>今天没有退货。 No returns in this window.</p>"
    return (f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>{html.escape(subject(day, rows))}</title></head>\n"
            f'<body style="font-family:sans-serif">\n<h2>{html.escape(subject(day, rows))}</h2>\n'
            f"{table}\n</body></html>\n")


def attachment_name(day: date) -> str:
    return f"returns-{day.isoformat()}.csv"


def message(day: date, rows: Sequence[Row], config: EmailConfig) -> EmailMessage:
    """The register's email (text and HTML, the CSV attached) from the channel's sender to its
    recipients; SES `SendRawEmail` takes `bytes(message)`."""
    mail = envelope(config, subject(day, rows), f"returns-{day.isoformat()}")
    mail.set_content(plain_text(day, rows))
    mail.add_alternative(html_body(day, rows), subtype="html")
    mail.add_attachment(to_csv(rows).encode("utf-8"), maintype="text", subtype="csv",
                        filename=attachment_name(day), params={"charset": "utf-8"})
    return mail
