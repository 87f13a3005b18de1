"""An operator's first minutes on the example host, in Chromium: what needs attention, and where it leads.

The example host with its demo data (SQLite; the figures themselves are checked on
every database in test_errors_overview.py and test_status_headline.py). Every page
visited must run without console errors or CSP violations (``assert_clean``).
"""

from __future__ import annotations

import re
import typing as t

import pytest
import sqlalchemy as sa

from .conftest import assert_clean
from .test_example_host import errors as error_table
from .test_example_host import make_host  # noqa: F401 - fixture
from .test_example_host import queue as queue_table
from .test_example_host import rows
from .test_example_host import sqlite_host  # noqa: F401 - fixture

pytestmark = pytest.mark.browser

STATUS = "/admin/dynamics/status/"
ERRORS = "/admin/dynamics/errors/"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def console(sqlite_host, live_server) -> str:  # noqa: F811
    return live_server(sqlite_host)


def sign_in(page: t.Any, base_url: str) -> None:
    page.goto(base_url + "/login")
    page.fill("#username", "admin")
    page.fill("#password", "admin")
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/admin/")


def number(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def state_counts(app: t.Any) -> dict[str, int]:
    return dict(rows(app, sa.select(error_table.c.state, sa.func.count()).group_by(error_table.c.state)))


def test_sync_errors_opens_on_the_open_errors_with_each_tabs_count(page, console, sqlite_host):  # noqa: F811
    sign_in(page, console)
    page.goto(console + ERRORS)

    counts = state_counts(sqlite_host)
    assert page.locator("a.ds-tab.active").get_attribute("class").split()[2] == "ds-tab-open"
    shown = {tab: number(page.locator(f"a.ds-tab-{tab} .ds-tab-count").inner_text()) for tab in ("open", "ignored", "resolved", "all")}
    assert shown == {
        "open": counts["open"], "ignored": counts["ignored"], "resolved": counts["resolved"], "all": sum(counts.values()),
    }
    assert set(page.locator("td.col-state").all_inner_texts()) == {"Open"}
    assert_clean(page)


def test_retry_all_of_a_group_requeues_exactly_that_group(page, console, sqlite_host):  # noqa: F811
    sign_in(page, console)
    page.goto(console + ERRORS + "groups/")
    group = page.locator("tr.ds-group").first
    code, object_type, direction = (group.get_attribute(f"data-ds-{k}") for k in ("code", "object", "direction"))
    size = number(group.locator(".ds-group-count").inner_text())
    in_group = sa.and_(error_table.c.error_code == code, error_table.c.object_type == object_type,
                       error_table.c.direction == direction, error_table.c.state == "open")
    group_errors = {row.id for row in rows(sqlite_host, sa.select(error_table.c.id).where(in_group))}
    records = {row.record_id for row in rows(sqlite_host, sa.select(error_table.c.record_id).where(in_group))}
    other_open = {row.id for row in rows(sqlite_host, sa.select(error_table.c.id).where(
        error_table.c.state == "open", error_table.c.id.not_in(group_errors)))}
    assert len(group_errors) == size

    group.locator("button.ds-group-retry").click()
    assert page.locator(".ds-confirm-question").inner_text().startswith(f"Retry {size:,} sync error")
    assert_clean(page)
    page.click("button.ds-confirm-button")
    page.wait_for_url(console + ERRORS + "groups/")

    retried = {row.id for row in rows(sqlite_host, sa.select(error_table.c.id).where(
        error_table.c.id.in_(group_errors | other_open), error_table.c.state == "retried"))}
    assert retried == group_errors
    pending = {row.record_id for row in rows(sqlite_host, sa.select(queue_table.c.record_id).where(
        queue_table.c.object_type == object_type, queue_table.c.direction == direction,
        queue_table.c.record_id.in_(records), queue_table.c.state == "pending"))}
    assert pending == records
    assert_clean(page)


def test_the_headline_figures_equal_the_tables_below_them(page, console):
    sign_in(page, console)
    page.goto(console + STATUS)
    figure = {k: page.locator(f"#ds-headline [data-ds-field={k}] dd").inner_text() for k in ("backlog", "open-errors", "synced-last-hour")}
    backlog_total = page.locator("#ds-backlog tfoot [data-ds-field]")
    inserts, updates = (number(backlog_total.nth(i).inner_text()) for i in (0, 1))
    badge = page.locator(f"a[href='{ERRORS}'] .ds-open-errors").inner_text()
    assert_clean(page)

    page.click("#ds-headline [data-ds-field=synced-last-hour] a")
    page.wait_for_url("**view=last_hour**")
    synced = page.locator("#ds-last-hour tfoot [data-ds-field=synced]").inner_text()
    page.go_back()
    page.click("#ds-headline [data-ds-field=open-errors] a")
    page.wait_for_url(console + ERRORS)
    open_tab = page.locator("a.ds-tab-open .ds-tab-count").inner_text()

    assert number(figure["backlog"]) == inserts + updates
    assert figure["synced-last-hour"] == synced
    assert figure["open-errors"] == open_tab == badge
    assert_clean(page)


def test_each_cross_link_lands_on_what_it_names(page, console):
    sign_in(page, console)
    page.goto(console + STATUS)

    # An object's row → its open errors.
    page.click("#ds-backlog tr.ds-row[data-ds-object=Lead] a.ds-object-errors")
    page.wait_for_url("**flt0_0=Lead**")
    assert set(page.locator("td.col-object_type").all_inner_texts()) == {"Lead"}
    assert set(page.locator("td.col-state").all_inner_texts()) == {"Open"}
    assert_clean(page)

    # An error → its object on Sync Status.
    page.locator("a[href*='details/?id=']").first.click()
    page.wait_for_url("**details/?id=**")
    record_id = page.locator("tr.ds-detail-record_id a.ds-host-record").inner_text()
    page.click("a.ds-object-status")
    page.wait_for_url(console + STATUS + "details/Lead")
    assert_clean(page)

    # A record id → the host's own page of that record.
    page.go_back()
    page.click("tr.ds-detail-record_id a.ds-host-record")
    page.wait_for_url(re.compile(r".*/admin/prospects/details/\?id=" + re.escape(record_id) + "$"))  # no redirect: it exists
    assert_clean(page)


@pytest.mark.parametrize("path", [STATUS, STATUS + "?view=last_hour", STATUS + "details/Lead", ERRORS, ERRORS + "groups/"])
def test_no_page_overflows_a_phone_screen(page, console, path):
    page.set_viewport_size(PHONE)
    sign_in(page, console)
    page.goto(console + path)

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert_clean(page)


def test_an_errors_details_and_confirmation_fit_a_phone_screen(page, console):
    page.set_viewport_size(PHONE)
    sign_in(page, console)
    page.goto(console + ERRORS)
    page.goto(console + page.locator("a[href*='details/?id=']").first.get_attribute("href"))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    page.click("form.ds-details-actions button.ds-action-retry")
    page.wait_for_selector(".ds-confirm-question")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert_clean(page)


# -- layout -----------------------------------------------------------------------------

PLACEHOLDER_FITS = """() => {
  const input = document.getElementById("ds-search");
  const style = getComputedStyle(input);
  const context = document.createElement("canvas").getContext("2d");
  context.font = style.font;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return [context.measureText(input.placeholder).width, room];
}"""


@pytest.mark.parametrize("language", ["de", "fr", "pt_BR"])
def test_the_search_placeholder_fits_its_box(page, console, language):
    sign_in(page, console)
    page.goto(console + f"/admin/?lang={language}")
    page.goto(console + ERRORS)

    text_width, room = page.evaluate(PLACEHOLDER_FITS)
    assert text_width <= room


def test_status_numbers_sit_next_to_their_labels_on_a_wide_screen(page, console):
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, console)
    page.goto(console + STATUS)

    label = page.locator("#ds-backlog thead th").nth(0).bounding_box()
    inserts = page.locator("#ds-backlog thead th").nth(1).bounding_box()
    assert inserts["x"] - (label["x"] + label["width"]) < 1  # adjacent cells
    assert page.locator("#ds-backlog").bounding_box()["width"] < 700
