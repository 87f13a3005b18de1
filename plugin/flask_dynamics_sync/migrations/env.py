"""Alembic environment of the plugin's own tables (run by :mod:`flask_dynamics_sync.schema`).

Only ``dynamics_sync_*`` tables are looked at, and the revision is kept in
``dynamics_sync_alembic_version``: the host's tables and its ``alembic_version``
are never read or changed.
"""

from __future__ import annotations

import typing as t

from alembic import context

from flask_dynamics_sync.models import metadata
from flask_dynamics_sync.schema import VERSION_TABLE
from flask_dynamics_sync.schema import is_plugin_table
from flask_dynamics_sync.schema import made_on

config = context.config


def include_name(name: str | None, type_: str, parent_names: t.Mapping[str, t.Any]) -> bool:
    """Reflect only the plugin's tables in the default schema (for autogenerate)."""
    if type_ == "schema":
        return name is None
    if type_ == "table":
        return is_plugin_table(name) and name != VERSION_TABLE
    return True


OPTIONS: dict[str, t.Any] = {
    "target_metadata": metadata,
    "version_table": VERSION_TABLE,
    "include_name": include_name,
    # SQLite alters tables by copying them: future revisions use batch operations.
    "render_as_batch": True,
    "compare_type": True,
}

connection = config.attributes.get("connection")
if context.is_offline_mode():
    dialect_name = config.attributes["dialect_name"]
    context.configure(dialect_name=dialect_name, literal_binds=True, include_object=made_on(dialect_name), **OPTIONS)
elif connection is None:
    raise RuntimeError("run the plugin's migrations through flask_dynamics_sync.schema (it passes a connection)")
else:
    context.configure(connection=connection, include_object=made_on(connection.dialect.name), **OPTIONS)

with context.begin_transaction():
    context.run_migrations()
