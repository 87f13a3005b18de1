"""Bulk export of sync errors as CSV, XLSX or JSON, in constant memory.

One row source (:func:`iter_row_chunks`) reads plain rows in chunks through a
server-side cursor (``yield_per``: a named cursor on PostgreSQL, an unbuffered
cursor on MariaDB); one writer per format turns them into bytes, written to a
nameless temporary file at database speed (:func:`spool`). Only then is the
file sent (:func:`file_response`): the database connection is back in the pool
before the client has to read, so a stalled download holds no session.

* CSV: UTF-8 with a byte order mark (so spreadsheets detect the encoding),
  ``\\r\\n`` line ends, a header row in the viewer's language. The database
  hands over finished text cells (:func:`csv_columns`: ISO times, digits), so
  a million rows are written at a few microseconds each.
* JSON: an array of objects with stable English keys (:data:`COLUMNS`).
  Values are exact: JSON is read by programs, not spreadsheets.
* XLSX: XlsxWriter in ``constant_memory`` mode. Times are real date cells
  shown as ISO 8601.

Times are ISO 8601 UTC (``2026-03-10T14:20:00Z``). Operation, direction and
state are exported as their stable codes (``insert``, ``to_dynamics``,
``open``), the same in every language. Every text cell a spreadsheet would run
as a formula is neutralized (:func:`neutralize`) in CSV and XLSX.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import glob
import io
import json
import os
import re
import shutil
import tempfile
import time
import typing as t
import unicodedata
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence

import sqlalchemy as sa
from flask import Response
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.engine import Row

from .clock import isoformat_utc
from .config import Settings
from .database import dialect_family
from .i18n import gettext
from .i18n import lazy_gettext
from .models import SyncError
from .time_limits import check_deadline
from .time_limits import limited_connection

try:
    import xlsxwriter
except ImportError:  # pragma: no cover - the "xlsx" extra is not installed
    xlsxwriter = None  # type: ignore[assignment]

RowChunks = Iterable[Sequence[Row[t.Any]]]


@dataclasses.dataclass(frozen=True)
class ExportColumn:
    """One exported column: its JSON key, its header msgid and the table column."""

    key: str
    label: t.Any
    column: sa.ColumnElement[t.Any]


#: Exported columns, in order.
COLUMNS: tuple[ExportColumn, ...] = (
    ExportColumn("id", lazy_gettext("ID"), SyncError.id),
    ExportColumn("time", lazy_gettext("Time (UTC)"), SyncError.occurred_at),
    ExportColumn("object", lazy_gettext("Object"), SyncError.object_type),
    ExportColumn("record_id", lazy_gettext("Record ID"), SyncError.record_id),
    ExportColumn("record_label", lazy_gettext("Record label"), SyncError.record_label),
    ExportColumn("operation", lazy_gettext("Operation"), SyncError.operation),
    ExportColumn("direction", lazy_gettext("Direction"), SyncError.direction),
    ExportColumn("error_code", lazy_gettext("Error code"), SyncError.error_code),
    ExportColumn("error_message", lazy_gettext("Error message"), SyncError.error_message),
    ExportColumn("attempt", lazy_gettext("Attempt"), SyncError.attempt),
    ExportColumn("state", lazy_gettext("State"), SyncError.state),
)

#: Characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = frozenset("=+-@")
#: Control characters that make a spreadsheet read a cell as a formula (OWASP: tab, carriage return).
FORMULA_CONTROLS = frozenset("\t\r")
#: Quotes a spreadsheet may drop before it parses a cell.
QUOTES = frozenset("'\"")

_TIME_INDEX = 1
_FILE_CHUNK = 64 * 1024


def _skipped_before_parsing(ch: str) -> bool:
    """May a spreadsheet trim ``ch`` before it parses a cell? Unicode whitespace, control and format characters."""
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf")


def needs_neutralizing(value: str) -> bool:
    """Could a spreadsheet run ``value`` as a formula once it trims what comes before the first real character?

    Leading Unicode whitespace, control and format characters and quotes are
    looked through (``" =1"``, ``"\\xa0=1"``, ``'"=1'``): a cell is dangerous when
    the first other character is ``=``, ``+``, ``-`` or ``@``, or when a tab or
    carriage return comes before it. ``needs_neutralizing("'" + v) ==
    needs_neutralizing(v)``, which makes :func:`neutralize` reversible.
    """
    for ch in value:
        if ch in FORMULA_STARTS or ch in FORMULA_CONTROLS:
            return True
        if not (ch in QUOTES or _skipped_before_parsing(ch)):
            return False
    return False


def neutralize(value: str) -> str:
    """Prefix ``'`` to text a spreadsheet could run as a formula (``=HYPERLINK(...)``, ``" =1+1"``).

    Reversible: a reader gets the original back by removing the leading ``'``
    of a cell whose remainder :func:`needs_neutralizing`.
    """
    if needs_neutralizing(value):
        return "'" + value
    return value


def iso_utc(value: dt.datetime) -> str:
    """A naive UTC timestamp as ISO 8601 UTC to the second, as exports write it: ``2026-03-10T14:20:00Z``."""
    return isoformat_utc(value, timespec="seconds")


def headers() -> list[str]:
    """Column headers in the viewer's language."""
    return [str(c.label) for c in COLUMNS]


def select_columns() -> sa.Select[t.Any]:
    """``SELECT`` of the exported columns; the caller adds ``WHERE``, ``ORDER BY``, ``LIMIT``."""
    return sa.select(*(c.column for c in COLUMNS))


def csv_columns(family: str) -> list[sa.ColumnElement[str]]:
    """The exported columns as the CSV cells the database computes: text, never ``NULL``.

    Times become ISO 8601 UTC (:func:`iso_utc`), numbers their digits; text is
    neutralized by :func:`csv_chunks`. ``family`` is ``sqlite``, ``postgresql`` or ``mysql``.
    """
    cells = []
    for column in COLUMNS:
        value = column.column
        if isinstance(value.type, sa.DateTime):
            cell = _iso_utc_sql(value, family)
        elif isinstance(value.type, sa.String):
            cell = value
        else:
            cell = sa.cast(value, sa.String)
        cells.append(sa.func.coalesce(cell, sa.literal("", sa.String), type_=sa.String).label(column.key))
    return cells


def _iso_utc_sql(value: sa.ColumnElement[dt.datetime], family: str) -> sa.ColumnElement[str]:
    if family == "postgresql":
        return sa.func.to_char(value, sa.literal('YYYY-MM-DD"T"HH24:MI:SS"Z"'), type_=sa.String)
    if family == "mysql":
        return sa.func.date_format(value, sa.literal("%Y-%m-%dT%H:%i:%sZ"), type_=sa.String)
    # SQLite holds SQLAlchemy's text "YYYY-MM-DD HH:MM:SS.ffffff".
    text = sa.type_coerce(value, sa.String)
    return (
        sa.func.substr(text, 1, 10, type_=sa.String) + "T" + sa.func.substr(text, 12, 8, type_=sa.String) + "Z"
    )


def iter_row_chunks(conn: Connection, stmt: sa.Select[t.Any], chunk_size: int) -> Iterator[Sequence[Row[t.Any]]]:
    """Run ``stmt`` and yield its rows ``chunk_size`` at a time, as plain rows.

    A server-side cursor keeps memory flat whatever the number of rows.
    """
    result = conn.execute(stmt, execution_options={"yield_per": chunk_size})
    yield from result.partitions()


def count_matching(conn: Connection, where: sa.ColumnElement[bool] | None, cap: int | None = None) -> int:
    """How many errors match ``where``: all of them, or at most ``cap + 1``."""
    inner = sa.select(sa.literal(1)).select_from(SyncError.__table__)
    if where is not None:
        inner = inner.where(where)
    if cap is not None:
        inner = inner.limit(cap + 1)
    return int(conn.scalar(sa.select(sa.func.count()).select_from(inner.subquery())) or 0)


# -- writers ----------------------------------------------------------------------


#: A cell after the first that starts with something other than a letter, digit or ``_``
#: (a literal ``,`` first: ten times faster than ``(?:^|,)``).
_MAYBE_FORMULA = re.compile(r",[^\w,]")


def _maybe_formula(line: str) -> bool:
    """Could a cell of ``line`` (cells joined by ``,``) start a formula? ``False`` means none can."""
    first = line[:1]
    return bool(first) and not (first.isalnum() or first == "_") or _MAYBE_FORMULA.search(line) is not None


def csv_chunks(chunks: RowChunks, header: Sequence[str]) -> Iterator[str]:
    """CSV text: a byte order mark and the header, then one string per chunk of rows.

    Rows are :func:`csv_columns` cells. A row none of whose cells needs quotes
    or could start a formula is joined as it is (the ``csv`` module would write
    the same bytes, slower); the others are neutralized cell by cell.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralize(h) for h in header])
    yield "\ufeff" + buffer.getvalue()
    commas = len(header) - 1
    for chunk in chunks:
        lines = []
        for row in chunk:
            line = ",".join(row)
            if _maybe_formula(line) or line.count(",") != commas or '"' in line or "\n" in line or "\r" in line:
                buffer.seek(0)
                buffer.truncate()
                writer.writerow([neutralize(cell) for cell in row])
                line = buffer.getvalue()[:-2]
            lines.append(line)
        lines.append("")
        yield "\r\n".join(lines)


def json_chunks(chunks: RowChunks) -> Iterator[str]:
    """A JSON array of objects keyed by :data:`COLUMNS`, one string per chunk of rows."""
    keys = [c.key for c in COLUMNS]
    yield "["
    separator = "\n"
    for chunk in chunks:
        parts = []
        for row in chunk:
            record = dict(zip(keys, row, strict=True))
            record["time"] = iso_utc(record["time"])
            parts.append(separator + json.dumps(record, ensure_ascii=False))
            separator = ",\n"
        yield "".join(parts)
    yield "\n]\n"


def xlsx_available() -> bool:
    """Is XlsxWriter (the ``xlsx`` extra) installed?"""
    return xlsxwriter is not None


def write_xlsx(
    chunks: RowChunks, header: Sequence[str], target: str | t.BinaryIO, *, sheet_name: str, created: dt.datetime
) -> None:
    """Write an XLSX workbook to ``target`` (a path or a binary file) row by row (XlsxWriter ``constant_memory``).

    XlsxWriter keeps the rows in named scratch files until the workbook is
    zipped: they go in a ``dynamics-sync-*`` folder of their own, removed
    afterwards (and by :func:`remove_stale_spool_files` if the process was killed).
    """
    if xlsxwriter is None:  # pragma: no cover - guarded by xlsx_available()
        raise RuntimeError("XLSX export needs XlsxWriter: pip install 'Flask-Dynamics-Sync[xlsx]'")
    with tempfile.TemporaryDirectory(prefix=SPOOL_PREFIX) as scratch:
        _write_workbook(chunks, header, target, scratch, sheet_name=sheet_name, created=created)


def _write_workbook(
    chunks: RowChunks, header: Sequence[str], target: str | t.BinaryIO, scratch: str, *, sheet_name: str,
    created: dt.datetime,
) -> None:
    workbook = xlsxwriter.Workbook(target, {"constant_memory": True, "tmpdir": scratch, "strings_to_numbers": False})
    workbook.set_properties({"title": sheet_name, "created": created})
    try:
        sheet = workbook.add_worksheet(_sheet_name(sheet_name))
        bold = workbook.add_format({"bold": True})
        time_format = workbook.add_format({"num_format": 'yyyy-mm-dd"T"hh:mm:ss"Z"'})
        for index, width in enumerate((10, 21, 14, 20, 28, 11, 15, 14, 80, 8, 10)):
            sheet.set_column(index, index, width)
        for index, label in enumerate(header):
            sheet.write_string(0, index, neutralize(label), bold)
        sheet.freeze_panes(1, 0)
        row_number = 0
        for chunk in chunks:
            for row in chunk:
                row_number += 1
                for index, value in enumerate(row):
                    if value is None:
                        continue
                    if index == _TIME_INDEX:
                        sheet.write_datetime(row_number, index, value.replace(microsecond=0), time_format)
                    elif isinstance(value, str):
                        sheet.write_string(row_number, index, neutralize(value))
                    else:
                        sheet.write_number(row_number, index, value)
        sheet.autofilter(0, 0, row_number, len(header) - 1)
    finally:
        workbook.close()


def _sheet_name(name: str) -> str:
    """A valid worksheet name: at most 31 characters, none of ``[]:*?/\\``."""
    cleaned = "".join(" " if ch in "[]:*?/\\" else ch for ch in name).strip("' ")
    return cleaned[:31] or "Sheet1"


# -- spooling and responses --------------------------------------------------------

#: Prefix of every file and folder an export writes in the temporary folder.
SPOOL_PREFIX = "dynamics-sync-"


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """A downloadable format: file extension, MIME type and how to write rows to a file."""

    name: str
    mimetype: str
    write: Callable[[RowChunks, t.BinaryIO, dt.datetime], None]
    columns: Callable[[str], Sequence[sa.ColumnElement[t.Any]]] | None = None
    """The columns to read instead of :func:`select_columns`' (given the dialect family)."""

    def filename(self, stem: str) -> str:
        return f"{stem}.{self.name}"


def _write_csv(chunks: RowChunks, file: t.BinaryIO, now: dt.datetime) -> None:
    for part in csv_chunks(chunks, headers()):
        file.write(part.encode("utf-8"))


def _write_json(chunks: RowChunks, file: t.BinaryIO, now: dt.datetime) -> None:
    for part in json_chunks(chunks):
        file.write(part.encode("utf-8"))


def _write_xlsx(chunks: RowChunks, file: t.BinaryIO, now: dt.datetime) -> None:
    write_xlsx(chunks, headers(), file, sheet_name=gettext("Sync errors"), created=now)


CSV = ExportFormat("csv", "text/csv", _write_csv, csv_columns)
XLSX = ExportFormat("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", _write_xlsx)
JSON = ExportFormat("json", "application/json", _write_json)


def available_formats() -> dict[str, ExportFormat]:
    """The formats this installation can produce, in menu order."""
    formats = [CSV, XLSX, JSON] if xlsx_available() else [CSV, JSON]
    return {f.name: f for f in formats}


def spool(
    export_format: ExportFormat,
    engine: Engine,
    stmt: sa.Select[t.Any],
    *,
    chunk_size: int,
    seconds: float,
    now: dt.datetime,
) -> t.BinaryIO:
    """Write the rows of ``stmt`` (built on :func:`select_columns`) to a temporary file, at database speed.

    The connection goes back to the pool before this returns, so a client that
    reads slowly (or never) holds a file, not a database session. Each statement
    and all of them together stop after ``seconds`` (:class:`~.time_limits.QueryTimeout`).
    The file has no name (``tempfile.TemporaryFile``): the system frees it when
    it is closed, even by a killed process. Returned positioned at its start.
    """
    if export_format.columns is not None:
        stmt = stmt.with_only_columns(*export_format.columns(dialect_family(engine)), maintain_column_froms=True)
    file = tempfile.TemporaryFile(prefix=SPOOL_PREFIX, suffix="." + export_format.name)
    try:
        deadline = time.monotonic() + seconds
        with limited_connection(engine, seconds) as conn:
            chunks = iter_row_chunks(conn, stmt, chunk_size)
            export_format.write(_until(deadline, seconds, chunks), file, now)  # type: ignore[arg-type]
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file


def _until(deadline: float, seconds: float, chunks: RowChunks) -> Iterator[Sequence[Row[t.Any]]]:
    for chunk in chunks:
        check_deadline(deadline, seconds)
        yield chunk


def file_response(
    file: t.BinaryIO, export_format: ExportFormat, filename: str, *, on_close: Callable[[], None] | None = None
) -> Response:
    """A download of a file :func:`spool` wrote; see :class:`Download` for when it ends."""
    size = os.fstat(file.fileno()).st_size
    response = Response(Download(file, on_close), mimetype=export_format.mimetype, headers=attachment(filename))
    response.content_length = size
    return response


class Download:
    """The body of a download: the file's chunks; when it ends the file is closed (so freed) and ``on_close`` called.

    It ends once, when the server closes the body (sent, or the client went away)
    or drops it without closing it: werkzeug's own server skips ``close()``
    when the client reset the connection, so being garbage collected ends it too.
    """

    def __init__(self, file: t.BinaryIO, on_close: Callable[[], None] | None = None) -> None:
        self._file = file
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Download:
        return self

    def __next__(self) -> bytes:
        chunk = self._file.read(_FILE_CHUNK) if not self._closed else b""
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._file.close()
        if self._on_close is not None:
            self._on_close()

    def __del__(self) -> None:
        self.close()


def head_response(export_format: ExportFormat, filename: str) -> Response:
    """What a ``HEAD`` request gets: the download's headers, without reading anything."""
    response = Response(b"", mimetype=export_format.mimetype, headers=attachment(filename))
    response.cache_control.no_store = True
    return response


def attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def stale_spool_age(settings: Settings) -> dt.timedelta:
    """Age after which a ``dynamics-sync-*`` scratch file cannot belong to a live export: twice its time limit, an hour at least."""
    return max(dt.timedelta(seconds=2 * settings.export_time_limit), dt.timedelta(hours=1))


def remove_stale_spool_files(older_than: dt.timedelta, directory: str | None = None) -> int:
    """Delete ``dynamics-sync-*`` files and folders in the temporary folder older than ``older_than``.

    What a process killed while writing an XLSX workbook leaves (XlsxWriter's
    named scratch files, see :func:`write_xlsx`), and the named files of
    earlier versions. Exports stop reading after ``DYNAMICS_SYNC_EXPORT_TIME_LIMIT``,
    so nothing older belongs to a live export. Returns how many were removed.
    """
    folder = directory or tempfile.gettempdir()
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(folder), SPOOL_PREFIX + "*")):
        try:
            if os.lstat(path).st_mtime >= cutoff:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:  # gone already, or not ours to delete
            continue
        removed += 1
    return removed
