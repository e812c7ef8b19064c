from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.orders.order import Address
from chalicelib.warehouse.carriers import (
    DEFAULT_CARRIER_RULES,
    Carrier,
    CarrierRules,
    CostRange,
    carrier_named,
    choose_carrier,
)
from chalicelib.warehouse.dispatch import (
    DEFAULT_DISPATCH_RULES,
    DispatchRules,
    acceptance_deadlines,
    ship_by,
    stock_up_ship_by,
)
from chalicelib.warehouse.regions import Region, RegionRules, province_code, region_of

SHANGHAI = ZoneInfo("Asia/Shanghai")
J, T, R, INTL = Region.JZH, Region.TIER12, Region.REMOTE, Region.INTERNATIONAL


def cn(province: str = "", city: str = "", code: str = "", country: str = "CN") -> Address:
    return Address(province=province, city=city, province_code=code, country_code=country,
                   line1="1 Road")


def local(day: date, hour: int, minute: int = 0, second: int = 0,
          zone: ZoneInfo = SHANGHAI) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=zone)


MON = date(2026, 3, 2)  # a Monday
TUE, WED, SAT, SUN = (MON + timedelta(days=n) for n in (1, 2, 5, 6))
NEXT_MON = MON + timedelta(days=7)


# Regions ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "region"), [
    (cn("上海市", "上海市"), J),
    (cn("Shanghai", "Shanghai", "SH"), J),
    (cn(code="SH"), J),  # only a province code
    (cn(code="  sh "), J),
    (cn(code="CN-JS"), J),
    (cn("江苏", "南京"), J),
    (cn("江苏省", "宿迁市"), J),  # all of Jiangsu, not only its big cities
    (cn(" ZHEJIANG ", "hangzhou shi"), J),
    (cn("浙江省", "义乌市"), J),
    (cn(city="Ningbo"), J),  # the city alone places the province
    (cn("广东", "深圳"), T),
    (cn("Guangdong", "Dongguan", "GD"), T),
    (cn("Beijing", "Beijing", "BJ"), T),
    (cn("北京市", "朝阳区"), T),  # municipalities: the city field is often a district
    (cn("重庆", "万州区"), T),
    (cn("四川", "成都"), T),
    (cn("Shaanxi", "Xi'an"), T),
    (cn("Heilongjiang", "Harbin"), T),
    (cn("黑龙江省", "哈尔滨市"), T),
    (cn("Fujian", "Fuzhou"), T),
    (cn("Jiangxi", "Fuzhou"), R),  # 抚州, a namesake of tier-2 福州
    (cn("河南", "周口"), R),  # third tier
    (cn("Henan", "Zhoukou", "HA"), R),
    (cn("新疆", "乌鲁木齐"), R),
    (cn("新疆维吾尔自治区", "乌鲁木齐市"), R),
    (cn("Xinjiang Uygur Autonomous Region", "Urumqi"), R),
    (cn("西藏", "拉萨"), R),
    (cn("Tibet", "Lhasa", "YZ"), R),
    (cn(code="XZ"), R),  # ISO code for Xizang
    (cn("内蒙古自治区", "呼和浩特"), R),
    (cn("Hainan", "Sanya", "HI"), R),
    (cn("Gansu", "Lanzhou"), R),
    (cn("Qinghai"), R),
    (cn("Ningxia Hui Autonomous Region"), R),
    (cn(), R),  # unplaceable: budget the highest band
    (cn("Atlantis", "Nowhere"), R),
    (cn(city="香港"), INTL),  # Hong Kong, Macau, Taiwan go through customs
    (cn("Taiwan"), INTL),
    (cn("California", "San Francisco", "CA", country="US"), INTL),
    (cn("Hawaii", "Honolulu", "HI", country="us"), INTL),  # HI is also Hainan's code
    (cn("上海", "上海", country=""), J),  # domestic marketplaces may omit the country
    (cn("Hainan", "Haikou", "HI", country=""), R),
    (cn("", "Honolulu", "HI", country=""), INTL),  # bare codes do not make an address Chinese
])
def test_region_of_real_addresses(address: Address, region: Region) -> None:
    assert region_of(address) is region


@pytest.mark.parametrize(("text", "code"), [
    ("SH", "SH"), ("js", "JS"), ("CN-ZJ", "ZJ"), ("XZ", "YZ"), ("广东省", "GD"),
    ("广西壮族自治区", "GX"), ("Inner Mongolia", "NM"), ("Nei Mongol", "NM"), ("Shanxi", "SX"),
    ("Shaanxi", "SN"), ("ＳＨＡＮＧＨＡＩ", "SH"), ("Ontario", None), ("", None),
])
def test_province_code_accepts_codes_and_names(text: str, code: str | None) -> None:
    assert province_code(text) == code


def test_pricing_third_tier_as_tier12_keeps_the_remote_provinces_remote() -> None:
    rules = RegionRules(third_tier_region=Region.TIER12)
    assert region_of(cn("河南", "周口"), rules) is T
    assert region_of(cn("新疆", "喀什"), rules) is R


def test_an_operator_can_list_a_remote_city_as_tier12_in_either_script() -> None:
    rules = RegionRules.model_validate_json('{"tier12_cities": ["海口", "Weihai"]}')
    assert rules.tier12_cities == {"haikou", "weihai"}
    assert region_of(cn("海南", "海口"), rules) is T
    assert region_of(cn("Shandong", "Weihai"), rules) is T
    assert region_of(cn("广东", "深圳"), rules) is R  # the list was replaced, not extended


def test_region_rules_reject_unknown_provinces() -> None:
    with pytest.raises(ValidationError, match="unknown province"):
        RegionRules(remote_provinces=frozenset({"Narnia"}))


# Couriers ---------------------------------------------------------------------------------------

ALL = CarrierRules(offered_carriers=frozenset(Carrier))  # an operator with every account
OFFERS_NO_JD = CarrierRules(offered_carriers=frozenset(Carrier) - {Carrier.JD})
REMOTE_BY_EMS = CarrierRules(offered_carriers=frozenset(Carrier),
                             region_carriers={Region.REMOTE: Carrier.EMS})
PRICED_ABROAD = CarrierRules.model_validate_json(
    '{"costs": {"jzh": {"low": 4, "high": 5}, "tier12": {"low": 8, "high": 10},'
    ' "remote": {"low": 10, "high": 15}, "international": {"low": 60, "high": 120}}}')
US = cn("NY", "New York", "NY", country="US")


@pytest.mark.parametrize(("address", "rules", "requested", "carrier", "cost", "reason"), [
    (cn("上海"), DEFAULT_CARRIER_RULES, None, "STO", "4.5", "default courier for jzh"),
    (cn("广东", "广州"), DEFAULT_CARRIER_RULES, None, "STO", "9", "default courier for tier12"),
    (cn("新疆"), DEFAULT_CARRIER_RULES, "", "STO", "12.5", "default courier for remote"),
    (cn("上海"), ALL, "SF", "SF", "11.5", "buyer requested SF"),
    (cn("上海"), ALL, " sf express ", "SF", "11.5", "buyer requested SF"),
    (cn("北京"), ALL, "顺丰", "SF", "15.5", "buyer requested SF"),
    # priced like STO
    (cn("北京"), ALL, "yto", "YTO", "9", "buyer requested YTO"),
    (cn("北京"), ALL, "京东", "JD", "9", "buyer requested JD"),
    (cn("上海"), DEFAULT_CARRIER_RULES, "DHL", "STO", "4.5",
     "buyer requested 'DHL', not a known courier (unknown_courier, ignored); "
     "default courier for jzh"),
    (cn("上海"), OFFERS_NO_JD, "JD", "STO", "4.5",
     "buyer requested JD, which is not offered (courier_not_offered, ignored); "
     "default courier for jzh"),
    # The handbook's default: only STO is offered, so a request for SF falls back to it.
    (cn("上海"), DEFAULT_CARRIER_RULES, "顺丰", "STO", "4.5",
     "buyer requested SF, which is not offered (courier_not_offered, ignored); "
     "default courier for jzh"),
    (cn("上海"), DEFAULT_CARRIER_RULES, "STO", "STO", "4.5", "buyer requested STO"),
    (cn("西藏", "拉萨"), REMOTE_BY_EMS, None, "EMS", "12.5", "region override for remote"),
    (cn("江苏"), REMOTE_BY_EMS, None, "STO", "4.5", "default courier for jzh"),
    (cn("西藏"), REMOTE_BY_EMS, "SF", "SF", "21", "buyer requested SF"),  # the buyer wins
    (US, DEFAULT_CARRIER_RULES, None, "EMS", None, "international carrier for US"),
    (US, ALL, "SF", "SF", None, "buyer requested SF"),
    # EMS is not on the default list, yet abroad it is always there (no other courier goes).
    (US, DEFAULT_CARRIER_RULES, "EMS", "EMS", None, "buyer requested EMS"),
    (cn("上海"), DEFAULT_CARRIER_RULES, "EMS", "STO", "4.5",
     "buyer requested EMS, which is not offered (courier_not_offered, ignored); "
     "default courier for jzh"),
    (US, PRICED_ABROAD, None, "EMS", "90", "international carrier for US"),
])
def test_choose_carrier(address: Address, rules: CarrierRules, requested: str | None,
                        carrier: str, cost: str | None, reason: str) -> None:
    choice = choose_carrier(address, rules, requested)
    assert choice.carrier_code == carrier
    assert choice.region is region_of(address)
    assert choice.expected_cost == (None if cost is None else Decimal(cost))
    assert choice.currency == "CNY"
    assert choice.reason == reason


@pytest.mark.parametrize(("address", "low", "high"), [
    (cn("浙江", "杭州"), "4", "5"),
    (cn("广东", "深圳"), "8", "10"),
    (cn("河南", "周口"), "10", "15"),
    (cn("新疆", "乌鲁木齐"), "10", "15"),
])
def test_expected_costs_stay_in_the_handbook_ranges(address: Address, low: str,
                                                    high: str) -> None:
    default = choose_carrier(address, DEFAULT_CARRIER_RULES)
    assert default.expected_cost is not None
    assert Decimal(low) <= default.expected_cost <= Decimal(high)
    sf = choose_carrier(address, ALL, "SF").expected_cost
    assert sf is not None and sf > Decimal(high)  # the most expensive courier


@pytest.mark.parametrize(("text", "carrier"), [
    ("STO", Carrier.STO), ("申通快递", Carrier.STO), ("Yunda Express", Carrier.YUNDA),
    ("中通", Carrier.ZTO), ("China Post", Carrier.EMS), ("fedex", None), ("", None),
])
def test_carrier_names(text: str, carrier: Carrier | None) -> None:
    assert carrier_named(text) is carrier


def test_cost_range_expected_defaults_to_the_midpoint_and_stays_in_range() -> None:
    assert CostRange.model_validate_json('{"low": "4", "high": "5"}').expected == Decimal("4.5")
    assert CostRange.model_validate({"low": 4, "high": 5, "expected": 4}).expected == 4
    with pytest.raises(ValidationError, match="low <= expected <= high"):
        CostRange.model_validate({"low": 5, "high": 4})
    with pytest.raises(ValidationError):
        CostRange.model_validate({"low": "cheap", "high": 4})


@pytest.mark.parametrize(("json_text", "message"), [
    ('{"costs": {"jzh": {"low": 4, "high": 5}}}', "missing"),
    ('{"offered_carriers": ["SF", "EMS"]}', "not offered"),
    ('{"region_carriers": {"remote": "DHL"}}', "remote"),
    ('{"default_courier": "SF"}', "Extra inputs"),  # typos are errors, not silently ignored
])
def test_carrier_rules_reject_inconsistent_configuration(json_text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CarrierRules.model_validate_json(json_text)


def test_only_the_default_courier_is_offered_by_default_and_ems_abroad_always() -> None:
    assert DEFAULT_CARRIER_RULES.offered_carriers == {Carrier.STO}
    assert DEFAULT_CARRIER_RULES.choosable() == (Carrier.EMS, Carrier.STO)
    assert all(DEFAULT_CARRIER_RULES.offered(Carrier.EMS, region) is (
        region is Region.INTERNATIONAL) for region in Region)
    # An operator may drop EMS from a longer list: abroad still goes with it.
    only_sf = CarrierRules.model_validate_json(
        '{"default_carrier": "SF", "offered_carriers": ["SF"]}')
    assert choose_carrier(US, only_sf).carrier_code is Carrier.EMS
    assert choose_carrier(cn("上海"), only_sf).carrier_code is Carrier.SF
    # Moving the default alone offers the new default alone.
    yto = CarrierRules.model_validate_json('{"default_carrier": "YTO"}')
    assert yto.offered_carriers == {Carrier.YTO}


@pytest.mark.parametrize(("requested", "address", "fallback"), [
    ("SF", cn("上海"), "courier_not_offered"), ("DHL", cn("上海"), "unknown_courier"),
    ("EMS", US, None), ("EMS", cn("北京"), "courier_not_offered"), ("申通", cn("上海"), None),
    (None, cn("上海"), None),
])
def test_a_request_the_rules_cannot_honour_says_why(requested: str | None, address: Address,
                                                    fallback: str | None) -> None:
    choice = choose_carrier(address, DEFAULT_CARRIER_RULES, requested)
    assert choice.fallback == fallback
    assert (fallback or "") in choice.reason


def test_carrier_rules_round_trip_through_json() -> None:
    text = DEFAULT_CARRIER_RULES.model_dump_json()
    assert CarrierRules.model_validate_json(text) == DEFAULT_CARRIER_RULES
    assert CarrierRules.model_validate_json(text).model_dump_json() == text  # stable order
    assert CarrierRules.model_validate_json(REMOTE_BY_EMS.model_dump_json()) == REMOTE_BY_EMS


def test_an_operator_written_rule_file_loads() -> None:
    rules = CarrierRules.model_validate_json("""{
        "default_carrier": "YTO",
        "offered_carriers": ["YTO", "SF", "EMS"],
        "region_carriers": {"remote": "EMS"},
        "carrier_costs": {"SF": {"jzh": {"low": "12", "high": "14", "expected": "12.5"}}},
        "regions": {"remote_provinces": ["新疆", "XZ", "Qinghai"]}
    }""")
    assert rules.regions.remote_provinces == {"XJ", "YZ", "QH"}
    assert choose_carrier(cn("江苏"), rules).carrier_code is Carrier.YTO
    assert choose_carrier(cn("江苏"), rules, "SF").expected_cost == Decimal("12.5")
    assert choose_carrier(cn("北京"), rules, "SF").expected_cost == Decimal("9")  # no SF price
    assert choose_carrier(cn("青海"), rules).carrier_code is Carrier.EMS


# Ship-by ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("paid", "deadline"), [
    (local(MON, 0, 0), local(MON, 11)),
    (local(MON, 8, 59), local(MON, 11)),
    (local(MON, 9, 0), local(MON, 11)),  # exactly the minimum handling time before
    (local(MON, 9, 0, 1), local(MON, 15)),  # one second too late
    (local(MON, 12, 59), local(MON, 15)),
    (local(MON, 13, 0), local(MON, 15)),
    (local(MON, 13, 0, 1), local(MON, 19, 30)),
    (local(MON, 17, 29), local(MON, 19, 30)),
    (local(MON, 17, 30), local(MON, 19, 30)),
    (local(MON, 17, 30, 1), local(TUE, 11)),  # late evening: next day's first cut-off
    (local(MON, 22, 0), local(TUE, 11)),
    (local(MON, 23, 59, 59), local(TUE, 11)),
    (local(date(2026, 12, 31), 21), local(date(2027, 1, 1), 11)),  # across the year
    (local(date(2026, 7, 1), 9), local(date(2026, 7, 1), 11)),  # summer: still UTC+8
])
def test_ship_by_around_each_cutoff(paid: datetime, deadline: datetime) -> None:
    result = ship_by(paid, DEFAULT_DISPATCH_RULES)
    assert result == deadline
    assert result.tzinfo is UTC


def test_ship_by_uses_utc_offsets_not_wall_times() -> None:
    assert ship_by(datetime(2026, 1, 15, 1, 0, tzinfo=UTC), DEFAULT_DISPATCH_RULES) == \
        datetime(2026, 1, 15, 3, 0, tzinfo=UTC)  # paid 09:00 local, ships 11:00 local
    in_new_york = local(MON, 20, zone=ZoneInfo("America/New_York"))  # Tue 09:00 in Shanghai
    assert ship_by(in_new_york, DEFAULT_DISPATCH_RULES) == local(TUE, 11)


def test_ship_by_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        ship_by(datetime(2026, 3, 2, 9), DEFAULT_DISPATCH_RULES)


HOLIDAY_TUESDAY = DispatchRules(holidays=frozenset({TUE}))
SUNDAYS_OFF = DispatchRules(non_working_weekdays=frozenset({"sun"}))
LONG_BREAK = DispatchRules(non_working_weekdays=frozenset({"sat", "sun"}),
                           holidays=frozenset({NEXT_MON, NEXT_MON + timedelta(days=1)}))


@pytest.mark.parametrize(("rules", "paid", "deadline"), [
    (HOLIDAY_TUESDAY, local(MON, 20), local(WED, 11)),
    (HOLIDAY_TUESDAY, local(TUE, 8), local(WED, 11)),  # paid on the holiday itself
    (HOLIDAY_TUESDAY, local(MON, 17), local(MON, 19, 30)),
    (SUNDAYS_OFF, local(SAT, 20), local(NEXT_MON, 11)),
    (SUNDAYS_OFF, local(SAT, 17), local(SAT, 19, 30)),
    (SUNDAYS_OFF, local(SUN, 12), local(NEXT_MON, 11)),
    (LONG_BREAK, local(MON + timedelta(days=4), 18), local(NEXT_MON + timedelta(days=2), 11)),
])
def test_ship_by_skips_days_off(rules: DispatchRules, paid: datetime, deadline: datetime) -> None:
    assert ship_by(paid, rules) == deadline


@pytest.mark.parametrize(("rules", "marked", "deadline"), [
    (DEFAULT_DISPATCH_RULES, local(MON, 9), local(TUE, 19, 30)),
    (DEFAULT_DISPATCH_RULES, local(MON, 23, 59), local(TUE, 19, 30)),  # the local day counts
    (HOLIDAY_TUESDAY, local(MON, 9), local(WED, 19, 30)),
    (SUNDAYS_OFF, local(SAT, 10), local(NEXT_MON, 19, 30)),
])
def test_a_stock_up_ships_by_the_next_working_days_last_cutoff(
        rules: DispatchRules, marked: datetime, deadline: datetime) -> None:
    assert stock_up_ship_by(marked, rules) == deadline


BERLIN = ZoneInfo("Europe/Berlin")
BERLIN_RULES = DispatchRules(timezone="Europe/Berlin", cutoffs=(time(16), time(10)),
                             min_handling=timedelta(minutes=90))


@pytest.mark.parametrize(("paid", "deadline"), [
    (local(date(2026, 3, 27), 8, 30, zone=BERLIN), local(date(2026, 3, 27), 10, zone=BERLIN)),
    (local(date(2026, 3, 27), 8, 31, zone=BERLIN), local(date(2026, 3, 27), 16, zone=BERLIN)),
    # The clocks go forward overnight: 10:00 on the Sunday is 08:00 UTC, not 09:00.
    (local(date(2026, 3, 28), 17, zone=BERLIN), datetime(2026, 3, 29, 8, tzinfo=UTC)),
    (local(date(2026, 10, 24), 17, zone=BERLIN), datetime(2026, 10, 25, 9, tzinfo=UTC)),
])
def test_ship_by_in_another_time_zone(paid: datetime, deadline: datetime) -> None:
    assert ship_by(paid, BERLIN_RULES) == deadline


@pytest.mark.parametrize(("rules", "paid", "presale", "deadline"), [
    (DEFAULT_DISPATCH_RULES, local(MON, 9), date(2026, 4, 15), local(date(2026, 4, 15), 19, 30)),
    (DEFAULT_DISPATCH_RULES, local(MON, 9), MON, local(MON, 19, 30)),  # later than the 11:00 rule
    (HOLIDAY_TUESDAY, local(MON, 9), TUE, local(MON, 19, 30)),  # day off: ship before it
    (SUNDAYS_OFF, local(MON, 9), SUN, local(SAT, 19, 30)),
    (DEFAULT_DISPATCH_RULES, local(MON, 18), MON, local(TUE, 11)),  # too late for the date
    (DEFAULT_DISPATCH_RULES, local(MON, 9), date(2026, 1, 1), local(MON, 11)),  # date has passed
])
def test_presale_ships_by_its_own_date(rules: DispatchRules, paid: datetime, presale: date,
                                       deadline: datetime) -> None:
    assert ship_by(paid, rules, presale_ship_date=presale) == deadline


def test_acceptance_deadlines_follow_the_factory_contract() -> None:
    offered = local(MON, 17, 45)
    alert_at, deemed_accepted_at = acceptance_deadlines(offered, DEFAULT_DISPATCH_RULES)
    assert alert_at == offered + timedelta(hours=24) and alert_at.tzinfo is UTC
    assert deemed_accepted_at == offered + timedelta(hours=72)
    rules = DispatchRules.model_validate_json(
        '{"confirm_within": "PT12H", "deemed_accepted_after": "PT48H"}')
    deadlines = acceptance_deadlines(offered, rules)
    assert deadlines.alert_at == offered + timedelta(hours=12)
    assert deadlines.deemed_accepted_at == offered + timedelta(hours=48)
    with pytest.raises(ValueError, match="naive"):
        acceptance_deadlines(datetime(2026, 3, 2), DEFAULT_DISPATCH_RULES)


def test_dispatch_rules_round_trip_through_json() -> None:
    rules = DispatchRules.model_validate_json("""{
        "timezone": "Asia/Tokyo", "cutoffs": ["19:30", "11:00", "11:00"],
        "min_handling": "PT90M", "non_working_weekdays": ["sun", "sat"],
        "holidays": ["2026-10-02", "2026-10-01"]
    }""")
    assert rules.cutoffs == (time(11), time(19, 30))  # sorted, duplicates dropped
    assert rules.min_handling == timedelta(minutes=90)
    text = rules.model_dump_json()
    assert DispatchRules.model_validate_json(text) == rules
    assert '"non_working_weekdays":["sat","sun"]' in text
    assert DispatchRules.model_validate_json(DEFAULT_DISPATCH_RULES.model_dump_json()) == \
        DEFAULT_DISPATCH_RULES


@pytest.mark.parametrize(("json_text", "message"), [
    ('{"timezone": "Mars/Olympus"}', "unknown time zone"),
    ('{"cutoffs": []}', "at least one cut-off"),
    ('{"non_working_weekdays": ["mon","tue","wed","thu","fri","sat","sun"]}', "working day"),
    ('{"non_working_weekdays": ["sunday"]}', "sun"),
    ('{"min_handling": "-PT1H"}', "negative"),
    ('{"confirm_within": "PT96H"}', "confirm_within"),
])
def test_dispatch_rules_reject_bad_configuration(json_text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DispatchRules.model_validate_json(json_text)


# Property: a deadline is always a configured cut-off, never too early, and the first one. Zones
# without DST only: a cut-off inside a DST gap cannot exist as a wall-clock time.
@st.composite
def dispatch_rules(draw: st.DrawFn) -> DispatchRules:
    minutes = draw(st.sets(st.integers(0, 24 * 60 - 1), min_size=1, max_size=4))
    days_off = draw(st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
                            max_size=6))
    holidays = draw(st.sets(st.integers(0, 12), max_size=6))
    return DispatchRules.model_validate({
        "timezone": draw(st.sampled_from(["Asia/Shanghai", "Asia/Tokyo", "UTC"])),
        "cutoffs": [time(m // 60, m % 60) for m in minutes],
        "min_handling": timedelta(minutes=draw(st.integers(0, 48 * 60))),
        "non_working_weekdays": days_off,
        "holidays": [MON + timedelta(days=n) for n in holidays],
    })


@given(rules=dispatch_rules(),
       paid=st.datetimes(min_value=datetime(2026, 2, 20), max_value=datetime(2026, 3, 20),
                         timezones=st.just(UTC)))
def test_ship_by_is_the_first_cutoff_after_minimum_handling(rules: DispatchRules,
                                                            paid: datetime) -> None:
    result = ship_by(paid, rules)
    earliest = paid + rules.min_handling
    assert result >= earliest
    in_zone = result.astimezone(rules.zone)
    assert in_zone.time() in rules.cutoffs
    assert rules.is_working_day(in_zone.date())
    day = earliest.astimezone(rules.zone).date()
    earlier = [
        datetime.combine(day + timedelta(days=n), cut, tzinfo=rules.zone)
        for n in range((in_zone.date() - day).days + 1) for cut in rules.cutoffs
        if rules.is_working_day(day + timedelta(days=n))
    ]
    assert not [moment for moment in earlier if earliest <= moment < result]
