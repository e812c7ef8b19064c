"""The case queue's figures and filters: age bands, the counts of open cases, the parcel problems
among them. Pure: the rows come from the `open-summary` index (chalicelib/cs/case_store.py).

An age band is where a case stands by how long it has been open. The bands are exclusive, so the
counts of the queue's header add up to the total and each is the length of the queue filtered by
`?age=` that band:

  1h     opened less than an hour ago
  24h    one hour to a day
  3d     one to three days
  older  three days or more
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from chalicelib.core.clock import in_utc
from chalicelib.cs.alerts import Severity

# (name, how long open at least); the next band's floor is this band's ceiling.
AGE_BANDS: tuple[tuple[str, timedelta], ...] = (
    ("1h", timedelta(0)), ("24h", timedelta(hours=1)), ("3d", timedelta(days=1)),
    ("older", timedelta(days=3)))
AGE_NAMES = tuple(name for name, _ in AGE_BANDS)
PARCEL_SUBJECT = "parcel:"  # the subject of a case about one tracked parcel


def age_band(opened_at: datetime, now: datetime) -> str:
    """The band of a case opened at `opened_at`; one opened "in the future" (clocks differ a
    little between functions) is the newest."""
    age = in_utc(now) - in_utc(opened_at)
    found = AGE_NAMES[0]
    for name, floor in AGE_BANDS:
        if age >= floor:
            found = name
    return found


@dataclass(frozen=True)
class Opened:
    """When a case of a band was opened: after `after` (exclusive) and at or before `until`
    (inclusive); None: no bound on that side."""

    after: datetime | None
    until: datetime | None


def band_window(name: str, now: datetime) -> Opened:
    """The opening times of the cases in band `name` at `now` (ValueError: no such band)."""
    if name not in AGE_NAMES:
        raise ValueError(f"age is one of {', '.join(AGE_NAMES)}")
    index = AGE_NAMES.index(name)
    floor = AGE_BANDS[index][1]
    ceiling = AGE_BANDS[index + 1][1] if index + 1 < len(AGE_BANDS) else None
    # Open at least `floor`: opened at or before now - floor. The newest band has no upper
    # bound, so a case stamped a moment ahead of this clock is still listed.
    until = None if index == 0 else in_utc(now) - floor
    return Opened(after=None if ceiling is None else in_utc(now) - ceiling, until=until)


@dataclass(frozen=True)
class SummaryRow:
    """One open case as the summary index holds it."""

    type: str
    severity: Severity
    opened_at: datetime
    subject: str = ""
    marketplace: str | None = None
    carrier_code: str | None = None

    @property
    def about_a_parcel(self) -> bool:
        return self.subject.startswith(PARCEL_SUBJECT)


class OpenCounts(BaseModel):
    """The queue's header: open cases (acknowledged ones included: they are not resolved) by
    type, by severity (every severity present, most severe first) and by age band (every band,
    newest first)."""

    model_config = ConfigDict(frozen=True)

    total: int
    by_type: dict[str, int]
    by_severity: dict[str, int]
    by_age: dict[str, int]


def count_open(rows: Iterable[SummaryRow], now: datetime) -> OpenCounts:
    types: Counter[str] = Counter()
    severities: Counter[str] = Counter()
    ages: Counter[str] = Counter()
    for row in rows:
        types[row.type] += 1
        severities[row.severity.value] += 1
        ages[age_band(row.opened_at, now)] += 1
    return OpenCounts(
        total=sum(types.values()),
        by_type=dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_severity={s.value: severities[s.value] for s in sorted(
            Severity, key=lambda s: -s.rank)},
        by_age={name: ages[name] for name in AGE_NAMES})


class ParcelProblems(BaseModel):
    """Open cases about parcels, by carrier and by kind of problem (the case type)."""

    model_config = ConfigDict(frozen=True)

    total: int
    by_carrier: dict[str, dict[str, int]]  # carrier code -> case type -> open cases


def parcel_problems(rows: Iterable[SummaryRow]) -> ParcelProblems:
    found: dict[str, Counter[str]] = {}
    for row in rows:
        if not row.about_a_parcel:
            continue
        carrier = row.carrier_code or _carrier_of(row.subject)
        found.setdefault(carrier, Counter())[row.type] += 1
    return ParcelProblems(
        total=sum(sum(kinds.values()) for kinds in found.values()),
        by_carrier={carrier: dict(sorted(kinds.items())) for carrier, kinds in sorted(
            found.items())})


def _carrier_of(subject: str) -> str:
    """A parcel's subject is parcel:<carrier>:<tracking number> (chalicelib/tracking)."""
    parts = subject.split(":")
    return parts[1] if len(parts) > 2 and parts[1] else "unknown"


class OpenFigures(BaseModel):
    """What the open cases add up to, as of `at`: the queue's header and the dashboard's
    parcel problems, from one read of the open-summary index."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    counts: OpenCounts
    parcels: ParcelProblems


def open_figures(rows: Sequence[SummaryRow], now: datetime) -> OpenFigures:
    return OpenFigures(at=now, counts=count_open(rows, now), parcels=parcel_problems(rows))
