"""Databases and host applications for the benchmarks."""

from __future__ import annotations

import os
import shutil
import tempfile
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_admin import Admin
from flask_sqlalchemy import SQLAlchemy

from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync.models import metadata

from .seed import NOW

_folder: str | None = None
_postgres_databases: list[str] = []


def sqlite_url(name: str) -> str:
    """A fresh SQLite file in this run's temporary folder."""
    global _folder
    if _folder is None:
        _folder = tempfile.mkdtemp(prefix="dsync-bench-")
    path = os.path.join(_folder, name + ".db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    return f"sqlite:///{path}"


def postgres_url(server_url: str, name: str) -> str:
    """A fresh database ``dsync_bench_<name>`` on the PostgreSQL server of ``server_url``."""
    url = sa.make_url(server_url)
    database = f"dsync_bench_{name}"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    admin.dispose()
    created = url.set(database=database).render_as_string(hide_password=False)
    _postgres_databases.append(created)
    return created


def cleanup() -> None:
    """Delete this run's SQLite files and PostgreSQL databases (gigabytes at full scale)."""
    global _folder
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)
        _folder = None
    while _postgres_databases:
        url = sa.make_url(_postgres_databases.pop())
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        admin.dispose()


def fresh_database(backend: str, name: str, server_url: str | None = None) -> str:
    """A new, empty database with the plugin's tables: ``backend`` is ``sqlite`` or ``postgresql``."""
    url = sqlite_url(name) if backend == "sqlite" else postgres_url(t.cast(str, server_url), name)
    reset_database(url)
    return url


def backends(scale: t.Any) -> list[tuple[str, str | None]]:
    """``(backend, server URL)`` pairs a section runs on: SQLite, and PostgreSQL when given."""
    pairs: list[tuple[str, str | None]] = [("sqlite", None)]
    if scale.postgres_url:
        pairs.append(("postgresql", scale.postgres_url))
    return pairs


def reset_database(url: str) -> None:
    """Drop and create the plugin's tables (SQLite in WAL mode, as a production host would run it)."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()


def make_app(url: str, *, config: dict[str, t.Any] | None = None, frozen: bool = True) -> tuple[Flask, SQLAlchemy, DynamicsSync]:
    """A host app with its own Admin and SQLAlchemy, the plugin initialised on them.

    ``frozen``: the plugin's clock stands still at :data:`~.seed.NOW`, where the seeded data ends.
    """
    app = Flask("bench_host")
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=url)
    app.config.update(config or {})
    db = SQLAlchemy(app)
    admin = Admin(app, name="Bench console")
    sync = DynamicsSync(clock=(lambda: NOW) if frozen else None)
    sync.init_app(app, admin=admin, db=db)
    return app, db, sync


def engine_of(url: str) -> sa.Engine:
    """A plain engine for seeding."""
    return sa.create_engine(url)
