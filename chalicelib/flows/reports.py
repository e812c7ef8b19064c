"""Compute a report: each source reads what it needs from the stores for the period and
returns its sections (pure rules in chalicelib/reports/ turn the items into figures).

A source is one function `(period, now) -> Sourced`; the daily report carries only the
sections a day needs (each source decides by `period.kind`). Sources run in the order of
`SOURCES`, which is the order of the sections in every rendering.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

# Sourced lives with the model, so a source module imports it without importing this one back.
from chalicelib.reports.model import Period, Report, Section, Sourced

Source = Callable[[Period, datetime], Sourced]


def _sources() -> tuple[Source, ...]:
    # Imported here so that computing one kind of section never loads every store at cold start.
    from chalicelib.flows.report_service import service
    from chalicelib.flows.report_warehouse import warehouse

    return (warehouse, service)


def build_report(period: Period, now: datetime) -> Report:
    sections: list[Section] = []
    reads = 0
    for source in _sources():
        found = source(period, now)
        sections.extend(found.sections)
        reads += found.reads
    return Report(kind=period.kind, period=period, generated_at=now, sections=tuple(sections),
                  reads=reads)
