"""The plugin in each kind of console it is embedded in (``tests/hosts/``), as their owners wrote them.

For every host: the menu shows each plugin view once; every plugin URL, enumerated
from ``app.url_map``, answers as the host's access policy says (to its signed-in
staff and to anonymous visitors); the host's own pages answer as they do without
the plugin; retry/ignore/resolve work, or the list says in one line why not; and
nothing logs a traceback. Hosts where the database adds nothing run on SQLite; the
plain-SQLAlchemy and Flask-Migrate hosts run on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import typing as t
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_dynamics_sync.errors import AccessPolicyWarning
from flask_dynamics_sync.models import SyncError

from .conftest import page_text
from .hosts import custom_base
from .hosts import factory
from .hosts import flask_login_host
from .hosts import flask_security_host
from .hosts import locale_host
from .hosts import migrate_host
from .hosts import no_secret_key
from .hosts import plain_sqlalchemy
from .hosts import strict_undefined

STATUS_URL = "/admin/dynamics/status/"
ERRORS_URL = "/admin/dynamics/errors/"
PLUGIN_BLUEPRINTS = ("dynamics_sync.", "dynamics_sync_status.", "dynamics_sync_errors.")

#: What each plugin endpoint answers a visitor the host lets in (the POST endpoints: without a form).
ANSWERS = {
    "dynamics_sync.static": 200,
    "dynamics_sync_status.index": 200,
    "dynamics_sync_status.details": 200,
    "dynamics_sync_status.json": 200,
    "dynamics_sync_status.metrics": 200,
    "dynamics_sync_status.pause_view": 400,  # no CSRF token
    "dynamics_sync_errors.index_view": 200,
    "dynamics_sync_errors.details_view": 200,
    "dynamics_sync_errors.groups_view": 200,
    "dynamics_sync_errors.export": 200,
    "dynamics_sync_errors.action_view": 400,  # no CSRF token
    "dynamics_sync_errors.ajax_lookup": 404,  # no ajax fields
    "dynamics_sync_errors.ajax_update": 404,
    "dynamics_sync_errors.create_view": 302,  # read-only: back to the list
    "dynamics_sync_errors.edit_view": 302,
    "dynamics_sync_errors.delete_view": 302,
}
URL_ARGUMENTS = {"object_type": "Lead", "export_type": "csv", "filename": "errors.css"}
#: The endpoints that change state: refused (403) when the host leaves actions off.
STATE_CHANGING = (".action_view", ".pause_view")


@dataclasses.dataclass(frozen=True)
class PluginRequest:
    endpoint: str
    method: str
    url: str


def plugin_requests(app: Flask, error_id: int) -> list[PluginRequest]:
    """Every method of every plugin URL in ``app.url_map``, with arguments that name existing things."""
    requests = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(PLUGIN_BLUEPRINTS):
            continue
        url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: URL_ARGUMENTS[m.group(1)], rule.rule)
        if rule.endpoint.endswith(".details_view"):
            url += f"?id={error_id}"
        requests.extend(PluginRequest(rule.endpoint, method, url) for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return sorted(requests, key=lambda r: (r.url, r.method))


def record_a_failed_sync(app: Flask) -> int:
    """A parked Lead L-1 and its open sync error, through the recording API; returns the error's id."""

    sync = app.extensions["dynamics_sync"].extension
    with app.app_context():
        with sync.engine.begin() as conn:
            sync.enqueue("Lead", "L-1", "insert", label="Ada Lovelace", session=conn)
        [record] = sync.claim()
        sync.mark_failed(record, "0x80040237", "Duplicate record", retry=False)
        with sync.engine.connect() as conn:
            return int(conn.scalar(sa.select(SyncError.id)))


def answer(response: t.Any) -> tuple[int, str | None]:
    """Status and (percent-decoded) ``Location`` of a response."""
    location = response.headers.get("Location")
    return response.status_code, None if location is None else unquote(location)


def answers(client: t.Any, requests: list[PluginRequest]) -> dict[str, tuple[int, str | None]]:
    """``{"GET /url": (status, Location)}`` for each request."""
    return {f"{r.method} {r.url}": answer(client.open(r.url, method=r.method)) for r in requests}


def status_codes(client: t.Any, requests: list[PluginRequest]) -> dict[str, int]:
    """``{"GET /url": status}`` for each request."""
    return {key: status for key, (status, _location) in answers(client, requests).items()}


def expected_codes(requests: list[PluginRequest], *, actions_off: bool = False) -> dict[str, int]:
    """What :data:`ANSWERS` says each request gets (403 for the action when the host leaves actions off)."""
    return {
        f"{r.method} {r.url}": 403 if actions_off and r.endpoint.endswith(STATE_CHANGING) else ANSWERS[r.endpoint]
        for r in requests
    }


def menu_links(html: str) -> dict[str, int]:
    """How many times the page links each plugin view."""
    return {url: len(re.findall(rf'href="{re.escape(url)}"', html)) for url in (STATUS_URL, ERRORS_URL)}


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


# -- the host kinds ---------------------------------------------------------------------------


def stay_anonymous(client: t.Any) -> None:
    """Open consoles: nobody signs in."""


def staff_session(client: t.Any) -> None:
    with client.session_transaction() as session:
        session["staff"] = True


def flask_login_sign_in(client: t.Any) -> None:
    response = client.post("/login", data={"email": "agent@example.com", "password": "s3cret"})
    assert response.status_code == 302


def flask_security_sign_in(client: t.Any, email: str = "boss@example.com") -> None:
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": email, "password": "s3cret-pass", "csrf_token": token})
    assert response.status_code == 302


def login_redirect(url: str) -> tuple[int, str]:
    """What the Flask-Login and Flask-Security hosts give an anonymous visitor: their login page, and back."""
    return 302, f"/login?next=http://localhost{url}"


def forbidden(url: str) -> tuple[int, None]:
    return 403, None


OFF_WITHOUT_SECRET_KEY = (
    "Retry, ignore and resolve need a session to protect them against forged requests, "
    "and this console sets no SECRET_KEY."
)
OFF_WITHOUT_POLICY = (
    "Retry, ignore and resolve are off: this console has not said who may use them "
    "(DynamicsSync(access=...) or can_act=...)."
)


@dataclasses.dataclass(frozen=True)
class HostKind:
    create_app: Callable[[str], Flask]
    sign_in: Callable[[t.Any], None]
    refusal: Callable[[str], tuple[int, str | None]] | None
    """What an anonymous visitor gets on a plugin or host page; ``None``: the console is open."""
    own_pages: tuple[str, ...]
    """The host's own admin pages."""
    actions_off: str | None = None
    """The line the errors list shows when the host's setup leaves the actions off."""
    warned: bool = False
    """Public console and no policy given: ``init_app`` warns."""


HOSTS = {
    "no_secret_key": HostKind(
        no_secret_key.create_app, stay_anonymous, None, ("/admin/", "/admin/customer/"),
        actions_off=OFF_WITHOUT_SECRET_KEY, warned=True,
    ),
    "strict_undefined": HostKind(strict_undefined.create_app, staff_session, forbidden, ("/admin/", "/admin/invoice/")),
    "flask_login": HostKind(flask_login_host.create_app, flask_login_sign_in, login_redirect, ("/admin/", "/admin/ticket/")),
    "flask_security": HostKind(
        flask_security_host.create_app, flask_security_sign_in, login_redirect, ("/admin/", "/admin/order/")
    ),
    "custom_base": HostKind(
        custom_base.create_app, stay_anonymous, None, ("/admin/", "/admin/campaign/"),
        actions_off=OFF_WITHOUT_POLICY, warned=True,
    ),
    "locale": HostKind(locale_host.create_app, stay_anonymous, None, ("/admin/", "/admin/branch/")),
}
GUARDED = sorted(name for name, kind in HOSTS.items() if kind.refusal is not None)


@pytest.fixture(autouse=True)
def no_traceback_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test does, no log record carries a traceback."""
    caplog.set_level(logging.INFO)
    yield
    assert [r.getMessage() for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()] == []


@dataclasses.dataclass
class RunningHost:
    app: Flask
    kind: HostKind
    error_id: int
    warnings: list[str]

    def client(self, *, signed_in: bool) -> t.Any:
        client = self.app.test_client()
        if signed_in:
            self.kind.sign_in(client)
        return client


@pytest.fixture(scope="module", params=sorted(HOSTS))
def host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RunningHost:
    """Each host kind on a SQLite file, with one open sync error (shared by the tests of this module)."""
    kind = HOSTS[request.param]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AccessPolicyWarning)
        app = kind.create_app(f"sqlite:///{tmp_path_factory.mktemp(request.param) / 'console.db'}")
    policy_warnings = [str(w.message) for w in caught if issubclass(w.category, AccessPolicyWarning)]
    return RunningHost(app, kind, record_a_failed_sync(app), policy_warnings)


def test_only_a_public_console_without_any_policy_is_warned(host: RunningHost) -> None:
    assert len(host.warnings) == int(host.kind.warned)
    assert all("Pass DynamicsSync(access=" in message for message in host.warnings)


def test_the_menu_shows_each_plugin_view_once(host: RunningHost) -> None:
    html = host.client(signed_in=True).get("/admin/").get_data(as_text=True)

    assert menu_links(html) == {STATUS_URL: 1, ERRORS_URL: 1}


def test_every_plugin_url_answers_the_hosts_staff(host: RunningHost) -> None:
    requests = plugin_requests(host.app, host.error_id)

    got = status_codes(host.client(signed_in=True), requests)

    assert got == expected_codes(requests, actions_off=bool(host.kind.actions_off))


@pytest.mark.parametrize("host", GUARDED, indirect=True)
def test_every_plugin_url_refuses_anonymous_visitors_as_the_host_does(host: RunningHost) -> None:
    requests = [r for r in plugin_requests(host.app, host.error_id) if r.endpoint != "dynamics_sync.static"]

    got = answers(host.client(signed_in=False), requests)

    assert got == {f"{r.method} {r.url}": host.kind.refusal(r.url) for r in requests}


def test_a_flask_security_user_without_the_role_gets_403_as_on_the_hosts_own_pages(tmp_path: t.Any) -> None:
    app = flask_security_host.create_app(f"sqlite:///{tmp_path / 'orders.db'}")
    requests = [r for r in plugin_requests(app, record_a_failed_sync(app)) if r.endpoint != "dynamics_sync.static"]
    clerk = app.test_client()
    flask_security_sign_in(clerk, "clerk@example.com")

    got = status_codes(clerk, requests)

    assert (got, clerk.get("/admin/order/").status_code) == (dict.fromkeys(got, 403), 403)
    assert len(got) == len(requests) > 10


def test_the_hosts_own_pages_answer_its_staff(host: RunningHost) -> None:
    staff = host.client(signed_in=True)

    assert {url: staff.get(url).status_code for url in host.kind.own_pages} == dict.fromkeys(host.kind.own_pages, 200)


@pytest.mark.parametrize("host", sorted(set(GUARDED) - {"strict_undefined"}), indirect=True)
def test_the_hosts_own_pages_refuse_anonymous_visitors_as_before(host: RunningHost) -> None:
    anonymous = host.client(signed_in=False)

    got = {url: answer(anonymous.get(url)) for url in host.kind.own_pages}

    assert got == {url: host.kind.refusal(url) for url in host.kind.own_pages}


def test_actions_work_or_the_list_says_why_not(host: RunningHost) -> None:
    client = host.client(signed_in=True)
    page = client.get(ERRORS_URL).get_data(as_text=True)
    shown = re.findall(r'class="small text-muted mb-2 ds-actions-off">([^<]*)<', page)

    if host.kind.actions_off:
        refused = client.post(ERRORS_URL + "action/", data={"action": "ignore", "scope": "selected", "rowid": host.error_id})
        assert (shown, "ds-action-ignore" in page) == ([host.kind.actions_off], False)
        assert (refused.status_code, host.kind.actions_off in refused.get_data(as_text=True)) == (403, True)
        return
    data = {"csrf_token": csrf_token(page), "action": "ignore", "scope": "selected", "rowid": host.error_id}
    confirmation = client.post(ERRORS_URL + "action/", data=data)
    response = client.post(ERRORS_URL + "action/", data={**data, "confirmed": "1"})
    details = client.get(ERRORS_URL + f"details/?id={host.error_id}").get_data(as_text=True)

    assert (shown, confirmation.status_code, response.status_code) == ([], 200, 302)
    assert "Ignore 1 sync error?" in confirmation.get_data(as_text=True)
    assert "badge-secondary" in details  # the Ignored badge


def test_unknown_things_are_404_pages_inside_every_console(host: RunningHost) -> None:
    client = host.client(signed_in=True)

    pages = [client.get(STATUS_URL + "details/Nope"), client.get(ERRORS_URL + f"details/?id={host.error_id + 1000}")]

    texts = [page.get_data(as_text=True) for page in pages]
    assert [page.status_code for page in pages] == [404, 404]
    assert [("ds-not-found" in text, "Microsoft Dynamics" in text) for text in texts] == [(True, True)] * 2  # in the console


# -- an app factory, called three times in one process ------------------------------------------


def test_three_apps_from_one_factory_each_serve_every_plugin_url(tmp_path: t.Any) -> None:
    apps = [factory.create_app(f"sqlite:///{tmp_path / f'warehouse{n}.db'}") for n in range(3)]
    error_ids = [record_a_failed_sync(app) for app in apps]

    for app, error_id in zip(apps, error_ids):
        requests = plugin_requests(app, error_id)
        assert status_codes(app.test_client(), requests) == expected_codes(requests)


def test_three_apps_from_one_factory_each_show_each_plugin_view_once(tmp_path: t.Any) -> None:
    apps = [factory.create_app(f"sqlite:///{tmp_path / f'warehouse{n}.db'}") for n in range(3)]

    pages = [app.test_client().get("/admin/").get_data(as_text=True) for app in apps]

    assert [menu_links(page) for page in pages] == [{STATUS_URL: 1, ERRORS_URL: 1}] * 3
    category = factory.admin.get_category_menu_item("Microsoft Dynamics")
    assert [str(child.name) for child in category.get_children()] == ["Sync Status", "Sync Errors"]


def test_each_factory_app_keeps_its_own_data(tmp_path: t.Any) -> None:
    first, second = (factory.create_app(f"sqlite:///{tmp_path / f'warehouse{n}.db'}") for n in range(2))
    record_a_failed_sync(first)

    listed = ["Duplicate record" in app.test_client().get(ERRORS_URL).get_data(as_text=True) for app in (first, second)]

    assert listed == [True, False]


# -- plain SQLAlchemy: an engine and a scoped_session ---------------------------------------------


@pytest.fixture
def logistics(empty_db_url: str) -> Iterator[Flask]:
    """The plain-SQLAlchemy host on a database of its own (each backend)."""
    app = plain_sqlalchemy.create_app(empty_db_url)
    yield app
    app.engine.dispose()


def test_a_plain_sqlalchemy_host_serves_every_plugin_url(logistics: Flask) -> None:
    requests = plugin_requests(logistics, record_a_failed_sync(logistics))

    got = status_codes(logistics.test_client(), requests)

    assert got == expected_codes(requests)
    assert logistics.test_client().get("/admin/shipment/").status_code == 200


def test_enqueue_writes_in_the_plain_sqlalchemy_hosts_session(logistics: Flask) -> None:
    sync = logistics.extensions["dynamics_sync"].extension
    with logistics.app_context():
        session = sync._state().database.session
        session.add(plain_sqlalchemy.Shipment(tracking_number="TRK-1"))
        sync.enqueue("Account", "TRK-1", "insert")
        session.rollback()  # the host changes its mind: neither the shipment nor the change stays
        sync.enqueue("Account", "TRK-2", "insert")
        session.commit()

    total = logistics.test_client().get(STATUS_URL + "json").get_json()["backlog"]["total"]

    assert (total["inserts"], total["updates"]) == (1, 0)


def test_a_plain_sqlalchemy_hosts_actions_run_in_its_database(logistics: Flask) -> None:
    error_id = record_a_failed_sync(logistics)
    client = logistics.test_client()
    token = csrf_token(client.get(ERRORS_URL).get_data(as_text=True))

    client.post(ERRORS_URL + "action/", data={"csrf_token": token, "action": "retry", "scope": "selected",
                                               "rowid": error_id, "confirmed": "1"})

    total = logistics.test_client().get(STATUS_URL + "json").get_json()["backlog"]["total"]
    assert (total["inserts"], total["updates"]) == (1, 0)  # Lead L-1 is waiting again


# -- Flask-Migrate: the host's own flask db migrate --------------------------------------------------


@pytest.fixture
def procurement(empty_db_url: str, tmp_path: t.Any) -> Iterator[Flask]:
    """The Flask-Migrate host after its deployment steps: its own migrations and the plugin's (each backend)."""
    app = migrate_host.create_app(empty_db_url, str(tmp_path / "migrations"))
    runner = app.test_cli_runner()
    steps = [
        ["db", "init"],
        ["dynamics-sync", "db", "upgrade"],  # the plugin's tables, by its own migrations
        ["db", "migrate", "-m", "suppliers"],
        ["db", "upgrade"],
    ]
    for args in steps:
        result = runner.invoke(args=args)
        assert result.exit_code == 0, (args, result.output, result.exception)
    yield app
    with app.app_context():
        app.extensions["dynamics_sync"].extension.engine.dispose()


def test_the_hosts_flask_db_migrate_never_touches_the_plugins_tables(procurement: Flask, tmp_path: t.Any) -> None:
    [revision] = (tmp_path / "migrations" / "versions").glob("*_suppliers.py")

    again = procurement.test_cli_runner().invoke(args=["db", "migrate", "-m", "nothing"])

    source = revision.read_text()
    assert "op.create_table('supplier'" in source and "dynamics_sync" not in source
    assert (again.exit_code, "No changes in schema detected." in again.output) == (0, True)
    with procurement.app_context():
        tables = set(sa.inspect(procurement.extensions["dynamics_sync"].extension.engine).get_table_names())
    assert {"supplier", "alembic_version", "dynamics_sync_queue", "dynamics_sync_alembic_version"} <= tables


def test_the_migrate_hosts_pages_work_after_its_upgrade(procurement: Flask) -> None:
    requests = plugin_requests(procurement, record_a_failed_sync(procurement))

    got = status_codes(procurement.test_client(), requests)

    assert got == expected_codes(requests)


# -- a custom base template and regional locales ---------------------------------------------------


@pytest.mark.parametrize("url", [STATUS_URL, STATUS_URL + "details/Lead", ERRORS_URL, ERRORS_URL + "details/?id=1"])
def test_a_custom_base_templates_head_is_kept_on_every_plugin_page(tmp_path: t.Any, url: str) -> None:
    app = custom_base.create_app(f"sqlite:///{tmp_path / 'marketing.db'}")
    record_a_failed_sync(app)

    html = app.test_client().get(url).get_data(as_text=True)

    head = html.split("</head>")[0]
    assert '<meta name="backoffice-build" content="2026.03">' in head
    assert "Acme Marketing" in html


#: What the plugin's menu entry and Flask-Admin's "Home" read in each regional locale of the team.
REGIONAL = {
    "pt_PT": ("Status da sincronização", "Início"),
    "pt": ("Status da sincronização", "Início"),
    "es_MX": ("Estado de sincronización", "Inicio"),
    "fr_CA": ("Statut de la synchronisation", "Accueil"),
    "de_AT": ("Synchronisierungsstatus", "Start"),
    "it_CH": ("Stato di sincronizzazione", "Pagina Principale"),
}


@pytest.mark.parametrize("locale", sorted(REGIONAL))
def test_a_regional_locale_gets_its_languages_catalog_with_flask_admins_in_the_same_language(
    tmp_path: t.Any, locale: str
) -> None:
    app = locale_host.create_app(f"sqlite:///{tmp_path / 'branches.db'}")
    client = app.test_client()
    client.set_cookie("locale", locale)

    text = page_text(client.get(STATUS_URL).get_data(as_text=True))

    sync_status, home = REGIONAL[locale]
    assert (sync_status in text, home in text, "Sync Status" in text) == (True, True, False)


@pytest.mark.parametrize(("locale", "title"), [("de_AT", "Nicht gefunden"), ("pt_PT", "Não encontrado")])
def test_not_found_pages_are_translated(tmp_path: t.Any, locale: str, title: str) -> None:
    app = locale_host.create_app(f"sqlite:///{tmp_path / 'branches.db'}")
    client = app.test_client()
    client.set_cookie("locale", locale)

    pages = [client.get(STATUS_URL + "details/Nope"), client.get(ERRORS_URL + "details/?id=12345")]

    assert [(page.status_code, title in page.get_data(as_text=True)) for page in pages] == [(404, True)] * 2
