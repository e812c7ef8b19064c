"""10,000 case events in a burst: the CS notification pipeline's messages per channel, its time to
drain, and no loss. Budget: at most one message per case per channel plus digests, none lost.

The real pipeline against the local AWS endpoint, no fakes of ours: the local stack as
bench/stack.py starts it (moto in this process, every resource from infra/), an `ImSink` (real
HTTP on 127.0.0.1) as the WeCom and DingTalk robots, SES on the local endpoint with a verified
domain. Routing as in tests/integration/test_cs_notifications.py: the CS team on a WeCom robot
and an email mailbox, the on-duty manager on a signed DingTalk robot (copied on critical cases
in hours), the production noise rules (`NoiseRules()`: 5 cases in 5 min make a burst, digests
after 2 min, the platforms' rate limits). Simulated clock from Wednesday 2 December 2026, 10:00
in Shanghai (CS online); the sink's clock follows it, since DingTalk signatures and WeCom's
20 a minute are checked against it.

The storm (seeded): 2,000 parcels each reported 3-6 times as stalled (courier.stalled_no_scan,
medium), 15 to 40 s apart, 5 % of them escalating on their last report to probably_lost (case
type courier.stalled through `Alert.case`, critical as chalicelib/tracking/parcels.py raises it);
300
order/warehouse problems of the kinds the code raises (invalid orders, unprocessed deliveries,
rejected and late jobs, returns) reported 1-3 times, 6 of them critical (the order worker's dead
letters); and SQS's at-least-once redeliveries of random messages 20-90 s later, to exactly
10,000 events within about six simulated minutes.

As in AWS, the alert queue's consumer and the every-minute notifier schedule run side by side:
for each simulated minute, the events of that minute go through `alert_dispatch.handle` in SQS
batches of 10, in order, on a pool of 3 threads (concurrent Lambda batches; the cases layer is
version-guarded), then `notifier.run(now)` ticks at the minute. A message whose handling raised
is redelivered once after its minute (SQS would). Ticks go on after the burst until no note is
pending, at most 4 simulated hours. Each tick is `notifier.run(now)` as the schedule calls it: at
most 500 notes and a 20 s wall budget (notifier.RUN_SECONDS). Against the local endpoint the
budget is what ends a tick, so the drain time in simulated minutes is what this code achieves at
the local endpoint's speed (moto is slower than DynamoDB on large items such as a channel's
noise state): read it as an upper bound, and the per-tick table for the throughput.

Measured: (a) messages per channel, from what the platforms hold (the IM sink's accepted
requests per robot; SES's messages per recipient from <endpoint>/moto-api/data.json), (b)
digests against single messages, (c) the time to drain in simulated minutes (burst start to the
last message) and the wall time of the whole run, (d) no loss: from the outbox notes (a scan of
the cases table), every case note on a channel is sent alone or folded into exactly one digest
that was sent, none pending, dead or failed; every case reached each channel it was routed to
(the team's two, and the manager's for critical ones) as many times as it has notes there (an
escalation is news: a second note); and the platforms agree: per channel, as many messages as
sent notes, as many digests, and the digests' counts ("共 N 条") add up to the folded notes.
The cases layer is checked exact: one case per (type, subject), its occurrences the distinct
reports, its severity the worst. Also shown, not budgeted: how long each case note waited from
its planning to the message that carried it (critical ones apart), and the DynamoDB requests and
request bytes of consuming and of the ticks.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.stack import local_stack, verdict

NAME = "cs_burst"
SEED = 20261202
EVENTS = 10_000
PARCELS = 2_000
LOST_SHARE = 0.05  # parcels whose last report is "probably lost"
PROBLEMS = 300  # order and warehouse problems
CRITICAL_PROBLEMS = 6
WORKERS = 3  # concurrent Lambda batches
BATCH = 10  # app.py: @app.on_sqs_message(queue=ALERTS_QUEUE_NAME, batch_size=10)
START = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Shanghai: CS online
TICK = timedelta(minutes=1)
MAX_TICKS = 240
SHANGHAI = ZoneInfo("Asia/Shanghai")

DOMAIN = "backbone.test"
WECOM, EMAIL, MANAGER = "wecom:cs-team", "email:cs-team", "dingtalk:cs-manager"
ROBOT, MANAGER_TOKEN, MANAGER_SECRET = "cs-team-burst", "cs-manager", "SECbench0manager"
MAILBOX = f"cs-team@{DOMAIN}"
CHANNELS = (WECOM, EMAIL, MANAGER)

CARRIERS = ("SF", "ZTO", "YTO", "STO", "YUNDA", "JD")
MARKETPLACES = ("shopify", "tmall", "jd", "douyin")
# (kind, severity, subject prefix, weight): the order and warehouse alerts the code raises.
PROBLEM_KINDS = (
    ("order.invalid", "high", "order", 30),
    ("delivery.unprocessed", "high", "delivery", 10),
    ("job.rejected", "high", "job", 10),
    ("job.late_dispatch", "medium", "job", 25),
    ("job.not_accepted", "medium", "job", 15),
    ("return.received", "medium", "return", 7),
    ("return.damaged", "high", "return", 3),
)
DIGEST_COUNT = re.compile(r"共 (\d+) 条")


# --- The storm ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at: datetime
    body: str  # the alert, as the SQS message carries it
    key: tuple[str, str]  # (case type, subject)
    redelivery: bool = False


@dataclass
class Truth:
    """What the cases layer must end with, from the generator."""

    reports: dict[tuple[str, str], int] = field(default_factory=dict)  # distinct alerts
    worst: dict[tuple[str, str], str] = field(default_factory=dict)
    escalations: int = 0
    redeliveries: int = 0


_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def storm(seed: int) -> tuple[list[Event], Truth]:
    from chalicelib.cs.alerts import Alert, Severity

    rng = random.Random(seed)
    truth = Truth()
    events: list[Event] = []

    def add(alert: Alert) -> None:
        key = (alert.case_type, alert.subject)
        truth.reports[key] = truth.reports.get(key, 0) + 1
        old = truth.worst.get(key)
        if old is not None and _RANK[alert.severity] > _RANK[old]:
            truth.escalations += 1
        if old is None or _RANK[alert.severity] > _RANK[old]:
            truth.worst[key] = alert.severity.value
        events.append(Event(alert.at, alert.model_dump_json(), key))

    lost = set(rng.sample(range(PARCELS), round(PARCELS * LOST_SHARE)))
    for n in range(PARCELS):
        carrier, market = rng.choice(CARRIERS), rng.choice(MARKETPLACES)
        tracking = f"{rng.randrange(10**11, 10**12)}"
        order = f"#{700000 + n}"
        facts = {"order_id": f"ord_p{n:05d}", "order_name": order, "marketplace": market,
                 "carrier_code": carrier, "tracking_number": tracking}
        at = START + timedelta(seconds=rng.uniform(0, 150))
        reports = rng.randint(3, 6)
        for r in range(reports):
            gone = n in lost and r == reports - 1
            kind = "probably_lost" if gone else "stalled_no_scan"
            add(Alert(kind=f"courier.{kind}", case="courier.stalled",
                      severity=Severity.CRITICAL if gone else Severity.MEDIUM,
                      subject=f"parcel:{carrier}:{tracking}", at=at,
                      summary=f"{order} ({market}): parcel {carrier} {tracking} "
                              f"{'probably lost' if gone else 'no courier scan for too long'}",
                      facts={**facts, "exception": kind}))
            at += timedelta(seconds=rng.uniform(15, 40))

    weights = [kind[3] for kind in PROBLEM_KINDS]
    for n in range(PROBLEMS):
        if n < CRITICAL_PROBLEMS:
            kind, severity, subject = "worker.dead_letter", "critical", f"shard:orders:{n}"
        else:
            kind, severity, prefix, _ = rng.choices(PROBLEM_KINDS, weights)[0]
            subject = f"{prefix}:{n:05d}"
        order = f"#{800000 + n}"
        at = START + timedelta(seconds=rng.uniform(0, 300))
        for _ in range(rng.randint(1, 3)):
            add(Alert(kind=kind, severity=Severity(severity), subject=subject, at=at,
                      summary=f"{order} ({rng.choice(MARKETPLACES)}): {kind.replace('.', ' ')}",
                      facts={"order_id": f"ord_o{n:05d}", "order_name": order}))
            at += timedelta(seconds=rng.uniform(20, 60))

    if len(events) > EVENTS:
        raise RuntimeError(f"the storm has {len(events)} reports, more than {EVENTS} events")
    for original in rng.sample(events, EVENTS - len(events)):
        later = original.at + timedelta(seconds=rng.uniform(20, 90))
        events.append(Event(later, original.body, original.key, redelivery=True))
        truth.redeliveries += 1
    events.sort(key=lambda event: event.at)
    return events, truth


# --- Setting up the team ------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def team(sink: Any) -> None:
    """The channels' settings (secrets) and CS_ROUTING_JSON, as the tests configure a team."""
    import os

    import boto3

    from chalicelib.flows import notifier

    boto3.client("ses").verify_domain_identity(Domain=DOMAIN)
    notifier.configure_channels({
        WECOM: {"webhook_url": sink.url_for("wecom", ROBOT)},
        EMAIL: {"sender": f"CS alerts <alerts@{DOMAIN}>", "verified_identities": [DOMAIN],
                "to": [MAILBOX]},
        MANAGER: {"webhook_url": sink.url_for("dingtalk", MANAGER_TOKEN),
                  "secret": MANAGER_SECRET},
    })
    os.environ["CS_ROUTING_JSON"] = json.dumps({
        "rota": {"team_channels": [WECOM, EMAIL],
                 "people": {"cs-manager": {"name": "Manager", "mobile": "13800138000",
                                           "channels": [MANAGER]}}},
        "fallback_channel": EMAIL,
    })
    notifier.routing.cache_clear()


# --- Counting -----------------------------------------------------------------------------------


class DynamoCalls:
    """DynamoDB requests and request bytes per operation, for the phase being measured."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # request body bytes
        self._lock = threading.Lock()

    def install(self, client: Any) -> None:
        client.meta.events.register("before-send.dynamodb", self._on_send)

    def _on_send(self, request: Any, **_: Any) -> None:
        operation = str(request.headers.get("X-Amz-Target", b"?"), "ascii").split(".")[-1]
        with self._lock:
            self.calls[operation] += 1
            self.sent[operation] += len(request.body or b"")

    def take(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            calls, sent = self.calls, self.sent
            self.calls, self.sent = Counter(), Counter()
        return calls, sent


class ErrorCount(logging.Handler):
    """Errors the pipeline logged (a note that failed in a tick, a dead letter)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        cause = ""
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            cause = f" ({type(error).__name__}: {str(error)[:300]})"
        self.messages.append(record.getMessage() + cause)


# --- Driving the pipeline -----------------------------------------------------------------------


@dataclass
class Dispatch:
    outcomes: Counter[str] = field(default_factory=Counter)
    raised: Counter[str] = field(default_factory=Counter)
    redelivered: int = 0
    given_up: int = 0


def consume(batch: Sequence[Event], into: Dispatch, retry: list[Event],
            lock: threading.Lock) -> None:
    """One SQS batch, in order, as the alert queue's Lambda handles it."""
    from chalicelib.flows import alert_dispatch

    for event in batch:
        try:
            outcome = alert_dispatch.handle(event.body, event.at).outcome
        except Exception as exc:  # the message returns to the queue
            with lock:
                into.raised[type(exc).__name__] += 1
                retry.append(event)
            continue
        with lock:
            into.outcomes[outcome] += 1


def dispatch(events: Sequence[Event], pool: ThreadPoolExecutor, into: Dispatch) -> None:
    from chalicelib.flows import alert_dispatch

    lock = threading.Lock()
    retry: list[Event] = []
    batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
    for future in [pool.submit(consume, batch, into, retry, lock) for batch in batches]:
        future.result()
    for event in sorted(retry, key=lambda e: e.at):  # SQS redelivers after the visibility timeout
        into.redelivered += 1
        try:
            into.outcomes[alert_dispatch.handle(event.body, event.at).outcome] += 1
        except Exception as exc:
            into.raised[type(exc).__name__] += 1
            into.given_up += 1


def pending_notes() -> int:
    from chalicelib.cs import outbox_store as outbox

    return sum(1 for _ in outbox.due_notes(START + timedelta(days=365), 10**6))


def state_sizes() -> tuple[int, int]:
    """The largest channel noise state (JSON bytes) and the most cases held in an open digest."""
    from chalicelib.cs import outbox_store as outbox

    size, held = 0, 0
    for channel in CHANNELS:
        state, _ = outbox.channel_state(channel)
        size = max(size, len(state.model_dump_json()))
        held = max(held, len(state.digest.cases) if state.digest else 0)
    return size, held


# --- Reading back what happened -----------------------------------------------------------------


def scan(prefix: str, drop: tuple[str, ...]) -> list[dict[str, Any]]:
    from chalicelib.core import aws
    from chalicelib.core.dynamodb import from_attrs, to_attrs
    from chalicelib.core.settings import settings

    pages = aws.client("dynamodb").get_paginator("scan").paginate(
        TableName=settings().cases_table, FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues=to_attrs({":p": prefix}))
    return [{k: v for k, v in from_attrs(item).items() if k not in drop}
            for page in pages for item in page.get("Items", [])]


@dataclass(frozen=True)
class Shown:
    """One message a platform holds: its text, when, and the digest count if it is one."""

    text: str
    at: datetime | None
    digest_of: int | None


def platform_messages(sink: Any) -> tuple[dict[str, list[Shown]], Counter[str]]:
    """What each channel's platform accepted, and the IM requests it refused (by outcome)."""
    import boto3
    import requests

    def shown(text: str, at: datetime | None) -> Shown:
        found = DIGEST_COUNT.search(text) if "异常汇总" in text else None
        return Shown(text, at, int(found.group(1)) if found else None)

    out: dict[str, list[Shown]] = {channel: [] for channel in CHANNELS}
    refused: Counter[str] = Counter()
    robots = {("wecom", ROBOT): WECOM, ("dingtalk", MANAGER_TOKEN): MANAGER}
    for request in sink.received():
        channel = robots.get((request.platform, request.robot), "?")
        if request.outcome == "accepted":
            out.setdefault(channel, []).append(shown(request.shown_text or "", request.at))
        else:
            refused[f"{channel} {request.outcome}"] += 1
    endpoint = boto3.client("ses").meta.endpoint_url
    data = requests.get(f"{endpoint}/moto-api/data.json", timeout=120).json()
    for mail in data.get("ses", {}).get("Message", []):
        if MAILBOX in json.dumps(mail.get("destinations", {})):
            out[EMAIL].append(shown(str(mail.get("subject", "")), None))
    return out, refused


@dataclass
class ChannelFigures:
    messages: int = 0  # on the platform
    alone: int = 0
    digests: int = 0  # of two cases or more
    digest_cases: int = 0
    reminders: int = 0
    cases: int = 0  # distinct cases routed here
    notes: Counter[str] = field(default_factory=Counter)  # by status


def account(notes: list[Any], cases: dict[str, Any], shown: dict[str, list[Shown]],
            problems: list[str]) -> dict[str, ChannelFigures]:
    """Per channel: every case note delivered exactly once (alone or in one sent digest), and
    the platform holding exactly what the outbox says was sent."""
    figures: dict[str, ChannelFigures] = {}
    by_channel: dict[str, list[Any]] = defaultdict(list)
    for note in notes:
        by_channel[note.channel].append(note)
    critical = {case_id for case_id, case in cases.items() if case.severity.value == "critical"}
    expected = {WECOM: set(cases), EMAIL: set(cases), MANAGER: critical}
    for channel in sorted(set(by_channel) | set(CHANNELS)):
        mine = by_channel.get(channel, [])
        fig = figures.setdefault(channel, ChannelFigures())
        fig.notes = Counter(note.status for note in mine)
        planned: Counter[str] = Counter()
        delivered: Counter[str] = Counter()
        for note in mine:
            if note.kind == "digest":
                if note.status == "sent":
                    delivered.update(note.case_ids)
                    if len(note.case_ids) > 1:
                        fig.digests += 1
                        fig.digest_cases += len(note.case_ids)
                    else:
                        fig.alone += 1  # a digest of one goes out as that case
                continue
            if note.status in ("pending", "dead", "failed"):
                problems.append(f"{channel}: note {note.note_id} ended {note.status} "
                                f"({note.last_error or 'no error'})")
            if note.status == "skipped":
                continue  # resolved before it was sent (none in this storm)
            planned.update(note.case_ids)
            if note.status == "sent":
                delivered.update(note.case_ids)
                fig.alone += 1
                fig.reminders += note.kind == "reminder"
        for note in mine:
            if note.kind == "digest" and note.status not in ("sent", "skipped"):
                problems.append(f"{channel}: digest {note.note_id} ended {note.status}")
        fig.cases = len({case_id for note in mine if note.kind == "case"
                         for case_id in note.case_ids})
        lost, twice = planned - delivered, delivered - planned
        if lost:
            problems.append(f"{channel}: {sum(lost.values())} case notes in no message "
                            f"(e.g. {next(iter(lost))})")
        if twice:
            problems.append(f"{channel}: {sum(twice.values())} case notes in more than one "
                            f"message (e.g. {next(iter(twice))})")
        routed = {case_id for note in mine if note.kind == "case" for case_id in note.case_ids}
        if channel in expected and routed != expected[channel]:
            problems.append(f"{channel}: {len(expected[channel] - routed)} cases never routed "
                            f"here, {len(routed - expected[channel])} routed here unexpectedly")
        on_platform = shown.get(channel, [])
        fig.messages = len(on_platform)
        platform_digests = [m.digest_of for m in on_platform if m.digest_of is not None]
        if fig.messages != fig.alone + fig.digests:
            problems.append(f"{channel}: the platform holds {fig.messages} messages, the outbox "
                            f"sent {fig.alone + fig.digests}")
        if (len(platform_digests), sum(platform_digests)) != (fig.digests, fig.digest_cases):
            problems.append(f"{channel}: the platform holds {len(platform_digests)} digests of "
                            f"{sum(platform_digests)} cases, the outbox sent {fig.digests} of "
                            f"{fig.digest_cases}")
    return figures


def check_cases(cases: dict[str, Any], truth: Truth, outcomes: Counter[str],
                problems: list[str]) -> None:
    """The cases layer stayed exact under concurrent batches."""
    by_key = {(case.type, case.subject): case for case in cases.values()}
    if len(by_key) != len(cases):
        problems.append(f"cases: {len(cases) - len(by_key)} problems have more than one case")
    missing = truth.reports.keys() - by_key.keys()
    extra = by_key.keys() - truth.reports.keys()
    if missing or extra:
        problems.append(f"cases: {len(missing)} problems without a case, {len(extra)} unknown")
    miscounted = [key for key, n in truth.reports.items()
                  if key in by_key and by_key[key].occurrences != n]
    if miscounted:
        key = miscounted[0]
        problems.append(f"cases: {len(miscounted)} with occurrences off (e.g. {key}: "
                        f"{by_key[key].occurrences}, reported {truth.reports[key]} times)")
    wrong = [key for key, worst in truth.worst.items()
             if key in by_key and by_key[key].severity.value != worst]
    if wrong:
        problems.append(f"cases: {len(wrong)} with the wrong severity")
    want = {"opened": len(truth.reports), "escalated": truth.escalations,
            "duplicate": truth.redeliveries}
    for outcome, n in want.items():
        if outcomes[outcome] != n:
            problems.append(f"dispatch: {outcomes[outcome]} {outcome}, expected {n}")


def delays(notes: list[Any]) -> dict[str, tuple[list[float], list[float]]]:
    """Per channel, minutes from each case note's planning to the message that carried it (its
    own, or the first digest sent after it that lists its case): all notes, critical ones."""
    digests: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for note in notes:
        if note.kind == "digest" and note.status == "sent" and note.sent_at is not None:
            for case_id in note.case_ids:
                digests[(note.channel, case_id)].append(note.sent_at)
    out: dict[str, tuple[list[float], list[float]]] = {}
    for note in notes:
        if note.kind != "case":
            continue
        if note.status == "sent":
            at = note.sent_at
        else:
            at = min((t for t in digests.get((note.channel, note.case_ids[0]), [])
                      if t >= note.created_at), default=None)
        if at is None:
            continue
        every, critical = out.setdefault(note.channel, ([], []))
        minutes = (at - note.created_at) / timedelta(minutes=1)
        every.append(minutes)
        if note.severity.value == "critical":
            critical.append(minutes)
    return dict(sorted(out.items()))


def spread(values: list[float]) -> str:
    from bench.stack import median

    if not values:
        return "-"
    return f"median {median(values):.1f}, max {max(values):.1f} (n={len(values)})"


# --- Report -------------------------------------------------------------------------------------


def local(moment: datetime) -> str:
    return f"{moment.astimezone(SHANGHAI):%H:%M}"


def kb(n: int) -> str:
    return f"{n / 1024:.0f} KB"


def print_calls(label: str, calls: Counter[str], sent: Counter[str], per: int,
                unit: str) -> None:
    total = sum(calls.values())
    print(f"  {label}: {total} DynamoDB requests ({total / max(per, 1):.1f} per {unit}), "
          f"{kb(sum(sent.values()))} sent")
    for operation, n in calls.most_common():
        print(f"    {operation:<20}{n:>8}{n / max(per, 1):>8.2f}/{unit}{kb(sent[operation]):>12}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}",
                                     description="10,000 CS case events in a burst, end to end.")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    started = time.monotonic()
    events, truth = storm(args.seed)
    problems: list[str] = []
    errors = ErrorCount()
    logging.getLogger("chalicelib").addHandler(errors)
    logging.getLogger("chalicelib.cs.alerts").setLevel(logging.ERROR)  # a line per opened case

    with local_stack() as _env:
        from chalicelib.core import aws
        from chalicelib.cs import case_store, outbox_store
        from chalicelib.flows import notifier
        from devstack.im_sink import ImSink

        clock = Clock(START)
        counter = DynamoCalls()
        counter.install(aws.client("dynamodb"))
        with ImSink({MANAGER_TOKEN: MANAGER_SECRET}, clock=clock) as sink, \
                ThreadPoolExecutor(args.workers, thread_name_prefix="sqs-batch") as pool:
            team(sink)
            print(f"storm: {len(events)} events, {len(truth.reports)} problems "
                  f"({PARCELS} parcels, {PROBLEMS} order/warehouse), {truth.escalations} "
                  f"escalations, {truth.redeliveries} redeliveries, "
                  f"{local(events[0].at)}-{local(events[-1].at)} Shanghai; "
                  f"{args.workers} consumer threads, batches of {BATCH}")
            print(f"{'tick':>6}{'events':>8}{'opened':>8}{'offered':>9}{'sent':>6}{'folded':>8}"
                  f"{'digests':>9}{'remind':>8}{'pending':>9}{'state':>9}{'held':>6}"
                  f"{'consume s':>11}{'tick s':>8}")
            dispatched, next_event, tick_no = Dispatch(), 0, 0
            consume_wall = tick_wall = 0.0
            consume_calls: Counter[str] = Counter()
            consume_sent: Counter[str] = Counter()
            tick_calls: Counter[str] = Counter()
            tick_sent: Counter[str] = Counter()
            offered, pending = 0, 0
            while tick_no < MAX_TICKS:
                tick_no += 1
                now = START + tick_no * TICK
                upto = next_event
                while upto < len(events) and events[upto].at < now:
                    upto += 1
                opened_before = dispatched.outcomes["opened"]
                t0 = time.perf_counter()
                dispatch(events[next_event:upto], pool, dispatched)
                t1 = time.perf_counter()
                calls, sent = counter.take()
                consume_calls += calls
                consume_sent += sent
                clock.now = now
                report = notifier.run(now)
                t2 = time.perf_counter()
                calls, sent = counter.take()
                tick_calls += calls
                tick_sent += sent
                pending = pending_notes()
                size, held = state_sizes()
                counter.take()  # the bench's own reads
                consume_wall += t1 - t0
                tick_wall += t2 - t1
                offers = report.sent + report.folded + report.skipped
                offered += report.folded + report.sent
                print(f"{local(now):>6}{upto - next_event:>8}"
                      f"{dispatched.outcomes['opened'] - opened_before:>8}{offers:>9}"
                      f"{report.sent:>6}{report.folded:>8}{report.digests:>9}"
                      f"{report.reminded:>8}{pending:>9}{kb(size):>9}{held:>6}"
                      f"{t1 - t0:>11.1f}{t2 - t1:>8.1f}", flush=True)
                next_event = upto
                if next_event >= len(events) and pending == 0:
                    break

            # Read as the stores read them (without their keys, index attributes and TTL).
            notes = [outbox_store.note_of(item) for item in scan("NOTE#", ())]
            cases = {item["case_id"]: case_store.case_of(item) for item in scan("CASE#", ())}
            shown, refused = platform_messages(sink)

    wall = time.monotonic() - started
    if pending:
        problems.append(f"{pending} notes still pending after {MAX_TICKS} simulated minutes")
    if dispatched.given_up:
        problems.append(f"dispatch: {dispatched.given_up} events failed twice (left to the DLQ)")
    check_cases(cases, truth, dispatched.outcomes, problems)
    figures = account(notes, cases, shown, problems)
    if refused:
        problems.append(f"the platforms refused requests: {dict(refused)}")
    problems += [f"logged: {message[:500]}" for message in errors.messages[:5]]

    exact = not any(p.startswith(("cases", "dispatch")) for p in problems)
    print(f"dispatch: {dict(dispatched.outcomes)}; raised and redelivered: "
          f"{dict(dispatched.raised) or 'none'} -> cases layer {'exact' if exact else 'NOT exact'}"
          f" ({len(cases)} cases, {sum(c.occurrences for c in cases.values())} occurrences)")
    print(f"outbox: {len(notes)} notes, {dict(Counter(n.status for n in notes))}, "
          f"{sum(n.kind == 'digest' for n in notes)} digest notes, "
          f"{sum(n.kind == 'reminder' for n in notes)} reminders")
    last = max((n.sent_at for n in notes if n.sent_at is not None), default=START)
    drain = (last - START) / timedelta(minutes=1)
    breakdown, over = [], []
    print("per channel: messages on the platform = alone + digests; cases routed; notes")
    for channel, fig in figures.items():
        budget = fig.cases + fig.digests
        print(f"  {channel:<22}{fig.messages:>5} = {fig.alone} alone + {fig.digests} digests "
              f"(of {fig.digest_cases} cases); {fig.cases} cases routed, budget {budget}; "
              f"notes {dict(fig.notes)}")
        breakdown.append(f"{channel.split(':')[0]} {fig.messages} ({fig.alone} alone + "
                         f"{fig.digests} digests)")
        if fig.messages > budget:
            over.append(channel)
    print("from a case note's planning to its message (alone or in its digest), minutes:")
    for channel, (every, critical) in delays(notes).items():
        print(f"  {channel:<22}all {spread(every)}; critical {spread(critical)}")
    print(f"wall: {wall:.0f} s in all; consuming {consume_wall:.0f} s "
          f"({consume_wall / len(events) * 1000:.1f} ms per event), ticks {tick_wall:.0f} s "
          f"({tick_wall / max(offered, 1) * 1000:.1f} ms per note offered)")
    print_calls("consuming", consume_calls, consume_sent, len(events), "event")
    print_calls("ticks", tick_calls, tick_sent, max(offered, 1), "note")
    for problem in problems[:20]:
        print(f"FAILED: {problem}")
    if len(problems) > 20:
        print(f"FAILED: ... and {len(problems) - 20} more")

    total = sum(fig.messages for fig in figures.values())
    within = not over and not problems
    print(f"BENCH {NAME}: {total} messages for {len(cases)} cases from {len(events):,} events "
          f"({', '.join(breakdown)}), drained in {drain:.0f} simulated min, {wall:.0f} s wall "
          f"(budget <= 1 per case + digests, no loss) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
