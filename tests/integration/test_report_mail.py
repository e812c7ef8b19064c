"""The reports by email against the local AWS (chalicelib/flows/report_mail.py): each due
report reaches the manager's mailbox in the local SES once, with the CSV and XLSX attached and
figures equal to build_report's and to a count made here from the stored events; a crash after
SES took the mail never sends it twice.

The report's sections are other modules' (the warehouse's and the service's KPIs); here one
source of the test's own reads the jobs the test planted in the jobs table (the by-paid-day
index, as the dispatch KPIs do), so the mail carries figures computed from stored events."""

from __future__ import annotations

import io
import json
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from openpyxl import load_workbook

from chalicelib.admin import cli as admin
from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.settings import settings
from chalicelib.flows import notifier, report_mail
from chalicelib.flows import reports as report_flow
from chalicelib.flows.reports import build_report
from chalicelib.reports import periods, report_store
from chalicelib.reports.model import Figure, Period, Section, Sourced, Table, local_day
from chalicelib.warehouse import job_store
from chalicelib.warehouse.jobs import protocol_rules
from tests.report_files import attachments, csv_figures, csv_tables, mails_to

DOMAIN = "reports-test.local"


def shanghai(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock moment in Asia/Shanghai (UTC+8), as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def paid_source(period: Period, now: datetime) -> Sourced:
    """Orders paid and shipped per day of the period, from the by-paid-day index."""
    rows: list[tuple[str, int, int]] = []
    for day in period.days():
        jobs = job_store.paid_on(day.isoformat())
        rows.append((day.isoformat(), len(jobs),
                     sum(1 for job in jobs if job.shipped_at is not None)))
    section = Section(
        key="dispatch", title="发货 Dispatch",
        figures=(Figure(key="paid", label="Orders paid", value=sum(r[1] for r in rows)),
                 Figure(key="shipped", label="Shipped", value=sum(r[2] for r in rows))),
        tables=(Table(key="by_day", title="Per day", columns=("day", "paid", "shipped"),
                      rows=tuple(r for r in rows if r[1])),))
    return Sourced(sections=(section,), reads=len(rows))


@pytest.fixture
def manager(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's own manager mailbox as the report channel, no catch-up (exactly the latest
    period of each kind is due), and the test's source as the report's only one."""
    uid = uuid.uuid4().hex[:8]
    channel, address = f"email:manager-{uid}", f"manager-{uid}@{DOMAIN}"
    boto3.client("ses").verify_domain_identity(Domain=DOMAIN)
    notifier.configure_channels({channel: {"sender": f"Reports <reports@{DOMAIN}>",
                                           "verified_identities": [DOMAIN], "to": [address]}})
    monkeypatch.setenv(periods.RULES_VARIABLE, json.dumps({"channel": channel,
                                                           "catch_up": "PT0S"}))
    periods.report_rules.cache_clear()
    monkeypatch.setattr(report_flow, "_sources", lambda: (paid_source,))
    yield address
    periods.report_rules.cache_clear()


@pytest.fixture
def first() -> date:
    """The 1st of a month years ahead, of this test alone (markers are per period)."""
    month = random.randrange(12 * 400)
    return date(2040 + month // 12, month % 12 + 1, 1)


def plant(paid: list[tuple[datetime, bool]]) -> str:
    """Jobs paid at these moments (shipped or not), as the jobs table holds them."""
    partner = f"factory-{uuid.uuid4().hex[:8]}"
    for n, (at, shipped) in enumerate(paid):
        item = {"pk": partner, "sk": f"job_{n:04d}", "paid_day": local_day(at).isoformat(),
                "paid_at": iso(at), "ship_by": iso(at + timedelta(hours=10)), "work": "pack"}
        if shipped:
            item["shipped_at"] = iso(at + timedelta(hours=3))
        boto3.resource("dynamodb").Table(settings().jobs_table).put_item(Item=item)
    return partner


def test_each_due_report_goes_once_with_figures_from_the_stored_events(
        manager: str, first: date) -> None:
    # The 1st at 20:00: the daily of the 1st, the week to the last Friday, last month: all due.
    now = shanghai(first, 20, 0)
    last_month = periods.period_of("monthly", first - timedelta(days=1))
    week = periods.latest_due("weekly", now, periods.report_rules(),
                              protocol_rules().dispatch)
    # Planted: some in each period, one just outside each (Shanghai midnight), shipped or not.
    moments = [(shanghai(first, 0, 5), True), (shanghai(first, 9), False),
               (shanghai(first, 0) - timedelta(minutes=1), True),  # 23:59 the day before
               (shanghai(last_month.start, 0), True), (shanghai(last_month.start, 12), True),
               (shanghai(last_month.start, 0) - timedelta(seconds=1), False),
               (shanghai(week.start, 8), False), (shanghai(week.end, 0), True)]
    plant(moments)

    sent = report_mail.run(now)
    assert sorted((s.kind, s.period.start, s.to_date) for s in sent) == sorted([
        ("daily", first, False), ("weekly", week.start, False),  # the day's, not "to date"
        ("monthly", last_month.start, False)])
    mails = mails_to(manager)
    assert len(mails) == 3
    for done in sent:
        period = done.period
        (mail,) = [m for m in mails if period.label in str(m["Subject"])
                   and f"report-{period.kind}-" in str(sorted(attachments(m)))]
        files = attachments(mail)
        assert sorted(files) == [f"report-{period.kind}-{period.start}.csv",
                                 f"report-{period.kind}-{period.start}.xlsx"]
        text = files[f"report-{period.kind}-{period.start}.csv"].decode("utf-8")
        # Recomputed here from what was planted, not from the stores.
        inside = [(at, shipped) for at, shipped in moments if period.contains(at)]
        assert csv_figures(text) == {("dispatch", "paid"): str(len(inside)),
                                     ("dispatch", "shipped"): str(sum(s for _, s in inside))}
        # ... and equal to the report computed again, now, for the same period.
        again = build_report(period, now)
        assert csv_figures(text) == {(s.key, f.key): str(f.value)
                                     for s in again.sections for f in s.figures}
        per_day = csv_tables(text)[("dispatch", "by_day")][1:]
        assert per_day == [[str(c) for c in row] for row in again.section("dispatch")
                           .table("by_day").rows]
        book = load_workbook(io.BytesIO(files[f"report-{period.kind}-{period.start}.xlsx"]))
        assert [row[:3] for row in book.worksheets[0].iter_rows(min_row=2, max_row=3,
                                                               values_only=True)] == [
            ("paid", "Orders paid", len(inside)),
            ("shipped", "Shipped", sum(s for _, s in inside))]
        assert report_store.state(period.kind, period.start)["state"] == "sent"  # type: ignore

    # A second run, and a later one, send nothing more.
    assert report_mail.run(now + timedelta(minutes=15)) == []
    assert report_mail.run(now + timedelta(hours=3)) == []
    assert len(mails_to(manager)) == 3


def test_a_crash_after_ses_took_the_mail_never_sends_it_twice(
        manager: str, first: date, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(periods.RULES_VARIABLE, json.dumps({
        "channel": periods.report_rules().channel, "catch_up": "PT0S", "kinds": ["monthly"]}))
    periods.report_rules.cache_clear()
    now = shanghai(first, 9, 0)
    period = periods.period_of("monthly", first - timedelta(days=1))

    def die(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("the Lambda timed out")  # after SES answered, before the marker

    with pytest.MonkeyPatch.context() as crash:
        crash.setattr(report_store, "mark_sent", die)
        with pytest.raises(SystemExit):
            report_mail.run(now)
    assert len(mails_to(manager)) == 1
    assert report_store.state("monthly", period.start)["state"] == "sending"  # type: ignore
    # Long after the lease: still not sent again (the mail may have gone: an operator decides).
    later = now + report_mail.LEASE * 3
    assert report_mail.run(later) == []
    assert len(mails_to(manager)) == 1
    # An operator's send goes, and leaves the marker as it was.
    again = report_mail.send_report(period, later, again=True)
    assert again is not None and not again.to_date
    assert len(mails_to(manager)) == 2
    assert report_store.state("monthly", period.start)["state"] == "sending"  # type: ignore


def test_a_failure_before_sending_leaves_the_period_to_the_next_run(
        manager: str, first: date, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(periods.RULES_VARIABLE, json.dumps({
        "channel": periods.report_rules().channel, "catch_up": "PT0S", "kinds": ["daily"]}))
    periods.report_rules.cache_clear()
    now = shanghai(first, 20, 30)

    def broken(period: Period, at: datetime) -> Sourced:
        raise RuntimeError("a store could not be read")

    monkeypatch.setattr(report_flow, "_sources", lambda: (broken,))
    with pytest.raises(RuntimeError):
        report_mail.run(now)
    assert report_store.state("daily", first) is None  # the claim was given back
    assert mails_to(manager) == []
    monkeypatch.setattr(report_flow, "_sources", lambda: (paid_source,))
    assert [(s.kind, s.period.start) for s in report_mail.run(now)] == [("daily", first)]
    assert len(mails_to(manager)) == 1


def test_a_live_claim_is_not_taken_over_and_a_lapsed_one_is(manager: str, first: date) -> None:
    now = shanghai(first, 21)
    period = periods.period_of("daily", first)
    token = report_store.claim("daily", first, now, report_mail.LEASE)
    assert token is not None
    assert report_mail.send_report(period, now + timedelta(minutes=5)) is None
    assert mails_to(manager) == []
    # A run that died building: its claim lapses and the next run sends the report.
    done = report_mail.send_report(period, now + report_mail.LEASE + timedelta(seconds=1))
    assert done is not None and done.kind == "daily"
    assert not report_store.sending("daily", first, token, now)  # the old holder cannot send
    assert len(mails_to(manager)) == 1


@pytest.fixture
def environment_restored() -> Iterator[None]:
    """The admin command line sets the stage's environment: put it back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    aws.reset()
    settings.cache_clear()


def test_the_command_line_shows_a_report_and_sends_one_again(
        manager: str, environment_restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    day = date(1990, 1, 1) + timedelta(days=random.randrange(365 * 30))  # over, and the test's
    moments = [(shanghai(day, 10), True), (shanghai(day, 11), False), (shanghai(day, 23), True)]
    plant(moments)
    admin.main(["--stage", "test", "report", "show", "--kind", "daily",
                "--day", day.isoformat()])
    out = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("{")]
    assert out[0] == f"发货日报 Daily dispatch report {day.isoformat()}"  # over: not "to date"
    assert f"  Orders paid: {len(moments)}" in out
    assert f"  Shipped: {sum(s for _, s in moments)}" in out
    for _ in range(2):
        admin.main(["--stage", "test", "report", "send", "--kind", "daily",
                    "--day", day.isoformat()])
    assert len([m for m in mails_to(manager) if day.isoformat() in str(m["Subject"])]) == 2
    assert report_store.state("daily", day) is None  # the schedule's marker is untouched
