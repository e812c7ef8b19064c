"""The console's pure parts: sessions and cookies, the stage rule the preview says, the
templates' escaping and helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.access import sessions
from chalicelib.access.keys import Principal, Role
from chalicelib.console import render
from chalicelib.cs.channels import Language
from chalicelib.warehouse.jobs import Work, change_outcome

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
STAFF = Principal(kind="staff", id="alice", role=Role.BACK_OFFICE, key_id="abc")


def test_a_session_holds_no_key_and_a_token_only_as_its_hash() -> None:
    token, session = sessions.open_session(STAFF, "k" * 64, NOW, timedelta(hours=12))
    assert session.token_hash == sessions.token_hash(token) != token
    assert token not in session.model_dump_json()
    assert session.live(NOW + timedelta(hours=11, minutes=59))
    assert not session.live(NOW + timedelta(hours=12))
    other, again = sessions.open_session(STAFF, "k" * 64, NOW, timedelta(hours=12))
    assert other != token and again.csrf != session.csrf


@pytest.mark.parametrize(("role", "allowed"), [
    (Role.READ_ONLY, {Role.READ_ONLY}),
    (Role.BACK_OFFICE, {Role.READ_ONLY, Role.BACK_OFFICE}),
    (Role.ADMIN, {Role.READ_ONLY, Role.BACK_OFFICE, Role.ADMIN})])
def test_roles_rank(role: Role, allowed: set[Role]) -> None:
    _, session = sessions.open_session(STAFF.model_copy(update={"role": role}), "h", NOW,
                                       timedelta(hours=1))
    assert {r for r in (Role.READ_ONLY, Role.BACK_OFFICE, Role.ADMIN) if session.can(r)} \
        == allowed


def test_tokens_compare_exactly_and_never_empty() -> None:
    assert sessions.same_token("abc", "abc")
    assert not sessions.same_token("abc", "abd")
    assert not sessions.same_token("abc", None)
    assert not sessions.same_token("", "")


def test_cookies_are_read_leniently_and_written_strictly() -> None:
    assert sessions.cookies("obk_session=t1; lang=en") == {"obk_session": "t1", "lang": "en"}
    assert sessions.cookies(None) == {}
    written = sessions.set_cookie("obk_session", "t1", 600)
    for part in ("obk_session=t1", "Path=/", "Max-Age=600", "Secure", "SameSite=Lax",
                 "HttpOnly"):
        assert part in written.split("; ")
    assert "Max-Age=0" in sessions.end_cookie("obk_session")


@pytest.mark.parametrize(("work", "outcome"), [
    (Work.QUEUED, "applied"), (Work.PRINTED, "intercept"), (Work.PICKED, "intercept"),
    (Work.PACKED, "intercept"), (Work.SHIPPED, "after_sales"), (Work.CANCELLED, "closed"),
    (Work.CLOSED_INCOMPLETE, "closed")])
def test_what_a_change_becomes_at_each_stage(work: Work, outcome: str) -> None:
    assert change_outcome(work) == outcome


def test_templates_escape_what_others_wrote() -> None:
    evil = "<img src=x onerror=alert(1)>"
    page = render.render("error.html", Language.EN, session=None, root="", path="",
                         query_values={}, csrf="",
                         error=type("E", (), {"status": 404, "reason": evil,
                                              "message": evil})(), word="not_found")
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_times_show_in_china_time_and_links_keep_their_filters() -> None:
    assert render.local_time("2026-12-07T04:00:00.000000Z") == "2026-12-07 12:00"
    assert render.local_time(NOW) == "2026-12-07 12:00"
    assert render.local_time("not a time") == "not a time"
    assert render.query_string({"type": "job.rejected", "age": ""}, cursor="c1") \
        == "?type=job.rejected&cursor=c1"
    assert render.query_string({}) == ""


def test_both_languages_have_every_word() -> None:
    from chalicelib.console.i18n import WORDS

    assert all((zh and en and zh != en) or key == "language" for key, (zh, en) in WORDS.items())
