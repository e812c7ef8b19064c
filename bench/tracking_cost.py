"""The cost of watching parcels: provider queries per parcel, and how late each exception is seen.

Pure simulation (no AWS, no HTTP): a seeded generator makes 1,000 realistic Kuaidi100 journeys,
and two watchers follow them on a simulated clock.

The journeys (all times China time, UTC+8; a week of hand-overs, 10:00-18:00):
- the label is printed before hand-over (101 已下单); the courier collects the same evening
  (103 已揽收, 08:00-21:00, else the next morning); trunk hubs scan at any hour, every 2-10 h;
  the parcel reaches its delivery city overnight (1001 到达派件城市, 22:00-06:30) and goes out
  with the single morning run (5 派件, 07:30-10:30); attempts, deliveries, lockers and refusals
  happen 08:00-20:00 (the first no sooner than 30 min after the run leaves, the last within
  8 h of it), a locker is emptied 1-30 h later (08:00-22:00), returns leave in office hours.
  Nothing but hubs scans at night. 5 % of parcels clear customs (10 待清关, 11 清关中,
  12 已清关) on the way, 5 % need a second attempt; 40 % go to a locker or station
  (501 投柜或驿站, then 304), the rest to the door.
- hand-over to delivery takes 2-4 days; the promised date is hand-over + the configured
  promise (`TrackingRules.delivery_promise`), which normal journeys always meet.
- 10 % carry an exception, a round robin of: not picked up (collected 26-50 h after hand-over),
  stalled in transit (a 28-60 h gap), stalled out for delivery (the run comes back without a
  scan; the next scan is the next morning's run), stalled in customs (50-80 h), probably lost
  (no scan ever again), repeated delivery failure (two failed attempts on consecutive days,
  then delivered or returned), uncollected at a locker (collected after 50-100 h), late (a slow
  trunk of 80-110 h without any stall) and refused at the door (203 拒收, returned: 14 拒签).
- half of the parcels are push-fed (alternating within each scenario): Kuaidi100 pushes each
  scan 1-10 min after it happens, with the whole history so far ("finished" once delivered or
  returned); for the other half the provider accepts the subscription but never pushes.

Every scan is a `TrackingEvent` built from its Kuaidi100 statusCode through
`chalicelib.tracking.couriers.kuaidi100.map_state`, so the real mapping is exercised.

Ground truth comes from the generator, not from our code: every exception is derived from the
scan timeline with the issue's rules (not picked up 24 h after hand-over; stalled 24 h in
transit, 12 h out for delivery, 48 h in customs; probably lost after 5 days; two failed attempts
on different China days, from the second; a locker not emptied in 48 h; not delivered by the
promised date; refused at its scan), as (kind, moment the condition began, threshold).
Normal journeys are redrawn until they carry none, exception journeys until they carry theirs
(a late arrival may come with it).

Ours ("watch"): exactly what the tracking scheduler does, with the code it runs:
`start_watch` at hand-over, then a scheduler tick every minute: each parcel whose
`next_check_at` has come gets `due_action` -> subscribe (accepted; counted apart from queries)
/ query (Kuaidi100 answers in real time with every scan up to now) / judge (no provider call),
applied with `after_subscribe` / `after_query` / `after_judge`; pushes arrive through
`after_push`. Baseline (karrio's default): the same journeys queried every 2 h from hand-over
until a query shows them delivered or returned, no pushes, each answer judged with the same
`update_through_deadlines` the watch functions use.

An exception counts as detected the first time the shipment opens it (the `exception_opened`
changes); computed ones must carry the truth's moment + threshold as `opened_at`, which checks
our rules against the generator's. Lag = detection - (begun + threshold). Lost parcels are
watched until 6 days after their last scan (then written off, by both), the others until seen
delivered or returned.

Budget: ours <= 20 % of the baseline's queries, and every exception detected within its
threshold + 30 min. Any exception our code opens that the truth does not hold (or misses) fails.
"""

from __future__ import annotations

import argparse
import bisect
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone

from bench.stack import median, verdict
from chalicelib.tracking.couriers.kuaidi100 import map_state
from chalicelib.tracking.model import ExceptionKind, Journey, JourneyChange, TrackingEvent
from chalicelib.tracking.watch import (
    DEFAULT_TRACKING_RULES,
    TrackingRules,
    after_judge,
    after_push,
    after_query,
    after_subscribe,
    due_action,
    start_watch,
    update_through_deadlines,
)

NAME = "tracking_cost"
PARCELS = 1000
SEED = 20260504
EXCEPTION_SHARE = 0.10
BASELINE_INTERVAL = timedelta(hours=2)  # karrio: every live tracker, every 2 hours
BUDGET_SHARE = 0.20
BUDGET_LAG = timedelta(minutes=30)
TICK = timedelta(minutes=1)
PUSH_DELAY_MINUTES = (1.0, 10.0)
WRITE_OFF_AFTER = timedelta(days=6)  # a lost parcel is watched this long after its last scan
PROVIDER = "kuaidi100"
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
FIRST_DAY = date(2026, 5, 4)  # a Monday
H = timedelta(hours=1)

K = ExceptionKind
SCENARIOS = ("not_picked_up", "stalled_in_transit", "stalled_out_for_delivery",
             "stalled_in_customs", "probably_lost", "repeated_delivery_failure",
             "uncollected", "late", "refused")
# What each scenario must carry; a late arrival may come with any of them.
EXPECTED: dict[str, frozenset[ExceptionKind]] = {
    "normal": frozenset(),
    "not_picked_up": frozenset({K.NOT_PICKED_UP}),
    "stalled_in_transit": frozenset({K.STALLED_NO_SCAN}),
    "stalled_out_for_delivery": frozenset({K.STALLED_NO_SCAN}),
    "stalled_in_customs": frozenset({K.STALLED_NO_SCAN}),
    "probably_lost": frozenset({K.STALLED_NO_SCAN, K.PROBABLY_LOST}),
    "repeated_delivery_failure": frozenset({K.REPEATED_DELIVERY_FAILURE}),
    "uncollected": frozenset({K.PICKUP_UNCOLLECTED}),
    "late": frozenset({K.LATE_VS_PROMISE}),
    "refused": frozenset({K.REFUSAL_INITIATED}),
}
# The kinds the budget is about (the list); anything else opened is only reported.
WATCHED = frozenset({K.NOT_PICKED_UP, K.STALLED_NO_SCAN, K.PROBABLY_LOST,
                     K.REPEATED_DELIVERY_FAILURE, K.PICKUP_UNCOLLECTED, K.LATE_VS_PROMISE,
                     K.REFUSAL_INITIATED})
# A refusal is seen as soon as either refusal kind opens (the final 14 supersedes 203).
SEEN_AS = {K.REFUSAL_INITIATED: frozenset({K.REFUSAL_INITIATED, K.REFUSED_RETURNED})}
# Opening these without a truth is a false alarm (the rest are the provider's own records).
ALARMS = WATCHED | {K.STATUS_REGRESSION}

CARRIERS = ("ZTO", "YTO", "STO", "YUNDA", "JD", "SF", "EMS")
CITIES = ("杭州", "广州", "深圳", "成都", "武汉", "郑州", "西安", "北京", "上海", "长沙",
          "南京", "沈阳", "昆明", "厦门")


# --- Scans and journeys ---------------------------------------------------------------------------

# Oracle stages: how long a parcel may sit without a scan after a scan with this label.
STALL_LIMIT = {"pickup": 24 * H, "transit": 24 * H, "city": 24 * H, "failed": 24 * H,
               "refused": 24 * H, "returning": 24 * H, "ofd": 12 * H, "customs": 48 * H}
FINAL = frozenset({"delivered", "returned"})


@dataclass(frozen=True)
class Scan:
    at: datetime  # China time
    code: str  # Kuaidi100 statusCode
    label: str  # the generator's own stage name, for the oracle
    text: str
    place: str


@dataclass(frozen=True)
class Truth:
    kind: ExceptionKind
    begun: datetime
    threshold: timedelta

    @property
    def due(self) -> datetime:
        return self.begun + self.threshold


@dataclass
class SimulatedJourney:
    index: int
    scenario: str
    push_fed: bool
    carrier: str
    number: str
    handed_over_at: datetime  # UTC, on the minute
    promised_by: datetime | None
    scans: list[Scan]
    truths: list[Truth] = field(default_factory=list)
    events: list[TrackingEvent] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)

    @property
    def end(self) -> datetime:
        last = self.scans[-1]
        if last.label in FINAL:
            return last.at.astimezone(UTC) + timedelta(days=1)
        return last.at.astimezone(UTC) + WRITE_OFF_AFTER

    def shipment(self) -> Journey:
        return Journey(carrier_code=self.carrier, tracking_number=self.number,
                       handed_over_at=self.handed_over_at, promised_by=self.promised_by)

    def known_at(self, now: datetime) -> list[TrackingEvent]:
        """What Kuaidi100 answers at `now`: every scan up to now (its query is real time)."""
        return self.events[:bisect.bisect_right(self.times, now)]


def build_events(journey: SimulatedJourney) -> None:
    events = []
    for scan in journey.scans:
        mapped = map_state(scan.code)
        if mapped is None:
            raise ValueError(f"kuaidi100 has no state {scan.code}")
        events.append(TrackingEvent(
            provider=PROVIDER, carrier_code=journey.carrier, tracking_number=journey.number,
            occurred_at=scan.at, status=mapped.status, exceptions=tuple(mapped.exceptions),
            raw_code=scan.code, description=scan.text, location=scan.place,
            customs=mapped.customs))
    journey.events = sorted(events, key=lambda e: e.occurred_at)
    journey.times = [e.occurred_at for e in journey.events]


# --- The generator --------------------------------------------------------------------------------

class Generator:
    """Seeded journeys in China time; see the module docstring for the model."""

    def __init__(self, rng: random.Random, promise: timedelta | None) -> None:
        self.rng, self.promise = rng, promise
        self.out: list[Scan] = []
        self.origin = self.dest = ""

    def hours(self, low: float, high: float) -> timedelta:
        return timedelta(seconds=round(self.rng.uniform(low, high) * 3600))

    def within(self, after: datetime, start: float, end: float,
               latest: datetime | None = None) -> datetime:
        """A random moment of the first daily window [start, end) h (end may pass 24) that is
        open at or after `after`, and not beyond `latest` if that still leaves room."""
        for offset in range(-1, 3):
            day = datetime.combine(after.date() + timedelta(days=offset), datetime.min.time(),
                                   tzinfo=CHINA)
            low, high = day + timedelta(hours=start), day + timedelta(hours=end)
            if high > after + timedelta(minutes=1):
                low = max(low, after)
                if latest is not None and low < latest < high:
                    high = latest
                span = (high - low).total_seconds()
                return low + timedelta(seconds=round(self.rng.uniform(0, span)))
        raise AssertionError("a daily window always opens within two days")

    def pick(self, options: Sequence[str]) -> str:
        return options[self.rng.randrange(len(options))]

    def journey(self, index: int, scenario: str, push_fed: bool) -> SimulatedJourney:
        rng = self.rng
        day = FIRST_DAY + timedelta(days=index % 7)
        handed = datetime.combine(day, datetime.min.time(), tzinfo=CHINA) + timedelta(
            minutes=rng.randrange(10 * 60, 18 * 60))
        carrier = self.pick(CARRIERS)
        number = f"{carrier[:2]}{rng.randrange(10**11, 10**12)}"
        for _attempt in range(200):
            scans = self.scans(handed, scenario)
            journey = SimulatedJourney(
                index=index, scenario=scenario, push_fed=push_fed, carrier=carrier,
                number=number, handed_over_at=handed.astimezone(UTC),
                promised_by=handed.astimezone(UTC) + self.promise if self.promise else None,
                scans=scans)
            journey.truths = truths_of(journey)
            kinds = {truth.kind for truth in journey.truths}
            expected = EXPECTED[scenario]
            allowed = expected | ({K.LATE_VS_PROMISE} if scenario != "normal" else set())
            if expected <= kinds <= allowed:
                build_events(journey)
                return journey
        raise RuntimeError(f"could not draw a {scenario} journey")

    # One journey's scans ----------------------------------------------------------------------

    def add(self, at: datetime, code: str, label: str, text: str, place: str = "") -> datetime:
        self.out.append(Scan(at, code, label, text, place or self.dest))
        return at

    def scans(self, handed: datetime, scenario: str) -> list[Scan]:
        rng, add = self.rng, self.add
        self.origin, self.dest = origin, dest = rng.sample(CITIES, 2)
        self.out = []
        add(handed - self.hours(0.5, 3), "101", "info", "商家已下单，等待快递员揽收", origin)
        if scenario == "not_picked_up":
            picked = self.within(handed + self.hours(26, 50), 8, 20)
        else:
            picked = handed + self.hours(0.5, 6)
            if not 8 <= picked.hour < 21:
                picked = self.within(picked, 8, 10)
        at = add(picked, "103", "pickup", f"【{origin}市】快递员已揽收", origin)
        if scenario == "stalled_in_customs" or (scenario == "normal" and rng.random() < 0.05):
            at = self.customs(at, stalled=scenario == "stalled_in_customs")
        arrive = at + self.hours(*({"late": (80, 110)}.get(scenario, (28, 66))))
        stall_at = at + self.hours(2, 20) if scenario == "stalled_in_transit" else None
        lost_at = at + self.hours(4, 30) if scenario == "probably_lost" else None
        hubs = [f"{origin}转运中心", "华中枢纽", f"{dest}转运中心"]
        while at + 10 * H < arrive:
            at += self.hours(2, 10)
            if stall_at is not None and at >= stall_at:
                at += self.hours(28, 60)
                arrive += at - stall_at
                stall_at = None
            hub = self.pick(hubs)
            add(at, self.pick(("0", "1002")), "transit", f"快件已到达【{hub}】，正发往下一站", hub)
            if lost_at is not None and at >= lost_at:
                return self.done()  # never scanned again
        city = self.within(at + self.hours(1, 4), 22, 30.5)
        while city - at > 12 * H:  # hub scans: no silent trunk gap of more than 12 h
            at = add(at + self.hours(4, 10), "0", "transit",
                     f"快件已离开【{dest}转运中心】，发往派件网点", f"{dest}转运中心")
        add(city, "1001", "city", f"快件已到达【{dest}市】派件城市", dest)
        self.last_mile(city, scenario)
        return self.done()

    def done(self) -> list[Scan]:
        return sorted(self.out, key=lambda scan: scan.at)

    def customs(self, at: datetime, stalled: bool) -> datetime:
        add = self.add
        at = add(at + self.hours(3, 9), "0", "transit", "快件已到达【香港】，发往口岸", "香港")
        at = add(self.within(at + self.hours(1, 6), 8, 22), "10", "customs",
                 "快件已到达口岸，等待清关", "深圳海关")
        at = add(at + self.hours(1, 6), "11", "customs", "快件清关中", "深圳海关")
        wait = self.hours(50, 80) if stalled else self.hours(3, 30)
        return add(self.within(at + wait, 8, 22), "12", "transit", "快件已清关放行", "深圳海关")

    def run(self, after: datetime, station: str) -> datetime:
        """The next morning run's departure (派件)."""
        return self.add(self.within(after + self.hours(0.2, 1), 7.5, 10.5), "5", "ofd",
                        f"【{station}】派件员正在为您派件", station)

    def attempt(self, departed: datetime, latest_hours: float = 8) -> datetime:
        """A doorstep moment of this run: 30 min after it left at the earliest, by 20:00."""
        last = datetime.combine(departed.date(), datetime.min.time(), tzinfo=CHINA) + 20 * H
        return min(departed + self.hours(0.5, latest_hours), last - timedelta(minutes=1))

    def last_mile(self, city: datetime, scenario: str) -> None:
        rng, add = self.rng, self.add
        station = f"{self.dest}{self.pick(('天河', '西湖', '高新', '江北', '南山'))}营业部"
        left = self.run(city, station)
        failures = 2 if scenario == "repeated_delivery_failure" else (
            1 if scenario == "normal" and rng.random() < 0.05 else 0)
        for attempt in range(failures):
            code = self.pick(("204", "206"))
            text = "派件异常：收件人不在，改日派送" if code == "204" else "无法联系收件人，改日派送"
            failed = add(self.attempt(left), code, "failed", text, station)
            if attempt == 1 and rng.random() < 0.5:
                self.back(failed, "4", "退回件已签收")
                return
            left = self.run(failed + 10 * H, station)
        if scenario == "stalled_out_for_delivery":
            left = self.run(left + 20 * H, station)  # the run came back without a scan
        if scenario == "refused":
            refused = add(self.attempt(left), "203", "refused", "收件人拒收，等待商家处理", station)
            self.back(refused, "14", "拒签：退回件已由商家签收")
            return
        to_locker = scenario == "uncollected" or rng.random() < 0.4
        dropped = self.attempt(left, 6 if to_locker else 8)
        if not to_locker:
            add(dropped, self.pick(("301", "303")), "delivered", "已签收", station)
            return
        add(dropped, "501", "locker", "快件已存放至【驿站】，请凭取件码领取", station)
        wait = self.hours(50, 100) if scenario == "uncollected" else self.hours(1, 30)
        collected = self.within(dropped + wait, 8, 22,
                                latest=None if scenario == "uncollected" else dropped + 46 * H)
        add(collected, "304", "delivered", "已从驿站取出签收", station)

    def back(self, since: datetime, code: str, text: str) -> None:
        """Sent back to the shipper: leaves in office hours, trunk back, signed for at home."""
        add = self.add
        at = add(self.within(since + self.hours(2, 10), 9, 18), "6", "returning", "快件退回中")
        home = at + self.hours(30, 60)
        while at + 10 * H < home:
            at = add(at + self.hours(2, 10), "0", "returning", "退回件运输中", "转运中心")
        add(self.within(at + self.hours(1, 8), 9, 18, latest=at + 20 * H), code, "returned",
            text, self.origin)


# --- The oracle: ground truth from the timeline, with the rules --------------------------

def truths_of(journey: SimulatedJourney) -> list[Truth]:
    scans = sorted(journey.scans, key=lambda s: s.at)
    found: list[Truth] = []
    handed = journey.handed_over_at
    pickups = [s.at for s in scans if s.label not in ("info",)]
    if not pickups or pickups[0] - handed > 24 * H:
        found.append(Truth(K.NOT_PICKED_UP, handed, 24 * H))
    end = journey.end
    for scan, after in zip(scans, [*(s.at for s in scans[1:]), None], strict=True):
        limit = STALL_LIMIT.get(scan.label)
        if limit is None:
            continue
        gap = (after or end) - scan.at
        if gap > limit:
            found.append(Truth(K.STALLED_NO_SCAN, scan.at.astimezone(UTC), limit))
        if gap > timedelta(days=5):
            found.append(Truth(K.PROBABLY_LOST, scan.at.astimezone(UTC), timedelta(days=5)))
    failed_days: list[date] = []
    for scan in scans:
        if scan.label == "failed" and scan.at.date() not in failed_days:
            failed_days.append(scan.at.date())  # China days: scan times are China time
            if len(failed_days) == 2:
                found.append(Truth(K.REPEATED_DELIVERY_FAILURE, scan.at.astimezone(UTC),
                                   timedelta(0)))
        if scan.label == "refused":
            found.append(Truth(K.REFUSAL_INITIATED, scan.at.astimezone(UTC), timedelta(0)))
    for scan, after in zip(scans, [*(s.at for s in scans[1:]), None], strict=True):
        if scan.label == "locker" and (after or end) - scan.at > 48 * H:
            found.append(Truth(K.PICKUP_UNCOLLECTED, scan.at.astimezone(UTC), 48 * H))
    if journey.promised_by is not None:
        done = [s.at for s in scans if s.label in FINAL]
        if (done[0] if done else end) > journey.promised_by:
            found.append(Truth(K.LATE_VS_PROMISE, journey.promised_by, timedelta(0)))
    return found


# --- Following the journeys ----------------------------------------------------------------------

@dataclass
class Followed:
    queries: int = 0
    subscriptions: int = 0
    judges: int = 0
    pushes: int = 0
    opened: list[tuple[ExceptionKind, datetime, datetime]] = field(default_factory=list)

    def record(self, changes: Sequence[JourneyChange], now: datetime) -> None:
        for change in changes:
            if change.type == "exception_opened" and change.exception is not None:
                self.opened.append((change.exception.kind, change.exception.opened_at, now))


@dataclass(frozen=True)
class Push:
    at: datetime
    events: list[TrackingEvent]
    finished: bool


def pushes_for(journey: SimulatedJourney, subscribed_at: datetime,
               rng: random.Random) -> list[Push]:
    """One push per scan after the subscription (the earlier ones come together at first)."""
    pushes: list[Push] = []
    arrivals: list[datetime] = []
    earlier = [t for t in journey.times if t <= subscribed_at]
    if earlier:
        arrivals.append(subscribed_at + timedelta(minutes=rng.uniform(*PUSH_DELAY_MINUTES)))
    arrivals += [t + timedelta(minutes=rng.uniform(*PUSH_DELAY_MINUTES))
                 for t in journey.times if t > subscribed_at]
    final = {"delivered", "returned"}
    for at in sorted(arrivals):
        events = journey.known_at(at)
        done = any(scan.label in final for scan in journey.scans
                   if scan.at.astimezone(UTC) <= at)
        pushes.append(Push(at, events, done))
        if done:
            break
    return pushes


def ceil_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + TICK


def follow_ours(journey: SimulatedJourney, rules: TrackingRules, rng: random.Random) -> Followed:
    out = Followed()
    t0 = journey.handed_over_at
    watch = start_watch(PROVIDER, can_push=True, can_query=True, now=t0)
    shipment = journey.shipment()
    pushes = pushes_for(journey, t0, rng) if journey.push_fed else []
    next_push, last_tick, end = 0, t0 - TICK, journey.end
    while True:
        tick = None if watch.next_check_at is None else max(ceil_minute(watch.next_check_at),
                                                              last_tick + TICK)
        push = pushes[next_push] if next_push < len(pushes) else None
        if push is not None and (tick is None or push.at <= tick):
            if push.at > end:
                break
            shipment, watch, changes = after_push(
                shipment, watch, push.events, "finished" if push.finished else "active", None,
                push.at, rules)
            out.pushes += 1
            out.record(changes, push.at)
            next_push += 1
            continue
        if tick is None or tick > end:
            break
        last_tick = tick
        action = due_action(watch, tick)
        if action == "subscribe":
            out.subscriptions += 1
            watch = after_subscribe(shipment, watch, True, tick, rules)
            continue
        if action == "query":
            out.queries += 1
            shipment, watch, changes = after_query(shipment, watch, journey.known_at(tick),
                                                   tick, rules)
        else:
            out.judges += 1
            shipment, watch, changes = after_judge(shipment, watch, tick, rules)
        out.record(changes, tick)
    return out


def follow_baseline(journey: SimulatedJourney, rules: TrackingRules) -> Followed:
    out = Followed()
    shipment, now = journey.shipment(), journey.handed_over_at
    while now <= journey.end:
        out.queries += 1
        shipment, changes = update_through_deadlines(shipment, journey.known_at(now), now,
                                                     rules.thresholds)
        out.record(changes, now)
        if shipment.finished:
            break
        now += BASELINE_INTERVAL
    return out


# --- Judging the detection -----------------------------------------------------------------------

@dataclass
class Detection:
    truth: Truth
    lag: timedelta | None  # None: never detected


def detections(journey: SimulatedJourney, followed: Followed) -> tuple[list[Detection], list[str]]:
    """Each truth's first detection, and the false alarms: openings no truth accounts for."""
    found: list[Detection] = []
    used: set[int] = set()
    alarms: list[str] = []
    for truth in journey.truths:
        kinds = SEEN_AS.get(truth.kind, frozenset({truth.kind}))
        match = None
        for n, (kind, opened_at, seen) in enumerate(followed.opened):
            if n in used or kind not in kinds:
                continue
            exact = opened_at == truth.due
            if exact or (kind is not truth.kind and opened_at >= truth.begun):
                match = n
                found.append(Detection(truth, seen - truth.due))
                break
        if match is None:
            found.append(Detection(truth, None))
        else:
            used.add(match)
    for n, (kind, opened_at, seen) in enumerate(followed.opened):
        if n in used or kind not in ALARMS:
            continue
        alarms.append(f"parcel {journey.index} ({journey.scenario}): {kind.value} opened "
                      f"at {opened_at:%Y-%m-%d %H:%M} (seen {seen:%Y-%m-%d %H:%M}) "
                      f"without a matching truth")
    return found, alarms


# --- Report --------------------------------------------------------------------------------------

def minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def journeys(count: int, seed: int, rules: TrackingRules) -> list[SimulatedJourney]:
    rng = random.Random(seed)
    exceptional = round(count * EXCEPTION_SHARE)
    scenarios = ["normal"] * (count - exceptional) + [
        SCENARIOS[n % len(SCENARIOS)] for n in range(exceptional)]
    rng.shuffle(scenarios)
    seen: Counter[str] = Counter()
    generator = Generator(rng, rules.delivery_promise)
    made = []
    for index, scenario in enumerate(scenarios):
        made.append(generator.journey(index, scenario, push_fed=seen[scenario] % 2 == 0))
        seen[scenario] += 1
    return made


Rows = list[tuple[Detection, Detection, bool]]  # ours, the baseline's, push-fed


def describe(made: Sequence[SimulatedJourney], seed: int) -> None:
    mix = Counter(j.scenario for j in made if j.scenario != "normal")
    days = [(j.scans[-1].at.astimezone(UTC) - j.handed_over_at) / timedelta(days=1)
            for j in made if j.scenario == "normal"]
    print(f"{len(made)} parcels (seed {seed}): {sum(j.push_fed for j in made)} push-fed, "
          f"{sum(not j.push_fed for j in made)} poll-only; {sum(mix.values())} with an "
          f"exception ({', '.join(f'{s} {n}' for s, n in sorted(mix.items()))})")
    print(f"normal journeys, hand-over to delivered: {min(days):.1f}-{max(days):.1f} days "
          f"(median {median(days):.1f}); {sum(len(j.scans) for j in made) / len(made):.1f} "
          f"scans per parcel")


def query_table(made: Sequence[SimulatedJourney], ours: Sequence[Followed],
                base: Sequence[Followed]) -> None:
    groups: list[tuple[str, Callable[[SimulatedJourney], bool]]] = [
        ("push-fed", lambda j: j.push_fed), ("poll-only", lambda j: not j.push_fed),
        ("normal journeys", lambda j: j.scenario == "normal"),
        ("with an exception", lambda j: j.scenario != "normal"), ("all", lambda j: True)]
    print(f"{'provider queries per parcel':<34}{'ours':>8}{'baseline':>10}{'share':>8}")
    for label, group in groups:
        rows = [(o.queries, b.queries) for j, o, b in zip(made, ours, base, strict=True)
                if group(j)]
        mine = sum(o for o, _ in rows) / max(1, len(rows))
        theirs = sum(b for _, b in rows) / max(1, len(rows))
        print(f"  {label + f' ({len(rows)})':<32}{mine:>8.2f}{theirs:>10.2f}"
              f"{mine / theirs:>8.1%}")
    print(f"subscriptions (provider calls, not queries): {sum(o.subscriptions for o in ours)} "
          f"({sum(o.subscriptions for o in ours) / len(made):.2f} per parcel); judged without a "
          f"call: {sum(o.judges for o in ours)}; pushes received: {sum(o.pushes for o in ours)}")


def lag_text(lags: Sequence[timedelta | None]) -> str:
    if not lags:
        return "-"
    if any(lag is None for lag in lags):
        return f"{sum(lag is None for lag in lags)} missed"
    return f"{max(minutes(lag) for lag in lags if lag is not None):.1f}"


def lag_table(by_kind: dict[ExceptionKind, Rows]) -> None:
    print(f"{'exception':<27}{'count':>6}{'worst min over threshold: ours':>32}"
          f"{'push-fed':>10}{'poll-only':>11}{'baseline':>10}")
    order = [K.NOT_PICKED_UP, K.STALLED_NO_SCAN, K.PROBABLY_LOST, K.REPEATED_DELIVERY_FAILURE,
             K.PICKUP_UNCOLLECTED, K.LATE_VS_PROMISE, K.REFUSAL_INITIATED]
    for kind in sorted(by_kind, key=order.index):
        rows = by_kind[kind]
        print(f"  {kind.value:<25}{len(rows):>6}{lag_text([d.lag for d, _, _ in rows]):>32}"
              f"{lag_text([d.lag for d, _, fed in rows if fed]):>10}"
              f"{lag_text([d.lag for d, _, fed in rows if not fed]):>11}"
              f"{lag_text([b.lag for _, b, _ in rows]):>10}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}",
                                     description="Provider queries and detection lag of the "
                                     "tracking watch against a fixed 2-hour poll.")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--parcels", type=int, default=PARCELS)
    args = parser.parse_args(argv)
    rules = DEFAULT_TRACKING_RULES
    made = journeys(args.parcels, args.seed, rules)
    push_rng = random.Random(args.seed + 1)
    ours = [follow_ours(j, rules, push_rng) for j in made]
    base = [follow_baseline(j, rules) for j in made]

    alarms: list[str] = []
    by_kind: dict[ExceptionKind, Rows] = {}
    for journey, mine, theirs in zip(made, ours, base, strict=True):
        detected, false_alarms = detections(journey, mine)
        alarms += false_alarms
        compared, _ = detections(journey, theirs)  # the baseline is only compared
        for d, b in zip(detected, compared, strict=True):
            by_kind.setdefault(d.truth.kind, []).append((d, b, journey.push_fed))
    describe(made, args.seed)
    query_table(made, ours, base)
    lag_table(by_kind)

    lags = [d.lag for rows in by_kind.values() for d, _, _ in rows]
    missed = sum(lag is None for lag in lags)
    early = sum(lag is not None and lag < timedelta(0) for lag in lags)
    worst = max((lag for lag in lags if lag is not None), default=timedelta(0))
    print(f"ground truth: {len(lags)} exceptions, {len(lags) - missed} detected by ours (matched "
          f"on kind and opening moment); openings of a watched kind without a truth: "
          f"{len(alarms)}")
    problems = list(alarms)
    if missed:
        problems.append(f"{missed} exception(s) never detected")
    if early:
        problems.append(f"{early} exception(s) opened before their threshold")
    for problem in problems[:20]:
        print(f"FAILED: {problem}")
    if len(problems) > 20:
        print(f"FAILED: ... and {len(problems) - 20} more")

    mine_q = sum(o.queries for o in ours) / len(made)
    base_q = sum(b.queries for b in base) / len(made)
    share = mine_q / base_q
    within = share <= BUDGET_SHARE and worst <= BUDGET_LAG and not problems
    print(f"BENCH {NAME}: {share:.1%} of baseline queries ({mine_q:.2f} vs {base_q:.2f} per "
          f"parcel), worst detection {minutes(worst):.0f} min over threshold "
          f"(budget {BUDGET_SHARE:.0%}, {minutes(BUDGET_LAG):.0f} min) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
