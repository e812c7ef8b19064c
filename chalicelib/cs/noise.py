"""Noise control for CS channels: rate limits per channel, and digests instead of bursts. Pure.

Per channel (a robot, a mailbox: ids like "wecom:cs-team"), each case offered is either
- sent alone now: the channel is quiet (at most `threshold` cases within `window`) and a
  rate-limit slot is free, or
- folded into the channel's open digest, which goes out `digest_after` after the burst opened
  it (or as soon as the rate limit has room, if only the limit held the case back). A digest of
  one case goes out as that case alone.
So a storm of 500 courier exceptions is a few single messages and a digest every couple of
minutes, never 500 pings, and no case is lost: each is sent alone or counted in exactly one
digest. Critical cases skip the digest whenever the rate limit allows (a dead worker must not
hide in a summary), and still wait for a slot like everything else.

Rate limits are sliding windows (`count` per `per`), all of which must have room; the defaults
are the platforms' documented limits (WeCom and DingTalk 20 a minute per robot, Feishu 100 a
minute and 5 a second, Slack about one a second). DingTalk blocks a robot for 10 minutes when it
is exceeded, so lower a limit rather than raise it.

Deterministic: the caller passes the clock. State is a JSON-serialisable model so the worker can
keep it between invocations. Times that run backwards (two workers' clocks) are clamped to the
last time seen, which keeps the limits true for the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from chalicelib.cs.alerts import Severity
from chalicelib.cs.channels import platform_of


class CaseBrief(BaseModel):
    """A case as noise control sees it (chalicelib/cs/cases.py has the case itself): enough to
    count it and to name it in a digest."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    kind: str
    severity: Severity = Severity.MEDIUM
    order: str = ""  # the order number, for the digest's samples


class RateLimit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    count: PositiveInt
    per: timedelta

    @field_validator("per")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("per must be positive")
        return value


def _limit(count: int, seconds: float) -> RateLimit:
    return RateLimit(count=count, per=timedelta(seconds=seconds))


PLATFORM_LIMITS: Mapping[str, tuple[RateLimit, ...]] = {
    "wecom": (_limit(20, 60),),
    "dingtalk": (_limit(20, 60),),
    "feishu": (_limit(100, 60), _limit(5, 1)),
    "slack": (_limit(1, 1),),
    "email": (_limit(1, 1),),  # SES sandbox rate; production accounts have more
}


class NoiseRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: PositiveInt = 5  # more cases than this within `window` on a channel: digest
    window: timedelta = timedelta(minutes=5)
    digest_after: timedelta = timedelta(minutes=2)  # how long a digest collects a burst
    # A digest this full goes at the next free slot: its case list is kept in the channel's
    # state, which must stay far below DynamoDB's 400 KB item limit whatever the storm.
    max_digest_cases: PositiveInt = 500
    never_fold: frozenset[Severity] = frozenset({Severity.CRITICAL})
    # By channel id ("wecom:cs-team") or by its type, the part before ":" ("wecom").
    limits: dict[str, tuple[RateLimit, ...]] = Field(
        default_factory=lambda: dict(PLATFORM_LIMITS))
    fallback_limits: tuple[RateLimit, ...] = (_limit(20, 60),)

    def limits_for(self, channel: str) -> tuple[RateLimit, ...]:
        found = self.limits.get(channel) or self.limits.get(platform_of(channel))
        return found or self.fallback_limits


DEFAULT_NOISE_RULES = NoiseRules()


class OpenDigest(BaseModel):
    model_config = ConfigDict(frozen=True)

    opened_at: datetime
    planned_at: datetime  # a burst collects for `digest_after`; a full rate limit only waits
    cases: tuple[CaseBrief, ...]


class ChannelState(BaseModel):
    model_config = ConfigDict(frozen=True)

    arrivals: tuple[datetime, ...] = ()  # the newest threshold+1 within `window`
    sent: tuple[datetime, ...] = ()  # the newest, within the longest rate-limit period
    digest: OpenDigest | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True)
class Alone:
    """Send this case by itself, now."""

    channel: str
    case: CaseBrief
    at: datetime


@dataclass(frozen=True)
class Folded:
    """Held for the channel's digest, expected out at `digest_due` (later if the limit is full)."""

    channel: str
    case: CaseBrief
    digest_due: datetime


@dataclass(frozen=True)
class Digest:
    """Send one summary of these cases, now."""

    channel: str
    cases: tuple[CaseBrief, ...]
    opened_at: datetime
    at: datetime

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for case in self.cases:
            counts[case.kind] = counts.get(case.kind, 0) + 1
        return counts


Outgoing = Alone | Digest


# The rules as pure functions ------------------------------------------------------------------

def next_free(sent: tuple[datetime, ...], limits: tuple[RateLimit, ...],
              now: datetime) -> datetime:
    """The earliest moment >= now when every limit has room for one more message."""
    free = now
    for limit in limits:
        recent = [moment for moment in sent if moment > now - limit.per]
        if len(recent) >= limit.count:
            # The window (t - per, t] drops the count-th most recent send at exactly + per.
            free = max(free, recent[-limit.count] + limit.per)
    return free


def _tick(state: ChannelState, channel: str, now: datetime,
          rules: NoiseRules) -> tuple[ChannelState, datetime]:
    now = max(now, state.last_seen) if state.last_seen else now
    limits = rules.limits_for(channel)
    longest, most = max(limit.per for limit in limits), max(limit.count for limit in limits)
    # Only the newest threshold+1 arrivals and the newest `most` sends can decide anything, so
    # a storm of 10,000 costs the same per case as a quiet day.
    return state.model_copy(update={
        "arrivals": tuple(t for t in state.arrivals[-rules.threshold - 1:]
                          if t > now - rules.window),
        "sent": tuple(t for t in state.sent[-most:] if t > now - longest),
        "last_seen": now,
    }), now


def _due(digest: OpenDigest, state: ChannelState, channel: str, now: datetime,
         rules: NoiseRules) -> datetime:
    full = len(digest.cases) >= rules.max_digest_cases
    return next_free(state.sent, rules.limits_for(channel),
                     now if full else max(digest.planned_at, now))


def digest_due(state: ChannelState, channel: str, now: datetime,
               rules: NoiseRules = DEFAULT_NOISE_RULES) -> datetime | None:
    """When the open digest can go out (None: no digest is open)."""
    return None if state.digest is None else _due(state.digest, state, channel, now, rules)


def offer(state: ChannelState, channel: str, case: CaseBrief, now: datetime,
          rules: NoiseRules = DEFAULT_NOISE_RULES) -> tuple[ChannelState, Alone | Folded]:
    """Decide one case: alone now, or into the digest."""
    state, now = _tick(state, channel, now, rules)
    arrivals = (*state.arrivals, now)
    busy = len(arrivals) > rules.threshold or state.digest is not None
    room = next_free(state.sent, rules.limits_for(channel), now) <= now
    if room and (not busy or case.severity in rules.never_fold):
        return state.model_copy(update={"arrivals": arrivals, "sent": (*state.sent, now)}), \
            Alone(channel, case, now)
    # Opened by a burst, it collects the burst; opened by a full rate limit, it goes at the
    # next free slot with whatever joined it by then.
    planned = now + rules.digest_after if busy else now
    digest = state.digest or OpenDigest(opened_at=now, planned_at=planned, cases=())
    digest = digest.model_copy(update={"cases": (*digest.cases, case)})
    state = state.model_copy(update={"arrivals": arrivals, "digest": digest})
    return state, Folded(channel, case, _due(digest, state, channel, now, rules))


def flush(state: ChannelState, channel: str, now: datetime,
          rules: NoiseRules = DEFAULT_NOISE_RULES) -> tuple[ChannelState, Outgoing | None]:
    """The open digest, if its time has come and the rate limit has room."""
    state, now = _tick(state, channel, now, rules)
    if state.digest is None or _due(state.digest, state, channel, now, rules) > now:
        return state, None
    cases, opened = state.digest.cases, state.digest.opened_at
    state = state.model_copy(update={"digest": None, "sent": (*state.sent, now)})
    if len(cases) == 1:
        return state, Alone(channel, cases[0], now)  # a digest of one reads better as itself
    return state, Digest(channel, cases, opened, now)


# A convenience holder for many channels -------------------------------------------------------

class NoiseControl:
    """Every channel's state, for a worker that keeps it in memory (or loads and saves it)."""

    def __init__(self, rules: NoiseRules = DEFAULT_NOISE_RULES,
                 states: Mapping[str, ChannelState] | None = None) -> None:
        self.rules = rules
        self.states: dict[str, ChannelState] = dict(states or {})

    def offer(self, channel: str, case: CaseBrief, now: datetime) -> Alone | Folded:
        state, decision = offer(self.states.get(channel, ChannelState()), channel, case, now,
                                self.rules)
        self.states[channel] = state
        return decision

    def flush(self, now: datetime) -> list[Outgoing]:
        out: list[Outgoing] = []
        for channel in sorted(self.states):
            self.states[channel], sent = flush(self.states[channel], channel, now, self.rules)
            if sent is not None:
                out.append(sent)
        return out

    def next_due(self) -> datetime | None:
        """When `flush` next has something to send: schedule the worker for then."""
        dues = [digest_due(state, channel, state.last_seen or state.digest.opened_at, self.rules)
                for channel, state in self.states.items() if state.digest is not None]
        return min((due for due in dues if due is not None), default=None)

    def held(self) -> int:
        return sum(len(s.digest.cases) for s in self.states.values() if s.digest is not None)


def simulate(events: Iterable[tuple[datetime, str, CaseBrief]],
             rules: NoiseRules = DEFAULT_NOISE_RULES) -> list[Outgoing]:
    """Replay (time, channel, case) events, flushing each digest at its due time, then drain.

    What a worker polled exactly on time would send; used by tests and the benchmark."""
    control, out = NoiseControl(rules), []
    for at, channel, case in sorted(events, key=lambda event: event[0]):
        out += _drain(control, until=at)
        decision = control.offer(channel, case, at)
        if isinstance(decision, Alone):
            out.append(decision)
    return out + _drain(control, until=None)


def _drain(control: NoiseControl, until: datetime | None) -> list[Outgoing]:
    out: list[Outgoing] = []
    due = control.next_due()
    while due is not None and (until is None or due <= until):
        out += control.flush(due)
        due = control.next_due()
    return out
