"""Shared fixtures.

Every test that touches the database runs on SQLite, PostgreSQL and MariaDB
(the ``db_url`` fixture is parametrized). Each test session works in a
database of its own, created on the server and dropped at the end, so several
runs can share one server.

Server URLs come from ``DYNAMICS_SYNC_TEST_POSTGRES_URL`` and
``DYNAMICS_SYNC_TEST_MARIADB_URL`` (defaults: the local servers). A server
that cannot be reached skips its cases with the reason; with
``DYNAMICS_SYNC_REQUIRE_ALL_DATABASES=1`` (set by ``.ci/run``) it fails instead.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import secrets
import shutil
import site
import subprocess
import sys
import threading
import typing as t
import uuid
import venv
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_admin import Admin
from flask_sqlalchemy import SQLAlchemy
from hypothesis import HealthCheck
from hypothesis import settings

from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync.i18n_tools import compile_catalogs
from flask_dynamics_sync.models import metadata

SERVER_URLS = {
    "postgresql": os.environ.get(
        "DYNAMICS_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get(
        "DYNAMICS_SYNC_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
    ),
}
DATABASES = ["sqlite", "postgresql", "mariadb"]
REQUIRE_ALL = os.environ.get("DYNAMICS_SYNC_REQUIRE_ALL_DATABASES", "") not in ("", "0", "false")

_skipped: list[str] = []

# -- property and fuzz tests ------------------------------------------------------------------
#: ``ci`` (the default) replays the same examples on every run, so a submission never fails on an
#: input unrelated to its change; ``explore`` (``DYNAMICS_SYNC_HYPOTHESIS=explore``) draws new ones,
#: ten times as many. An example that ever failed stays in its test as an ``@example``.
HYPOTHESIS_PROFILE = os.environ.get("DYNAMICS_SYNC_HYPOTHESIS", "ci")
FUZZ_SCALE = 10 if HYPOTHESIS_PROFILE == "explore" else 1
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture], "print_blob": True}
settings.register_profile("ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("explore", derandomize=False, **_COMMON)
settings.load_profile(HYPOTHESIS_PROFILE)


def fuzz(max_examples: int) -> settings:
    """Settings of a property or fuzz test: ``max_examples`` in CI, ten times as many when exploring."""
    return settings(max_examples=max_examples * FUZZ_SCALE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every Hypothesis test ``property``: ``pytest -m property`` runs just them."""
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.property)


def _unavailable(backend: str, reason: str) -> None:
    message = f"{backend} not reachable ({reason}); set DYNAMICS_SYNC_TEST_{'POSTGRES' if backend == 'postgresql' else 'MARIADB'}_URL"
    if REQUIRE_ALL:
        pytest.fail(message + " — DYNAMICS_SYNC_REQUIRE_ALL_DATABASES forbids skipping", pytrace=False)
    _skipped.append(message)
    pytest.skip(message)


def _create_server_database(backend: str) -> tuple[str, Callable[[], None]]:
    """Create a throw-away database on the server; return its URL and a dropper."""
    base = sa.make_url(SERVER_URLS[backend])
    name = f"dsync_{uuid.uuid4().hex[:12]}"
    try:
        admin_engine = sa.create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin_engine.connect() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    except Exception as exc:  # noqa: BLE001 - any connection problem means "unavailable"
        _unavailable(backend, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    def drop() -> None:
        with admin_engine.connect() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin_engine.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session", autouse=True)
def compiled_catalogs() -> None:
    """The source tree's ``.mo`` files, compiled from the ``.po`` files when missing or older."""
    compile_catalogs()


@pytest.fixture(scope="session", params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an empty database of the session, one per backend, with the plugin's tables."""
    backend = request.param
    if backend == "sqlite":
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}", (lambda: None)
    else:
        url, drop = _create_server_database(backend)
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database with the plugin's tables, for tests that are about no backend in particular."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite_only') / 'test.db'}"
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture(params=DATABASES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """URL of a database without any table, one per test and backend (migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url, drop = _create_server_database(request.param)
    try:
        yield url
    finally:
        drop()


#: For a test module or test where the database adds nothing (page rendering, access rules):
#: ``pytestmark = SQLITE_ONLY``. Every test where the database matters runs on all three.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def backend_of(url: str) -> str:
    name = sa.make_url(url).get_backend_name()
    return "mariadb" if name in ("mysql", "mariadb") else name


class FrozenClock:
    """A clock that only moves when told to: naive UTC, like the tables."""

    def __init__(self, now: dt.datetime) -> None:
        self.current = now

    def __call__(self) -> dt.datetime:
        return self.current

    def set(self, value: dt.datetime) -> None:
        self.current = value

    def advance(self, **kwargs: float) -> dt.datetime:
        self.current += dt.timedelta(**kwargs)
        return self.current


#: The fixed "now" of the tests: Tuesday 2026-03-10, 14:20:00 UTC.
NOW = dt.datetime(2026, 3, 10, 14, 20, 0)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


def _empty_tables(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        existing = set(sa.inspect(conn).get_table_names())  # a migration test may have dropped them
        for table in reversed(metadata.sorted_tables):
            if table.name in existing:
                conn.execute(table.delete())


def allow_everyone() -> bool:
    """An access policy that lets every visitor in."""
    return True


@pytest.fixture
def make_app(clock: FrozenClock) -> Iterator[Callable[..., Flask]]:
    """Build a host app on a given database URL: ``make_app(url, config={...}, admin=True)``.

    The app has its own ``SQLAlchemy`` and (unless ``admin=False``) its own
    ``Admin``; the plugin is initialised with the frozen clock. Plugin tables
    are emptied after the test.
    """
    made: list[tuple[Flask, SQLAlchemy]] = []

    def factory(
        url: str,
        *,
        config: dict[str, object] | None = None,
        admin: bool | Admin = True,
        sync_kwargs: dict[str, object] | None = None,
        db: SQLAlchemy | None = None,
    ) -> Flask:
        app = Flask(f"host_{len(made)}")
        app.config.update(
            SECRET_KEY="test-secret",
            SQLALCHEMY_DATABASE_URI=url,
            SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
            TESTING=True,
        )
        app.config.update(config or {})
        db = db or SQLAlchemy()
        db.init_app(app)
        host_admin = None
        if admin is True:
            host_admin = Admin(app, name="Host console")
        elif admin:
            host_admin = admin
            host_admin.init_app(app)
        # The test host's console is open (Flask-Admin's stock index view), and it lets everyone act.
        sync = DynamicsSync(clock=clock, **{"can_act": allow_everyone, **(sync_kwargs or {})})
        sync.init_app(app, admin=host_admin, db=db)
        app.extensions["test_db"] = db
        made.append((app, db))
        return app

    yield factory
    for app, db in made:
        with app.app_context():
            _empty_tables(db.engine)
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask], db_url: str) -> Iterator[Flask]:
    """The standard host app on each backend, inside an application context."""
    application = make_app(db_url)
    with application.app_context():
        yield application


@pytest.fixture
def empty_app(empty_db_url: str, make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """The standard host app on a database without the plugin's tables, inside an application context.

    ``empty_db_url`` comes first so that its database is dropped after the app is torn down.
    """
    application = make_app(empty_db_url)
    with application.app_context():
        yield application


#: The plugin's locales: English (the source) and the five shipped catalogs.
UI_LOCALES = ("en", "it", "pt_BR", "de", "es", "fr")


def page_text(html: str) -> str:
    """What a reader sees of an HTML page: tags dropped, entities decoded, whitespace collapsed."""
    import html as html_module
    import re

    text = re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", " ", html, flags=re.S)
    return " ".join(html_module.unescape(text).split())


def accept_language_selector() -> str | None:
    """A host's own Flask-Babel locale selector: the browser's preferred language among ours."""
    from flask import request

    return request.accept_languages.best_match(UI_LOCALES)


@pytest.fixture
def make_babel_app(make_app: Callable[..., Flask], sqlite_url: str) -> Callable[..., Flask]:
    """Build a host that uses Flask-Babel: ``make_babel_app(config={...}, timezone_selector=...)``.

    Its locale selector is its own (``Accept-Language``) unless ``locale_selector=`` is
    given. Localization does not depend on the database, so these hosts use SQLite only.
    """
    from flask_babel import Babel

    def factory(*, config: dict[str, object] | None = None, **babel_kwargs: t.Any) -> Flask:
        application = make_app(sqlite_url, config=config)
        babel_kwargs.setdefault("locale_selector", accept_language_selector)
        Babel(application, **babel_kwargs)
        return application

    return factory


@pytest.fixture
def babel_app(make_babel_app: Callable[..., Flask]) -> Iterator[Flask]:
    """A host with Flask-Babel and its own locale selector (``Accept-Language``), inside an app context."""
    application = make_babel_app()
    with application.app_context():
        yield application


@pytest.fixture
def babel_client(app: Flask) -> t.Any:
    """A client of the standard app (each backend) after the host added Flask-Babel with its own selector.

    Flask-Babel caches the locale in ``g``, which the requests of a test share with the
    ``app`` fixture's context: send one request per test and per language.
    """
    from flask_babel import Babel

    Babel(app, locale_selector=accept_language_selector)
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> SQLAlchemy:
    return app.extensions["test_db"]


@pytest.fixture
def sync(app: Flask) -> DynamicsSync:
    return app.extensions["dynamics_sync"].extension


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def sql_statements(db: SQLAlchemy) -> Iterator[list[str]]:
    """The SQL statements the app sends to the database during the test, in order."""
    sent: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ANN202
        sent.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", listener)
    yield sent
    sa.event.remove(db.engine, "before_cursor_execute", listener)


@pytest.fixture
def backend(db_url: str) -> str:
    return backend_of(db_url)


# -- the Sync Status data set ---------------------------------------------------------------


def insert_rows(db: SQLAlchemy, model: type, rows: list[dict[str, t.Any]]) -> None:
    """Insert plain rows into one of the plugin's tables (the jobs' output, in tests)."""
    with db.engine.begin() as conn:
        conn.execute(sa.insert(model.__table__), rows)


def hourly_row(hour: dt.datetime, object_type: str, operation: str, direction: str, synced: int, failed: int = 0) -> dict[str, t.Any]:
    return {
        "hour": hour, "object_type": object_type, "operation": operation, "direction": direction,
        "synced_count": synced, "failed_count": failed, "latency_sum_ms": 0, "latency_max_ms": None,
        "computed_at": hour + dt.timedelta(hours=1, minutes=5),
    }


@pytest.fixture
def status_dataset(sync: DynamicsSync, db: SQLAlchemy, clock: FrozenClock) -> None:
    """The known data the Sync Status tests read; the clock is left at NOW (14:20).

    Queue (through the recording API):
      Lead         insert L-1 "Ada Lovelace" since 11:20, insert L-2 since 13:20,
                   update L-3 "Grace Hopper" since 12:20, update L-4 (from Dynamics) since 13:50
      Contact      update C-1 "Alan Turing" since 13:35
      Account      update A-1 parked after a failure (not backlog)
      Opportunity  insert O-1 "Big deal" since 14:10, claimed by a worker (still backlog)
    Hourly throughput (the last full hour is 13:00-14:00):
      13:00 Lead insert→ 40, update→ 15 (2 failed), update← 5; Contact update→ 7
      12:00 Lead insert→ 99;  yesterday 14:00 Lead insert→ 21 (first hour of the 24-hour window)
      yesterday 13:00 Lead insert→ 500 (outside the window);  14:00 (current) Lead insert→ 3
    Backlog snapshots: 05:20 Lead 9; 07:20 (the one 6 hours back) Lead 4, Opportunity 2; 09:20 Lead 100.
    Rollup job: last finished 14:00:30, next run 15:00:00.
    """
    from flask_dynamics_sync.models import BacklogSnapshot
    from flask_dynamics_sync.models import HourlyThroughput
    from flask_dynamics_sync.models import JobState

    def enqueue_at(minutes_ago: int, object_type: str, record_id: str, operation: str, **kwargs: t.Any) -> None:
        clock.set(NOW - dt.timedelta(minutes=minutes_ago))
        sync.enqueue(object_type, record_id, operation, **kwargs)
        db.session.commit()

    enqueue_at(180, "Lead", "L-1", "insert", label="Ada Lovelace")
    enqueue_at(120, "Lead", "L-3", "update", label="Grace Hopper")
    enqueue_at(60, "Lead", "L-2", "insert")
    enqueue_at(30, "Lead", "L-4", "update", direction="from_dynamics")
    enqueue_at(45, "Contact", "C-1", "update", label="Alan Turing")
    enqueue_at(300, "Account", "A-1", "update")
    enqueue_at(10, "Opportunity", "O-1", "insert", label="Big deal")
    clock.set(NOW)
    [parked] = sync.claim(object_types=["Account"])
    sync.mark_failed(parked, "0x80040237", "Duplicate record", retry=False)
    assert len(sync.claim(object_types=["Opportunity"])) == 1

    day = dt.timedelta(days=1)
    insert_rows(db, HourlyThroughput, [
        hourly_row(dt.datetime(2026, 3, 10, 13), "Lead", "insert", "to_dynamics", 40),
        hourly_row(dt.datetime(2026, 3, 10, 13), "Lead", "update", "to_dynamics", 15, failed=2),
        hourly_row(dt.datetime(2026, 3, 10, 13), "Lead", "update", "from_dynamics", 5),
        hourly_row(dt.datetime(2026, 3, 10, 13), "Contact", "update", "to_dynamics", 7),
        hourly_row(dt.datetime(2026, 3, 10, 12), "Lead", "insert", "to_dynamics", 99),
        hourly_row(dt.datetime(2026, 3, 10, 14) - day, "Lead", "insert", "to_dynamics", 21),
        hourly_row(dt.datetime(2026, 3, 10, 13) - day, "Lead", "insert", "to_dynamics", 500),
        hourly_row(dt.datetime(2026, 3, 10, 14), "Lead", "insert", "to_dynamics", 3),
    ])

    def snapshot(hour: int, object_type: str, operation: str, pending: int) -> dict[str, t.Any]:
        return {"taken_at": dt.datetime(2026, 3, 10, hour, 20), "object_type": object_type,
                "operation": operation, "direction": "to_dynamics", "pending_count": pending}

    insert_rows(db, BacklogSnapshot, [
        snapshot(5, "Lead", "insert", 9),
        snapshot(7, "Lead", "insert", 3),
        snapshot(7, "Lead", "update", 1),
        snapshot(7, "Opportunity", "insert", 2),
        snapshot(9, "Lead", "insert", 100),
    ])
    insert_rows(db, JobState, [{
        "name": "rollup", "last_started_at": dt.datetime(2026, 3, 10, 14, 0, 0),
        "last_finished_at": dt.datetime(2026, 3, 10, 14, 0, 30), "last_status": "ok",
        "next_run_at": dt.datetime(2026, 3, 10, 15, 0, 0),
    }])


# -- the Sync Errors data set ---------------------------------------------------------------

def error_row(
    id: int, occurred_at: dt.datetime, object_type: str, record_id: str, label: str | None, operation: str,
    direction: str, code: str, message: str, attempt: int, state: str,
) -> dict[str, t.Any]:
    return {
        "id": id, "occurred_at": occurred_at, "object_type": object_type, "record_id": record_id,
        "record_label": label, "operation": operation, "direction": direction, "error_code": code,
        "error_message": message, "attempt": attempt, "state": state,
        "state_changed_at": None if state == "open" else dt.datetime(2026, 3, 10, 14, 15),
    }


#: Explicit ids far above what the sequences reach in a test session (exports show them).
ERROR_ROWS = [
    error_row(700001, dt.datetime(2026, 3, 10, 14, 10), "Lead", "L-1", "Ada Lovelace", "insert", "to_dynamics",
              "0x80040237", "Duplicate record: a lead with this email already exists.", 1, "open"),
    error_row(700002, dt.datetime(2026, 3, 10, 14, 5, 30), "Contact", "C-7", '=HYPERLINK("http://evil.example","click")',
              "update", "to_dynamics", "0x80048306", "+SUM(A1:A9) is not a valid value", 2, "open"),
    error_row(700003, dt.datetime(2026, 3, 10, 13, 50), "Lead", "42", "Grace Hopper", "update", "from_dynamics",
              "0x8004431A", "100% of the API quota is used", 3, "open"),
    error_row(700004, dt.datetime(2026, 3, 10, 13, 15), "Account", "A-100", "Acme_Corp", "insert", "to_dynamics",
              "0x80040237", "Duplicate record", 1, "ignored"),
    error_row(700005, dt.datetime(2026, 3, 10, 12, 0), "Lead", "420", None, "update", "to_dynamics",
              "0x80060891", '-1 is out of range; "quotes", commas, and a line\nbreak', 1, "resolved"),
    error_row(700006, dt.datetime(2026, 3, 10, 11, 30), "Opportunity", "O-1", "Big deal @home", "insert", "to_dynamics",
              "0x80040265", "@mention\tis not allowed", 1, "retried"),
    error_row(700007, dt.datetime(2026, 3, 9, 23, 30), "Lead", "L-1", "Ada Lovelace", "insert", "to_dynamics",
              "0x80040237", "Duplicate record", 1, "open"),
    error_row(700008, dt.datetime(2026, 3, 9, 22, 0), "Account", "A-200", "Acme Corp", "update", "to_dynamics",
              "0x80040220", "\rAccess denied for DOMAIN\\svc_sync", 1, "open"),
]


@pytest.fixture
def errors_dataset(db: SQLAlchemy) -> list[dict[str, t.Any]]:
    """The known sync errors of :func:`load_errors_dataset`, in the standard app."""
    return load_errors_dataset(db)


def load_errors_dataset(db: SQLAlchemy) -> list[dict[str, t.Any]]:
    """Insert the known sync errors the Sync Errors tests read (clock at NOW, 14:20), newest first.

    ======  ==============  ===========  =====  ==============  ======  ====  ==========  =====  ========
    id      time (UTC)      object       rec.   label           op.     dir.  code        att.   state
    ======  ==============  ===========  =====  ==============  ======  ====  ==========  =====  ========
    700001  03-10 14:10:00  Lead         L-1    Ada Lovelace    insert  to    0x80040237  1      open
    700002  03-10 14:05:30  Contact      C-7    =HYPERLINK(..)  update  to    0x80048306  2      open
    700003  03-10 13:50:00  Lead         42     Grace Hopper    update  from  0x8004431A  3      open
    700004  03-10 13:15:00  Account      A-100  Acme_Corp       insert  to    0x80040237  1      ignored
    700005  03-10 12:00:00  Lead         420    (none)          update  to    0x80060891  1      resolved
    700006  03-10 11:30:00  Opportunity  O-1    Big deal @home  insert  to    0x80040265  1      retried
    700007  03-09 23:30:00  Lead         L-1    Ada Lovelace    insert  to    0x80040237  1      open
    700008  03-09 22:00:00  Account      A-200  Acme Corp       update  to    0x80040220  1      open
    ======  ==============  ===========  =====  ==============  ======  ====  ==========  =====  ========

    Messages hold ``%``, ``_``, a backslash, quotes, a line break and cells starting
    with ``=``, ``+``, ``-``, ``@``, tab and CR. The queue holds the parked records
    Lead L-1 (insert) and Contact C-7 (update), both to Dynamics.
    """
    from flask_dynamics_sync.models import QueueItem
    from flask_dynamics_sync.models import SyncError

    parked_since = dt.datetime(2026, 3, 10, 9, 0)
    with db.engine.begin() as conn:
        conn.execute(sa.insert(SyncError.__table__), ERROR_ROWS)
        conn.execute(sa.insert(QueueItem.__table__), [
            {"object_type": object_type, "record_id": record_id, "direction": "to_dynamics", "operation": operation,
             "state": "parked", "label": label, "queued_at": parked_since, "changed_at": parked_since,
             "change_count": 1, "attempts": 10, "not_before": parked_since}
            for object_type, record_id, operation, label in (("Lead", "L-1", "insert", "Ada Lovelace"),
                                                             ("Contact", "C-7", "update", None))
        ])
    return ERROR_ROWS


ERRORS_URL = "/admin/dynamics/errors/"


def listed_error_ids(client: t.Any, query: dict[str, str] | None = None, *, state: str | None = "all") -> list[int]:
    """The error ids the Sync Errors list shows for ``query`` (search, filters...), in order.

    On the *All* tab unless ``state`` names another (``None``: the list's default, *Open*).
    """
    import re

    query = dict(query or {})
    if state is not None:
        query.setdefault("state", state)
    response = client.get(ERRORS_URL, query_string=query)
    assert response.status_code == 200, response.status_code
    return [int(i) for i in re.findall(r"/details/\?id=(\d+)", response.get_data(as_text=True))]


# -- browser tests ----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUIRE_BROWSER = os.environ.get("DYNAMICS_SYNC_REQUIRE_BROWSER", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def browser() -> Iterator[t.Any]:
    """Headless Debian Chromium driven by Playwright, shared by the session.

    Skips with the reason when ``/usr/bin/chromium`` or Playwright is missing;
    with ``DYNAMICS_SYNC_REQUIRE_BROWSER=1`` (set by CI) it fails instead.
    """
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing = f"playwright is not installed ({exc}); pip install playwright"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} not found; apt-get install chromium"
    if missing is not None:
        if REQUIRE_BROWSER:
            pytest.fail(missing + " — DYNAMICS_SYNC_REQUIRE_BROWSER forbids skipping", pytrace=False)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


#: Collects CSP violations from the first moment of every document (Playwright's
#: init scripts are not subject to the page's CSP).
WATCH_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture
def page(browser: t.Any) -> Iterator[t.Any]:
    """A fresh browser page that records what must not happen, in ``page.problems``.

    Console errors and warnings and uncaught exceptions; dialogs go to
    ``page.dialogs`` (dismissed at once), CSP violations to
    ``window.__cspViolations``. See :func:`assert_clean`.
    """
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.add_init_script(WATCH_VIOLATIONS)
    problems: list[str] = []
    dialogs: list[str] = []

    def on_dialog(dialog: t.Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.problems = problems
    tab.dialogs = dialogs
    yield tab
    context.close()


def assert_clean(page: t.Any, *, dialogs: t.Sequence[str] = ()) -> None:
    """No CSP violation, console error or warning, uncaught exception, nor any dialog but ``dialogs``."""
    assert page.evaluate("window.__cspViolations") == []
    assert page.problems == []
    assert page.dialogs == list(dialogs)


def _no_favicon(wsgi_app: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """Answer ``/favicon.ico`` with 204, so browsers log no 404 console error."""

    def middleware(environ: dict[str, t.Any], start_response: t.Callable[..., t.Any]) -> t.Any:
        if environ.get("PATH_INFO") == "/favicon.ico":
            start_response("204 No Content", [("Content-Length", "0")])
            return [b""]
        return wsgi_app(environ, start_response)

    return middleware


@pytest.fixture
def live_server() -> Iterator[Callable[[Flask], str]]:
    """Serve apps over real HTTP: ``base_url = live_server(app)``.

    A threaded werkzeug server on 127.0.0.1 and a free port, in a background
    thread; every server is shut down after the test.
    """
    from werkzeug.serving import make_server

    servers: list[tuple[t.Any, threading.Thread]] = []

    def start(application: Flask) -> str:
        server = make_server("127.0.0.1", 0, _no_favicon(application), threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def csp_nonce() -> str:
    """A per-request CSP nonce, for ``Admin(csp_nonce_generator=csp_nonce)``."""
    from flask import g

    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def add_strict_csp(application: Flask) -> None:
    """Send a strict Content-Security-Policy: scripts and styles only with the request's nonce."""

    @application.after_request
    def content_security_policy(response):  # noqa: ANN001, ANN202
        nonce = csp_nonce()
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        )
        return response


#: What a copy of the working tree leaves out: version control, virtualenvs, build output, caches and
#: compiled catalogs (a build must compile them itself).
TREE_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
    "*.mo", "instance", "node_modules", "results*.json",
)


def offline_virtualenv(env: pathlib.Path, requirement: str) -> str:
    """A new virtualenv at ``env`` with ``requirement`` pip-installed offline, without dependencies; its python.

    The virtualenv reaches the test environment's dependencies through a
    ``.pth`` file; that environment's own (editable) plugin stays out of
    reach, because ``.pth`` files of a folder added that way are not read.
    """
    venv.create(env, with_pip=False)
    python = str(env / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    pathlib.Path(purelib, "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--no-build-isolation", "--no-cache-dir", requirement],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return python


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if _skipped:
        terminalreporter.section("database servers skipped")
        for message in sorted(set(_skipped)):
            terminalreporter.write_line(message)


# -- the Dataverse connector ----------------------------------------------------------------

#: Connector settings that keep the tests quick: short timeouts and backoffs, small batches.
FAST_CONNECTOR = {
    "DYNAMICS_SYNC_DATAVERSE_TIMEOUT": 2.0,
    "DYNAMICS_SYNC_DATAVERSE_RETRY_BACKOFF": 0.01,
    "DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 10,
    "DYNAMICS_SYNC_WORKER_POLL_SECONDS": 0.05,
}


@pytest.fixture
def local_dataverse() -> Iterator[t.Any]:
    """A running local Dataverse with the demo tables (accounts, contacts, leads, opportunities)."""
    from flask_dynamics_sync.testing import LocalDataverse

    with LocalDataverse() as dv:
        yield dv


@pytest.fixture
def make_crm(make_app: Callable[..., Flask], local_dataverse: t.Any) -> Iterator[Callable[..., Flask]]:
    """Build the CRM test host (tests/workers/crm_host.py) on a database, synced to the local Dataverse.

    ``make_crm(url, config={...}, **mapping_overrides)``; its host tables are dropped afterwards.
    """
    from flask_dynamics_sync.dataverse.settings import local_dataverse_config
    from tests.workers import crm_host

    made: list[tuple[Flask, list[t.Any]]] = []

    def factory(url: str, *, config: dict[str, object] | None = None, dv: t.Any = None, **overrides: t.Any) -> Flask:
        dv = dv or local_dataverse
        settings = {**local_dataverse_config(dv), **FAST_CONNECTOR, **(config or {})}
        application = make_app(url, config=settings, admin=False, db=crm_host.db)
        sync = application.extensions["dynamics_sync"].extension
        with application.app_context():
            trackings = crm_host.track_all(sync, **overrides)
            crm_host.db.create_all()
        made.append((application, trackings))
        return application

    yield factory
    for application, trackings in made:
        for tracking in trackings:
            tracking.remove()
        with application.app_context():
            crm_host.db.session.remove()
            crm_host.db.drop_all()


@pytest.fixture
def crm(make_crm: Callable[..., Flask], db_url: str) -> Iterator[Flask]:
    """The CRM host on each backend, inside an application context."""
    application = make_crm(db_url)
    with application.app_context():
        yield application


@pytest.fixture
def make_worker(make_app: Callable[..., Flask]) -> Iterator[Callable[..., t.Any]]:
    """``make_worker(app, **options)``: a :class:`SyncWorker`, closed after the test."""
    from flask_dynamics_sync.dataverse.worker import SyncWorker

    workers: list[SyncWorker] = []

    def factory(application: Flask, **options: t.Any) -> SyncWorker:
        worker = SyncWorker(application, **options)
        workers.append(worker)
        return worker

    yield factory
    for worker in workers:
        worker.close()
