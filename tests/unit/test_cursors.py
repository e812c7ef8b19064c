"""Page cursors (chalicelib/core/cursors.py) and where a merged listing resumes
(chalicelib/core/listing.py): what the API's 400 invalid_cursor rests on."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.core import cursors, listing

POSITION = {"pk": "CASE#case_1", "order_id": "ord_1", "opened_at": "2026-03-02T02:00:00Z"}
SCOPE = ["order", "ord_1", ""]


def test_a_cursor_gives_back_its_position_for_its_own_list_and_query() -> None:
    cursor = cursors.encode("cases", SCOPE, POSITION)
    assert cursors.decode(cursor, "cases", SCOPE) == POSITION
    assert "CASE#" not in cursor and "/" not in cursor and "+" not in cursor  # opaque, URL-safe


@pytest.mark.parametrize("kind, scope", [
    ("notifications", SCOPE), ("cases", ["order", "ord_2", ""]), ("cases", ["order", "ord_1",
                                                                          "high"]),
    ("cases", ["order", "ord_1"]), ("cases", ["orderord_1", ""])])
def test_another_list_or_query_refuses_it(kind: str, scope: list[str]) -> None:
    with pytest.raises(ValueError):
        cursors.decode(cursors.encode("cases", SCOPE, POSITION), kind, scope)


def test_a_changed_or_made_up_cursor_is_refused() -> None:
    cursor = cursors.encode("cases", SCOPE, POSITION)
    payload, check = cursor.split(".")
    forged = cursors.encode("cases", SCOPE, {**POSITION, "order_id": "ord_2"}).split(".")[0]
    for bad in (f"{forged}.{check}", f"{payload}.{check[:-2]}AA", f"{payload}.", "", "x.y.z",
                "garbage", f"{payload}!.{check}", "A" * 5000):
        with pytest.raises(ValueError):
            cursors.decode(bad, "cases", SCOPE)


@pytest.mark.parametrize("value", [
    {**POSITION, "order_id": "ord_2"},  # another query's partition
    {**POSITION, "pk": "OPEN#x#y"},  # another kind of item
    {"pk": "CASE#case_1", "order_id": "ord_1"},  # a key part missing
    {**POSITION, "extra": "x"}, {**POSITION, "opened_at": 3}, {**POSITION, "opened_at": ""},
    ["CASE#case_1"], None])
def test_a_position_outside_the_query_is_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        cursors.key(value, frozenset(POSITION), {"order_id": "ord_1"}, {"pk": "CASE#"})


def test_a_page_is_cut_where_its_answer_grows_too_large() -> None:
    documents = [{"n": n, "text": "x" * 100} for n in range(10)]
    one = len('{"n":0,"text":""}') + 100 + 1
    assert cursors.fitting(documents, one * 3 + 5) == 3
    assert cursors.fitting(documents, 10) == 1  # one at least, however large
    assert cursors.fitting(documents, 10**6) == 10


class FakeQueries:
    """Partitions of items sorted by `at`, answered `per_call` at a time like DynamoDB."""

    def __init__(self, partitions: dict[str, list[str]], per_call: int) -> None:
        self.partitions, self.per_call = partitions, per_call

    def query(self, **request: Any) -> dict[str, Any]:
        name = request["KeyConditionExpression"]
        items = self.partitions[name]
        start = request.get("ExclusiveStartKey", {}).get("at", {}).get("S")
        rest = [at for at in items if start is None or at > start]
        taken = rest[:min(request["Limit"], self.per_call)]
        answer: dict[str, Any] = {"Items": [{"p": {"S": name}, "at": {"S": at}}
                                            for at in taken]}
        if len(taken) < len(rest):
            answer["LastEvaluatedKey"] = {"p": {"S": name}, "at": {"S": taken[-1]}}
        return answer


@pytest.mark.parametrize("cut", [False, True])  # True: each page cut short (answer too large)
@pytest.mark.parametrize("per_call", [1, 2, 7, 100])
@pytest.mark.parametrize("limit", [1, 3, 5, 50])
def test_a_merged_listing_hands_out_everything_once_in_order(
        monkeypatch: pytest.MonkeyPatch, per_call: int, limit: int, cut: bool) -> None:
    partitions = {"a": [f"{n:03d}" for n in range(0, 30, 3)],
                  "b": [f"{n:03d}" for n in range(1, 12, 1) if n % 3 == 1],
                  "c": [], "d": ["500", "501"]}
    fake = FakeQueries(partitions, per_call)
    monkeypatch.setattr(listing.aws, "client", lambda _service: fake)
    starts: dict[str, Any] | None = dict.fromkeys(partitions)
    seen: list[str] = []
    for _page in range(200):
        assert starts is not None
        page = listing.merged(lambda name: {"KeyConditionExpression": name}, ("p", "at"), "at",
                              limit, starts)
        assert len(page.items) <= limit and len(page.resume) == len(page.items) + 1
        taken = (len(page.items) + 1) // 2 if cut else len(page.items)
        seen += [item["at"] for item in page.items[:taken]]
        starts = page.resume[taken]
        if starts is None:
            break
    assert seen == sorted(at for items in partitions.values() for at in items)


@pytest.mark.parametrize("n", range(64))
def test_a_cursor_whose_last_character_changed_is_refused(n: int) -> None:
    """The last base64 character carries spare bits: another value of them decodes to the same
    bytes, and was taken for the cursor (about one change in five)."""
    cursor = cursors.encode("cases", ["open"], {"n": n, "at": "2026-03-02T02:00:00Z"})
    for other in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if other != cursor[-1]:
            with pytest.raises(ValueError):
                cursors.decode(cursor[:-1] + other, "cases", ["open"])
