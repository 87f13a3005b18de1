"""The plugin's own migrations: the migrated schema is the models' schema, apart from the host's."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from flask_dynamics_sync.models import metadata
from flask_dynamics_sync.schema import VERSION_TABLE
from flask_dynamics_sync.schema import current_revision
from flask_dynamics_sync.schema import head_revision
from flask_dynamics_sync.schema import include_object
from flask_dynamics_sync.schema import made_on

from .conftest import backend_of

PLUGIN_TABLES = set(metadata.tables)


def engine_of(app) -> sa.Engine:
    return app.extensions["test_db"].engine


def upgrade_schema(app) -> None:
    app.extensions["dynamics_sync"].extension.upgrade_schema()


def table_names(app) -> set[str]:
    return set(sa.inspect(engine_of(app)).get_table_names())


def _spelled(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> str:
    # MariaDB reflects integers with a display width (INTEGER(11)); it is not part of the type.
    return re.sub(r"^(TINYINT|SMALLINT|INTEGER|BIGINT)\(\d+\)", r"\1", type_.compile(dialect=dialect))


def types_differ(context, inspected_column, metadata_column, inspected_type, metadata_type) -> bool:
    """Compare types as the database spells them: Alembic alone misses e.g. DATETIME(6) vs DATETIME."""
    return _spelled(inspected_type, context.dialect) != _spelled(metadata_type, context.dialect)


def differences(engine: sa.Engine, target: sa.MetaData, **opts) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": types_differ, "compare_server_default": True,
                  "include_object": made_on(conn.dialect.name), **opts},
        )
        return compare_metadata(context, target)


def run_cli(app, *args: str):
    result = app.test_cli_runner().invoke(args=["dynamics-sync", "db", *args])
    assert result.exit_code == 0, result.output
    return result.output


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """Undo Flask-Migrate's env.py ``logging.fileConfig``: it disables, re-levels and re-handles loggers."""

    def loggers() -> list[logging.Logger]:
        return [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]

    saved = {lg: (lg.disabled, lg.level, list(lg.handlers), lg.propagate) for lg in loggers()}
    try:
        yield
    finally:
        for lg in loggers():
            lg.disabled, lg.level, handlers, lg.propagate = saved.get(lg, (False, logging.NOTSET, [], True))
            lg.handlers[:] = handlers


# -- upgrade and downgrade ----------------------------------------------------------


def test_upgrade_gives_exactly_the_schema_of_the_models(empty_app):
    upgrade_schema(empty_app)

    not_version_table = lambda name, type_, parents: not (type_ == "table" and name == VERSION_TABLE)  # noqa: E731
    assert differences(engine_of(empty_app), metadata, include_name=not_version_table) == []


def test_upgrade_creates_the_plugin_tables_and_its_own_version_table(empty_app):
    upgrade_schema(empty_app)

    assert table_names(empty_app) == PLUGIN_TABLES | {"dynamics_sync_alembic_version"}


def test_upgrade_records_the_newest_revision(empty_app):
    upgrade_schema(empty_app)

    assert (current_revision(engine_of(empty_app)), head_revision()) == ("0006", "0006")


def test_upgrade_leaves_the_hosts_alembic_version_alone(empty_app):
    with engine_of(empty_app).begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES ('host_rev_7')"))

    upgrade_schema(empty_app)

    with engine_of(empty_app).connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == ["host_rev_7"]


def test_downgrade_to_base_removes_every_plugin_table(empty_app):
    upgrade_schema(empty_app)

    run_cli(empty_app, "downgrade", "base")

    assert table_names(empty_app) == {"dynamics_sync_alembic_version"}
    assert current_revision(engine_of(empty_app)) is None


# -- CLI ------------------------------------------------------------------------------


def test_cli_upgrade_migrates_and_reports_the_revision(empty_app):
    output = run_cli(empty_app, "upgrade")

    assert output == "dynamics_sync schema revision: 0006\n"
    assert PLUGIN_TABLES <= table_names(empty_app)


def test_cli_current_shows_the_database_and_the_newest_revision(empty_app):
    assert run_cli(empty_app, "current") == (
        "dynamics_sync schema revision: none\nnewest shipped revision: 0006\n"
    )


def test_cli_stamp_adopts_tables_made_by_create_tables(empty_app):
    empty_app.test_cli_runner().invoke(args=["dynamics-sync", "create-tables"])

    assert run_cli(empty_app, "stamp", "head") == "dynamics_sync schema revision: 0006\n"
    assert run_cli(empty_app, "upgrade") == "dynamics_sync schema revision: 0006\n"


def test_cli_upgrade_sql_prints_the_ddl_and_changes_nothing(empty_app):
    output = run_cli(empty_app, "upgrade", "--sql")

    assert "CREATE TABLE dynamics_sync_queue (" in output
    assert "INSERT INTO dynamics_sync_alembic_version (version_num) VALUES ('0001')" in output
    assert table_names(empty_app) == set()


# -- the host's own migrations ----------------------------------------------------------


def test_include_object_leaves_out_the_plugin_tables_and_their_indexes():
    queue = metadata.tables["dynamics_sync_queue"]
    index = next(iter(queue.indexes))

    assert include_object(queue, queue.name, "table", False, None) is False
    assert include_object(index, index.name, "index", False, None) is False


def test_include_object_keeps_the_hosts_tables():
    host_table = sa.Table("customer", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))

    assert include_object(host_table, "customer", "table", False, None) is True
    assert include_object(host_table.c.id, "id", "column", False, None) is True


def host_model(db):
    class Customer(db.Model):
        __tablename__ = "customer"
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String(100), nullable=False)

    return Customer


# Flask-Migrate's own env.py template still calls db.get_engine().
@pytest.mark.filterwarnings("ignore:'get_engine' is deprecated:DeprecationWarning")
def test_hosts_flask_migrate_with_include_object_never_touches_the_plugin_tables(empty_app, tmp_path):
    db = empty_app.extensions["test_db"]
    host_model(db)
    upgrade_schema(empty_app)
    flask_migrate.Migrate(empty_app, db, include_object=include_object)
    directory = str(tmp_path / "host_migrations")

    with logging_kept():
        flask_migrate.init(directory)
        flask_migrate.migrate(directory, message="customers")
        flask_migrate.upgrade(directory)
        flask_migrate.migrate(directory, message="nothing left")  # writes no script when nothing differs

    [script] = (tmp_path / "host_migrations" / "versions").glob("*.py")
    assert "op.create_table('customer'" in script.read_text()
    assert "dynamics_sync" not in script.read_text()
    assert PLUGIN_TABLES | {"customer", "alembic_version"} <= table_names(empty_app)
    assert current_revision(engine_of(empty_app)) == "0006"


def test_without_include_object_the_hosts_autogenerate_would_drop_the_plugin_tables(empty_app):
    db = empty_app.extensions["test_db"]
    host_model(db)
    upgrade_schema(empty_app)
    db.create_all()

    removed = {diff[1].name for diff in differences(engine_of(empty_app), db.metadata) if diff[0] == "remove_table"}

    assert removed == PLUGIN_TABLES | {"dynamics_sync_alembic_version"}


def test_postgresql_alone_gets_the_trigram_search_index(empty_app, empty_db_url):
    upgrade_schema(empty_app)

    indexes = {ix["name"] for ix in sa.inspect(engine_of(empty_app)).get_indexes("dynamics_sync_error")}
    assert ("ix_dynamics_sync_error_search" in indexes) == (backend_of(empty_db_url) == "postgresql")
