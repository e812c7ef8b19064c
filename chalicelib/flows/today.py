"""The manager's "Today": the day's dispatch against the cut-offs, what waits on the factory,
parcels with open problems, open cases, notifications that did not get through. Read-only.

The day is the dispatch calendar's (chalicelib/warehouse/dispatch.py, Asia/Shanghai unless the
operator says otherwise): orders paid since its midnight, notifications since its midnight.

One `today()` makes a fixed number of DynamoDB calls, every one a Query on an index but the
kept figures' GetItem (no Scan, no read per order or case), each reading only projected
attributes:

  1  jobs  by-paid-day         the day's paid jobs: paid_at, ship_by, work, shipped_at
  2  jobs  waiting-on-factory  offers made over `confirm_within` (24 h) ago, not accepted
  3  jobs  waiting-on-factory  open intercept requests
  4  cases FIGURES#open        the open cases' figures kept by the last count (GetItem); when
                               older than CASE_FIGURES_SECONDS (a minute) the page counts
     cases open-summary        every open case: type, severity, opened, subject, carrier
                               (Query) and keeps the figures (PutItem): case_desk.open_figures
  5  cases notes-undelivered   failed notes since midnight   (Select=COUNT)
  6  cases notes-undelivered   dead notes since midnight     (Select=COUNT)
  7  cases notes-undelivered   dead alerts since midnight    (Select=COUNT)

Seven reads, sent at once (chalicelib.core.runs.started: the page waits for the slowest, not
their sum); a Query takes another page only when its answer passes 1 MB (about 7,000 paid jobs
of about 150 bytes on one day, or 10,000 open cases). "Parcels with open problems" are the
open cases about a parcel (subject parcel:<carrier>:<number>), by carrier and case type, from
the same summary as the open-case counts: the cases are what CS works, one per problem and
parcel, and the shipments table has no index of open problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from chalicelib.core.runs import started
from chalicelib.cs import charts, queue
from chalicelib.cs import outbox_store as outbox
from chalicelib.flows import case_desk
from chalicelib.warehouse import day_dispatch
from chalicelib.warehouse import job_store as jobs_store
from chalicelib.warehouse.jobs import protocol_rules

LISTED = 20  # waiting jobs named on the page, oldest first; the count covers them all


class WaitingJob(BaseModel):
    model_config = ConfigDict(frozen=True)

    partner_id: str
    job_id: str
    order_id: str | None
    order_name: str | None
    since: datetime
    dead_lettered: bool = False


class Waiting(BaseModel):
    """Jobs waiting on the factory: how many, and the oldest `LISTED` of them."""

    model_config = ConfigDict(frozen=True)

    count: int
    oldest: list[WaitingJob]


class Undelivered(BaseModel):
    """Notifications since the day began: fell back to another channel (failed), taken by no
    channel (dead), alerts that never became a case (dead_alerts)."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    failed: int
    dead: int
    dead_alerts: int


class TodayView(BaseModel):
    model_config = ConfigDict(frozen=True)

    day: date
    timezone: str
    at: datetime
    dispatch: day_dispatch.DayDispatch
    offers_unaccepted: Waiting  # offered more than the contract's confirm_within ago
    intercepts_waiting: Waiting
    parcel_problems: queue.ParcelProblems
    open_cases: queue.OpenCounts
    notifications: Undelivered


def _waiting(found: list[dict[str, Any]]) -> Waiting:
    return Waiting(count=len(found), oldest=[WaitingJob.model_validate(job)
                                             for job in found[:LISTED]])


def today(now: datetime) -> TodayView:
    rules = protocol_rules().dispatch
    day = day_dispatch.working_day(now, rules)
    midnight = day_dispatch.day_start(day, rules)
    # The seven Queries depend on none of each other: all at once, the page waits for one.
    reading_paid = started(jobs_store.paid_on, day.isoformat())
    reading_offers = started(jobs_store.waiting_on_factory, jobs_store.OFFER,
                             now - rules.confirm_within)
    reading_intercepts = started(jobs_store.waiting_on_factory, jobs_store.INTERCEPT)
    reading_figures = started(case_desk.open_figures, now)
    reading_counts = {kind: started(outbox.undelivered_since, kind, midnight)
                      for kind in outbox.UNDELIVERED_KINDS}
    paid, offers = reading_paid.result(), reading_offers.result()
    intercepts, figures = reading_intercepts.result(), reading_figures.result()
    counts = {kind: reading.result() for kind, reading in reading_counts.items()}
    return TodayView(
        day=day, timezone=rules.timezone, at=now,
        dispatch=day_dispatch.dispatch_figures(day, paid, now, rules),
        offers_unaccepted=_waiting(offers), intercepts_waiting=_waiting(intercepts),
        parcel_problems=figures.parcels, open_cases=figures.counts,
        notifications=Undelivered(since=midnight, failed=counts["failed"], dead=counts["dead"],
                                  dead_alerts=counts["dead_alert"]))


PARTS = ("on_time", "late", "overdue", "to_go", "closed")  # a cut-off's bar, in this order


class TodayCharts(BaseModel):
    """The dashboard's pictures, each a complete escaped <svg> element (chalicelib/cs/charts.py)."""

    model_config = ConfigDict(frozen=True)

    dispatch: str  # a stacked bar per cut-off
    cases_by_type: str
    cases_by_age: str
    parcels_by_carrier: str


def charts_of(view: TodayView, words: Mapping[str, str] | None = None) -> TodayCharts:
    """The view's charts; `words` translates part names, age bands and titles (the page's
    language: "on_time" -> "准时", "dispatch" -> "今日发货"), else they are shown as they are."""
    say = words or {}

    def word(key: str) -> str:
        return say.get(key, key)

    dispatch = [(word(f.cutoff), [(word(part), int(getattr(f, part))) for part in PARTS])
                for f in view.dispatch.cutoffs]
    carriers = {carrier: sum(kinds.values())
                for carrier, kinds in view.parcel_problems.by_carrier.items()}
    return TodayCharts(
        dispatch=charts.stacked_bars(dispatch, word("dispatch")),
        cases_by_type=charts.bar_chart({word(kind): n for kind, n in
                                        view.open_cases.by_type.items()},
                                       word("cases_by_type")),
        cases_by_age=charts.bar_chart([(word(band), n) for band, n in
                                       view.open_cases.by_age.items()], word("cases_by_age")),
        parcels_by_carrier=charts.bar_chart(carriers, word("parcels_by_carrier")))
