"""Noise control: bursts become digests, rate limits hold per channel, and no case is lost."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.cs.alerts import Severity
from chalicelib.cs.noise import (
    PLATFORM_LIMITS,
    Alone,
    CaseBrief,
    ChannelState,
    Digest,
    Folded,
    NoiseControl,
    NoiseRules,
    Outgoing,
    RateLimit,
    next_free,
    simulate,
)

T0 = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
WECOM = "wecom:cs-team"


def case(n: int, kind: str = "shipment.stalled", severity: Severity = Severity.HIGH) -> CaseBrief:
    return CaseBrief(case_id=f"case_{n}", kind=kind, severity=severity, order=f"#{n}")


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def accounted(out: list[Outgoing]) -> Counter[str]:
    """How many times each case went out, alone or inside a digest."""
    ids: Counter[str] = Counter()
    for sent in out:
        ids.update([sent.case.case_id] if isinstance(sent, Alone)
                   else [c.case_id for c in sent.cases])
    return ids


def assert_limits_hold(out: list[Outgoing], rules: NoiseRules) -> None:
    by_channel: dict[str, list[datetime]] = {}
    for sent in out:
        by_channel.setdefault(sent.channel, []).append(sent.at)
    for channel, times in by_channel.items():
        assert times == sorted(times)
        for limit in rules.limits_for(channel):
            for index, moment in enumerate(times):
                in_window = [t for t in times[: index + 1] if t > moment - limit.per]
                assert len(in_window) <= limit.count, (channel, limit, moment)


# The storm -------------------------------------------------------------------------------------

def test_a_burst_of_500_becomes_a_handful_of_messages() -> None:
    events = [(T0 + seconds(n * 0.1), WECOM, case(n)) for n in range(500)]
    out = simulate(events)
    digests = [sent for sent in out if isinstance(sent, Digest)]
    assert len(out) <= 10  # not 500 pings
    assert [type(sent) for sent in out[:5]] == [Alone] * 5  # the first few still go at once
    assert len(digests) == 1 and len(digests[0].cases) == 495
    assert digests[0].counts == {"shipment.stalled": 495}
    assert digests[0].at == digests[0].opened_at + NoiseRules().digest_after
    assert accounted(out) == Counter(f"case_{n}" for n in range(500))
    assert_limits_hold(out, NoiseRules())


def test_a_long_storm_sends_a_digest_every_few_minutes() -> None:
    events = [(T0 + seconds(n * 3.6), WECOM, case(n)) for n in range(500)]  # 30 minutes
    out = simulate(events)
    assert len(out) <= 25
    assert accounted(out) == Counter(f"case_{n}" for n in range(500))
    gaps = [b.at - a.at for a, b in itertools.pairwise(out[5:])]
    assert all(gap >= timedelta(minutes=2) for gap in gaps)


def test_a_quiet_channel_sends_every_case_alone() -> None:
    events = [(T0 + timedelta(minutes=2 * n), WECOM, case(n)) for n in range(20)]
    out = simulate(events)
    assert all(isinstance(sent, Alone) for sent in out) and len(out) == 20
    assert [sent.at for sent in out] == [at for at, _, _ in events]


def test_channels_are_independent() -> None:
    storm = [(T0 + seconds(n * 0.1), WECOM, case(n)) for n in range(100)]
    calm = [(T0 + seconds(30), "slack:cs", case(1000))]
    out = simulate(storm + calm)
    assert Alone("slack:cs", case(1000), T0 + seconds(30)) in out


# Rate limits -----------------------------------------------------------------------------------

def test_wecom_never_gets_more_than_20_a_minute() -> None:
    rules = NoiseRules(threshold=1000)  # only the rate limit decides
    events = [(T0 + seconds(n), WECOM, case(n)) for n in range(300)]  # 1 a second for 5 min
    out = simulate(events, rules)
    assert_limits_hold(out, rules)
    assert accounted(out) == Counter(f"case_{n}" for n in range(300))
    first_minute = [sent for sent in out if sent.at < T0 + seconds(60)]
    assert len(first_minute) == 20


def test_feishu_holds_both_its_limits() -> None:
    rules = NoiseRules(threshold=1000)
    events = [(T0 + seconds(n * 0.05), "feishu:cs", case(n)) for n in range(400)]
    out = simulate(events, rules)
    assert_limits_hold(out, rules)
    assert len([s for s in out if s.at < T0 + seconds(1)]) == 5


def test_next_free_is_exact_at_the_window_edge() -> None:
    one_a_second = (RateLimit(count=1, per=seconds(1)),)
    assert next_free((T0,), one_a_second, T0 + seconds(0.5)) == T0 + seconds(1)
    assert next_free((T0,), one_a_second, T0 + seconds(1)) == T0 + seconds(1)
    twenty = PLATFORM_LIMITS["wecom"]
    sent = tuple(T0 + seconds(n) for n in range(20))
    assert next_free(sent, twenty, T0 + seconds(20)) == T0 + seconds(60)
    assert next_free(sent[1:], twenty, T0 + seconds(20)) == T0 + seconds(20)


def test_a_digest_waits_for_the_rate_limit() -> None:
    rules = NoiseRules(threshold=1000)
    control = NoiseControl(rules)
    decisions = [control.offer(WECOM, case(n), T0 + seconds(n * 0.1)) for n in range(22)]
    assert [type(d) for d in decisions] == [Alone] * 20 + [Folded] * 2
    folded = decisions[-1]
    assert isinstance(folded, Folded)
    assert folded.digest_due == T0 + seconds(60)  # the first send leaves the window
    assert control.flush(T0 + seconds(59)) == []
    [digest] = control.flush(T0 + seconds(60))
    assert isinstance(digest, Digest) and [c.case_id for c in digest.cases] == \
        ["case_20", "case_21"]


def test_a_digest_of_one_goes_out_as_the_case_itself() -> None:
    rules = NoiseRules(threshold=1000, limits={"slack": (RateLimit(count=1, per=seconds(1)),)})
    out = simulate([(T0, "slack:cs", case(1)), (T0 + seconds(0.2), "slack:cs", case(2))], rules)
    assert out == [Alone("slack:cs", case(1), T0), Alone("slack:cs", case(2), T0 + seconds(1))]


def test_limits_by_channel_id_then_type_then_fallback() -> None:
    special = (RateLimit(count=2, per=seconds(60)),)
    rules = NoiseRules(limits={**PLATFORM_LIMITS, "wecom:vip": special})
    assert rules.limits_for("wecom:vip") == special
    assert rules.limits_for("wecom:other") == PLATFORM_LIMITS["wecom"]
    assert rules.limits_for("pager:x") == rules.fallback_limits
    with pytest.raises(ValueError):
        RateLimit(count=1, per=timedelta(0))


# Severity, clocks and state -------------------------------------------------------------------

def test_critical_cases_skip_the_digest_when_the_limit_allows() -> None:
    control = NoiseControl()
    for n in range(10):
        control.offer(WECOM, case(n), T0 + seconds(n))
    dead = case(99, "worker.dead_letter", Severity.CRITICAL)
    assert control.offer(WECOM, dead, T0 + seconds(11)) == Alone(WECOM, dead, T0 + seconds(11))
    full = NoiseControl(NoiseRules(threshold=1000))
    for n in range(20):
        full.offer(WECOM, case(n), T0)
    assert isinstance(full.offer(WECOM, dead, T0 + seconds(1)), Folded)  # no slot: it waits


def test_a_clock_running_backwards_cannot_break_the_limit() -> None:
    control = NoiseControl(NoiseRules(threshold=1000))
    at = [T0 + seconds(30)] + [T0] * 25  # a second worker's clock is 30 s behind
    decisions = [control.offer(WECOM, case(n), moment) for n, moment in enumerate(at)]
    alone = [d for d in decisions if isinstance(d, Alone)]
    assert len(alone) == 20 and all(d.at == T0 + seconds(30) for d in alone)


def test_state_survives_json_between_invocations() -> None:
    control = NoiseControl()
    for n in range(8):
        control.offer(WECOM, case(n), T0 + seconds(n))
    saved = {channel: state.model_dump_json() for channel, state in control.states.items()}
    restored = NoiseControl(states={channel: ChannelState.model_validate_json(text)
                                    for channel, text in saved.items()})
    assert restored.states == control.states and restored.held() == 3
    due = restored.next_due()
    assert due == T0 + seconds(5) + NoiseRules().digest_after
    [digest] = restored.flush(due)
    assert isinstance(digest, Digest) and len(digest.cases) == 3 and restored.held() == 0


# Property: nothing is ever dropped ------------------------------------------------------------

CHANNELS = ["wecom:cs-team", "dingtalk:cs", "feishu:cs", "slack:cs", "email:cs"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=600, allow_nan=False),
                          st.sampled_from(CHANNELS), st.sampled_from(list(Severity))),
                max_size=300),
       st.integers(min_value=1, max_value=10),
       st.integers(min_value=1, max_value=300))
def test_no_case_is_ever_dropped(raw: list[tuple[float, str, Severity]], threshold: int,
                                 digest_after: int) -> None:
    rules = NoiseRules(threshold=threshold, digest_after=seconds(digest_after))
    events = [(T0 + seconds(offset), channel, case(n, severity=severity))
              for n, (offset, channel, severity) in enumerate(raw)]
    out = simulate(events, rules)
    assert accounted(out) == Counter(f"case_{n}" for n in range(len(raw)))  # exactly once each
    arrived = {c.case_id: at for at, _, c in events}
    for sent in out:
        cases = [sent.case] if isinstance(sent, Alone) else list(sent.cases)
        assert all(arrived[c.case_id] <= sent.at for c in cases)
        if isinstance(sent, Digest):
            assert len(sent.cases) >= 2
    assert len(out) <= len(events)
    assert_limits_hold(out, rules)


def test_a_full_digest_goes_at_the_next_free_slot_not_at_its_planned_time() -> None:
    from datetime import UTC, datetime, timedelta

    from chalicelib.cs.noise import CaseBrief, ChannelState, NoiseRules, digest_due, offer

    rules = NoiseRules(threshold=1, max_digest_cases=3)
    t0 = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    state = ChannelState()
    for n in range(3):  # the first alone, then a burst folded into a digest
        state, _ = offer(state, "wecom:x", CaseBrief(case_id=f"c{n}", kind="k"), t0, rules)
    assert digest_due(state, "wecom:x", t0, rules) == t0 + rules.digest_after
    state, _ = offer(state, "wecom:x", CaseBrief(case_id="c3", kind="k"), t0 + timedelta(seconds=5),
                     rules)
    assert state.digest is not None and len(state.digest.cases) == 3
    assert digest_due(state, "wecom:x", t0 + timedelta(seconds=5), rules) == \
        t0 + timedelta(seconds=5)
