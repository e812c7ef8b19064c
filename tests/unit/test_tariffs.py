"""Courier tariffs: first weight and additional weight per courier and region."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from chalicelib.warehouse.carriers import Carrier
from chalicelib.warehouse.regions import Region
from chalicelib.warehouse.tariffs import (
    DEFAULT_TARIFF_RULES,
    TARIFF_RULES_VARIABLE,
    Tariff,
    TariffRules,
    tariff_rules,
)

D = Decimal


@pytest.mark.parametrize(("region", "one_kg", "two_kg"), [
    (Region.JZH, "4.00", "5.00"), (Region.TIER12, "8.00", "10.00"),
    (Region.REMOTE, "10.00", "15.00")])
def test_defaults_span_the_handbook_ranges(region: Region, one_kg: str, two_kg: str) -> None:
    # domain.md: JZH 4–5, tier 1/2 8–10, remote 10–15 CNY: 1 kg at the low end, 2 kg at the high.
    assert DEFAULT_TARIFF_RULES.price(Carrier.STO, region, D("1")) == D(one_kg)
    assert DEFAULT_TARIFF_RULES.price(Carrier.STO, region, D("2")) == D(two_kg)


def test_additional_weight_rounds_each_started_step_up() -> None:
    tariff = Tariff(first_price=D("4"), step_price=D("1.5"), step_kg=D("0.5"))
    assert tariff.price(D("0.3")) == D("4.00")  # under the first weight
    assert tariff.price(D("1.0")) == D("4.00")
    assert tariff.price(D("1.01")) == D("5.50")  # one started half-kilo step
    assert tariff.price(D("2.2")) == D("8.50")  # 1.2 kg over: three steps


def test_a_courier_with_its_own_table_wins_and_others_share_the_default() -> None:
    assert DEFAULT_TARIFF_RULES.price("SF", Region.JZH, D("1")) == D("10.00")
    assert DEFAULT_TARIFF_RULES.price("YTO", Region.JZH, D("1")) == D("4.00")
    assert DEFAULT_TARIFF_RULES.price("NOSUCH", Region.TIER12, D("1")) == D("8.00")
    assert DEFAULT_TARIFF_RULES.price("STO", Region.INTERNATIONAL, D("1")) is None


def test_tolerance_is_the_larger_of_an_amount_and_a_share() -> None:
    tolerance = DEFAULT_TARIFF_RULES.tolerance
    assert tolerance.allowed(D("4")) == D("0.50")
    assert tolerance.allowed(D("20")) == D("1.00")


def test_operator_overrides_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TARIFF_RULES_VARIABLE, '{"tariffs": {'
                       '"jzh": {"first_price": "3", "step_price": "1"},'
                       '"tier12": {"first_price": "6", "step_price": "3"},'
                       '"remote": {"first_price": "12", "step_price": "8"}},'
                       '"carrier_tariffs": {"STO": {"remote": '
                       '{"first_price": "11", "step_price": "6", "step_kg": "0.5"}}}}')
    rules = tariff_rules()
    assert rules.price("STO", Region.REMOTE, D("1.4")) == D("17.00")
    assert rules.price("ZTO", Region.REMOTE, D("1.4")) == D("20.00")
    assert rules.price("SF", Region.JZH, D("1")) == D("3.00")  # the override replaced SF's


def test_rules_must_price_every_domestic_region() -> None:
    with pytest.raises(ValidationError, match="remote"):
        TariffRules(tariffs={Region.JZH: Tariff(first_price=D(4), step_price=D(1)),
                             Region.TIER12: Tariff(first_price=D(8), step_price=D(2))})
    with pytest.raises(ValidationError):
        Tariff(first_price=D("-1"), step_price=D("1"))
