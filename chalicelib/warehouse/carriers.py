"""Couriers: which one takes a parcel, and what it is expected to cost. Pure: no I/O.

A known, offered courier the buyer asked for wins; otherwise the rule table decides: the
international courier abroad, a per-region override, else the default courier (STO). Only the
default courier is offered until an operator lists more (the handbook starts with one); the
international courier is always available abroad, whatever the list says, because an address
abroad has no other courier to fall back to. A request the rules cannot honour falls back to the
table and says why in `fallback` (`unknown_courier`, `courier_not_offered`). Costs are
ranges per destination region (chalicelib/warehouse/regions.py); every figure is a default an
operator overrides from JSON (`CarrierRules.model_validate_json(text)`).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from chalicelib.orders.order import Address
from chalicelib.warehouse.regions import (
    DEFAULT_REGION_RULES,
    Region,
    RegionRules,
    normalise_name,
    region_of,
)


class Carrier(StrEnum):
    """A courier, by our carrier code (what a job and a tracked parcel carry)."""

    STO = "STO"
    SF = "SF"
    YTO = "YTO"
    ZTO = "ZTO"
    YUNDA = "YUNDA"
    JD = "JD"
    EMS = "EMS"


class CostRange(BaseModel):
    """Expected cost of one parcel, CNY. `expected` defaults to the midpoint of the range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: Decimal = Field(ge=0)
    high: Decimal = Field(ge=0)
    expected: Decimal

    @model_validator(mode="before")
    @classmethod
    def _midpoint_by_default(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("expected") is not None:
            return data
        try:
            midpoint = (Decimal(str(data["low"])) + Decimal(str(data["high"]))) / 2
        except (KeyError, ArithmeticError, ValueError):
            return data  # the field validators say what is wrong
        return {**data, "expected": midpoint}

    @model_validator(mode="after")
    def _ordered(self) -> CostRange:
        if not self.low <= self.expected <= self.high:
            raise ValueError("need low <= expected <= high")
        return self


def cost_range(low: str, high: str) -> CostRange:
    """A range with its midpoint as the expected cost."""
    return CostRange.model_validate({"low": Decimal(low), "high": Decimal(high)})


_DOMESTIC = (Region.JZH, Region.TIER12, Region.REMOTE)

# The handbook's figures for the default courier (STO); YTO, ZTO, YUNDA, JD and EMS use them too
# until an operator loads contract prices.
DEFAULT_COSTS = {
    Region.JZH: cost_range("4", "5"),
    Region.TIER12: cost_range("8", "10"),
    Region.REMOTE: cost_range("10", "15"),
}
# SF is "the most expensive": placeholder estimates above every STO band, to be replaced by the
# contract price.
SF_COSTS = {
    Region.JZH: cost_range("10", "13"),
    Region.TIER12: cost_range("13", "18"),
    Region.REMOTE: cost_range("18", "24"),
}

_CARRIER_NAMES: dict[Carrier, tuple[str, ...]] = {
    Carrier.STO: ("STO", "STO Express", "Shentong", "申通", "申通快递"),
    Carrier.SF: ("SF", "SF Express", "Shunfeng", "顺丰", "顺丰速运"),
    Carrier.YTO: ("YTO", "YTO Express", "Yuantong", "圆通", "圆通速递"),
    Carrier.ZTO: ("ZTO", "ZTO Express", "Zhongtong", "中通", "中通快递"),
    Carrier.YUNDA: ("YUNDA", "Yunda Express", "韵达", "韵达快递"),
    Carrier.JD: ("JD", "JD Logistics", "Jingdong", "京东", "京东快递", "京东物流"),
    Carrier.EMS: ("EMS", "China Post", "邮政", "中国邮政", "邮政EMS"),
}
_CARRIER_BY_NAME = {
    normalise_name(name): carrier for carrier, names in _CARRIER_NAMES.items() for name in names
}


def carrier_named(text: str) -> Carrier | None:
    """A known courier from a code or a name a buyer might write ("sf express", "顺丰")."""
    return _CARRIER_BY_NAME.get(normalise_name(text))


class CarrierRules(BaseModel):
    """Which courier takes a parcel and what it is expected to cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_carrier: Carrier = Carrier.STO
    # Couriers the factory has accounts with: a buyer may only get one of these. The handbook
    # starts with one: unlisted, just the default courier (`_offer_the_default_by_default`).
    # The international courier is available abroad besides these.
    offered_carriers: frozenset[Carrier] = frozenset({Carrier.STO})
    # Per-region courier, e.g. {"remote": "EMS"}; none by default.
    region_carriers: dict[Region, Carrier] = Field(default_factory=dict)
    international_carrier: Carrier = Carrier.EMS
    # Cost for every courier without its own table. International has no price by default (the
    # choice's expected_cost is None); add an "international" entry here or per courier to set one.
    costs: dict[Region, CostRange] = Field(default_factory=lambda: dict(DEFAULT_COSTS))
    carrier_costs: dict[Carrier, dict[Region, CostRange]] = Field(
        default_factory=lambda: {Carrier.SF: dict(SF_COSTS)})
    currency: Literal["CNY"] = "CNY"
    regions: RegionRules = DEFAULT_REGION_RULES

    @model_validator(mode="before")
    @classmethod
    def _offer_the_default_by_default(cls, data: Any) -> Any:
        """Unlisted, the offered couriers are the default one alone (the handbook starts with
        one), so an operator who only moves the default need not list it twice."""
        if isinstance(data, dict) and "offered_carriers" not in data:
            return {**data, "offered_carriers": [data.get("default_carrier", Carrier.STO)]}
        return data

    @field_serializer("offered_carriers")
    def _sorted(self, value: frozenset[Carrier]) -> list[Carrier]:
        return sorted(value)  # stable JSON an operator can diff

    @model_validator(mode="after")
    def _consistent(self) -> CarrierRules:
        missing = [region.value for region in _DOMESTIC if region not in self.costs]
        if missing:
            raise ValueError(f"costs must cover every domestic region, missing {missing}")
        # Not the international courier: abroad it is the only way, offered or not.
        used = {self.default_carrier, *self.region_carriers.values()}
        if not used <= self.offered_carriers:
            unoffered = sorted(used - self.offered_carriers)
            raise ValueError(f"rules use couriers that are not offered: {unoffered}")
        return self

    def expected_cost(self, carrier: Carrier, region: Region) -> Decimal | None:
        """The courier's own price if it has one, else the shared table; None if unpriced."""
        cost = self.carrier_costs.get(carrier, {}).get(region)
        if cost is None:
            cost = self.costs.get(region)
        return None if cost is None else cost.expected

    def offered(self, carrier: Carrier, region: Region) -> bool:
        """May this parcel go with `carrier`: an offered one, or the international courier for
        an address abroad (there is no alternative there)."""
        return carrier in self.offered_carriers or (
            region is Region.INTERNATIONAL and carrier is self.international_carrier)

    def choosable(self) -> tuple[Carrier, ...]:
        """Every courier CS may pick for some parcel, in a stable order (the console's list)."""
        return tuple(sorted(self.offered_carriers | {self.international_carrier}))


DEFAULT_CARRIER_RULES = CarrierRules()


# Why a requested courier was not used (the job keeps it; the API answers 422 with it).
Fallback = Literal["unknown_courier", "courier_not_offered"]


class CarrierChoice(BaseModel):
    model_config = ConfigDict(frozen=True)

    carrier_code: Carrier
    region: Region
    expected_cost: Decimal | None  # None: international without a configured price
    currency: Literal["CNY"] = "CNY"
    reason: str
    fallback: Fallback | None = None  # a request the rule table overrode, and why


def requested_problem(requested: str, region: Region,
                      rules: CarrierRules) -> tuple[Carrier | None, Fallback | None]:
    """The courier a request names and why it cannot be used (None: it can)."""
    carrier = carrier_named(requested)
    if carrier is None:
        return None, "unknown_courier"
    if not rules.offered(carrier, region):
        return carrier, "courier_not_offered"
    return carrier, None


def _requested_carrier(requested: str | None, region: Region,
                       rules: CarrierRules) -> tuple[Carrier | None, str, Fallback | None]:
    """The courier the buyer asked for if we can honour it, else a note on why it was ignored."""
    if requested is None or not requested.strip():
        return None, "", None
    carrier, problem = requested_problem(requested, region, rules)
    if carrier is None:
        return None, (f"buyer requested {requested.strip()!r}, not a known courier "
                      "(unknown_courier, ignored); "), problem
    if problem is not None:
        return None, (f"buyer requested {carrier.value}, which is not offered "
                      "(courier_not_offered, ignored); "), problem
    return carrier, "", None


def _rule_carrier(address: Address, region: Region, rules: CarrierRules) -> tuple[Carrier, str]:
    if region is Region.INTERNATIONAL:
        country = address.country_code.strip().upper() or "unknown country"
        return rules.international_carrier, f"international carrier for {country}"
    if region in rules.region_carriers:
        return rules.region_carriers[region], f"region override for {region.value}"
    return rules.default_carrier, f"default courier for {region.value}"


def choose_carrier(address: Address, rules: CarrierRules,
                   requested: str | None = None) -> CarrierChoice:
    """A known, offered courier the buyer asked for wins; otherwise the rule table decides."""
    region = region_of(address, rules.regions)
    carrier, note, fallback = _requested_carrier(requested, region, rules)
    if carrier is not None:
        reason = f"buyer requested {carrier.value}"
    else:
        carrier, reason = _rule_carrier(address, region, rules)
        reason = note + reason
    return CarrierChoice(carrier_code=carrier, region=region, currency=rules.currency,
                         expected_cost=rules.expected_cost(carrier, region), reason=reason,
                         fallback=fallback)
