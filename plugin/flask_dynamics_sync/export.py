"""Bulk export of sync errors as CSV, XLSX or JSON, in constant memory.

One row source (:func:`iter_row_chunks`) reads plain rows in chunks through a
server-side cursor (``yield_per``: a named cursor on PostgreSQL, an unbuffered
cursor on MariaDB); one writer per format turns them into bytes:

* CSV: UTF-8 with a byte order mark (so spreadsheets detect the encoding),
  ``\\r\\n`` line ends, a header row in the viewer's language, streamed chunk by chunk.
  The database hands over finished text cells (:func:`csv_columns`: ISO times,
  neutralized text), so a million rows stream at a few microseconds each.
* JSON: an array of objects with stable English keys (:data:`COLUMNS`), streamed
  chunk by chunk. Values are exact: JSON is read by programs, not spreadsheets.
* XLSX: XlsxWriter in ``constant_memory`` mode into a temporary file, which is
  then streamed and deleted when the response closes. Times are real date cells
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
import io
import itertools
import json
import os
import re
import tempfile
import typing as t
import unicodedata
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence

import sqlalchemy as sa
from flask import Response
from flask import stream_with_context
from sqlalchemy.engine import Engine
from sqlalchemy.engine import Row

from .clock import isoformat_utc
from .database import dialect_family
from .i18n import gettext
from .i18n import lazy_gettext
from .models import SyncError

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


def iter_row_chunks(engine: Engine, stmt: sa.Select[t.Any], chunk_size: int) -> Iterator[Sequence[Row[t.Any]]]:
    """Run ``stmt`` and yield its rows ``chunk_size`` at a time, as plain rows.

    A server-side cursor keeps memory flat whatever the number of rows; the
    connection is returned to the pool when the iterator is exhausted or closed.
    """
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=chunk_size).execute(stmt)
        yield from result.partitions()


def exceeds(engine: Engine, where: sa.ColumnElement[bool] | None, limit: int) -> bool:
    """Do more than ``limit`` errors match ``where``? Reads at most ``limit + 1`` index entries."""
    stmt = sa.select(SyncError.id).order_by(None).offset(limit).limit(1)
    if where is not None:
        stmt = stmt.where(where)
    with engine.connect() as conn:
        return conn.execute(stmt).first() is not None


# -- writers ----------------------------------------------------------------------


#: A CSV line one of whose cells starts with something other than a letter, digit or ``_``.
_MAYBE_FORMULA = re.compile(r"(?:^|,)[^\w,]")


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
            if _MAYBE_FORMULA.search(line) or line.count(",") != commas or '"' in line or "\n" in line or "\r" in line:
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
    chunks: RowChunks, header: Sequence[str], path: str, *, sheet_name: str, created: dt.datetime
) -> None:
    """Write an XLSX workbook to ``path`` row by row (XlsxWriter ``constant_memory``)."""
    if xlsxwriter is None:  # pragma: no cover - guarded by xlsx_available()
        raise RuntimeError("XLSX export needs XlsxWriter: pip install 'Flask-Dynamics-Sync[xlsx]'")
    workbook = xlsxwriter.Workbook(
        path, {"constant_memory": True, "tmpdir": tempfile.gettempdir(), "strings_to_numbers": False}
    )
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


# -- responses --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """A downloadable format: file extension, MIME type and how to build the response."""

    name: str
    mimetype: str
    respond: Callable[[Callable[[], Iterator[Sequence[Row[t.Any]]]], str, dt.datetime], Response]
    columns: Callable[[str], Sequence[sa.ColumnElement[t.Any]]] | None = None
    """The columns to read instead of :func:`select_columns`' (given the dialect family)."""

    def filename(self, stem: str) -> str:
        return f"{stem}.{self.name}"


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _csv_response(chunks: Callable[[], Iterator[Sequence[Row[t.Any]]]], filename: str, now: dt.datetime) -> Response:
    header = headers()
    body = (part.encode("utf-8") for part in csv_chunks(chunks(), header))
    return Response(stream_with_context(body), mimetype="text/csv", headers=_attachment(filename))


def _json_response(chunks: Callable[[], Iterator[Sequence[Row[t.Any]]]], filename: str, now: dt.datetime) -> Response:
    body = (part.encode("utf-8") for part in json_chunks(chunks()))
    return Response(stream_with_context(body), mimetype="application/json", headers=_attachment(filename))


def _xlsx_response(chunks: Callable[[], Iterator[Sequence[Row[t.Any]]]], filename: str, now: dt.datetime) -> Response:
    handle, path = tempfile.mkstemp(prefix="dynamics-sync-", suffix=".xlsx")
    os.close(handle)
    try:
        write_xlsx(chunks(), headers(), path, sheet_name=gettext("Sync errors"), created=now)
        size = os.path.getsize(path)
    except BaseException:
        _delete(path)
        raise
    response = Response(_file_chunks(path), mimetype=XLSX.mimetype, headers=_attachment(filename))
    response.content_length = size
    # Deleted once sent, or when the client went away before (the body never started).
    response.call_on_close(lambda: _delete(path))
    return response


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as file:
        while chunk := file.read(_FILE_CHUNK):
            yield chunk


def _delete(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


CSV = ExportFormat("csv", "text/csv", _csv_response, csv_columns)
XLSX = ExportFormat("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", _xlsx_response)
JSON = ExportFormat("json", "application/json", _json_response)


def available_formats() -> dict[str, ExportFormat]:
    """The formats this installation can produce, in menu order."""
    formats = [CSV, XLSX, JSON] if xlsx_available() else [CSV, JSON]
    return {f.name: f for f in formats}


def export_response(
    export_format: ExportFormat,
    engine: Engine,
    stmt: sa.Select[t.Any],
    *,
    chunk_size: int,
    filename: str,
    now: dt.datetime,
) -> Response:
    """Stream the rows of ``stmt`` (built on :func:`select_columns`) as a download made at ``now``.

    The query runs and its first chunk is read before the response starts: a
    database that does not answer gets the error page (503), never a download
    cut off after its header row.
    """
    if export_format.columns is not None:
        stmt = stmt.with_only_columns(*export_format.columns(dialect_family(engine)), maintain_column_froms=True)
    rows = iter_row_chunks(engine, stmt, chunk_size)
    first = next(rows, None)
    started = rows if first is None else itertools.chain((first,), rows)
    return export_format.respond(lambda: started, filename, now)
