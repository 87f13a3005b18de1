"""Host applications for the benchmarks: a plain Flask-Admin console with the plugin."""

from __future__ import annotations

import os
import tempfile

import sqlalchemy as sa
from flask import Flask
from flask_admin import Admin
from flask_sqlalchemy import SQLAlchemy

from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync.models import metadata


def sqlite_url(name: str) -> str:
    """A fresh SQLite file in a temporary folder (WAL, like a production SQLite host would use)."""
    folder = tempfile.mkdtemp(prefix="dsync-bench-")
    return f"sqlite:///{os.path.join(folder, name + '.db')}"


def reset_database(url: str) -> None:
    """Drop and create the plugin's tables."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()


def make_app(url: str, *, config: dict | None = None, clock=None) -> tuple[Flask, SQLAlchemy, DynamicsSync]:
    """A host app with its own Admin and SQLAlchemy, the plugin initialised on them."""
    app = Flask("bench_host")
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=url)
    app.config.update(config or {})
    db = SQLAlchemy(app)
    admin = Admin(app, name="Bench console")
    sync = DynamicsSync(clock=clock)
    sync.init_app(app, admin=admin, db=db)
    return app, db, sync
