"""The example host (``python -m example_host``): a console of its own embedding the plugin.

Database tests run on SQLite, PostgreSQL and MariaDB (``empty_db_url``); tests
about HTTP behaviour only (login, CSP, languages) run on SQLite. The plugin's
clock is the frozen ``clock`` of the suite, so the demo data and the simulator
are deterministic.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import signal
import socket
import subprocess
import sys
import typing as t
import urllib.error
import urllib.request
from collections.abc import Callable
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from flask import Flask

import example_host
from example_host import create_app
from example_host.__main__ import parse_args
from example_host.dataverse import CATALOGUE
from example_host.demo import PUNCTUATED_NAMES
from example_host.models import Customer
from example_host.models import db as host_db
from example_host.simulator import Simulator
from flask_dynamics_sync.i18n_tools import extract_messages
from flask_dynamics_sync.i18n_tools import po_path
from flask_dynamics_sync.i18n_tools import read_catalog
from flask_dynamics_sync.models import BacklogSnapshot
from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent

from .conftest import NOW
from .conftest import FrozenClock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: A small demo: two days of history at a fifth of the volume.
SMALL_DEMO = {"EXAMPLE_HOST_DEMO_DAYS": 2, "EXAMPLE_HOST_DEMO_SCALE": 0.2}
OBJECTS = ["Account", "Contact", "Lead", "Opportunity"]

queue = QueueItem.__table__
events = SyncEvent.__table__
errors = SyncError.__table__


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def make_host(clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[Callable[..., Flask]]:
    """``make_host(url=None, **config)``: the example host on ``url`` (default: a SQLite file of the test).

    No scheduler; the plugin runs on the frozen clock.
    """
    monkeypatch.setattr(example_host.sync, "clock", clock)
    made: list[Flask] = []

    def factory(url: str | None = None, **config: t.Any) -> Flask:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url or f"sqlite:///{tmp_path / 'host.sqlite'}",
                "SECRET_KEY": "test-secret",
                "TESTING": True,
                "DYNAMICS_SYNC_SCHEDULER": False,
                **SMALL_DEMO,
                **config,
            }
        )
        made.append(app)
        return app

    yield factory
    for app in made:
        with app.app_context():
            host_db.session.remove()
            for engine in host_db.engines.values():
                engine.dispose()


@pytest.fixture
def host(make_host: Callable[..., Flask], empty_db_url: str) -> Flask:
    """The example host with its demo data, on each database."""
    return make_host(empty_db_url)


@pytest.fixture
def sqlite_host(make_host: Callable[..., Flask]) -> Flask:
    """The example host with its demo data on SQLite, for tests about HTTP only."""
    return make_host()


def scalar(app: Flask, statement: sa.Executable) -> t.Any:
    with app.app_context(), host_db.engine.connect() as conn:
        return conn.scalar(statement)


def rows(app: Flask, statement: sa.Executable) -> list[t.Any]:
    with app.app_context(), host_db.engine.connect() as conn:
        return conn.execute(statement).all()


def count(app: Flask, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    return scalar(app, sa.select(sa.func.count()).select_from(table).where(*where))


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(client: t.Any, username: str, password: str | None = None) -> t.Any:
    token = csrf_token(client.get("/login").text)
    return client.post(
        "/login", data={"username": username, "password": password or username, "csrf_token": token}
    )


def record_keys(app: Flask, table: sa.Table, *where: sa.ColumnElement[bool]) -> set[tuple[str, str, str]]:
    """``(object_type, record_id, direction)`` of the matching rows."""
    return set(rows(app, sa.select(table.c.object_type, table.c.record_id, table.c.direction).where(*where)))


def pending_per_object(app: Flask) -> dict[str, int]:
    pending = sa.select(queue.c.object_type, sa.func.count()).where(queue.c.state == "pending")
    return dict(rows(app, pending.group_by(queue.c.object_type)))


def plugin_urls(app: Flask) -> dict[str, str]:
    """The plugin's view URLs on the console, by view name."""
    return {str(view.name): view.url + "/" for view in app.extensions["dynamics_sync"].views}


def customer_not_waiting(app: Flask) -> Customer:
    waiting = sa.select(queue.c.record_id).where(queue.c.object_type == "Contact")
    with app.app_context():
        customer = host_db.session.scalar(
            sa.select(Customer).where(sa.cast(Customer.id, sa.String(128)).not_in(waiting)).order_by(Customer.id)
        )
        host_db.session.expunge(customer)
        return customer


# -- demo data --------------------------------------------------------------------------------


def test_first_start_creates_the_demo_users(host):
    users = rows(host, sa.text("SELECT username, is_operator FROM acme_user ORDER BY username"))

    assert [(u.username, bool(u.is_operator)) for u in users] == [("admin", True), ("viewer", False)]


def test_demo_history_covers_every_object_operation_and_direction(host):
    combos = rows(host, sa.select(events.c.object_type, events.c.operation, events.c.direction).distinct())
    first, last = rows(host, sa.select(sa.func.min(events.c.synced_at), sa.func.max(events.c.synced_at)))[0]

    assert sorted(combos) == sorted(
        (o, op, d) for o in OBJECTS for op in ("insert", "update") for d in ("from_dynamics", "to_dynamics")
    )
    assert NOW - dt.timedelta(days=2, hours=1) <= first < NOW - dt.timedelta(days=1)
    assert NOW - dt.timedelta(hours=1) < last <= NOW


def test_demo_history_is_rolled_up_into_the_hourly_table(host):
    hourly = HourlyThroughput.__table__

    assert scalar(host, sa.select(sa.func.sum(hourly.c.synced_count))) == count(host, events)


def test_demo_errors_carry_real_dataverse_codes_in_every_state(host):
    codes = {row[0] for row in rows(host, sa.select(errors.c.error_code).distinct())}
    states = {row[0] for row in rows(host, sa.select(errors.c.state).distinct())}

    assert {"0x80040237", "0x80040220", "0x80072322", "0x80040265", "0x80060891", "0x80044331"} <= codes
    assert codes <= {error.code for error in CATALOGUE}
    assert states == {"open", "retried", "ignored", "resolved"}


def test_demo_errors_name_records_with_punctuation_a_real_crm_holds(host):
    labels = {row[0] for row in rows(host, sa.select(errors.c.record_label).where(errors.c.state == "open"))}

    assert {name for names in PUNCTUATED_NAMES.values() for name in names} <= labels


#: Formula injections and markup, which the demo keeps off its screens: tests bring their own.
HOSTILE_LABEL = '=HYPERLINK("http://evil.example","Win a prize")'
HOSTILE_MESSAGE = "<script>alert('hi')</script> +SUM(A1:A9) @mention"


def visible_cells(html: str) -> list[str]:
    """The text of every table cell and description value of a page, as a visitor reads it."""
    cells = re.findall(r"<(td|dd)\b[^>]*>(.*?)</\1>", html, re.DOTALL)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for _tag, cell in cells]


def test_the_first_screens_of_the_demo_show_no_formula_or_markup(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")
    urls = [plugin_urls(sqlite_host)["Sync Errors"], *(f"/admin/dynamics/status/details/{o}" for o in OBJECTS)]

    for url in urls:
        cells = visible_cells(client.get(url).text)
        assert cells, url
        assert [cell for cell in cells if cell and cell[0] in "=+-@"] == [], url
        assert [cell for cell in cells if "<" in cell or ">" in cell] == [], url


def test_hostile_text_of_a_sync_error_shows_as_text_on_the_console(sqlite_host):
    with sqlite_host.app_context(), host_db.engine.begin() as conn:
        conn.execute(sa.insert(errors), [{
            "object_type": "Lead", "record_id": "1", "record_label": HOSTILE_LABEL, "operation": "update",
            "direction": "to_dynamics", "error_code": "0x80040265", "error_message": HOSTILE_MESSAGE,
            "occurred_at": NOW, "attempt": 1, "state": "open",
        }])  # fmt: skip
    client = sqlite_host.test_client()
    sign_in(client, "admin")

    html = client.get(plugin_urls(sqlite_host)["Sync Errors"]).text

    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;hi&#39;)&lt;/script&gt; +SUM(A1:A9) @mention" in html
    assert f"1 {HOSTILE_LABEL}" in visible_cells(html)


def test_every_parked_record_has_an_open_error(host):
    parked = record_keys(host, queue, queue.c.state == "parked")

    assert parked
    assert parked <= record_keys(host, errors, errors.c.state == "open")


def test_every_open_error_waits_in_the_queue(host):
    assert record_keys(host, errors, errors.c.state == "open") <= record_keys(host, queue)


def test_demo_backlog_has_pending_records_of_varied_ages(host):
    ages = sa.select(sa.func.min(queue.c.queued_at), sa.func.max(queue.c.queued_at))
    oldest, newest = rows(host, ages.where(queue.c.state == "pending"))[0]

    assert sorted(pending_per_object(host)) == OBJECTS
    assert NOW - newest < dt.timedelta(minutes=30)
    assert NOW - oldest > dt.timedelta(hours=6)


def test_backlog_snapshots_show_leads_growing_and_contacts_draining(host):
    snapshot = BacklogSnapshot.__table__
    taken_at = sa.select(sa.func.max(snapshot.c.taken_at)).where(snapshot.c.taken_at <= NOW - dt.timedelta(hours=6))
    per_object = sa.select(snapshot.c.object_type, sa.func.sum(snapshot.c.pending_count))
    six_hours_ago = per_object.where(snapshot.c.taken_at == scalar(host, taken_at)).group_by(snapshot.c.object_type)
    before = dict(rows(host, six_hours_ago))
    now = pending_per_object(host)

    assert now["Lead"] > before["Lead"]
    assert now["Contact"] < before["Contact"]


def test_a_restart_does_not_seed_again(make_host, empty_db_url):
    first = make_host(empty_db_url)
    counted = [count(first, table) for table in (events, errors, queue)]

    second = make_host(empty_db_url)

    assert [count(second, table) for table in (events, errors, queue)] == counted
    assert scalar(second, sa.text("SELECT COUNT(*) FROM acme_user")) == 2


def test_reset_drops_the_data_and_seeds_it_afresh(make_host, empty_db_url):
    first = make_host(empty_db_url)
    with first.app_context():
        host_db.session.execute(sa.text("UPDATE acme_user SET timezone = 'Asia/Tokyo'"))
        host_db.session.commit()

    second = make_host(empty_db_url, EXAMPLE_HOST_RESET=True)

    assert rows(second, sa.text("SELECT timezone FROM acme_user ORDER BY username")) == [
        ("Europe/Rome",), ("America/Sao_Paulo",)
    ]


def test_without_demo_data_the_console_starts_empty(make_host, empty_db_url):
    app = make_host(empty_db_url, EXAMPLE_HOST_DEMO_DATA=False)

    assert [count(app, table) for table in (events, errors, queue)] == [0, 0, 0]


# -- access -----------------------------------------------------------------------------------


def test_admin_redirects_to_the_login_page_when_signed_out(sqlite_host):
    response = sqlite_host.test_client().get("/admin/")

    assert (response.status_code, response.headers["Location"]) == (302, "/login?next=/admin/")


def test_plugin_views_follow_the_console_policy_when_signed_out(sqlite_host):
    client = sqlite_host.test_client()

    for url in plugin_urls(sqlite_host).values():
        response = client.get(url)
        assert (response.status_code, response.headers["Location"]) == (302, f"/login?next={url}")


def test_signing_in_returns_to_the_page_asked_for(sqlite_host):
    client = sqlite_host.test_client()
    status_url = plugin_urls(sqlite_host)["Sync Status"]
    login_url = client.get(status_url).headers["Location"]
    token = csrf_token(client.get(login_url).text)

    response = client.post(login_url, data={"username": "admin", "password": "admin", "csrf_token": token})

    assert (response.status_code, response.headers["Location"]) == (302, status_url)


def test_signed_in_admin_shows_the_microsoft_dynamics_menu_with_both_views(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")

    page = client.get("/admin/").text
    urls = plugin_urls(sqlite_host)

    assert "Microsoft Dynamics" in page
    assert sorted(urls) == ["Sync Errors", "Sync Status"]
    for name, url in urls.items():
        assert f'href="{url}"' in page or f'href="{url.rstrip("/")}"' in page
        response = client.get(url)
        assert response.status_code == 200, name
        assert name in response.text


def test_login_without_csrf_token_is_refused(sqlite_host):
    client = sqlite_host.test_client()

    response = client.post("/login", data={"username": "admin", "password": "admin"})

    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


def test_wrong_password_is_refused(sqlite_host):
    client = sqlite_host.test_client()

    response = sign_in(client, "admin", "not-the-password")

    assert response.status_code == 200
    assert "Wrong username or password." in response.text
    assert client.get("/admin/").status_code == 302


def post_login(client, query: str):
    token = csrf_token(client.get("/login").text)
    return client.post("/login?" + query, data={"username": "admin", "password": "admin", "csrf_token": token})


@pytest.mark.parametrize("target", [
    "//evil.example/", "https://evil.example/", "/\\evil.example", "http:evil.example", "javascript:alert(1)",
    "admin/", "/ /evil.example", "/\u2028/evil.example", "///evil.example",
])
def test_login_never_redirects_off_site(sqlite_host, target):
    response = post_login(sqlite_host.test_client(), urlencode({"next": target}))

    assert (response.status_code, response.headers["Location"]) == (302, "/admin/")


# Found by an outside probe: a tab became "//evil.example" in Chromium, a newline a 500.
@pytest.mark.parametrize("query", ["next=/%09/evil.example", "next=/%0A/x", "next=/%0D%0ASet-Cookie:x=1"])
def test_login_sends_a_next_with_control_characters_to_the_index(sqlite_host, query):
    response = post_login(sqlite_host.test_client(), query)

    assert (response.status_code, response.headers["Location"]) == (302, "/admin/")


def test_login_keeps_the_query_and_fragment_of_a_same_site_next(sqlite_host):
    response = post_login(sqlite_host.test_client(), urlencode({"next": "/admin/dynamics/errors/?search=a%20b#top"}))

    assert response.headers["Location"] == "/admin/dynamics/errors/?search=a%20b#top"


def test_signing_out_needs_a_post_with_csrf_token(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")
    page = client.get("/admin/").text

    assert client.get("/logout").status_code == 405
    client.post("/logout", data={})
    assert client.get("/admin/").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert client.get("/admin/").status_code == 302


def test_viewer_sees_the_plugin_views(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "viewer")

    assert [client.get(url).status_code for url in plugin_urls(sqlite_host).values()] == [200, 200]


def test_viewer_cannot_act_on_sync_errors(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "viewer")
    errors_url = plugin_urls(sqlite_host)["Sync Errors"]
    token = csrf_token(client.get("/admin/").text)
    open_before = count(sqlite_host, errors, errors.c.state == "open")

    response = client.post(
        errors_url + "action/",
        data={"csrf_token": token, "action": "ignore", "scope": "all", "confirmed": "1", "url": errors_url},
    )

    assert response.status_code == 403
    assert count(sqlite_host, errors, errors.c.state == "open") == open_before


def test_operator_may_act_on_sync_errors(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")
    errors_url = plugin_urls(sqlite_host)["Sync Errors"]
    token = csrf_token(client.get(errors_url).text)

    response = client.post(
        errors_url + "action/", data={"csrf_token": token, "action": "ignore", "scope": "all", "url": errors_url}
    )

    assert response.status_code == 200  # the confirmation page


def test_viewer_cannot_edit_host_records(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "viewer")
    customer = customer_not_waiting(sqlite_host)
    token = csrf_token(client.get("/admin/").text)

    response = client.post(f"/admin/customers/edit/?id={customer.id}", data={"csrf_token": token, "name": "Changed"})

    assert response.status_code == 302
    assert count(sqlite_host, queue, queue.c.object_type == "Contact", queue.c.record_id == str(customer.id)) == 0


# -- tracking: the host's own screens enqueue -------------------------------------------------


def test_editing_a_customer_in_the_console_enqueues_exactly_one_pending_update(host):
    client = host.test_client()
    sign_in(client, "admin")
    customer = customer_not_waiting(host)
    edit_url = f"/admin/customers/edit/?id={customer.id}"
    token = csrf_token(client.get(edit_url).text)

    response = client.post(
        edit_url,
        data={
            "csrf_token": token,
            "name": "Ada Lovelace",
            "email": customer.email or "",
            "phone": customer.phone or "",
            "company": str(customer.company_id),
        },
    )

    assert response.status_code == 302
    waiting = rows(
        host,
        sa.select(queue.c.operation, queue.c.direction, queue.c.state, queue.c.label, queue.c.queued_at).where(
            queue.c.object_type == "Contact", queue.c.record_id == str(customer.id)
        ),
    )
    assert waiting == [("update", "to_dynamics", "pending", "Ada Lovelace", NOW)]


def test_creating_a_prospect_in_the_console_enqueues_one_pending_insert(host):
    client = host.test_client()
    sign_in(client, "admin")
    token = csrf_token(client.get("/admin/prospects/new/").text)
    before = count(host, queue)

    client.post("/admin/prospects/new/", data={"csrf_token": token, "name": "Grace Hopper", "status": "New"})

    new_id = scalar(host, sa.text("SELECT id FROM acme_prospect WHERE name = 'Grace Hopper'"))
    waiting = rows(
        host,
        sa.select(queue.c.operation, queue.c.state, queue.c.label).where(
            queue.c.object_type == "Lead", queue.c.record_id == str(new_id)
        ),
    )
    assert waiting == [("insert", "pending", "Grace Hopper")]
    assert count(host, queue) == before + 1


# -- Content-Security-Policy and languages ----------------------------------------------------


def test_every_page_sends_a_strict_csp_with_a_fresh_nonce(sqlite_host):
    client = sqlite_host.test_client()

    first = client.get("/login").headers["Content-Security-Policy"]
    second = client.get("/login").headers["Content-Security-Policy"]

    nonce = re.search(r"script-src 'self' 'nonce-([\w-]+)'", first).group(1)
    assert f"style-src 'self' 'nonce-{nonce}'" in first
    assert "unsafe-inline" not in first and "object-src 'none'" in first
    assert nonce not in second


def test_plugin_pages_carry_no_inline_script_or_style_without_the_nonce(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")

    for url in [*plugin_urls(sqlite_host).values(), "/login"]:
        response = client.get(url)
        nonce = re.search(r"'nonce-([\w-]+)'", response.headers["Content-Security-Policy"]).group(1)
        tags = re.findall(r"<(?:script|style)\b[^>]*>", response.text)
        assert tags, url
        assert [tag for tag in tags if f'nonce="{nonce}"' not in tag] == [], url
        assert re.findall(r"\sstyle=", response.text) == [], url


def test_lang_switch_is_remembered_for_the_session(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")
    status_url = plugin_urls(sqlite_host)["Sync Status"]

    client.get("/admin/?lang=it")

    assert "Stato di sincronizzazione" in client.get(status_url).text


def test_the_browser_language_is_used_until_one_is_chosen(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")
    status_url = plugin_urls(sqlite_host)["Sync Status"]

    assert "Status da sincronização" in client.get(status_url, headers={"Accept-Language": "pt-BR,pt;q=0.9"}).text
    client.get("/admin/?lang=de")
    assert "Synchronisierungsstatus" in client.get(status_url, headers={"Accept-Language": "pt-BR"}).text


def test_the_language_menu_offers_six_languages(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")

    links = re.findall(r'href="/admin/\?lang=(\w+)"', client.get("/admin/").text)

    assert links == ["en", "it", "pt_BR", "de", "es", "fr"]


#: The console's own strings, by language: the login page, then a console page (the sign-out button, the CRM menu).
HOST_STRINGS = {
    "en": {"login": ["Sign in", "Username", "Password", "Sign in"], "console": ["Sign out", "Home", "Companies", "Deals"]},
    "de": {"login": ["Anmelden", "Benutzername", "Passwort", "Anmelden"],
           "console": ["Abmelden", "Startseite", "Unternehmen", "Verkaufschancen"]},
    "fr": {"login": ["Se connecter", "Nom d'utilisateur", "Mot de passe", "Se connecter"],
           "console": ["Se déconnecter", "Accueil", "Entreprises", "Affaires"]},
}  # fmt: skip


def login_page_strings(html: str) -> list[str]:
    """The heading, the two field labels and the button of the login page."""
    heading = re.search(r"<h1[^>]*>([^<]*)</h1>", html).group(1)
    labels = re.findall(r'<label for="\w+">([^<]*)</label>', html)
    button = re.search(r'<button class="btn btn-primary" type="submit">([^<]*)</button>', html).group(1)
    return [heading, *labels, button]


def console_strings(html: str) -> list[str]:
    """The sign-out button, then the menu entries Home, Companies and Deals."""
    sign_out = re.search(r'<button class="btn btn-sm btn-outline-light" type="submit">([^<]*)</button>', html).group(1)
    menu = [re.search(rf'href="{url}">\s*([^<]*?)\s*</a>', html).group(1)
            for url in ("/admin/", "/admin/companies/", "/admin/deals/")]  # fmt: skip
    return [sign_out, *menu]


@pytest.mark.parametrize("lang", sorted(HOST_STRINGS))
def test_the_login_page_follows_the_selected_language(sqlite_host, lang):
    html = sqlite_host.test_client().get(f"/login?lang={lang}").text

    assert login_page_strings(html) == HOST_STRINGS[lang]["login"]


@pytest.mark.parametrize("lang", sorted(HOST_STRINGS))
def test_the_console_pages_follow_the_selected_language(sqlite_host, lang):
    client = sqlite_host.test_client()
    sign_in(client, "admin")

    html = client.get(f"/admin/?lang={lang}").text

    assert console_strings(html) == HOST_STRINGS[lang]["console"]


def test_a_wrong_password_is_reported_in_the_selected_language(sqlite_host):
    client = sqlite_host.test_client()
    client.get("/login?lang=fr")

    response = sign_in(client, "admin", "not-the-password")

    assert '<div class="alert alert-danger">Nom d&#39;utilisateur ou mot de passe incorrect.</div>' in response.text


def test_the_company_list_labels_its_columns_in_the_selected_language(sqlite_host):
    client = sqlite_host.test_client()
    sign_in(client, "admin")

    html = client.get("/admin/companies/?lang=de").text

    headers = re.findall(r'<th class="column-header[^"]*">\s*<a [^>]*>\s*([^<]*?)\s*</a>', html)
    assert headers == ["Name", "Branche", "Ort", "Land", "Website"]


@pytest.mark.parametrize("locale", ["it", "pt_BR", "de", "es", "fr"])
def test_every_message_of_the_console_is_translated(locale):
    messages = {message.id for message in extract_messages(Path(ROOT, "example_host")) if message.id}

    catalog = read_catalog(po_path(locale, example_host.TRANSLATIONS_DIR, "messages"), locale)

    assert messages == {message.id for message in catalog if message.id and message.string}


@pytest.mark.browser
def test_plugin_pages_run_under_the_csp_without_violations(sqlite_host, browser, live_server):
    base_url = live_server(sqlite_host)
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(base_url + "/admin/")
        page.fill("#username", "admin")
        page.fill("#password", "admin")
        page.click("button[type=submit]")
        page.wait_for_url(base_url + "/admin/")
        for url in plugin_urls(sqlite_host).values():
            page.goto(base_url + url)
            page.wait_for_load_state("load")
    finally:
        page.close()

    assert problems == []


# -- the simulator ----------------------------------------------------------------------------


def test_a_simulator_step_reports_what_it_recorded(host):
    counts_before = [count(host, events), count(host, errors)]

    report = Simulator(host, example_host.sync, random.Random(7)).step()

    assert report.changed
    assert report.claimed == report.synced + report.failed > 0
    assert [count(host, events), count(host, errors)] == [
        counts_before[0] + report.synced,
        counts_before[1] + report.failed,
    ]


def test_records_changed_by_the_simulator_wait_in_the_queue(host):
    report = Simulator(host, example_host.sync, random.Random(7)).step()

    changed = {(o, r, "to_dynamics") for o, r in report.changed}
    pulled = {(o, r, "from_dynamics") for o, r in report.pulled}
    assert changed | pulled <= record_keys(host, queue)


def test_the_simulator_fails_some_records_with_dataverse_codes(host):
    simulator = Simulator(host, example_host.sync, random.Random(3))
    errors_before = count(host, errors)

    reports = [simulator.step() for _ in range(40)]

    failed = sum(report.failed for report in reports)
    newest = sa.select(errors.c.error_code).order_by(errors.c.id.desc()).limit(failed)
    new_codes = {row[0] for row in rows(host, newest)}
    assert failed == count(host, errors) - errors_before > 0
    assert new_codes <= {error.code for error in CATALOGUE}


def test_the_simulator_fills_an_empty_console(make_host, empty_db_url):
    app = make_host(empty_db_url, EXAMPLE_HOST_DEMO_DATA=False)
    simulator = Simulator(app, example_host.sync, random.Random(5))

    reports = [simulator.step() for _ in range(3)]

    inserted = {(o, r, "to_dynamics") for report in reports for o, r in report.changed}
    synced = sum(report.synced for report in reports)
    assert inserted and record_keys(app, queue) | record_keys(app, events) >= inserted
    assert count(app, events) == synced


def test_the_simulator_is_deterministic_with_a_seeded_rng(make_host, tmp_path):
    first = Simulator(make_host(f"sqlite:///{tmp_path / 'a.sqlite'}"), example_host.sync, random.Random(11)).step()
    second = Simulator(make_host(f"sqlite:///{tmp_path / 'b.sqlite'}"), example_host.sync, random.Random(11)).step()

    assert first == second


def test_the_console_syncs_through_the_connector_to_a_local_dataverse(make_host, empty_db_url, local_dataverse, make_worker):
    from example_host.models import SYNCED_MODELS
    from flask_dynamics_sync.dataverse.settings import local_dataverse_config

    app = make_host(empty_db_url, EXAMPLE_HOST_DEMO_DATA=False, **local_dataverse_config(local_dataverse))
    simulator = Simulator(app, example_host.sync, random.Random(5), plays_sync=False)
    reports = [simulator.step() for _ in range(3)]
    report = make_worker(app).run_once()

    assert all(r.claimed == r.synced == 0 and not r.pulled for r in reports)
    assert report.synced == report.claimed > 0
    entity_sets = {"Lead": "leads", "Contact": "contacts", "Account": "accounts", "Opportunity": "opportunities"}
    for model, object_type in SYNCED_MODELS.items():
        stored = {row["dsync_hostid"] for row in local_dataverse.rows(entity_sets[object_type])}
        assert stored == set(scalar_list(app, sa.select(model.id))), object_type
    assert count(app, queue) == 0


def scalar_list(app: Flask, statement: sa.Executable) -> list[t.Any]:
    with app.app_context(), host_db.engine.connect() as conn:
        return list(conn.scalars(statement))


def test_the_simulator_thread_stops_cleanly(sqlite_host):
    simulator = Simulator(sqlite_host, example_host.sync, interval=3600).start()
    thread = simulator._thread

    simulator.stop()

    assert thread is not None and not thread.is_alive()


# -- the command ------------------------------------------------------------------------------


def test_command_line_defaults():
    args = parse_args([])

    assert (args.host, args.port, args.no_simulator, args.reset, args.debug) == (
        "127.0.0.1", 5000, False, False, False
    )


def test_command_line_options():
    args = parse_args(["--host", "0.0.0.0", "--port", "8080", "--no-simulator", "--reset"])

    assert (args.host, args.port, args.no_simulator, args.reset) == ("0.0.0.0", 8080, True, True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_m_example_host_serves_the_console_and_stops_on_ctrl_c(tmp_path):
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "example_host", "--port", str(port),
         "--database-url", f"sqlite:///{tmp_path / 'demo.sqlite'}"],  # fmt: skip
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Demo login: viewer" in line:
                break
        url = f"http://127.0.0.1:{port}/admin/"
        assert f" * Acme CRM console: {url}\n" in lines
        assert " * Demo login: admin / admin (operator)\n" in lines
        assert any(line.startswith(" * Sync worker: sending records to the local Dataverse at https://127.0.0.1:") for line in lines)
        # The URL is printed once the socket listens: the first request is answered.
        with pytest.raises(urllib.error.HTTPError) as redirect:
            urllib.request.build_opener(_NoRedirect).open(url, timeout=10)
        assert (redirect.value.code, redirect.value.headers["Location"]) == (302, "/login?next=/admin/")
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in err


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: t.Any, **kwargs: t.Any) -> None:
        return None
