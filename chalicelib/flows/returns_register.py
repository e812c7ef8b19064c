"""The daily returns register to sales (chalicelib/cs/returns_register.py words it): after each
registration window closes, the window day's returns go to sales as one email with a CSV
attachment, once per day.

Once: a marker item per day (jobs table, `REGISTER#returns`) is claimed before sending and
marked sent after, so a second run, or a second concurrent run, sends nothing; a run that
failed to send gives its claim back (or dies holding it, and the claim lapses after `LEASE`),
so a later run sends the day. Reproducible: the rows are read from the stored returns by window
day (the `returns-by-day` index), so any past day's register can be rebuilt (`register_of`) or
sent again on purpose (`send_register(..., again=True)`).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from chalicelib.core.clock import utcnow
from chalicelib.cs import returns_register
from chalicelib.cs.channels.email import EmailConfig
from chalicelib.flows import mail
from chalicelib.warehouse import job_store, returns
from chalicelib.warehouse.jobs import protocol_rules

log = logging.getLogger(__name__)

# Longer than a run may take (its Lambda timeout): a live run's claim is never taken over.
LEASE = timedelta(minutes=10)


class Sent(BaseModel):
    """A register that went out."""

    model_config = ConfigDict(frozen=True)

    day: date
    returns: int
    message_id: str


def register_of(day: date) -> list[returns_register.Row]:
    """`day`'s register rows, from the stored returns (any past day)."""
    calendar = protocol_rules().dispatch
    return returns_register.rows_of(job_store.returns_on(day.isoformat()), calendar)


def _send(day: date, rows: list[returns_register.Row], config: EmailConfig) -> str:
    return mail.send_raw(returns_register.message(day, rows, config), config, "returns_register")


def send_register(day: date, now: datetime, again: bool = False) -> Sent | None:
    """Send `day`'s register unless it was sent (or is being sent); None when nothing was sent.
    `again`: send a past day's once more (an operator's request); it stays marked sent."""
    key = day.isoformat()
    if not again and not job_store.mark_register(key, now, LEASE):
        return None
    rules = returns.returns_rules()
    try:
        rows = register_of(day)
        message_id = _send(day, rows, mail.email_config(rules.register_channel))
    except Exception:
        if not again:
            job_store.release_register(key)
        raise
    job_store.register_sent(key, now, message_id, len(rows))
    log.info("returns register of %s sent to sales: %d returns", key, len(rows))
    return Sent(day=day, returns=len(rows), message_id=message_id)


def run(now: datetime) -> list[Sent]:
    """Send every register due and not sent yet (returns.days_due): the day whose window
    closed 15 minutes ago, and days a missed run left."""
    rules = returns.returns_rules()
    sent: list[Sent] = []
    for day in returns.days_due(now, protocol_rules().dispatch, rules):
        state = job_store.register_state(day.isoformat())
        if state is not None and state.get("state") == "sent":
            continue
        done = send_register(day, now)
        if done is not None:
            sent.append(done)
    return sent


def on_schedule() -> None:
    """The schedule (app.py `send_returns_register`)."""
    run(utcnow())
