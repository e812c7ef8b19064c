"""Reference client for the brand's warehouse job API, and a simulated factory built on it.

    from partner_client import WarehouseClient, WarehouseError
    client = WarehouseClient("https://api.example.com", "<partner key>")
    offer = client.claim(max_jobs=10)

Command line: `python -m partner_client --help`.
"""

from partner_client.client import (
    Change,
    ChangeEntry,
    ChangePage,
    Claim,
    Job,
    JobPage,
    Package,
    PackedItem,
    WarehouseClient,
    WarehouseError,
    Wave,
    new_shipment_id,
)
from partner_client.factory import SimulatedFactory

__all__ = [
    "Change",
    "ChangeEntry",
    "ChangePage",
    "Claim",
    "Job",
    "JobPage",
    "Package",
    "PackedItem",
    "SimulatedFactory",
    "WarehouseClient",
    "WarehouseError",
    "Wave",
    "new_shipment_id",
]
