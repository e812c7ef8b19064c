"""The outbox note: one message on its way to one channel, until it is sent, folded into the
channel's digest, skipped (the case was resolved first), or given up on: then it falls back to
the fallback channel (email), and a failed email is dead-lettered: kept, listed by the CS API,
never dropped. Also when an unacknowledged case is reminded and escalated. Pure; the notifier
(chalicelib/flows/notifier.py) does the I/O.

A note is keyed by (case, channel, severity, kind, serial): the same case reported again plans
nothing new, an escalation is news and is sent again, each reminder is its own note.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.cs.alerts import Severity
from chalicelib.cs.cases import Case, CaseStatus
from chalicelib.cs.channels import Delivery, delivery_of, platform_of
from chalicelib.cs.routing import DEFAULT_ROUTING, Routing, targets

# folded: went into its channel's digest; skipped: the case was resolved before it was sent;
# failed: gave up on this channel (a fallback note carries it on); dead: gave up everywhere.
NoteStatus = Literal["pending", "sent", "folded", "skipped", "failed", "dead"]


class Note(BaseModel):
    """One message on its way to one channel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    note_id: str
    channel: str
    kind: Literal["case", "reminder", "digest"]
    case_ids: tuple[str, ...]
    severity: Severity
    due_at: datetime
    created_at: datetime
    status: NoteStatus = "pending"
    decided: bool = False  # noise control has let it through (alone): retries skip it
    attempts: int = 0
    last_error: str = ""
    mentions: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    fallback_of: str | None = None
    sent_at: datetime | None = None
    digest_start: datetime | None = None  # a digest's burst, for its title

    @property
    def platform(self) -> str:
        return platform_of(self.channel)


def note_id_for(case: Case, channel: str, kind: str = "case", serial: int = 0) -> str:
    key = f"{case.case_id}\x1f{channel}\x1f{case.severity.value}\x1f{kind}\x1f{serial}"
    return "note_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def digest_note(channel: str, opened_at: datetime, due: datetime, now: datetime) -> Note:
    """The note of the channel's digest opened at `opened_at` (one per burst: its id says so);
    its cases are filled in when it goes."""
    key = f"{channel}|{opened_at.isoformat()}"
    note_id = "digest_" + hashlib.sha256(key.encode()).hexdigest()[:24]
    return Note(note_id=note_id, channel=channel, kind="digest", case_ids=(),
                severity=Severity.LOW, due_at=due, created_at=now, digest_start=opened_at)


def plan(case: Case, now: datetime, routing: Routing = DEFAULT_ROUTING, *,
         kind: Literal["case", "reminder"] = "case", serial: int = 0,
         escalate: bool = False) -> list[Note]:
    return [Note(note_id=note_id_for(case, t.channel, kind, serial), channel=t.channel,
                 kind=kind, case_ids=(case.case_id,), severity=case.severity,
                 due_at=t.deliver_at, created_at=now, mentions=t.mentions, emails=t.emails)
            for t in targets(case, now, routing, escalate)]


def retry_at(attempts: int, now: datetime, routing: Routing,
             retry_after: float | None = None) -> datetime:
    wait = min(routing.retry_base * (1 << min(attempts - 1, 16)), routing.retry_max)
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    return now + wait


def failed(note: Note, error: str, retryable: bool, now: datetime, routing: Routing,
           retry_after: float | None = None) -> tuple[Note, Note | None]:
    """After a failed send: retry later, or give up on this channel and fall back to email
    (a failed email is dead-lettered: kept, visible, never dropped)."""
    attempts = note.attempts + 1
    if retryable and attempts < routing.max_attempts:
        return note.model_copy(update={"attempts": attempts, "last_error": error, "due_at":
                                       retry_at(attempts, now, routing, retry_after)}), None
    # Email is where the fallback goes: a failed email has nowhere better to go.
    if delivery_of(note.platform) is Delivery.SES or note.channel == routing.fallback_channel:
        return note.model_copy(update={"attempts": attempts, "last_error": error,
                                       "status": "dead"}), None
    fallback = note.model_copy(update={
        "note_id": note.note_id + "_fb", "channel": routing.fallback_channel, "attempts": 0,
        "last_error": "", "due_at": now, "created_at": now, "fallback_of": note.note_id,
        "decided": False, "mentions": ()})
    return note.model_copy(update={"attempts": attempts, "last_error": error,
                                   "status": "failed"}), fallback


def reminder_due(case: Case, now: datetime, routing: Routing) -> int | None:
    """Which reminder (1, 2, ...) an unacknowledged case is due, or None."""
    if case.status is not CaseStatus.OPEN or not case.severity.at_least(routing.remind_from):
        return None
    serial = int((now - case.opened_at) / routing.remind_after)
    return serial if serial >= 1 and serial > case.reminders else None


def escalates(case: Case, now: datetime, routing: Routing) -> bool:
    return now - case.opened_at >= routing.escalate_after
