"""The plugin's schema under Alembic, kept apart from the host's migrations.

The plugin's tables live on their own metadata (:data:`~flask_dynamics_sync.models.metadata`)
and have their own Alembic environment, shipped in the package
(``flask_dynamics_sync/migrations``), with their own version table,
:data:`VERSION_TABLE`. Upgrading the plugin's schema never reads or writes the
host's ``alembic_version``, and the host's migrations never see the plugin's
tables: on a Flask-Migrate host, ``init_app`` adds :func:`include_object` to
its autogenerate (:func:`leave_out_of_host_migrations`); a host on plain
Alembic passes it to ``context.configure`` in its ``env.py``.

Hosts without migrations can call :meth:`DynamicsSync.create_all` instead.
"""

from __future__ import annotations

import os
import sys
import typing as t
import weakref

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask import current_app
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from .models import TABLE_PREFIX

#: Where the plugin's Alembic environment and revisions are installed.
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")

#: The plugin's own Alembic version table (the host's is ``alembic_version``).
VERSION_TABLE = TABLE_PREFIX + "alembic_version"


def is_plugin_table(name: str | None) -> bool:
    """True for the plugin's tables, its version table included."""
    return bool(name) and name.startswith(TABLE_PREFIX)  # type: ignore[union-attr]


def made_on(dialect_name: str) -> t.Callable[..., bool]:
    """An ``include_object`` hook for the plugin's own autogenerate: only what this database gets.

    Some indexes exist on one database only (``Index(...).ddl_if(dialect=...)``,
    e.g. PostgreSQL's trigram search index); Alembic compares them everywhere
    unless told not to.
    """

    def include(object: t.Any, name: str | None, type_: str, reflected: bool, compare_to: t.Any) -> bool:
        condition = getattr(object, "_ddl_if", None)  # set by SchemaItem.ddl_if()
        dialect = getattr(condition, "dialect", None)
        if not dialect:
            return True
        return dialect_name in ((dialect,) if isinstance(dialect, str) else tuple(dialect))

    return include


def include_object(object: t.Any, name: str | None, type_: str, reflected: bool, compare_to: t.Any) -> bool:
    """Alembic ``include_object`` hook for the *host's* migrations: leave the plugin's tables out.

    Without it, the host's autogenerate sees ``dynamics_sync_*`` tables that are
    not in the host's metadata and proposes to drop them. Combine it with a
    hook of your own by calling both and requiring both to be true.
    """
    if type_ == "table":
        return not is_plugin_table(name)
    table = getattr(object, "table", None)
    return not (isinstance(table, sa.Table) and is_plugin_table(table.name))


def _with_host_hook(host_hook: t.Callable[..., bool] | None) -> t.Callable[..., bool]:
    """:func:`include_object`, and the host's own ``include_object`` too when it has one."""
    if host_hook is None or host_hook is include_object or getattr(host_hook, "leaves_out_plugin_tables", False):
        return host_hook or include_object

    def include(*args: t.Any) -> bool:
        return include_object(*args) and bool(host_hook(*args))

    include.leaves_out_plugin_tables = True  # type: ignore[attr-defined]
    return include


def _configure_host_autogenerate(config: Config) -> Config:
    """Flask-Migrate ``configure`` callback: the host's ``flask db`` commands leave the plugin's tables out."""
    migrate_state = current_app.extensions.get("migrate")
    if migrate_state is not None and "dynamics_sync" in current_app.extensions:  # one Migrate may serve other apps
        args = migrate_state.configure_args  # what the host's env.py passes to context.configure
        args["include_object"] = _with_host_hook(args.get("include_object"))
    return config


_configured_migrates: weakref.WeakSet[t.Any] = weakref.WeakSet()


def leave_out_of_host_migrations(app: Flask) -> None:
    """On a host with Flask-Migrate, keep the plugin's tables out of its ``flask db migrate``.

    Registers :func:`_configure_host_autogenerate` with the host's ``Migrate``
    (once per ``Migrate``, however many apps it serves). ``Migrate.init_app``
    must have run on ``app`` before ``sync.init_app``, as ``db.init_app`` must.
    """
    migrate_state = app.extensions.get("migrate")
    migrate = getattr(migrate_state, "migrate", None)
    if migrate is None or migrate in _configured_migrates:
        return
    migrate.configure(_configure_host_autogenerate)
    _configured_migrates.add(migrate)


def alembic_config(connection: Connection | None = None, *, dialect_name: str | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` for the plugin's migrations.

    ``connection`` runs them online; without it, ``dialect_name`` (e.g.
    ``"postgresql"``) makes ``sql=True`` commands print SQL for that database.
    Maintainers use it to write new revisions, e.g.
    ``command.revision(alembic_config(conn), "add x", autogenerate=True)``.
    """
    config = Config()
    # ConfigParser interpolation: a literal % in the install path must be doubled.
    config.set_main_option("script_location", MIGRATIONS_DIR.replace("%", "%%"))
    config.attributes["connection"] = connection
    config.attributes["dialect_name"] = dialect_name
    return config


def _run(bind: Engine | Connection, run: t.Callable[[Config], None]) -> None:
    """Run an Alembic command on ``bind``; an engine gets one transaction of its own."""
    if isinstance(bind, Connection):
        run(alembic_config(bind))
        return
    with bind.begin() as connection:
        run(alembic_config(connection))


def upgrade(bind: Engine | Connection, revision: str = "head") -> None:
    """Migrate the plugin's tables up to ``revision`` (default: the newest)."""
    _run(bind, lambda config: command.upgrade(config, revision))


def downgrade(bind: Engine | Connection, revision: str) -> None:
    """Migrate the plugin's tables down to ``revision`` (``"base"`` drops them all)."""
    _run(bind, lambda config: command.downgrade(config, revision))


def stamp(bind: Engine | Connection, revision: str) -> None:
    """Record ``revision`` as current without running migrations.

    For tables created by :meth:`DynamicsSync.create_all` before switching to
    migrations: ``stamp(engine, "head")`` (with the plugin version that created them)
    lets later upgrades start from there.
    """
    _run(bind, lambda config: command.stamp(config, revision))


def upgrade_sql(dialect_name: str, revision: str = "head", *, output: t.TextIO | None = None) -> None:
    """Write the SQL of an upgrade from nothing to ``revision`` to ``output`` (default: stdout).

    For databases whose schema changes are applied by hand by a DBA.
    """
    config = alembic_config(dialect_name=dialect_name)
    config.output_buffer = output or sys.stdout
    command.upgrade(config, revision, sql=True)


def current_revision(bind: Engine | Connection) -> str | None:
    """The plugin's revision recorded in the database, or ``None`` before the first upgrade."""
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return current_revision(connection)
    context = MigrationContext.configure(bind, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of the plugin."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the plugin ships at least one revision"
    return head
