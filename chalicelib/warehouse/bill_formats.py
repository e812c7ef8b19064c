"""The columns of each courier's monthly bill (对账单): one mapping per issuer. Pure: no I/O.

A courier's branch (STO here) bills one courier per file; an aggregator (Kuaidi100) bills every
courier it carries in one file and names each line's courier in a column. Headers are matched
after `normalise_header` (case, width, spaces and a unit in brackets do not matter), each field
by any of its spellings, so a branch that writes 计费重量(kg) or 计费重量（公斤） still maps.
Add an issuer by adding a `BillFormat` to `FORMATS`.
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import BaseModel, ConfigDict

from chalicelib.warehouse.carriers import Carrier


class BillFormat(BaseModel):
    """Where each field is in one issuer's bill: the headers it may go by."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    # The courier of every line, for a courier's own bill; None: the `carrier` column names it.
    carrier: Carrier | None
    waybill: tuple[str, ...]
    shipped_on: tuple[str, ...]
    province: tuple[str, ...]
    city: tuple[str, ...]
    weight: tuple[str, ...]
    fee: tuple[str, ...]
    # Every column that is a surcharge; each is optional, present ones are added up.
    surcharges: tuple[tuple[str, ...], ...] = ()
    carrier_column: tuple[str, ...] = ()


STO = BillFormat(
    name="STO", carrier=Carrier.STO,
    waybill=("运单号", "运单编号", "单号"),
    shipped_on=("寄件日期", "寄件时间", "揽收日期", "揽收时间", "发件日期"),
    province=("目的省份", "目的省", "收件省份"),
    city=("目的城市", "目的市", "收件城市"),
    weight=("计费重量", "结算重量", "重量"),
    fee=("运费", "快递费", "基础运费"),
    surcharges=(("附加费",), ("保价费",), ("偏远附加费",)),
)

KUAIDI100 = BillFormat(
    name="KUAIDI100", carrier=None,
    waybill=("快递单号", "运单号"),
    shipped_on=("下单时间", "寄件时间", "揽收时间"),
    province=("收件省", "收件人省份", "收件省份"),
    city=("收件市", "收件人城市", "收件城市"),
    weight=("计费重量", "结算重量", "重量"),
    fee=("快递费", "运费"),
    surcharges=(("保价费",), ("耗材费",), ("其他费用",)),
    carrier_column=("快递公司", "快递公司名称"),
)

FORMATS: dict[str, BillFormat] = {f.name: f for f in (STO, KUAIDI100)}


def bill_format(name: str) -> BillFormat | None:
    return FORMATS.get(name.strip().upper())


_UNIT = re.compile(r"[(（\[【][^)）\]】]*[)）\]】]$")


def normalise_header(text: str) -> str:
    """One spelling per header: 计费重量（kg） and 计费重量(KG) are 计费重量."""
    folded = unicodedata.normalize("NFKC", text).strip()
    folded = _UNIT.sub("", folded).strip()
    return re.sub(r"\s+", "", folded).casefold()
