"""What a shipment's electronic waybills cost, for the shipment record: each number's price as
its provider answered at issue, else the courier's tariff (warehouse/tariffs.py) to the job's
cost region for the package's share of the packed weight. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from chalicelib.warehouse.jobs import Job, Package
from chalicelib.warehouse.regions import Region
from chalicelib.warehouse.tariffs import CENT, TariffRules

DEFAULT_PACKAGE_GRAMS = 500  # what the print gate declares when the job was not weighed yet


def shipment_cost(job: Job, packages: Sequence[Package], rules: TariffRules) -> Decimal | None:
    """The cost of the packages whose numbers were issued at print; None when none was (the
    factory brought its own numbers) or one cannot be priced (no figure beats a wrong one)."""
    printed = job.printed
    issued = [p for p in packages
              if printed is not None and p.tracking_number in printed.waybill_numbers]
    if printed is None or not issued:
        return None
    grams = job.weight_grams or DEFAULT_PACKAGE_GRAMS * len(packages)
    share_kg = Decimal(grams) / 1000 / len(packages)
    total = Decimal(0)
    for package in issued:
        quoted = printed.waybill_costs.get(package.tracking_number)
        price = Decimal(quoted) if quoted is not None else _tariff(package, job, share_kg, rules)
        if price is None:
            return None
        total += price
    return total.quantize(CENT)


def _tariff(package: Package, job: Job, weight_kg: Decimal,
            rules: TariffRules) -> Decimal | None:
    try:
        region = Region(job.carrier.region)
    except ValueError:
        return None
    return rules.price(package.carrier_code, region, weight_kg)
