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
import typing as t
import uuid
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_admin import Admin
from flask_sqlalchemy import SQLAlchemy

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
        sync = DynamicsSync(clock=clock, **(sync_kwargs or {}))
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
def db(app: Flask) -> SQLAlchemy:
    return app.extensions["test_db"]


@pytest.fixture
def sync(app: Flask) -> DynamicsSync:
    return app.extensions["dynamics_sync"].extension


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def backend(db_url: str) -> str:
    return backend_of(db_url)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if _skipped:
        terminalreporter.section("database servers skipped")
        for message in sorted(set(_skipped)):
            terminalreporter.write_line(message)
