"""``flask dynamics-sync …`` commands."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

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
