"""Which waybill provider serves a package: configuration by marketplace and courier
(WAYBILL_RULES_JSON, read with core.settings.rules_from_env), and the one table of providers.

Default: Taobao/Tmall orders go through Cainiao and Douyin orders through Douyin's e-waybill
(their receivers are encrypted: only the platform's channel can label them), everything else
through Kuaidi100; the courier is the job's (the carrier rules, a buyer's requested courier
included) or else the handbook's default, STO.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core.settings import rules_from_env
from chalicelib.warehouse.waybills.cainiao import CainiaoWaybills
from chalicelib.warehouse.waybills.contract import Party, Provider, WaybillError
from chalicelib.warehouse.waybills.douyin_waybill import DouyinWaybills
from chalicelib.warehouse.waybills.kuaidi100 import Kuaidi100Waybills

RULES_VARIABLE = "WAYBILL_RULES_JSON"
PROVIDERS: dict[str, Callable[[Mapping[str, str]], Provider]] = {
    "kuaidi100": Kuaidi100Waybills,
    "cainiao": CainiaoWaybills,
    "douyin": DouyinWaybills,
}
# The platforms whose receivers arrive encrypted: their channel is not a choice.
ENCRYPTED = {"taobao": "cainiao", "tmall": "cainiao", "douyin": "douyin"}


class Route(BaseModel):
    """One rule: "*" matches any marketplace or courier; the first matching route wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    marketplace: str = "*"
    courier: str = "*"
    provider: str

    def matches(self, marketplace: str, courier: str) -> bool:
        return (self.marketplace in ("*", marketplace)
                and self.courier.upper() in ("*", courier.upper()))


class WaybillRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    routes: tuple[Route, ...] = tuple(Route(marketplace=m, provider=p)
                                      for m, p in ENCRYPTED.items())
    default_provider: str = "kuaidi100"
    default_courier: str = Field(default="STO", min_length=2)
    # Where parcels leave from (the factory's warehouse); issuing at the print gate is on once
    # it is set.
    sender: Party | None = None


def rules() -> WaybillRules:
    return rules_from_env(WaybillRules, RULES_VARIABLE)


def courier_for(courier: str | None, rules: WaybillRules) -> str:
    return (courier or rules.default_courier).upper()


def provider_for(marketplace: str, courier: str | None, rules: WaybillRules) -> str:
    """The provider's name for a package of this marketplace and courier."""
    chosen = courier_for(courier, rules)
    name = next((r.provider for r in rules.routes if r.matches(marketplace.lower(), chosen)),
                rules.default_provider)
    required = ENCRYPTED.get(marketplace.lower())
    if required is not None and name != required:
        # A configuration that sends an encrypted receiver elsewhere cannot print a label.
        raise WaybillError("account", name, f"{marketplace} needs {required}")
    if name not in PROVIDERS:
        raise WaybillError("account", name, "unknown provider")
    return name


def provider(name: str, account: Mapping[str, str]) -> Provider:
    """The provider configured with its account (credentials from SSM, read by the flow)."""
    try:
        return PROVIDERS[name](account)
    except KeyError:
        raise WaybillError("account", name, "unknown provider or missing setting") from None
