"""What the Sync Status pages ask the database: never the raw events, never a table scan.

Every statement the pages, the JSON and the Prometheus endpoint issue is
captured with a ``before_cursor_execute`` listener. On every database none of
them reads ``dynamics_sync_event``; on SQLite, ``EXPLAIN QUERY PLAN`` shows
that each one searches an index (no full scan) and that the backlog reads the
queue index built for it.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from .conftest import SQLITE_ONLY

STATUS = "/admin/dynamics/status/"
PAGES = ["", "?view=last_hour", "details/Lead", "json", "metrics"]
#: Pages that show the backlog (the Last Hour view shows throughput only).
BACKLOG_PAGES = [path for path in PAGES if path != "?view=last_hour"]
QUEUE_INDEX = "ix_dynamics_sync_queue_state_object_type_operation_direction_queued_at"
TABLE_SCAN = re.compile(r"SCAN (?!CONSTANT ROW$|anon_\d+$)")


@pytest.fixture
def statements(db, status_dataset):
    """Statements (SQL, parameters) sent to the database after the data set is written."""
    captured: list[tuple[str, object]] = []

    def listener(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ANN202
        captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", listener)
    yield captured
    sa.event.remove(db.engine, "before_cursor_execute", listener)


def fetch(client, statements, path: str) -> list[tuple[str, object]]:
    statements.clear()
    assert client.get(STATUS + path).status_code == 200
    return list(statements)


def query_plan(db, statement: str, parameters: object) -> list[str]:
    with db.engine.connect() as conn:
        return [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]


def reads(statement: str, table: str) -> bool:
    return re.search(rf"\b{table}\b", statement) is not None


@pytest.mark.parametrize("path", PAGES)
def test_the_raw_events_table_is_never_read(client, statements, path):
    issued = fetch(client, statements, path)

    assert issued
    assert [s for s, _ in issued if reads(s, "dynamics_sync_event")] == []


def test_the_last_hour_view_does_not_read_the_queue(client, statements):
    issued = fetch(client, statements, "?view=last_hour")

    assert issued
    assert [s for s, _ in issued if reads(s, "dynamics_sync_queue")] == []


@pytest.mark.parametrize("path", BACKLOG_PAGES)
def test_the_queue_is_read_as_pending_rows_only(client, statements, path):
    queue_reads = [s for s, _ in fetch(client, statements, path) if reads(s, "dynamics_sync_queue")]

    assert queue_reads
    assert all("dynamics_sync_queue.state = " in " ".join(s.split()) for s in queue_reads)


@SQLITE_ONLY
@pytest.mark.parametrize("path", PAGES)
def test_no_statement_scans_a_whole_table(client, db, statements, path):
    plans = {s: query_plan(db, s, p) for s, p in fetch(client, statements, path)}

    # A capped count scans its own derived table (at most cap + 1 index entries), never a table.
    table_scans = {s: plan for s, plan in plans.items() if any(TABLE_SCAN.match(line) for line in plan)}
    assert table_scans == {}


@SQLITE_ONLY
@pytest.mark.parametrize("path", BACKLOG_PAGES)
def test_backlog_queries_use_the_queue_index(client, db, statements, path):
    plans = [query_plan(db, s, p) for s, p in fetch(client, statements, path) if reads(s, "dynamics_sync_queue")]
    queue_lines = [[line for line in plan if "dynamics_sync_queue" in line] for plan in plans]

    assert plans
    assert all(queue_lines)
    assert all(line.startswith("SEARCH dynamics_sync_queue USING") and QUEUE_INDEX in line
               for lines in queue_lines for line in lines)


@SQLITE_ONLY
def test_the_backlog_table_reads_the_queue_index_alone(client, db, statements):
    lines = [
        line for s, p in fetch(client, statements, "") if reads(s, "dynamics_sync_queue")
        for line in query_plan(db, s, p) if "dynamics_sync_queue" in line
    ]

    assert lines
    assert all(line.startswith(f"SEARCH dynamics_sync_queue USING COVERING INDEX {QUEUE_INDEX} (state=?")
               for line in lines)
