"""The reports by email (chalicelib/reports/periods.py says which period is due when;
reports/render.py words it): the daily dispatch report after the day's last cut-off, the weekly
on Friday, the monthly on the 1st, each to the report channel (REPORT_RULES_JSON `channel`,
`email:manager` by default), once.

Once: reports/report_store.py's markers. A run claims a period before computing its report and
gives the claim back if that fails (or dies holding it; it lapses after `LEASE` and a later run
builds it again); it marks the period `sending` just before SES is called and `sent` after.
A run that dies between SES taking the mail and the `sent` marker leaves the period `sending`,
which no run takes over: a crash there is never a second mail, only (rarely) a report an
operator sends by hand (`report send`) once the log line `report ... left sending` shows it.

`send_report(period, now, again=True)` (admin `report send`, `make run`'s reports) sends a
period now, due or not, sent or not, and leaves the markers alone: the scheduled report of that
period still goes once. A period not over yet is labelled "to date" in the subject.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from chalicelib.core import observability
from chalicelib.core.clock import in_utc, utcnow
from chalicelib.flows import mail
from chalicelib.flows.reports import build_report
from chalicelib.reports import periods, render, report_store
from chalicelib.reports.model import Kind, Period
from chalicelib.warehouse.jobs import protocol_rules

log = logging.getLogger(__name__)

# Longer than a run may take (the send_reports Lambda timeout, 300 s): a live claim is never
# taken over.
LEASE = timedelta(minutes=10)


class Sent(BaseModel):
    """A report that went out."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    period: Period
    to_date: bool
    subject: str
    message_id: str


def send_report(period: Period, now: datetime, again: bool = False) -> Sent | None:
    """Send `period`'s report unless it was sent or is being sent (None: nothing sent).
    `again`: send it now regardless, markers untouched (an operator's request)."""
    from botocore.exceptions import ClientError

    kind, start = period.kind, period.start
    token = "" if again else report_store.claim(kind, start, now, LEASE)
    if token is None:
        return None
    rules = periods.report_rules()
    # Only a report sent by hand can be of a period still running: the schedule sends a day's
    # report once its last cut-off has passed (the day's dispatch is done, orders paid later
    # ship the next day), which is the day's report, not a report "to date".
    to_date = again and in_utc(now) < period.end_at
    try:
        report = build_report(period, now)
        config = mail.email_config(rules.channel)
        message = render.message(report, config, to_date)
    except Exception:
        if token:
            report_store.release(kind, start, token)
        raise
    if token and not report_store.sending(kind, start, token, now):
        log.warning("report %s %s: claim lapsed while building, not sent", kind, start)
        return None
    try:
        message_id = mail.send_raw(message, config, f"report_{kind}")
    except ClientError:
        if token:  # SES answered with an error: nothing went, the next run tries again
            report_store.release(kind, start, token)
        raise
    if token:
        report_store.mark_sent(kind, start, now, message_id)
    observability.tag(message_id=message_id)
    log.info("report %s %s sent to %s: %d sections, %d reads", kind, period.label,
             rules.channel, len(report.sections), report.reads)
    return Sent(kind=kind, period=period, to_date=to_date, subject=str(message["Subject"]),
                message_id=message_id)


def run(now: datetime) -> list[Sent]:
    """Send each kind's reports due and not sent yet: the latest period due, and those a missed
    run left within the catch-up (periods.due)."""
    rules = periods.report_rules()
    dispatch = protocol_rules().dispatch
    sent: list[Sent] = []
    for kind in rules.kinds:
        for period in periods.due(kind, now, rules, dispatch):
            state = report_store.state(kind, period.start)
            if state is not None and state.get("state") == report_store.SENT:
                continue
            if state is not None and state.get("state") == report_store.SENDING:
                log.error("report %s %s left sending since %s: it may not have gone; check "
                          "the mailbox, then `report send` it", kind, period.start,
                          state.get("sending_at"))
                continue
            with observability.unit(report_kind=kind, period_start=period.start.isoformat()):
                done = send_report(period, now)
            if done is not None:
                sent.append(done)
    return sent


def on_schedule() -> None:
    """The schedule (app.py `send_reports`)."""
    run(utcnow())
