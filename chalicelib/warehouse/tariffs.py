"""Courier tariffs: what a parcel should cost, by courier, destination region and billed weight.
Pure: no I/O.

Couriers price a parcel by its first weight (首重, e.g. the first kilogram, one price) and each
further step of additional weight (续重, e.g. per kilogram, rounded up). The handbook gives only
ranges per region (domain.md: JZH 4–5 CNY, first- and second-tier cities 8–10, third-tier and
remote 10–15); the defaults read them as "the low end for a 1 kg parcel, the high end for a
2 kg one": first weight = low, each further kilogram = high − low. An operator overrides any
figure, per courier, from JSON (`TARIFF_RULES_JSON`, `core/settings.rules_from_env`) once the
contract prices are known.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.core.settings import rules_from_env
from chalicelib.warehouse.carriers import DEFAULT_COSTS, SF_COSTS, Carrier, CostRange
from chalicelib.warehouse.regions import Region

TARIFF_RULES_VARIABLE = "TARIFF_RULES_JSON"
_DOMESTIC = (Region.JZH, Region.TIER12, Region.REMOTE)
CENT = Decimal("0.01")


class Tariff(BaseModel):
    """One courier's price to one region: first weight, then per step of additional weight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_weight_kg: Decimal = Field(default=Decimal("1"), gt=0)
    first_price: Decimal = Field(ge=0)
    step_kg: Decimal = Field(default=Decimal("1"), gt=0)
    step_price: Decimal = Field(ge=0)

    def price(self, weight_kg: Decimal) -> Decimal:
        """The price of a parcel of this billed weight: couriers round each started step up."""
        extra = max(weight_kg - self.first_weight_kg, Decimal(0))
        steps = (extra / self.step_kg).to_integral_value(rounding=ROUND_CEILING)
        return (self.first_price + steps * self.step_price).quantize(CENT)


def tariff_from_range(cost: CostRange) -> Tariff:
    """The handbook's range as a tariff: the low end for the first kilogram, the high end
    for two (each further kilogram costs high − low)."""
    return Tariff(first_price=cost.low, step_price=cost.high - cost.low)


def _tariffs(costs: dict[Region, CostRange]) -> dict[Region, Tariff]:
    return {region: tariff_from_range(cost) for region, cost in costs.items()}


class Tolerance(BaseModel):
    """How far above the tariff a billed fee may be before it is flagged: the larger of an
    amount and a share of the tariff (rounding, fuel surcharges a contract allows)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Decimal = Field(default=Decimal("0.50"), ge=0)
    share: Decimal = Field(default=Decimal("0.05"), ge=0)

    def allowed(self, expected: Decimal) -> Decimal:
        return max(self.amount, (expected * self.share).quantize(CENT))


class TariffRules(BaseModel):
    """Tariffs for every courier: its own table if it has one, else the shared one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tariffs: dict[Region, Tariff] = Field(default_factory=lambda: _tariffs(DEFAULT_COSTS))
    carrier_tariffs: dict[Carrier, dict[Region, Tariff]] = Field(
        default_factory=lambda: {Carrier.SF: _tariffs(SF_COSTS)})
    tolerance: Tolerance = Tolerance()
    # Surcharges (insurance, remote delivery, ...) are billed beside the fee; by default they
    # count against the tariff, so an unexplained one is an overcharge.
    surcharges_count: bool = True
    currency: Literal["CNY"] = "CNY"

    @model_validator(mode="after")
    def _covers_domestic(self) -> TariffRules:
        missing = [region.value for region in _DOMESTIC if region not in self.tariffs]
        if missing:
            raise ValueError(f"tariffs must cover every domestic region, missing {missing}")
        return self

    def tariff(self, carrier: Carrier | str, region: Region) -> Tariff | None:
        """The courier's own tariff to the region, else the shared one; None: unpriced
        (international without a configured price)."""
        known = carrier if isinstance(carrier, Carrier) else _carrier(carrier)
        own = self.carrier_tariffs.get(known, {}) if known is not None else {}
        return own.get(region) or self.tariffs.get(region)

    def price(self, carrier: Carrier | str, region: Region, weight_kg: Decimal) -> Decimal | None:
        tariff = self.tariff(carrier, region)
        return None if tariff is None else tariff.price(weight_kg)


def _carrier(code: str) -> Carrier | None:
    try:
        return Carrier(code.upper())
    except ValueError:
        return None


DEFAULT_TARIFF_RULES = TariffRules()


def tariff_rules() -> TariffRules:
    """The stage's tariffs: the defaults, or TARIFF_RULES_JSON."""
    return rules_from_env(TariffRules, TARIFF_RULES_VARIABLE)
