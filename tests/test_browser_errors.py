"""Sync Errors end to end in headless Chromium, behind a strict Content-Security-Policy.

Search, filter, open the details, export a CSV and retry a row, as a viewer
would; every step fails on a console error, an uncaught exception or a CSP violation.
"""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from flask_admin import Admin

from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError

from .conftest import ERRORS_URL
from .conftest import NOW
from .conftest import SQLITE_ONLY
from .conftest import add_strict_csp
from .conftest import assert_clean
from .conftest import csp_nonce
from .conftest import load_errors_dataset

pytestmark = [pytest.mark.browser, SQLITE_ONLY]

@pytest.fixture
def host(make_app, db_url, live_server) -> tuple[t.Any, str]:
    """The errors data set served by a host with a strict CSP: (app, base URL)."""
    app = make_app(db_url, admin=Admin(name="CSP host", csp_nonce_generator=csp_nonce))
    add_strict_csp(app)
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
    return app, live_server(app)


def listed_ids(page) -> list[int]:
    return [int(v) for v in page.locator("input.ds-row-check").evaluate_all("boxes => boxes.map(b => b.value)")]


def back_to_the_filtered_list(url: str) -> bool:
    """The list URL with the search, on the Open tab."""
    return url.split("?")[0].endswith(ERRORS_URL) and "search=Duplicate" in url and "state=all" not in url


def test_search_filter_details_export_and_retry(page, host, tmp_path):
    from playwright.sync_api import expect

    app, base_url = host
    page.goto(base_url + ERRORS_URL)
    assert listed_ids(page) == [700001, 700002, 700003, 700007, 700008]
    assert_clean(page)

    # Search (empty filters stay out of the URL), on the Open tab.
    page.fill("#ds-search", "Duplicate")
    page.click("button.ds-apply")
    page.wait_for_url("**search=Duplicate**")
    assert listed_ids(page) == [700001, 700007]
    expect(page.locator("a.ds-count")).to_have_text("Open 2")
    assert "flt0_0" not in page.url

    # Every state, then back to the open ones.
    page.click("a.ds-tab-all")
    page.wait_for_url("**state=all**")
    assert listed_ids(page) == [700001, 700004, 700007]
    page.click("a.ds-tab-open")
    page.wait_for_url(back_to_the_filtered_list)
    assert listed_ids(page) == [700001, 700007]
    assert_clean(page)

    # Details.
    page.click("a[href*='details/?id=700001']")
    page.wait_for_url("**details/?id=700001**")
    expect(page.locator("pre.ds-error-message")).to_have_text("Duplicate record: a lead with this email already exists.")
    assert_clean(page)
    page.click("a.ds-back")
    page.wait_for_url(back_to_the_filtered_list)

    # Export what the list shows.
    page.click("text=Export")
    with page.expect_download() as download_info:
        page.click("a.ds-export[data-format=csv]")
    download = download_info.value
    assert download.suggested_filename == "dynamics-sync-errors-filtered-20260310T142000Z.csv"
    lines = open(download.path(), encoding="utf-8-sig", newline="").read().split("\r\n")
    assert [line.split(",")[0] for line in lines] == ["ID", "700001", "700007", ""]

    # Retry one row, through the confirmation page.
    page.check("input.ds-row-check[value='700001']")
    page.click("button.ds-with-selected")
    page.click("button.ds-action-retry")
    expect(page.locator(".ds-confirm-question")).to_have_text("Retry 1 sync error? Its record is queued again.")
    assert_clean(page)
    page.click("button.ds-confirm-button")
    page.wait_for_url(back_to_the_filtered_list)
    expect(page.locator(".alert")).to_contain_text("1 sync error retried. 1 record queued again.")
    assert listed_ids(page) == [700007]
    assert_clean(page)

    with app.app_context():
        db = app.extensions["test_db"]
        with db.engine.connect() as conn:
            queue = QueueItem.__table__
            errors = SyncError.__table__
            assert conn.execute(sa.select(queue.c.record_id, queue.c.state, queue.c.queued_at).where(
                queue.c.object_type == "Lead")).all() == [("L-1", "pending", NOW)]
            assert conn.scalar(sa.select(errors.c.state).where(errors.c.id == 700001)) == "retried"


def test_select_all_ticks_every_row_and_acting_on_nothing_is_stopped(page, host):
    _app, base_url = host
    page.goto(base_url + ERRORS_URL)

    page.click("button.ds-with-selected")
    page.click("button.ds-action-ignore")
    assert page.dialogs == ["Select at least one error first."]
    assert page.url == base_url + ERRORS_URL

    page.check("input.ds-toggle-all")
    assert page.locator("input.ds-row-check:checked").count() == 5
    assert_clean(page, dialogs=["Select at least one error first."])
