"""The console's report and courier-bill pages in a real browser: a report page and its CSV
download, and a sample STO bill imported through the upload form, its planted lines flagged.
Each page at a phone's width without sideways scrolling (UPDATE_SCREENSHOTS=1 keeps the
pictures in docs/screenshots/, as tests/browser/test_console.py does)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

from chalicelib.access.keys import Role
from chalicelib.console.report_pages import period_containing
from chalicelib.core.clock import utcnow
from chalicelib.reports.model import local_day
from tests.browser.conftest import PHONE, Tab
from tests.browser.test_console import shoot, submit
from tests.browser.world import World
from tests.integration.test_bills import BILLS, PLANTED_FINDINGS, shipped  # noqa: F401


def test_a_report_page_and_its_csv(new_tab: Any, world: World, tmp_path: Path) -> None:
    tab: Tab = new_tab(PHONE)
    tab.sign_in(world.staff_key(Role.READ_ONLY))
    tab.open("/console/reports?lang=en")
    form = tab.testid("choose-report")
    yesterday = local_day(utcnow()) - timedelta(days=1)
    form.locator('select[name="kind"]').select_option("weekly")
    form.locator('input[name="day"]').fill(yesterday.isoformat())
    submit(form)
    week = period_containing("weekly", yesterday)
    assert tab.page.url.split("?")[0].endswith(f"/console/reports/weekly/{week.start}")
    assert week.label in tab.page.locator("h1").inner_text()
    assert "XLSX comes by email" in tab.page.content()
    shoot(tab, "report", "phone", tmp_path)
    with tab.page.expect_download() as downloading:
        tab.testid("csv-link").click()
    download = downloading.value
    assert download.suggested_filename == f"report-weekly-{week.start}.csv"
    body = Path(download.path()).read_bytes().decode("utf-8-sig")
    first = next(csv.reader(io.StringIO(body)))
    assert first[:4] == ["report", "weekly", week.start.isoformat(), week.end.isoformat()]


def test_a_sample_sto_bill_is_imported_and_its_planted_lines_flagged(
        new_tab: Any, world: World, shipped: None, tmp_path: Path) -> None:  # noqa: F811
    tab: Tab = new_tab(PHONE)
    tab.sign_in(world.staff_key(Role.ADMIN))
    tab.open("/console/bills?lang=en")
    form = tab.testid("bill-import").locator("form")
    form.locator('select[name="format"]').select_option("STO")
    form.locator('input[name="file"]').set_input_files(str(BILLS / "sto_2025-03_planted.csv"))
    submit(form)
    assert "/console/bills/bill_" in tab.page.url
    assert tab.testid("imported").count() == 1
    rows = tab.testid("finding")
    flagged = [(rows.nth(n).get_attribute("data-kind"), rows.nth(n).get_attribute("data-waybill"),
                int(rows.nth(n).get_attribute("data-line") or 0)) for n in range(rows.count())]
    assert flagged == PLANTED_FINDINGS
    overcharge = rows.filter(has_text="Above tariff").first
    assert overcharge.is_visible()
    shoot(tab, "bill", "phone", tmp_path)
    # A read-only person sees the bill, not the form.
    reader: Tab = new_tab(PHONE)
    reader.sign_in(world.staff_key(Role.READ_ONLY))
    reader.open("/console/bills")
    assert reader.testid("bill-import").count() == 0 and reader.testid("bill-row").count() >= 1
