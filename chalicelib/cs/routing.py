"""Which CS channels hear of a case, when, and with what words; and the outbox note that carries
one message until it is delivered, falls back to email, or is dead-lettered. Pure.

Routing: every route whose case types (shell patterns), minimum severity and marketplaces match
adds its channels; a route with `use_rota` adds whoever the CS rota puts on duty at that moment
(chalicelib/cs/rota.py), which may be later than now for a low severity outside hours. A note is
keyed by (case, channel, severity): the same case reported again changes nothing, an escalation
is news and is sent again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.cs import noise, rota
from chalicelib.cs.alerts import Severity
from chalicelib.cs.cases import Case
from chalicelib.cs.channels import Delivery, Language, Message, delivery_of, platform_of
from chalicelib.cs.noise import DEFAULT_NOISE_RULES, NoiseRules
from chalicelib.cs.rota import DEFAULT_ROTA, RotaRules
from chalicelib.cs.templates import digest, order_ref, render


class Route(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    types: tuple[str, ...] = ("*",)  # e.g. ("courier.*", "after_sales.*")
    min_severity: Severity = Severity.LOW
    marketplaces: tuple[str, ...] = ()  # empty: any
    channels: tuple[str, ...] = ()  # channel ids, e.g. "dingtalk:warehouse-ops"
    use_rota: bool = True  # and whoever the rota has on duty

    def matches(self, case: Case) -> bool:
        marketplace = case.facts.get("marketplace")
        return (any(fnmatchcase(case.type, pattern) for pattern in self.types)
                and case.severity.at_least(self.min_severity)
                and (not self.marketplaces or marketplace in self.marketplaces))


class Routing(BaseModel):
    """CS_ROUTING_JSON: routes, the rota, noise limits, language, retries and reminders."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    routes: tuple[Route, ...] = (Route(),)
    rota: RotaRules = DEFAULT_ROTA
    noise: NoiseRules = DEFAULT_NOISE_RULES
    language: Language = Language.ZH
    link_base: str = ""  # the CS console's case URL prefix; empty: the API's /cs/v1/cases/
    fallback_channel: str = "email:cs-team"
    max_attempts: int = Field(default=5, ge=1)  # per channel, before falling back
    retry_base: timedelta = timedelta(seconds=30)
    retry_max: timedelta = timedelta(minutes=15)
    remind_from: Severity = Severity.HIGH  # unacknowledged cases this bad are reminded
    remind_after: timedelta = timedelta(minutes=30)
    escalate_after: timedelta = timedelta(hours=2)  # ... and then go to the manager


DEFAULT_ROUTING = Routing()


class Target(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: str
    deliver_at: datetime
    mentions: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()


def targets(case: Case, at: datetime, routing: Routing = DEFAULT_ROUTING,
            escalate: bool = False) -> list[Target]:
    """The channels for this case now, in route order, each once."""
    found: dict[str, Target] = {}
    for route in routing.routes:
        if not route.matches(case):
            continue
        for channel in route.channels:
            found.setdefault(channel, Target(channel=channel, deliver_at=at))
        if route.use_rota:
            who = (_manager(at, routing) if escalate
                   else rota.recipients(at, case.severity, routing.rota))
            for channel in who.channels:
                found.setdefault(channel, Target(channel=channel, deliver_at=who.deliver_at,
                                                 mentions=who.mentions, emails=who.emails))
    return list(found.values())


def _manager(at: datetime, routing: Routing) -> rota.RouteTarget:
    return rota.recipients(at, Severity.CRITICAL, routing.rota.model_copy(update={
        "manager_copy_from": Severity.LOW}))


def link(case_id: str, routing: Routing) -> str:
    return f"{routing.link_base}{case_id}" if routing.link_base else f"/cs/v1/cases/{case_id}"


def message_for(case: Case, routing: Routing, mentions: tuple[str, ...] = (),
                reminder: bool = False) -> Message:
    message = render(case.type, order=order_ref(case.facts), severity=case.severity,
                     link=link(case.case_id, routing), language=routing.language,
                     detail=case.summary, subject=case.subject, mentions=mentions)
    if reminder:
        prefix = ("【提醒·未确认】" if routing.language is Language.ZH
                  else "[Reminder: unacknowledged] ")
        message = message.model_copy(update={"title": prefix + message.title})
    return message


def digest_for(cases: Sequence[noise.Case], start: datetime, end: datetime,
               routing: Routing) -> Message:
    return digest(cases, start=start, end=end, link=link("", routing).rstrip("/"),
                  language=routing.language)


def noise_case(case: Case) -> noise.Case:
    return noise.Case(case_id=case.case_id, kind=case.type, severity=case.severity,
                      order=order_ref(case.facts))


# The outbox note -----------------------------------------------------------------------------

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
    from chalicelib.cs.cases import CaseStatus

    if case.status is not CaseStatus.OPEN or not case.severity.at_least(routing.remind_from):
        return None
    serial = int((now - case.opened_at) / routing.remind_after)
    return serial if serial >= 1 and serial > case.reminders else None


def escalates(case: Case, now: datetime, routing: Routing) -> bool:
    return now - case.opened_at >= routing.escalate_after
