"""The notifier: plans and sends the outbox's notes, each one message for one CS channel. The I/O
around the pure rules: chalicelib.cs.routing (who hears of a case, in what words),
chalicelib.cs.notes (the note, its retries, fallback and reminders), chalicelib.cs.noise (rate
limits, digests) and chalicelib.cs.channels (each platform's adapter: an HTTP robot is sent
through chalicelib.core.http, an SES mailbox here with boto3, as its `delivery` declares).

- `plan_for`: the alert dispatcher recorded a case; write a note per channel the routing picks
  (keyed by case, channel and severity: a repeat adds nothing, an escalation is news).
- `run`: the scheduled tick. Under a lease (one run at a time), every note due is offered to its
  channel's noise control (alone now, or folded into the channel's digest, itself a note),
  sent, and on failure retried with back-off, then moved to the fallback channel (email), and
  when that fails too dead-lettered: kept, listed by the CS API, never dropped. Then unacknowledged
  high-severity cases are reminded, and escalated to the on-duty manager.
Channel settings (webhook URLs, signing secrets, email sender and recipients) are secrets: they
live in SSM Parameter Store as the account `channel/<channel id>` (chalicelib/access/
accounts_store.py; set with chalicelib/admin/cli.py `channel`), and no error this module
stores, logs or answers quotes them.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any

from pydantic import BaseModel, ValidationError

from chalicelib.core import aws, observability, runs
from chalicelib.core.clock import utcnow
from chalicelib.core.dynamodb import TransactionConflict, transact
from chalicelib.core.settings import rules_from_env, settings
from chalicelib.cs import case_store, channels, noise, notes
from chalicelib.cs import outbox_store as outbox
from chalicelib.cs.alerts import worst
from chalicelib.cs.cases import Case, reminded
from chalicelib.cs.channels import ChannelResult, Delivery, Failure, Message, SesChannel
from chalicelib.cs.notes import Note
from chalicelib.cs.routing import Routing, case_brief, digest_for, message_for

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=5)
RUN_SECONDS = 20.0  # at most; notify_cs's timeout is 30 s (.chalice/config.json)
RUN_MARGIN = 10.0


@lru_cache(maxsize=1)
def routing() -> Routing:
    """CS_ROUTING_JSON (the JSON form of chalicelib.cs.routing.Routing), or the defaults."""
    return rules_from_env(Routing, "CS_ROUTING_JSON")


def channel_name(channel: str) -> str:
    return f"channel/{channel}"


# Planning -------------------------------------------------------------------------------------

def plan_for(recorded: case_store.Recorded, now: datetime) -> int:
    """Notes for a case just opened or escalated (or a redelivery of either): how many new."""
    if recorded.case is None or recorded.outcome in ("resolved", "nothing_open", "repeated"):
        return 0
    return _write_new(notes.plan(recorded.case, now, routing()))


def _write_new(planned: list[Note]) -> int:
    written = 0
    for note in planned:
        try:
            transact([outbox.put_note(note, None)])
            written += 1
        except TransactionConflict:
            pass  # planned before: the same note
    return written


# The tick -------------------------------------------------------------------------------------

@dataclass
class RunReport:
    # Channels that failed as unreachable in this run: their other notes wait for the next
    # run instead of each waiting out a timeout (a Lambda run has 30 s, not 500 timeouts).
    broken: set[str] = field(default_factory=set)
    sent: int = 0
    folded: int = 0
    digests: int = 0
    retried: int = 0
    fell_back: int = 0
    dead: int = 0
    skipped: int = 0
    reminded: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


def run(now: datetime, limit: int = 500, budget_seconds: float = RUN_SECONDS) -> RunReport:
    """One tick; stops taking new notes after `budget_seconds` (the rest stay due)."""
    report = RunReport()
    owner = secrets.token_hex(8)
    if not outbox.take_lease(owner, now, LEASE):
        return report  # the previous run is still sending
    stop_at = time.monotonic() + budget_seconds
    try:
        try:
            remind(now, report, stop_at)  # first, so a reminder goes out in this run
        except Exception:  # the open cases could not be read: the notes go all the same
            log.exception("reminders failed")
        started = time.monotonic()
        for note_id in list(outbox.due_notes(now, limit)):  # digests and critical first
            if time.monotonic() > stop_at:
                break
            # The rate limits count real sends: a run that takes 20 s is not one instant.
            moment = now + timedelta(seconds=time.monotonic() - started)
            with observability.unit(note_id=note_id):
                try:
                    process(note_id, moment, report)
                except Exception:  # the note stays due; the next tick tries again
                    log.exception("notification %s failed", note_id)
    finally:
        outbox.release_lease(owner)
    return report


def process(note_id: str, now: datetime, report: RunReport) -> None:
    found = outbox.get_note(note_id)
    if found is None or found[0].status != "pending" or found[0].due_at > now:
        return
    note, version = found
    observability.tag(channel=note.channel,
                      case_id=note.case_ids[0] if len(note.case_ids) == 1 else None)
    if note.kind == "digest":
        _flush_digest(note, version, now, report)
        return
    case = case_store.get(note.case_ids[0])  # a case or reminder note carries one case
    if case is None or (not case.is_open and note.fallback_of is None):
        transact([outbox.put_note(note.model_copy(update={"status": "skipped"}), version)])
        report.skipped += 1  # resolved before anyone had to hear of it
        return
    if not note.decided:
        decided = _offer(note, version, case, now, report)
        if decided is None:
            return
        note, version = decided
    _deliver(note, version, _message(note, case), now, report)


def _offer(note: Note, version: int, case: Case, now: datetime,
           report: RunReport) -> tuple[Note, int] | None:
    """Noise control: alone now (the note goes on), or into the channel's digest (None)."""
    rules = routing().noise
    state, state_version = outbox.channel_state(note.channel)
    state, decision = noise.offer(state, note.channel, case_brief(case), now, rules)
    if isinstance(decision, noise.Folded):
        assert state.digest is not None
        digest = notes.digest_note(note.channel, state.digest.opened_at, decision.digest_due,
                                   now)
        actions = [outbox.put_channel_state(note.channel, state, state_version),
                   outbox.put_note(note.model_copy(update={"status": "folded"}), version)]
        existing = outbox.get_note(digest.note_id)
        if existing is None:
            actions.append(outbox.put_note(digest, None))
        elif existing[0].status == "pending" and existing[0].due_at > decision.digest_due:
            # The digest filled up: it goes sooner than planned.
            actions.append(outbox.put_note(existing[0].model_copy(update={
                "due_at": decision.digest_due}), existing[1]))
        transact(actions)
        report.folded += 1
        return None
    decided = note.model_copy(update={"decided": True})
    transact([outbox.put_channel_state(note.channel, state, state_version),
              outbox.put_note(decided, version)])
    return decided, version + 1


def _flush_digest(note: Note, version: int, now: datetime, report: RunReport) -> None:
    rules = routing().noise
    state, state_version = outbox.channel_state(note.channel)
    state, out = noise.flush(state, note.channel, now, rules)
    if out is None:
        due = noise.digest_due(state, note.channel, now, rules)
        update: dict[str, Any] = {"due_at": due} if due is not None else {"status": "skipped"}
        transact([outbox.put_note(note.model_copy(update=update), version)])
        return
    cases: tuple[noise.CaseBrief, ...]
    if isinstance(out, noise.Alone):
        cases = (out.case,)
        case = case_store.get(out.case.case_id)
        message = _message(note, case) if case else None
    else:
        cases = out.cases
        message = digest_for(cases, out.opened_at, now, routing(), settings().console_url)
    decided = note.model_copy(update={
        "decided": True, "case_ids": tuple(c.case_id for c in cases),
        "severity": worst(c.severity for c in cases)})
    transact([outbox.put_channel_state(note.channel, state, state_version),
              outbox.put_note(decided, version)])
    report.digests += isinstance(out, noise.Digest)
    if message is None:
        return
    _deliver(decided, version + 1, message, now, report)


def _message(note: Note, case: Case) -> Message:
    return message_for(case, routing(), settings().console_url, mentions=note.mentions,
                       reminder=note.kind == "reminder")


def _deliver(note: Note, version: int, message: Message, now: datetime,
             report: RunReport) -> None:
    if note.channel in report.broken:  # try again next run, without counting an attempt
        transact([outbox.put_note(note.model_copy(update={
            "due_at": now + routing().retry_base}), version)])
        return
    result = send(note, message, now)
    if result.error in (Failure.NETWORK, Failure.SERVER):
        report.broken.add(note.channel)
    if result.ok:
        transact([outbox.put_note(note.model_copy(update={
            "status": "sent", "sent_at": now, "attempts": note.attempts + 1}), version)])
        report.sent += 1
        observability.count("NotificationsSent", platform=note.platform)
        log.info("CS notification %s sent on %s (%s)", note.note_id, note.channel, note.kind)
        return
    error = f"{result.error}: {result.platform_code} {result.detail}".strip()
    after, fallback = notes.failed(note, error[:300], result.retryable, now, routing(),
                                   result.retry_after)
    actions = [outbox.put_note(after, version)]
    if fallback is not None:
        actions.append(outbox.put_note(fallback, None))
    transact(actions)
    observability.count("NotificationsFailed", platform=note.platform)
    # The failure's kind and the platform's code only: its detail (kept on the note, listed
    # by the CS API) may quote the robot's URL and token or the message.
    failure = f"{result.error} {result.platform_code}"[:120]
    if after.status == "dead":
        report.dead += 1
        observability.count("NotificationsDead", platform=note.platform)
        log.error("CS notification %s dead-lettered: %s", note.note_id, failure)
    elif fallback is not None:
        report.fell_back += 1
        log.warning("CS notification %s failed on %s (%s): falls back to %s", note.note_id,
                    note.channel, failure, fallback.channel)
    else:
        report.retried += 1
        log.warning("CS notification %s failed on %s (%s): retried later", note.note_id,
                    note.channel, failure)


def send(note: Note, message: Message, now: datetime) -> ChannelResult:
    """One attempt on the note's channel, the way its platform's adapter is delivered."""
    from chalicelib.access import accounts_store as accounts

    source = accounts.channel(note.channel)
    if source is None:
        return ChannelResult.failure(Failure.GONE, "not_configured",
                                     f"no settings for channel {note.channel}")
    try:
        adapter = channels.channel(note.platform)
        config = channels.parse_config(note.platform, source.secrets[0])
    except (KeyError, ValueError) as exc:
        return _bad_config(exc)
    if adapter.delivery is Delivery.SES:
        return _send_email(adapter, message, config, note.emails)
    return channels.send(adapter, message, config, now)


def _bad_config(error: Exception) -> ChannelResult:
    # Not retried: a person must fix the settings (admin `channel`); the fallback carries on.
    # The note keeps the error (the outbox table, the CS API, the log): where the settings were
    # refused and why, never the values (pydantic's text quotes its input: the robot's URL).
    if isinstance(error, ValidationError):
        text = "; ".join(f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: "
                         f"{problem['msg']}"
                         for problem in error.errors(include_url=False, include_input=False,
                                                     include_context=False))
    else:
        text = str(error)
    return ChannelResult.failure(Failure.GONE, "bad_config", text[:200])


def _send_email(adapter: SesChannel, message: Message, config: BaseModel,
                to: tuple[str, ...]) -> ChannelResult:
    from botocore.exceptions import BotoCoreError, ClientError

    try:  # the rota's addresses, else the mailbox's own recipients
        kwargs = adapter.send_email_kwargs(message, config, to=to or None)
    except ValueError as exc:
        return _bad_config(exc)
    try:
        answer = aws.client("ses").send_email(**kwargs)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        retryable = code in ("Throttling", "ThrottlingException", "ServiceUnavailable")
        return ChannelResult.failure(Failure.RATE_LIMITED if retryable else Failure.GONE, code,
                                     str(exc)[:200])
    except BotoCoreError as exc:
        return ChannelResult.failure(Failure.NETWORK, type(exc).__name__)
    return ChannelResult.success(str(answer.get("MessageId", "")))


# Reminders ------------------------------------------------------------------------------------

def remind(now: datetime, report: RunReport, stop_at: float | None = None) -> None:
    """Remind, and after 2 hours escalate, each unacknowledged high case that is due; one case
    failing (its notes, its counter) does not stop the others or the tick, and a case whose
    counter was not written is due again next tick (its notes are the same notes: nothing is
    sent twice). Stops taking cases at `stop_at` (time.monotonic()); the rest wait a tick."""
    rules = routing()
    for case in case_store.open_cases_from(rules.remind_from):
        serial = notes.reminder_due(case, now, rules)
        if serial is None:
            continue
        if stop_at is not None and time.monotonic() > stop_at:
            log.warning("reminders stopped at the run's time budget: the rest wait a tick")
            return
        with observability.unit(case_id=case.case_id):
            try:
                escalate = notes.escalates(case, now, rules)
                planned = notes.plan(case, now, rules, kind="reminder", serial=serial,
                                     escalate=escalate)
                report.reminded += _write_new(planned)
                case_store.change(case.case_id, partial(reminded, serial=serial,
                                                        escalated=escalate, now=now), now)
            except Exception:
                log.exception("reminder of case %s failed", case.case_id)


def configure_channels(settings_by_channel: dict[str, dict[str, Any]]) -> None:
    """Store channel settings, e.g. {"wecom:cs-team": {"webhook_url": "https://..."}}."""
    from chalicelib.access import accounts_store as accounts

    accounts.register_sources({channel_name(channel_id): {
        "scheme": channels.platform_of(channel_id), "secrets": [json.dumps(settings)]}
        for channel_id, settings in settings_by_channel.items()})


def on_schedule(context: Any = None) -> None:
    """The 1-minute tick (app.py `notify_cs`), taking no new note in the last RUN_MARGIN
    seconds its Lambda context leaves (a note in hand may wait out a channel's timeout)."""
    budget = runs.Budget.of(context, most=RUN_SECONDS, margin=RUN_MARGIN)
    report = run(utcnow(), budget_seconds=budget.left())
    if any(report.as_dict().values()):
        log.info("notifications: %s", report.as_dict())
