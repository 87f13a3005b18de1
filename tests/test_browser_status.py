"""Sync Status end to end in headless Chromium, behind a strict Content-Security-Policy.

The host sends ``script-src 'nonce-…'; style-src 'nonce-…'`` with a fresh
nonce per request, passed to ``Admin(csp_nonce_generator=...)``, and is served
by a real threaded WSGI server on 127.0.0.1. Every test fails on a console
error, an uncaught exception or a CSP violation.
"""

from __future__ import annotations

import pytest
from flask_admin import Admin

from .conftest import SQLITE_ONLY
from .conftest import add_strict_csp
from .conftest import assert_clean
from .conftest import csp_nonce

pytestmark = [pytest.mark.browser, SQLITE_ONLY]

STATUS = "/admin/dynamics/status/"

@pytest.fixture
def base_url(make_app, db_url, status_dataset, live_server) -> str:
    """The data set served by a host with a strict CSP."""
    app = make_app(db_url, admin=Admin(name="CSP host", csp_nonce_generator=csp_nonce))
    add_strict_csp(app)
    return live_server(app)


def cells(page, row_selector: str) -> list[str]:
    return [text.strip() for text in page.locator(f"{row_selector} > *").all_inner_texts()]


def test_double_clicking_a_row_opens_its_details(page, base_url):
    from playwright.sync_api import expect

    page.goto(base_url + STATUS)
    assert_clean(page)
    page.locator("tr.ds-row[data-ds-object=Lead] td").first.dblclick()

    page.wait_for_url(base_url + STATUS + "details/Lead")
    expect(page.locator("[data-ds-field=pending-inserts]")).to_have_text("2")
    expect(page.locator("[data-ds-field=oldest-insert] .ds-record-id")).to_have_text("L-1")
    expect(page.locator("[data-ds-field=oldest-insert] .ds-record-label")).to_have_text("Ada Lovelace")
    expect(page.locator("[data-ds-field=oldest-update] .ds-record-id")).to_have_text("L-3")
    assert_clean(page)


def test_the_keyboard_reaches_the_same_details(page, base_url):
    page.goto(base_url + STATUS)
    page.locator("tr.ds-row[data-ds-object=Contact] th a").focus()
    page.keyboard.press("Enter")

    page.wait_for_url(base_url + STATUS + "details/Contact")
    assert page.locator("[data-ds-field=oldest-update] .ds-record-label").inner_text() == "Alan Turing"
    assert_clean(page)


def test_switching_the_view_to_last_hour_shows_na_and_the_throughput(page, base_url):
    from playwright.sync_api import expect

    page.goto(base_url + STATUS)
    page.select_option("#ds-view", "last_hour")

    page.wait_for_url(base_url + STATUS + "?view=last_hour")
    expect(page.locator("#ds-last-hour")).to_be_visible()
    assert cells(page, "#ds-last-hour tr[data-ds-object=Lead]") == ["Lead", "N/A", "N/A", "60", "2", "Open errors"]
    assert cells(page, "#ds-last-hour tfoot tr") == ["Total", "N/A", "N/A", "67", "2", "Open errors"]
    assert page.locator("p.ds-hour").inner_text().split(": ")[0] == "Records synced in the last full hour"
    assert_clean(page)


def test_the_view_survives_a_reload_from_its_url(page, base_url):
    page.goto(base_url + STATUS + "?view=last_hour")
    page.reload()

    assert page.locator("#ds-view").input_value() == "last_hour"
    assert_clean(page)


def test_auto_refresh_updates_the_numbers_without_reloading(page, base_url, sync, db):
    from playwright.sync_api import expect

    page.goto(base_url + STATUS)
    page.evaluate("window.__sameDocument = true")
    sync.enqueue("Contact", "C-2", "update")
    db.session.commit()

    page.locator("#ds-auto-refresh").check()

    expect(page.locator("tr.ds-row[data-ds-object=Contact] [data-ds-field=updates]")).to_have_text("2")
    expect(page.locator("#ds-backlog tfoot [data-ds-field=updates]")).to_have_text("4")
    assert page.evaluate("window.__sameDocument") is True
    assert_clean(page)


def test_hovering_a_bar_names_its_hour_and_count(page, base_url):
    page.goto(base_url + STATUS)
    bar = page.locator("figure[data-ds-object=Lead] g.ds-bar").nth(22)
    bar.hover()

    assert bar.locator("title").text_content().split("\n")[0].endswith(": 60")
    assert_clean(page)
