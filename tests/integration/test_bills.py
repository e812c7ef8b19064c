"""A courier's monthly bill reconciled against parcels in the local stack: a sample STO bill
with planted overcharges, foreign waybills, a duplicate and missing parcels; each planted line
is found and nothing else is flagged; importing it again changes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.admin import cli as admin
from chalicelib.core import aws
from chalicelib.core.dynamodb import transact
from chalicelib.core.settings import settings
from chalicelib.flows import bills
from chalicelib.tracking import parcel_store
from chalicelib.tracking.model import Journey
from chalicelib.tracking.parcels import Parcel
from chalicelib.tracking.watch import Watch
from chalicelib.warehouse import bill_store
from chalicelib.warehouse.bills import BillError, bill_id_of
from chalicelib.warehouse.regions import Region

BILLS = Path(__file__).resolve().parents[1] / "fixtures" / "bills"
PLANTED = (BILLS / "sto_2025-03_planted.csv").read_bytes()
NOW = datetime(2025, 4, 3, 2, 0, tzinfo=UTC)
D = Decimal

# number suffix -> (carrier, handed over (UTC), routed region)
PARCELS = {
    "01": ("STO", datetime(2025, 3, 3, 8, 41, tzinfo=UTC), "jzh"),
    "02": ("STO", datetime(2025, 3, 4, 9, 12, tzinfo=UTC), "tier12"),
    "03": ("STO", datetime(2025, 3, 5, 7, 20, tzinfo=UTC), "remote"),  # planted: surcharge over
    "04": ("STO", datetime(2025, 3, 7, 8, 8, tzinfo=UTC), "tier12"),  # planted: 12 for 0.8 kg
    "05": ("STO", datetime(2025, 3, 10, 8, 55, tzinfo=UTC), "jzh"),  # planted: billed twice
    "06": ("STO", datetime(2025, 3, 14, 9, 30, tzinfo=UTC), ""),  # old parcel: bill's Chengdu
    "07": ("STO", datetime(2025, 3, 18, 8, 21, tzinfo=UTC), "remote"),  # ours says remote: 10 ok
    "08": ("STO", datetime(2025, 3, 21, 7, 44, tzinfo=UTC), "jzh"),  # 4.40: within tolerance
    "09": ("STO", datetime(2025, 3, 22, 8, 0, tzinfo=UTC), "jzh"),  # planted: not billed
    "10": ("STO", datetime(2025, 3, 26, 8, 0, tzinfo=UTC), "tier12"),  # planted: not billed
    # 1 April in Shanghai (31 March in UTC): April's bill, not this one's.
    "11": ("STO", datetime(2025, 3, 31, 17, 0, tzinfo=UTC), "jzh"),
    # 1 March in Shanghai (28 February in UTC): this month, and billed.
    "12": ("STO", datetime(2025, 2, 28, 20, 10, tzinfo=UTC), "jzh"),
    "13": ("STO", datetime(2025, 2, 20, 8, 2, tzinfo=UTC), "jzh"),  # February, billed late
    "14": ("YTO", datetime(2025, 3, 12, 8, 0, tzinfo=UTC), "jzh"),  # another courier's
}


def number(suffix: str) -> str:
    return f"7735000000{suffix}"


def parcel(suffix: str) -> Parcel:
    carrier, at, region = PARCELS[suffix]
    n = number(suffix)
    return Parcel(carrier_code=carrier, tracking_number=n, provider="kuaidi100",
                  order_id=f"ord_bill{suffix}", order_name=f"#B{suffix}", marketplace="shopify",
                  partner_id="factory-1", job_id=f"job_bill{suffix}", shipment_id="s1",
                  region=region, started_at=at,
                  shipment=Journey(carrier_code=carrier, tracking_number=n, handed_over_at=at),
                  watch=Watch(provider="kuaidi100", can_query=True))


@pytest.fixture
def shipped(stack: dict[str, str]) -> None:
    """Our parcels of March 2025, unbilled, and no bill stored: the stack outlives the test,
    and the console's and the browser's tests import the same planted bill (a bill is known by
    its bytes, and a parcel keeps the first fee billed for it)."""
    client = aws.client("dynamodb")
    table = settings().bills_table
    for page in client.get_paginator("scan").paginate(TableName=table,
                                                       ProjectionExpression="pk, sk"):
        for item in page.get("Items", []):
            client.delete_item(TableName=table, Key=item)
    for suffix in PARCELS:
        client.delete_item(TableName=settings().shipments_table,
                           Key={"pk": {"S": parcel_store.pk(*key(suffix))}, "sk": {"S": "PARCEL"}})
    transact([parcel_store.put(parcel(s), None) for s in PARCELS])


def key(suffix: str) -> tuple[str, str]:
    return PARCELS[suffix][0], number(suffix)


def findings(bill: bill_store.StoredBill) -> list[tuple[str, str, int]]:
    return [(f.kind, f.waybill, f.line) for f in bill.findings]


PLANTED_FINDINGS = [
    ("overcharge", number("03"), 8), ("overcharge", number("04"), 9),
    ("not_ours", "773599999901", 11), ("not_ours", "773599999902", 16),
    ("duplicate", number("05"), 14),
    ("missing", number("09"), 0), ("missing", number("10"), 0)]


def test_each_planted_line_is_found_and_nothing_else(shipped: None) -> None:
    done = bills.import_bill("STO", "sto_2025-03.csv", PLANTED, "finance", NOW)
    assert done.new and done.fees_kept == 10  # our parcels on the bill, once each
    assert findings(done.bill) == PLANTED_FINDINGS
    assert done.bill.head.periods == (("STO", "2025-03"),)
    assert done.bill.head.counts == {"overcharge": 2, "not_ours": 2, "duplicate": 1,
                                     "missing": 2}
    over = done.bill.findings[0]
    assert (over.billed, over.expected, over.order_id) == (D("13.00"), D("10.00"), "ord_bill03")
    # The actual fee is on the parcel, beside the tariff's figure.
    billed = parcel_store.get(*key("04"))[0].billed  # type: ignore[index]
    assert billed is not None and (billed.billed, billed.expected, billed.line) == (
        D("12.00"), D("8.00"), 9)
    assert parcel_store.get(*key("09"))[0].billed is None  # type: ignore[index]
    # Stored as shown.
    assert bills.show_bill(done.bill.head.bill_id) == done.bill


def test_totals_per_courier_region_and_month_against_expected(shipped: None) -> None:
    bill = bills.import_bill("STO", "sto_2025-03.csv", PLANTED, "finance", NOW).bill
    totals = {(t.month, t.region): (t.lines, t.billed, t.expected) for t in bill.totals}
    assert totals == {
        ("2025-02", Region.JZH): (1, D("4.00"), D("4.00")),
        ("2025-03", Region.JZH): (5, D("22.40"), D("22.00")),  # 02:4 01:4 05:5 05:5 08:4.40
        ("2025-03", Region.TIER12): (5, D("48.00"), D("44.00")),  # 02 04 99901 06 99902
        ("2025-03", Region.REMOTE): (2, D("23.00"), D("20.00"))}  # 03 07
    assert sum(t.billed for t in bill.totals) == D("97.40")  # the bill's 合计 row


def test_importing_the_same_bill_again_changes_nothing(shipped: None) -> None:
    first = bills.import_bill("STO", "sto_2025-03.csv", PLANTED, "finance", NOW)
    versions = {s: parcel_store.get(*key(s))[1] for s in PARCELS}  # type: ignore[index]
    again = bills.import_bill("STO", "renamed.csv", PLANTED, "someone else", NOW)
    assert not again.new and again.bill == bills.show_bill(first.bill.head.bill_id)
    assert again.bill.head.filename == "sto_2025-03.csv"
    assert {s: parcel_store.get(*key(s))[1] for s in PARCELS} == versions  # type: ignore[index]
    # An import cut off before its HEAD is done again whole, to the same items and no more.
    aws.client("dynamodb").delete_item(
        TableName=settings().bills_table,
        Key={"pk": {"S": f"BILL#{first.bill.head.bill_id}"}, "sk": {"S": "HEAD"}})
    redone = bills.import_bill("STO", "sto_2025-03.csv", PLANTED, "finance", NOW)
    assert redone.new and redone.fees_kept == 0 and redone.bill == first.bill
    assert {s: parcel_store.get(*key(s))[1] for s in PARCELS} == versions  # type: ignore[index]


def test_a_bad_bill_writes_nothing(shipped: None) -> None:
    bad = PLANTED.replace(b"1.50,10.00", b"1.5O,10.00")
    with pytest.raises(BillError) as caught:
        bills.import_bill("STO", "bad.csv", bad, "finance", NOW)
    assert [(p.line, p.column) for p in caught.value.problems] == [(7, "计费重量")]
    assert bill_store.get_head("bill_" + "0" * 24) is None


@pytest.fixture
def environment_restored() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    aws.reset()
    settings.cache_clear()


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed, without the app's JSON log lines."""
    out = capsys.readouterr().out
    return "".join(line for line in out.splitlines(keepends=True) if not line.startswith("{"))


def test_the_command_line_imports_and_shows_a_bill(
        shipped: None, environment_restored: None, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sto_2025-03.csv"
    path.write_bytes(PLANTED)
    admin.main(["--stage", "test", "bill", "import", "sto", str(path), "--by", "finance"])
    out = printed(capsys)
    bill_id = out.splitlines()[1].split()[1]
    assert "overcharge 2, not_ours 2, duplicate 1, missing 2" in out
    assert f"missing    STO {number('09')}" in out
    admin.main(["--stage", "test", "bill", "show", bill_id])
    shown = printed(capsys)
    assert shown.splitlines() == out.splitlines()[1:]  # as imported, without the status
    (tmp_path / "bad.csv").write_bytes(PLANTED.replace(b",2025-03-04", b",2025-03-44"))
    with pytest.raises(SystemExit) as stopped:
        admin.main(["--stage", "test", "bill", "import", "STO", str(tmp_path / "bad.csv")])
    assert "line 7, column 寄件日期: not a date" in str(stopped.value.code)


def test_a_second_bill_charging_a_parcel_again_is_a_duplicate(shipped: None) -> None:
    first = bills.import_bill("STO", "sto_2025-03.csv", PLANTED, "finance", NOW).bill
    extra = ("运单号,寄件日期,目的省份,目的城市,计费重量,运费,附加费\n"
             f"{number('01')},2025-03-03,浙江,杭州,1,4,0\n").encode()
    second = bills.import_bill("STO", "sto_2025-03_extra.csv", extra, "finance", NOW).bill
    assert [(f.kind, f.waybill, f.note) for f in second.findings if f.kind != "missing"] == [
        ("duplicate", number("01"), f"already billed in {first.head.bill_id} line 6")]
    kept = parcel_store.get(*key("01"))[0].billed  # type: ignore[index]
    assert kept is not None and kept.bill_id == first.head.bill_id


def test_an_aggregators_xlsx_bill_is_checked_per_courier(
        stack: dict[str, str], environment_restored: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = BILLS / "kuaidi100_2026-11.xlsx"
    admin.main(["--stage", "test", "bill", "import", "kuaidi100", str(path)])
    out = printed(capsys)
    assert "not_ours 4" in out  # none of these numbers is ours
    assert "(SF 2026-11, STO 2026-11, YTO 2026-11, ZTO 2026-11)" in out
    assert "  ZTO     2026-11  remote       1      16.00      15.00      1.00" in out


def test_a_months_totals_add_up_every_bill_for_it(shipped: None) -> None:
    first = bills.import_bill("STO", "sto_2025-03.csv", PLANTED, "finance", NOW).bill
    extra = ("运单号,寄件日期,目的省份,目的城市,计费重量,运费,附加费\n"
             f"{number('01')},2025-03-03,浙江,杭州,1,4,0\n").encode()
    bills.import_bill("STO", "sto_2025-03_extra.csv", extra, "finance", NOW)
    totals = {t.region: (t.lines, t.billed, t.expected)
              for t in bills.month_totals("2025-03", ["STO", "YTO"])}
    assert totals[Region.JZH] == (6, D("26.40"), D("26.00"))  # 5 lines + the extra bill's one
    assert totals[Region.TIER12] == (5, D("48.00"), D("44.00"))
    assert first.head.bill_id in [b.bill_id for b in bills.bills_of("sto")]
    # February's line sits in March's bill: no bill covers February.
    assert bills.month_totals("2025-02", ["STO"]) == []


def test_fees_are_written_in_several_transactions_at_once(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bills, "_FEES_PER_TRANSACTION", 2)  # 7 fees: 4 transactions
    at = datetime(2025, 5, 6, 8, 0, tzinfo=UTC)
    made = [parcel("01").model_copy(update={
        "tracking_number": f"77360000000{i}", "order_id": f"ord_may{i}", "started_at": at,
        "shipment": Journey(carrier_code="STO", tracking_number=f"77360000000{i}",
                            handed_over_at=at)}) for i in range(7)]
    transact([parcel_store.put(p, None) for p in made])
    rows = "".join(f"77360000000{i},2025-05-06,浙江,杭州,1,4,0\n" for i in range(7))
    done = bills.import_bill("STO", "may.csv", ("运单号,寄件日期,目的省份,目的城市,计费重量,运费,"
                                                "附加费\n" + rows).encode(), "finance", NOW)
    assert done.fees_kept == 7 and done.bill.findings == ()
    for p in made:
        billed = parcel_store.get("STO", p.tracking_number)[0].billed  # type: ignore[index]
        assert billed is not None and billed.fee == D("4.00")


def test_a_failed_fee_write_fails_the_import_and_no_bill_is_stored(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bills, "_FEES_PER_TRANSACTION", 2)
    at = datetime(2025, 6, 6, 8, 0, tzinfo=UTC)
    made = [parcel("01").model_copy(update={
        "tracking_number": f"77370000000{i}", "order_id": f"ord_jun{i}", "started_at": at,
        "shipment": Journey(carrier_code="STO", tracking_number=f"77370000000{i}",
                            handed_over_at=at)}) for i in range(5)]
    transact([parcel_store.put(p, None) for p in made])
    calls: list[int] = []

    def failing(actions: Any) -> None:
        calls.append(len(actions))
        if len(calls) == 2:
            raise RuntimeError("DynamoDB said no")
        transact(actions)

    monkeypatch.setattr(bills, "transact", failing)
    rows = "".join(f"77370000000{i},2025-06-06,浙江,杭州,1,4,0\n" for i in range(5))
    data = ("运单号,寄件日期,目的省份,目的城市,计费重量,运费,附加费\n" + rows).encode()
    with pytest.raises(RuntimeError, match="said no"):
        bills.import_bill("STO", "june.csv", data, "finance", NOW)
    assert bills.show_bill(bill_id_of(data)) is None  # not imported: the next try redoes it
    monkeypatch.setattr(bills, "transact", transact)
    assert bills.import_bill("STO", "june.csv", data, "finance", NOW).new
