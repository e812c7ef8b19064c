"""Which CS channels hear of a case, when, and with what words; and the settings of the whole
delivery (`Routing`, CS_ROUTING_JSON). Pure. The outbox note that carries one message to one
channel, and its retries and fallback, are in chalicelib/cs/notes.py.

Every route whose case types (shell patterns), minimum severity and marketplaces match adds its
channels; a route with `use_rota` adds whoever the CS rota puts on duty at that moment
(chalicelib/cs/rota.py), which may be later than now for a low severity outside hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.cs import noise, rota
from chalicelib.cs.alerts import Severity
from chalicelib.cs.cases import Case
from chalicelib.cs.channels import Language, Message
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


def link(case_id: str, console_url: str) -> str:
    """The console's page for a case, absolute: IM and mail clients open it on a phone, where a
    path alone opens nothing. `console_url` is the stage's CONSOLE_URL (no trailing slash)."""
    return f"{console_url.rstrip('/')}/console/cases/{quote(case_id, safe='')}"


def queue_link(kinds: Iterable[str], console_url: str) -> str:
    """The console's case queue for a digest: filtered to its one case type, or the whole queue
    when the digest mixes types (the queue's filter takes one type)."""
    distinct = sorted(set(kinds))
    query = f"?{urlencode({'type': distinct[0]})}" if len(distinct) == 1 else ""
    return f"{console_url.rstrip('/')}/console/cases{query}"


def message_for(case: Case, routing: Routing, console_url: str, mentions: tuple[str, ...] = (),
                reminder: bool = False) -> Message:
    message = render(case.type, order=order_ref(case.facts), severity=case.severity,
                     link=link(case.case_id, console_url), language=routing.language,
                     detail=case.summary, subject=case.subject, mentions=mentions)
    if reminder:
        prefix = ("【提醒·未确认】" if routing.language is Language.ZH
                  else "[Reminder: unacknowledged] ")
        message = message.model_copy(update={"title": prefix + message.title})
    return message


def digest_for(cases: Sequence[noise.CaseBrief], start: datetime, end: datetime,
               routing: Routing, console_url: str) -> Message:
    return digest(cases, start=start, end=end,
                  link=queue_link((case.kind for case in cases), console_url),
                  language=routing.language)


def case_brief(case: Case) -> noise.CaseBrief:
    """What noise control keeps of a case (in the channel's digest, so: small)."""
    return noise.CaseBrief(case_id=case.case_id, kind=case.type, severity=case.severity,
                           order=order_ref(case.facts))
