"""The plugin's schema under Alembic, kept apart from the host's migrations.

The plugin's tables live on their own metadata (:data:`~flask_dynamics_sync.models.metadata`)
and have their own Alembic environment, shipped in the package
(``flask_dynamics_sync/migrations``), with their own version table,
:data:`VERSION_TABLE`. Upgrading the plugin's schema never reads or writes the
host's ``alembic_version``, and the host's migrations never see the plugin's
tables as long as the host's autogenerate uses :func:`include_object`::

    from flask_dynamics_sync.schema import include_object
    Migrate(app, db, include_object=include_object)

Hosts without migrations can call :meth:`DynamicsSync.create_all` instead.
"""

from __future__ import annotations

import os
import sys
import typing as t

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
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
