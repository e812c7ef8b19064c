"""The console's SVG charts (chalicelib/cs/charts.py): well-formed XML whatever the labels, every
label escaped, bars to scale."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from chalicelib.cs import charts

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & \'quotes\' \x00\x07\x1b 顺丰'


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def widths(root: ET.Element) -> list[int]:
    return [int(r.get("width", "0")) for r in root.iter(f"{SVG}rect")]


def test_a_bar_chart_draws_one_bar_per_label_to_scale() -> None:
    root = parse(charts.bar_chart({"courier.lost": 10, "job.not_accepted": 5, "x": 0},
                                  "Open cases by type", width=420))
    assert root.tag == f"{SVG}svg" and root.get("aria-label") == "Open cases by type"
    span = 420 - charts.LABEL_WIDTH - charts.VALUE_WIDTH
    assert widths(root) == [span, span // 2, 0]
    assert texts(root) == ["courier.lost", "10", "job.not_accepted", "5", "x", "0"]


def test_labels_and_titles_are_escaped_never_markup() -> None:
    for svg in (charts.bar_chart([(HOSTILE, 3)], HOSTILE),
                charts.stacked_bars([(HOSTILE, [(HOSTILE, 1), ("late", 2)])], HOSTILE)):
        assert "<script" not in svg and "\x00" not in svg and "\x1b" not in svg
        root = parse(svg)
        assert not list(root.iter(f"{SVG}script")) and not list(root.iter("script"))
        clean = '<script>alert("x")</script> & \'quotes\'  顺丰'
        assert root.get("aria-label") == clean
        assert root.find(f"{SVG}title") is not None
        assert root.find(f"{SVG}title").text == clean  # type: ignore[union-attr]
        assert any(clean[:charts.MAX_LABEL - 1] in t for t in texts(root))


def test_a_long_label_is_shortened_on_the_chart_and_whole_in_its_tooltip() -> None:
    label = "a" * 100
    root = parse(charts.bar_chart([(label, 1)], "t"))
    assert texts(root)[0] == "a" * (charts.MAX_LABEL - 1) + "…"
    assert any(label in (t.text or "") for t in root.iter(f"{SVG}title"))


def test_stacked_bars_split_each_row_on_one_scale_with_a_legend() -> None:
    rows = [("11:00", [("on_time", 6), ("late", 2), ("to_go", 0)]),
            ("15:00", [("on_time", 2), ("late", 0), ("to_go", 2)])]
    root = parse(charts.stacked_bars(rows, "Dispatch", width=408))
    span = 408 - charts.LABEL_WIDTH - charts.VALUE_WIDTH  # 210: 8 parcels at most
    bars = widths(root)[:-3]  # the legend's three swatches come last
    assert bars == [round(span * 6 / 8), round(span * 2 / 8), round(span * 2 / 8),
                    round(span * 2 / 8)]
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect")]
    assert fills[0] == fills[2] and fills[1] != fills[0]  # on time is one colour throughout
    assert texts(root)[-3:] == ["on_time", "late", "to_go"]
    assert texts(root)[:4] == ["11:00", "8", "15:00", "4"]


@pytest.mark.parametrize("make", [lambda: charts.bar_chart({}, "empty"),
                                  lambda: charts.stacked_bars([], "empty")])
def test_nothing_to_show_is_still_a_valid_svg(make: object) -> None:
    root = parse(make())  # type: ignore[operator]
    assert root.tag == f"{SVG}svg" and not widths(root)


def test_todays_charts_draw_the_view_in_the_pages_words() -> None:
    from datetime import UTC, date, datetime

    from chalicelib.cs.queue import OpenCounts, ParcelProblems
    from chalicelib.flows.today import TodayView, Undelivered, Waiting, charts_of
    from chalicelib.warehouse.day_dispatch import CutoffFigures, DayDispatch

    at = datetime(2026, 12, 7, 8, tzinfo=UTC)
    view = TodayView(
        day=date(2026, 12, 7), timezone="Asia/Shanghai", at=at,
        dispatch=DayDispatch(day=date(2026, 12, 7), timezone="Asia/Shanghai", paid=3, cutoffs=[
            CutoffFigures(cutoff="11:00", deadline=at, on_time=2, late=1)]),
        offers_unaccepted=Waiting(count=0, oldest=[]),
        intercepts_waiting=Waiting(count=0, oldest=[]),
        parcel_problems=ParcelProblems(total=1, by_carrier={HOSTILE: {"courier.lost": 1}}),
        open_cases=OpenCounts(total=1, by_type={HOSTILE: 1}, by_severity={"high": 1},
                              by_age={"1h": 1}),
        notifications=Undelivered(since=at, failed=0, dead=0, dead_alerts=0))
    drawn = charts_of(view, {"on_time": "准时", "dispatch": "今日发货", "1h": "一小时内"})
    for svg in drawn.model_dump().values():
        assert "<script" not in svg
        parse(svg)
    assert parse(drawn.dispatch).get("aria-label") == "今日发货"
    assert "准时" in texts(parse(drawn.dispatch))
    assert "一小时内" in texts(parse(drawn.cases_by_age))


def test_the_legend_wraps_instead_of_overlapping_on_a_narrow_chart() -> None:
    import re as _re

    parts = [(name, 1) for name in ("Shipped on time", "Late", "Overdue, not shipped",
                                    "Still to go", "按时发出已取消")]
    svg = charts.stacked_bars([("11:00", parts)], "dispatch", width=240)
    legend = [(int(x), int(y)) for x, y in _re.findall(
        r'<rect x="(\d+)" y="(\d+)" width="10" height="10"', svg)]
    assert len(legend) == 5
    assert len({y for _, y in legend}) >= 3  # wrapped onto several lines
    assert all(x + 10 <= 240 for x, _ in legend)
    height = int(_re.search(r'height="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    assert max(y for _, y in legend) + 10 <= height
