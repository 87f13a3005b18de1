"""The Flask-Login host (``tests/hosts/flask_login_host.py``) in headless Chromium.

An anonymous visitor of a Sync Status URL gets exactly what the host's own
views give: its login page, and after signing in the page they asked for.
"""

from __future__ import annotations

import typing as t

import pytest

from .conftest import assert_clean
from .hosts import custom_base
from .hosts import flask_login_host

pytestmark = pytest.mark.browser

LAST_HOUR = "/admin/dynamics/status/?view=last_hour"


def test_an_anonymous_visitor_signs_in_and_is_back_on_sync_status(page: t.Any, live_server: t.Any, tmp_path: t.Any) -> None:
    from playwright.sync_api import expect

    base_url = live_server(flask_login_host.create_app(f"sqlite:///{tmp_path / 'support.db'}"))

    page.goto(base_url + LAST_HOUR)
    on_login_page = page.url.split("?")[0]
    page.fill("input[name=email]", "agent@example.com")
    page.fill("input[name=password]", "s3cret")
    page.click("button[type=submit]")
    page.wait_for_url(base_url + LAST_HOUR)

    assert on_login_page == base_url + "/login"
    expect(page.locator("#ds-status")).to_be_visible()
    expect(page.locator("#ds-view")).to_have_value("last_hour")
    assert_clean(page)


#: What Bootstrap 3 gives form controls (and Bootstrap 4's grid classes lose all meaning under it).
BOOTSTRAP3_FORM_CONTROL = ".form-control { display: block; width: 100%; height: 34px; padding: 6px 12px; }"


def test_the_filter_bar_stays_one_row_under_bootstrap_3_css(page: t.Any, live_server: t.Any, tmp_path: t.Any) -> None:
    base_url = live_server(custom_base.create_app(f"sqlite:///{tmp_path / 'marketing.db'}"))
    page.goto(base_url + "/admin/dynamics/errors/")
    page.evaluate("document.querySelectorAll('link[href*=\"bootstrap\"]').forEach(link => link.remove())")
    page.add_style_tag(content=BOOTSTRAP3_FORM_CONTROL)

    boxes = [page.locator("#ds-filter-bar .form-control").nth(n).bounding_box() for n in range(4)]

    assert len({round(box["y"]) for box in boxes}) == 1  # side by side, not stacked
    assert all(box["width"] < 400 for box in boxes)
    assert_clean(page)
