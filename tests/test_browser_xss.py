"""Hostile text is inert in a real browser: headless Chromium opens every page that shows it.

Record labels, record ids, error codes and messages written through the
recording API, object names from the host's configuration, and a search and
filter typed into the URL carry script payloads. The host sends *no*
Content-Security-Policy here, so only the plugin's escaping stands between a
payload and the browser. Every page must show each payload as text, open no
dialog, run nothing and log no console error (a broken ``<img src=x>`` would).
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import quote

import pytest

from .conftest import ERRORS_URL

pytestmark = pytest.mark.browser

STATUS_URL = "/admin/dynamics/status/"
#: Each payload would open a dialog naming itself if the browser ran it.
PAYLOADS = [
    "<script>alert('xss-script')</script>",
    "\"><img src=x onerror=alert('xss-img')>",
    "'><svg onload=alert('xss-svg')>",
    "<svg><script>alert('xss-svg-script')</script></svg>",
    "</textarea></title><script>alert('xss-close')</script>",
    "<iframe srcdoc=\"<script>parent.alert('xss-iframe')</script>\"></iframe>",
    "<a href=\"javascript:alert('xss-href')\" id=\"xss-link\">click me</a>",
    "javascript:alert('xss-url')",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('xss-mxss')>",
    "';alert('xss-js-string');//",
    "<details open ontoggle=alert('xss-toggle')>",
    "{{ 7*7 }} ${7*7} {% raw %}",
]
#: Error codes hold 32 characters at most.
CODES = ["<svg onload=alert('xss-c1')>", "\"><img src=x onerror=alert(2)>", "<script>alert(3)</script>"]
OBJECT_LABEL = "Leads <img src=x onerror=alert('xss-object')>"
SEARCH = PAYLOADS[0]  # one term: matches the error whose label and message it is
FILTER = "<img src=x onerror=alert('xss-filter')>"


@pytest.fixture
def base_url(make_app, db_url, live_server, clock) -> str:
    """A host without CSP whose sync data is all payloads, served over HTTP."""
    objects = {"Lead": OBJECT_LABEL, "Contact": "Contacts", "Account": "Accounts", "Opportunity": "Opportunities"}
    app = make_app(db_url, config={"DYNAMICS_SYNC_OBJECTS": objects})
    with app.app_context():
        sync, db = app.extensions["dynamics_sync"].extension, app.extensions["test_db"]
        for i, payload in enumerate(PAYLOADS):
            sync.enqueue("Lead", f"{i}{payload}"[:128], "insert", label=payload)
            sync.enqueue("Lead", f"u{i}", "update", label=payload)
        db.session.commit()
        for i, record in enumerate(sync.claim(limit=100, object_types=["Lead"])):
            if record.operation.value == "insert":  # waits again after a backoff: still in the backlog
                sync.mark_failed(record, CODES[i % len(CODES)], record.label)
        clock.advance(hours=1)
        sync.rollup()
    return live_server(app)


def visible_text(page: t.Any) -> str:
    return " ".join(page.locator("body").inner_text().split())


#: Elements the payloads would create if a page let them through as HTML.
INJECTED = """() => document.querySelectorAll(
    "#xss-link, img[src='x'], iframe[srcdoc], svg[onload], details[ontoggle], mglyph").length
    + [...document.scripts].filter(s => s.textContent.includes("xss")).length"""


def assert_inert(page: t.Any, *shown: str) -> None:
    """No dialog, console error, exception or payload element so far; ``shown`` is on the page as text."""
    page.wait_for_load_state("load")
    assert (page.problems, page.dialogs) == ([], [])
    assert page.evaluate(INJECTED) == 0
    text = visible_text(page)
    assert [value for value in shown if " ".join(value.split()) not in text] == []


def test_the_errors_list_shows_payloads_as_text(page, base_url):
    page.goto(f"{base_url}{ERRORS_URL}?page_size=100")

    assert_inert(page, *PAYLOADS, *CODES, OBJECT_LABEL)


def test_every_error_details_page_shows_payloads_as_text(page, base_url):
    page.goto(f"{base_url}{ERRORS_URL}?page_size=100")
    links = sorted(set(re.findall(r"details/\?id=\d+", page.content())))
    assert len(links) == len(PAYLOADS)

    for link in links:
        page.goto(f"{base_url}{ERRORS_URL}{link}")
        message = page.locator("pre.ds-error-message").inner_text()
        assert message in PAYLOADS
        assert_inert(page, message, OBJECT_LABEL)


def test_a_payload_in_the_search_and_a_filter_stays_text_up_to_the_confirmation(page, base_url):
    page.goto(f"{base_url}{ERRORS_URL}?search={quote(SEARCH)}&flt3_3={quote(FILTER)}")
    assert page.locator("#ds-search").input_value() == SEARCH
    assert page.locator("[name=flt3_3]").input_value() == FILTER
    assert_inert(page, "No sync errors match.")

    page.goto(f"{base_url}{ERRORS_URL}?search={quote(SEARCH)}")
    page.click("button.ds-with-all")
    page.click("button.ds-action-all-resolve")
    page.wait_for_selector(".ds-confirm-question")
    assert page.locator("input[name=search]").input_value() == SEARCH
    assert_inert(page)
    page.click("button.ds-confirm-button")
    page.wait_for_url(f"**{ERRORS_URL}**")
    assert_inert(page)


def test_the_status_pages_show_payloads_as_text_also_after_an_auto_refresh(page, base_url):
    page.goto(f"{base_url}{STATUS_URL}")
    assert_inert(page, OBJECT_LABEL)

    page.evaluate("""() => new Promise(done => {
        document.addEventListener("ds:refreshed", done, {once: true});
        document.getElementById("ds-auto-refresh").click();
    })""")
    assert_inert(page, OBJECT_LABEL)

    page.goto(f"{base_url}{STATUS_URL}?view=last_hour")
    assert_inert(page, OBJECT_LABEL)

    page.goto(f"{base_url}{STATUS_URL}details/Lead")
    labels = page.locator(".ds-oldest .ds-record-label").all_inner_texts()
    assert len(labels) == 2 and set(labels) <= set(PAYLOADS)  # the oldest insert and update
    assert_inert(page, OBJECT_LABEL, *labels)
