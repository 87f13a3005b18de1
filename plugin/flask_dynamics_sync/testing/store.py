"""The in-memory tables of the local Dataverse.

Every row carries its primary key, ``createdon``/``modifiedon`` and ``versionnumber``; the
version grows with every change across the store, like Dataverse's row version, and is the
row's ETag (``W/"<versionnumber>"``, powerapps-docs webapi/perform-conditional-operations-using-web-api.md).
Alternate keys are unique (a clash is 412 ``0x80040237``). Deleted rows leave a tombstone
for change tracking. :meth:`Store.transaction` makes a group of changes atomic (change sets,
bulk messages); one re-entrant lock guards everything.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import threading
import time
import typing as t
import uuid

from . import errors
from .tables import Table

Row = dict[str, t.Any]
SYSTEM_COLUMNS = frozenset({"createdon", "modifiedon", "versionnumber"})


def utc_timestamp() -> str:
    """Now, to the second, as Dataverse writes ``modifiedon``."""
    return _timestamp_of_second(int(time.time()))


@functools.lru_cache(maxsize=2)
def _timestamp_of_second(second: int) -> str:
    # A bulk message writes thousands of rows within a second; format it once.
    return dt.datetime.fromtimestamp(second, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def etag(row: Row) -> str:
    return f'W/"{row["versionnumber"]}"'


class Store:
    """Rows by table, alternate-key indexes, tombstones and the version counter."""

    def __init__(self, tables: t.Iterable[Table]) -> None:
        self.lock = threading.RLock()
        self.tables = {table.entity_set: table for table in tables}
        self._rows: dict[str, dict[str, Row]] = {name: {} for name in self.tables}
        self._indexes: dict[str, dict[str, dict[tuple[t.Any, ...], str]]] = {
            name: {key: {} for key in table.alternate_keys} for name, table in self.tables.items()
        }
        self._tombstones: dict[str, list[tuple[int, str]]] = {name: [] for name in self.tables}
        self._version = 0
        self._undo: list[tuple[str, str, str | None, Row | None]] | None = None

    @property
    def version(self) -> int:
        """The highest row version handed out so far."""
        return self._version

    def table(self, entity_set: str) -> Table:
        try:
            return self.tables[entity_set]
        except KeyError:
            raise errors.DataverseError(
                404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{entity_set}'."
            ) from None

    def rows(self, entity_set: str) -> list[Row]:
        with self.lock:
            return [copy.deepcopy(row) for row in self._rows[self.table(entity_set).entity_set].values()]

    def live_rows(self, entity_set: str) -> list[Row]:
        """The stored rows themselves (no copies), oldest first; the caller holds :attr:`lock` and changes none."""
        return list(self._rows[self.table(entity_set).entity_set].values())

    def get(self, entity_set: str, row_id: str) -> Row | None:
        return self._rows[entity_set].get(row_id.lower())

    def find(self, entity_set: str, key_name: str, values: tuple[t.Any, ...]) -> str | None:
        """The id of the row whose alternate key ``key_name`` has these values."""
        return self._indexes[entity_set][key_name].get(values)

    def insert(self, entity_set: str, values: Row, row_id: str | None = None) -> Row:
        table = self.table(entity_set)
        row_id = (row_id or values.get(table.primary_key) or str(uuid.uuid4())).lower()
        if row_id in self._rows[entity_set]:
            raise errors.DataverseError(412, errors.DUPLICATE_KEY, "Cannot insert duplicate key.")
        now = utc_timestamp()
        row = {**values, table.primary_key: row_id, "createdon": now, "modifiedon": now}
        self._write(table, row_id, row)
        return row

    def update(self, entity_set: str, row_id: str, values: Row) -> Row:
        table = self.table(entity_set)
        current = self._rows[entity_set][row_id]
        row = {**current, **values, table.primary_key: row_id, "modifiedon": utc_timestamp()}
        self._write(table, row_id, row)
        return row

    def delete(self, entity_set: str, row_id: str) -> None:
        old = self._rows[entity_set].pop(row_id)
        self._unindex(self.tables[entity_set], row_id, old)
        self._version += 1
        self._tombstones[entity_set].append((self._version, row_id))
        self._remember("row", entity_set, row_id, old)
        self._remember("tombstone", entity_set, None, None)

    def changes_since(self, entity_set: str, version: int) -> tuple[list[Row], list[str]]:
        """Rows changed after ``version`` (oldest change first) and ids deleted after it."""
        changed = sorted(
            (row for row in self._rows[entity_set].values() if row["versionnumber"] > version),
            key=lambda row: row["versionnumber"],
        )
        live = set(self._rows[entity_set])
        deleted = [row_id for stamp, row_id in self._tombstones[entity_set] if stamp > version]
        return [copy.deepcopy(row) for row in changed], [
            row_id for row_id in dict.fromkeys(deleted) if row_id not in live
        ]

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[None]:
        """All changes inside commit together or, on an exception, not at all (nesting joins the outer one)."""
        with self.lock:
            if self._undo is not None:
                yield
                return
            self._undo = []
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            finally:
                self._undo = None

    def _write(self, table: Table, row_id: str, row: Row) -> None:
        old = self._rows[table.entity_set].get(row_id)
        if old is not None:
            self._unindex(table, row_id, old)
        clash = self._clashing_key(table, row_id, row)
        if clash is not None:
            if old is not None:
                self._index(table, row_id, old)
            raise clash
        self._version += 1
        row["versionnumber"] = self._version
        self._rows[table.entity_set][row_id] = row
        self._index(table, row_id, row)
        self._remember("row", table.entity_set, row_id, old)

    def _clashing_key(self, table: Table, row_id: str, row: Row) -> errors.DataverseError | None:
        for name, columns in table.alternate_keys.items():
            values = key_values(row, columns)
            if values is not None and self._indexes[table.entity_set][name].get(values, row_id) != row_id:
                return errors.DataverseError(
                    412,
                    errors.DUPLICATE_KEY,
                    f"A record that has the attribute values {', '.join(map(str, values))} already exists. "
                    f"The entity key {name} requires that this set of attributes contains unique values. "
                    "Select unique values and try again.",
                )
        return None

    def _index(self, table: Table, row_id: str, row: Row) -> None:
        for name, columns in table.alternate_keys.items():
            values = key_values(row, columns)
            if values is not None:
                self._indexes[table.entity_set][name][values] = row_id

    def _unindex(self, table: Table, row_id: str, row: Row) -> None:
        for name, columns in table.alternate_keys.items():
            values = key_values(row, columns)
            if values is not None and self._indexes[table.entity_set][name].get(values) == row_id:
                del self._indexes[table.entity_set][name][values]

    def _remember(self, kind: str, entity_set: str, row_id: str | None, old: Row | None) -> None:
        if self._undo is not None:
            self._undo.append((kind, entity_set, row_id, old))

    def _rollback(self) -> None:
        assert self._undo is not None
        for kind, entity_set, row_id, old in reversed(self._undo):
            table = self.tables[entity_set]
            if kind == "tombstone":
                self._tombstones[entity_set].pop()
                continue
            assert row_id is not None
            current = self._rows[entity_set].pop(row_id, None)
            if current is not None:
                self._unindex(table, row_id, current)
            if old is not None:
                self._rows[entity_set][row_id] = old
                self._index(table, row_id, old)


def key_values(row: Row, columns: tuple[str, ...]) -> tuple[t.Any, ...] | None:
    """The row's values for these key columns, or None when one is missing."""
    values = tuple([row.get(column) for column in columns])
    return None if None in values else values
