"""Acme CRM console: a small Flask-Admin host of its own that embeds Flask-Dynamics-Sync.

It has its own models, its own ``Admin``, a login with an explicit access
policy, its own locale selector and a strict Content-Security-Policy. The
plugin is embedded in the documented few lines (see :func:`create_app`)::

    sync = DynamicsSync(can_act=auth.is_operator, viewer_id=auth.current_user_id)
    sync.track(Customer, "Contact", label="name", dataverse=connector.CONTACT)
    ...
    sync.init_app(app, admin=admin, db=db)

Run it with ``python -m example_host`` (SQLite, demo data, simulator, and the
connector's worker sending to a local Dataverse).
"""

from __future__ import annotations

import os
import secrets
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask import redirect
from flask import url_for
from flask.typing import ResponseReturnValue

from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync.i18n_tools import compile_catalogs
from flask_dynamics_sync.models import metadata as plugin_metadata

from . import auth
from . import connector
from .admin import create_admin
from .demo import ensure_demo_data
from .i18n import init_i18n
from .models import Company
from .models import Customer
from .models import Deal
from .models import Prospect
from .models import db
from .security import init_security

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
INSTANCE_PATH = os.path.join(PACKAGE_DIR, "instance")
#: The console's own catalogs, where Flask-Babel looks by default (``translations`` next to the app).
TRANSLATIONS_DIR = os.path.join(PACKAGE_DIR, "translations")
DATABASE_FILE = "example_host.sqlite"

# The plugin follows the console's policy: whoever may open /admin/ may look;
# only operators may retry, ignore or resolve errors. Exports are bounded per signed-in user.
sync = DynamicsSync(can_act=auth.is_operator, viewer_id=auth.current_user_id)
# The records reach Dynamics through the plugin's connector (mappings in connector.py).
sync.track(Prospect, "Lead", label="name", dataverse=connector.LEAD)
sync.track(Customer, "Contact", label="name", dataverse=connector.CONTACT)
sync.track(Company, "Account", label="name", dataverse=connector.ACCOUNT)
sync.track(Deal, "Opportunity", label="name", dataverse=connector.OPPORTUNITY)


def default_config(instance_path: str) -> dict[str, t.Any]:
    """The console's settings; ``create_app(config)`` overrides any of them."""
    return {
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + os.path.join(instance_path, DATABASE_FILE),
        "SESSION_COOKIE_SAMESITE": "Lax",
        "BABEL_DEFAULT_LOCALE": "en",
        # The plugin: its jobs (hourly rollup, retention) and the sync worker run in this process.
        "DYNAMICS_SYNC_SCHEDULER": True,
        "DYNAMICS_SYNC_WORKER_IN_SCHEDULER": True,
        "DYNAMICS_SYNC_WORKER_POLL_SECONDS": 1.0,
        "DYNAMICS_SYNC_TIMEZONE": "Europe/Rome",
        # Demo data, seeded once into an empty database.
        "EXAMPLE_HOST_DEMO_DATA": True,
        "EXAMPLE_HOST_DEMO_SEED": 2026,
        "EXAMPLE_HOST_DEMO_DAYS": 7,
        "EXAMPLE_HOST_DEMO_SCALE": 1.0,
        # Drop every table first (``python -m example_host --reset``).
        "EXAMPLE_HOST_RESET": False,
    }


def _instance_secret_key(instance_path: str) -> str:
    """A random key kept in the instance folder, so sessions survive restarts of the demo."""
    path = os.path.join(instance_path, "secret_key")
    if not os.path.exists(path):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as key_file:
            key_file.write(secrets.token_hex(32))
    with open(path) as key_file:
        return key_file.read().strip()


def _sqlite_pragmas(dbapi_connection: t.Any, connection_record: t.Any) -> None:
    # The web server, the simulator and the scheduler share one SQLite file:
    # WAL lets readers go on while one of them writes; writers wait their turn.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _create_tables(app: Flask) -> None:
    """The host's tables and the plugin's, before the plugin's scheduler starts using them."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
        if app.config["EXAMPLE_HOST_RESET"]:
            plugin_metadata.drop_all(db.engine)
            db.drop_all()
        db.create_all()
        # What sync.create_all() does; called directly because init_app() may start the scheduler.
        plugin_metadata.create_all(db.engine)


def _seed(app: Flask) -> None:
    if not app.config["EXAMPLE_HOST_DEMO_DATA"]:
        return
    with app.app_context():
        ensure_demo_data(
            sync,
            seed=app.config["EXAMPLE_HOST_DEMO_SEED"],
            days=app.config["EXAMPLE_HOST_DEMO_DAYS"],
            scale=app.config["EXAMPLE_HOST_DEMO_SCALE"],
        )


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    """Build the console: its database, login, languages, CSP, admin screens and the plugin."""
    # The example runs from a checkout, where .mo files are not built yet (a wheel ships them):
    # the plugin's catalogs, and the console's own (Flask-Babel's default domain, in translations/).
    compile_catalogs()
    compile_catalogs(TRANSLATIONS_DIR, domain="messages")
    app = Flask(__name__, instance_path=INSTANCE_PATH)
    app.config.update(default_config(app.instance_path))
    app.config.update(config or {})
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret_key(app.instance_path)

    db.init_app(app)
    init_security(app)
    auth.init_auth(app)
    init_i18n(app)
    admin = create_admin(app)
    _create_tables(app)
    sync.init_app(app, admin=admin, db=db)
    _seed(app)

    @app.route("/")
    def home() -> ResponseReturnValue:
        return redirect(url_for("admin.index"))

    @app.route("/favicon.ico")
    def favicon() -> ResponseReturnValue:
        return "", 204

    return app
