"""The console's case queue: most severe first, filters by marketplace, carrier and age, and
the counts of its header (chalicelib/flows/case_desk.py), against the local endpoint.

The stack is shared by the session's tests, so each test works with its own case type (and
marketplace) and checks only its own cases, or the change its cases make to the counts."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.core.clock import utcnow
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.flows import alert_dispatch, case_desk
from tests.integration.test_list_pages import get, pages

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
S = Severity


@pytest.fixture
def cs_key(make_key: Any) -> str:
    return str(make_key("staff", "queue", Role.READ_ONLY))


def open_case(kind: str, severity: Severity, at: datetime, **facts: str) -> str:
    alert = Alert(kind=kind, severity=severity, subject=f"test:{uuid.uuid4().hex}", at=at,
                  summary="queued", facts=facts)
    recorded = alert_dispatch.handle(alert.model_dump_json(), at)
    assert recorded.case is not None
    return recorded.case.case_id


def ids(page: dict[str, Any]) -> list[str]:
    return [c["case_id"] for c in page["cases"]]


def test_most_severe_first_and_newest_first_within_a_severity(client: Client,
                                                             cs_key: str) -> None:
    kind, market = f"test.sev_{uuid.uuid4().hex[:8]}", f"m{uuid.uuid4().hex[:8]}"
    order = [S.LOW, S.CRITICAL, S.HIGH, S.CRITICAL, S.MEDIUM, S.HIGH, S.LOW]
    made = [(open_case(kind, s, NOW - timedelta(minutes=60 - n), marketplace=market), s, n)
            for n, s in enumerate(order)]
    expected = [i for i, _, _ in sorted(made, key=lambda m: (-m[1].rank, -m[2]))]
    for path in (f"/cs/v1/cases?order=severity&type={kind}&limit=2",
                 f"/cs/v1/cases?order=severity&marketplace={market}&limit=3"):
        paged = pages(client, cs_key, path, "cases")
        assert all(len(p) <= 3 for p in paged) and len(paged) > 2, path
        assert [c["case_id"] for p in paged for c in p] == expected, path
    worse = pages(client, cs_key, f"/cs/v1/cases?order=severity&type={kind}&severity=high",
                  "cases")
    assert [c["case_id"] for p in worse for c in p] == expected[:4]
    # The API's default is still oldest first.
    oldest = get(client, cs_key, f"/cs/v1/cases?type={kind}")
    assert ids(oldest) == [i for i, _, _ in made]


def test_marketplace_and_carrier_filters_combine_with_type_and_severity(
        client: Client, cs_key: str) -> None:
    kind, market = f"test.mk_{uuid.uuid4().hex[:8]}", f"m{uuid.uuid4().hex[:8]}"
    at = NOW - timedelta(hours=2)
    a = open_case(kind, S.HIGH, at, marketplace=market, carrier_code="STO")
    open_case(kind, S.HIGH, at + timedelta(seconds=1), marketplace="other", carrier_code="STO")
    c = open_case(kind, S.LOW, at + timedelta(seconds=2), marketplace=market, carrier_code="SF")
    d = open_case(kind, S.CRITICAL, at + timedelta(seconds=3), marketplace=market,
                  carrier_code="STO")
    assert ids(get(client, cs_key, f"/cs/v1/cases?type={kind}&marketplace={market}")) == [a, c, d]
    assert ids(get(client, cs_key, f"/cs/v1/cases?type={kind}&marketplace={market}"
                                   "&carrier_code=STO")) == [a, d]
    assert ids(get(client, cs_key, f"/cs/v1/cases?marketplace={market}&carrier_code=STO"
                                   "&severity=critical")) == [d]
    assert ids(get(client, cs_key, f"/cs/v1/cases?order=severity&marketplace={market}"
                                   "&carrier_code=SF")) == [c]


def test_a_filter_that_skips_many_cases_still_pages_every_match_once(
        client: Client, cs_key: str) -> None:
    """Thirty cases the filter drops, newer than the three it keeps: pages come short (each
    reads a few Queries at most) and say there is more, until every match was handed out."""
    kind, market = f"test.skip_{uuid.uuid4().hex[:8]}", f"m{uuid.uuid4().hex[:8]}"
    kept = [open_case(kind, S.MEDIUM, NOW - timedelta(hours=5, minutes=n), marketplace=market)
            for n in range(3)]
    for n in range(30):
        open_case(kind, S.MEDIUM, NOW - timedelta(hours=1, minutes=n), marketplace="noise")
    paged = pages(client, cs_key, f"/cs/v1/cases?order=severity&type={kind}"
                                  f"&marketplace={market}&limit=2", "cases")
    assert len(paged) > 2  # answered short, with a cursor, before reaching the matches
    assert [c["case_id"] for p in paged for c in p] == kept  # newest first: minute 0 first


def test_age_bands_select_by_how_long_a_case_has_been_open(stack: dict[str, str]) -> None:
    kind = f"test.age_{uuid.uuid4().hex[:8]}"
    ages = {"1h": timedelta(minutes=59), "24h": timedelta(hours=1),
            "3d": timedelta(hours=30), "older": timedelta(days=3)}
    made = {band: open_case(kind, S.HIGH, NOW - age) for band, age in ages.items()}
    for band, case_id in made.items():
        for order in ("oldest", "severity"):
            found = case_desk.list_cases({"type": kind, "age": band, "order": order}, NOW)
            assert ids(found) == [case_id], (band, order)
    everything = case_desk.list_cases({"type": kind}, NOW)
    assert ids(everything) == list(reversed(made.values()))


def test_bad_filters_are_invalid_queries(client: Client, cs_key: str) -> None:
    for query in ("age=2h", "order=newest", "order_id=ord_1&marketplace=taobao",
                  "order_id=ord_1&order=severity"):
        body = get(client, cs_key, f"/cs/v1/cases?{query}", 400)
        assert body["error"] == "invalid_query", query


def test_a_cursor_of_one_filter_is_refused_by_another(client: Client, cs_key: str) -> None:
    kind, market = f"test.cur_{uuid.uuid4().hex[:8]}", f"m{uuid.uuid4().hex[:8]}"
    for n in range(3):
        open_case(kind, S.HIGH, NOW - timedelta(minutes=n), marketplace=market)
    first = get(client, cs_key, f"/cs/v1/cases?order=severity&type={kind}&limit=1")
    assert first["next_cursor"]
    other = get(client, cs_key, f"/cs/v1/cases?order=severity&type={kind}&marketplace={market}"
                                f"&limit=1&cursor={first['next_cursor']}", 400)
    assert other["error"] == "invalid_cursor"


def test_open_counts_count_open_cases_by_type_severity_and_age(stack: dict[str, str]) -> None:
    kind = f"test.count_{uuid.uuid4().hex[:8]}"
    before = case_desk.open_counts(NOW)
    made = [open_case(kind, S.CRITICAL, NOW - timedelta(minutes=10)),
            open_case(kind, S.LOW, NOW - timedelta(hours=2)),
            open_case(kind, S.LOW, NOW - timedelta(days=4))]
    after = case_desk.open_counts(NOW)
    assert after.total - before.total == 3
    assert after.by_type[kind] == 3
    assert {s: after.by_severity[s] - before.by_severity[s] for s in after.by_severity} == {
        "critical": 1, "high": 0, "medium": 0, "low": 2}
    assert {b: after.by_age[b] - before.by_age[b] for b in after.by_age} == {
        "1h": 1, "24h": 1, "3d": 0, "older": 1}
    case_desk.resolve(made[0], "cs tester", case_desk.ResolveCaseRequest(note="done"), NOW)
    resolved = case_desk.open_counts(NOW)
    assert resolved.by_type[kind] == 2 and resolved.total == after.total - 1


def test_open_cases_written_before_the_summary_index_are_given_its_attributes(
        stack: dict[str, str]) -> None:
    """A case as the store wrote it before: no open_pk, no copied marketplace or carrier. The
    backfill gives it what the queue and the counts read."""
    import boto3

    from chalicelib.core.dynamodb import to_attrs
    from chalicelib.core.settings import settings
    from chalicelib.cs import case_store

    kind, market = f"test.old_{uuid.uuid4().hex[:8]}", f"m{uuid.uuid4().hex[:8]}"
    old = open_case(kind, S.HIGH, NOW - timedelta(hours=3), marketplace=market,
                    carrier_code="YTO")
    dynamodb = boto3.client("dynamodb", endpoint_url=stack["AWS_ENDPOINT_URL"])
    dynamodb.update_item(TableName=settings().cases_table, Key=to_attrs({"pk": f"CASE#{old}"}),
                         UpdateExpression="REMOVE open_pk, marketplace, carrier_code")
    before = case_desk.open_counts(NOW)
    assert kind not in before.by_type
    assert ids(case_desk.list_cases({"type": kind, "marketplace": market}, NOW)) == []
    assert case_store.backfill_open_summary() >= 1
    after = case_desk.open_counts(NOW)
    assert after.by_type[kind] == 1 and after.total == before.total + 1
    assert ids(case_desk.list_cases({"type": kind, "marketplace": market,
                                     "carrier_code": "YTO"}, NOW)) == [old]
    assert case_store.backfill_open_summary() == 0  # nothing left to give


def test_the_open_figures_are_kept_a_minute_and_counted_again_after(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A shift reloading the queue reads one kept item; the first page after a minute counts
    the open cases again (the list itself is always live)."""
    from chalicelib.core.settings import settings
    from chalicelib.flows import case_desk
    from tests.integration.test_today import dynamodb_calls

    monkeypatch.setenv("CASE_FIGURES_SECONDS", "60")
    settings.cache_clear()
    now = utcnow() + timedelta(days=400)  # after whatever an earlier test kept
    with dynamodb_calls() as calls:
        first = case_desk.open_figures(now)
    assert calls["Query"] >= 1 and calls["PutItem"] == 1, calls
    with dynamodb_calls() as calls:
        again = case_desk.open_figures(now + timedelta(seconds=59))
    assert calls == Counter({"GetItem": 1}), calls
    assert again == first
    with dynamodb_calls() as calls:
        later = case_desk.open_figures(now + timedelta(seconds=61))
    assert calls["Query"] >= 1 and calls["PutItem"] == 1, calls
    assert later.at == now + timedelta(seconds=61)
