"""Pause and resume on Sync Status in headless Chromium, behind a strict Content-Security-Policy."""

from __future__ import annotations

import pytest
from flask_admin import Admin

from .conftest import SQLITE_ONLY
from .conftest import add_strict_csp
from .conftest import assert_clean
from .conftest import csp_nonce

pytestmark = [pytest.mark.browser, SQLITE_ONLY]

STATUS = "/admin/dynamics/status/"
LEAD = STATUS + "details/Lead"


def serve(make_app, db_url, live_server, **sync_kwargs) -> tuple[str, object]:
    app = make_app(db_url, admin=Admin(name="CSP host", csp_nonce_generator=csp_nonce), sync_kwargs=sync_kwargs)
    add_strict_csp(app)
    return live_server(app), app


def test_an_operator_pauses_an_object_sees_paused_and_resumes_it(page, make_app, db_url, status_dataset, live_server):
    from playwright.sync_api import expect

    base_url, _ = serve(make_app, db_url, live_server)
    page.goto(base_url + LEAD)
    to_dynamics = page.locator("li.ds-pause[data-ds-direction=to_dynamics]")
    expect(to_dynamics).to_contain_text("Running")

    to_dynamics.get_by_role("button", name="Pause").click()
    expect(page.locator(".ds-confirm-question")).to_contain_text("Pause Lead, To Dynamics?")
    page.locator(".ds-confirm-button").click()

    page.wait_for_url(base_url + LEAD)
    expect(to_dynamics.locator(".ds-paused")).to_have_text("Paused")
    expect(page.locator("li.ds-pause[data-ds-direction=from_dynamics]")).to_contain_text("Running")
    page.goto(base_url + STATUS)
    expect(page.locator("tr.ds-row[data-ds-object=Lead] .ds-paused").first).to_have_text("Paused: To Dynamics")

    page.goto(base_url + LEAD)
    to_dynamics.get_by_role("button", name="Resume").click()
    page.locator(".ds-confirm-button").click()
    page.wait_for_url(base_url + LEAD)
    expect(to_dynamics).to_contain_text("Running")
    assert_clean(page)


def test_a_read_only_viewer_sees_the_pause_and_no_button(page, make_app, db_url, status_dataset, live_server):
    from playwright.sync_api import expect

    base_url, app = serve(make_app, db_url, live_server, can_act=lambda: False)
    with app.app_context():
        app.extensions["dynamics_sync"].extension.pause("Lead", "from_dynamics", by="ana")
    page.goto(base_url + LEAD)

    expect(page.locator("li.ds-pause[data-ds-direction=from_dynamics] .ds-paused")).to_have_text("Paused")
    expect(page.locator("li.ds-pause[data-ds-direction=from_dynamics]")).to_contain_text("by ana")
    expect(page.locator(".ds-pause-button")).to_have_count(0)
    assert_clean(page)
