"""``flask dynamics-sync …`` commands."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from . import schema
from .extension import EXTENSION_KEY


def _sync():
    return current_app.extensions[EXTENSION_KEY].extension


@click.group("dynamics-sync", help="Flask-Dynamics-Sync: tables, rollup, retention, notifications.")
def cli_group() -> None:
    pass


@cli_group.command("create-tables")
@with_appcontext
def create_tables() -> None:
    """Create the plugin's tables (hosts without migrations). Existing tables are kept."""
    _sync().create_all()
    click.echo("Created the dynamics_sync_* tables (existing ones were left as they are).")


@cli_group.group("db")
def db_group() -> None:
    """The plugin's own migrations (version table dynamics_sync_alembic_version)."""


def _report_revision() -> None:
    click.echo(f"dynamics_sync schema revision: {schema.current_revision(_sync().engine) or 'none'}")


@db_group.command("upgrade")
@click.argument("revision", default="head")
@click.option("--sql", is_flag=True, help="Print the SQL from an empty database instead of running it.")
@with_appcontext
def db_upgrade(revision: str, sql: bool) -> None:
    """Migrate the plugin's tables up to REVISION (default: head)."""
    if sql:
        schema.upgrade_sql(_sync().engine.dialect.name, revision)
        return
    schema.upgrade(_sync().engine, revision)
    _report_revision()


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Migrate the plugin's tables down to REVISION ("base" drops them, with their data)."""
    schema.downgrade(_sync().engine, revision)
    _report_revision()


@db_group.command("stamp")
@click.argument("revision")
@with_appcontext
def db_stamp(revision: str) -> None:
    """Record REVISION as current without migrating (tables made by create-tables: "head")."""
    schema.stamp(_sync().engine, revision)
    _report_revision()


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    """Show the plugin's schema revision in the database and the newest one shipped."""
    _report_revision()
    click.echo(f"newest shipped revision: {schema.head_revision()}")
