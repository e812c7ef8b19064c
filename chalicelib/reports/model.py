"""What a report is, whatever it reports: a period in Asia/Shanghai days and sections of
figures, tables and charts. Pure: no I/O.

A report is computed from stored events for any period, past ones included, so nothing here
depends on the time it is computed except `generated_at`, which says when. Renderers (email
HTML, CSV, XLSX, the console's pages) read only this model, so a section written once appears
the same in every form.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, model_validator

REPORT_ZONE = ZoneInfo("Asia/Shanghai")  # the handbook's days, whatever the reader's zone

Kind = Literal["daily", "weekly", "monthly"]
Unit = Literal["count", "percent", "minutes", "hours", "CNY"]
Cell = str | int | Decimal | None


class Period(BaseModel):
    """The days [start, end) a report covers, local to Asia/Shanghai."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    start: date
    end: date  # exclusive

    @model_validator(mode="after")
    def _not_empty(self) -> Period:
        if self.end <= self.start:
            raise ValueError("a period ends after it starts")
        return self

    @property
    def start_at(self) -> datetime:
        """The period's first instant, in UTC."""
        return datetime.combine(self.start, time(), REPORT_ZONE).astimezone(UTC)

    @property
    def end_at(self) -> datetime:
        """The instant after the period, in UTC."""
        return datetime.combine(self.end, time(), REPORT_ZONE).astimezone(UTC)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days)]

    def contains(self, moment: datetime) -> bool:
        return self.start_at <= moment < self.end_at

    @property
    def label(self) -> str:
        last = self.end - timedelta(days=1)
        return self.start.isoformat() if last == self.start else f"{self.start} – {last}"


def local_day(moment: datetime) -> date:
    """The Asia/Shanghai day of an instant."""
    return moment.astimezone(REPORT_ZONE).date()


class Figure(BaseModel):
    """One headline number. `value` None: nothing to measure (a rate over no orders)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    label: str
    value: int | Decimal | None
    unit: Unit = "count"


class Table(BaseModel):
    """Rows under named columns; the CSV and XLSX attachments carry exactly these."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...] = ()

    @model_validator(mode="after")
    def _rows_fit(self) -> Table:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.key}: a row of {len(row)} cells under "
                                 f"{len(self.columns)} columns")
        return self


class Chart(BaseModel):
    """A bar chart (one value per label) or stacked bars (one row per label, split in `parts`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    title: str
    kind: Literal["bar", "stacked"] = "bar"
    parts: tuple[str, ...] = ()  # stacked: the names of each row's parts, in order
    rows: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (label, one value or one per part)

    @model_validator(mode="after")
    def _rows_fit(self) -> Chart:
        width = len(self.parts) if self.kind == "stacked" else 1
        for label, values in self.rows:
            if len(values) != width:
                raise ValueError(f"chart {self.key}: {label!r} has {len(values)} values, "
                                 f"not {width}")
        return self


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    title: str
    figures: tuple[Figure, ...] = ()
    tables: tuple[Table, ...] = ()
    charts: tuple[Chart, ...] = ()
    notes: tuple[str, ...] = ()  # what a reader must know to read the figures right

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)


class Sourced(NamedTuple):
    """What one source of a report (chalicelib/flows/reports.py) found: its sections, in order,
    and the DynamoDB pages it read for them."""

    sections: tuple[Section, ...]
    reads: int


class Report(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    period: Period
    generated_at: datetime
    sections: tuple[Section, ...]
    reads: int = 0  # DynamoDB pages read to compute it (the benchmark states them)

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


def rate(part: int, whole: int) -> Decimal | None:
    """part / whole as a percentage to one decimal; None over nothing."""
    if whole <= 0:
        return None
    return (Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.1"))
