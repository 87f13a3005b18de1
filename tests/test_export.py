"""Sync Errors export: CSV, XLSX and JSON of exactly what the list selects, streamed, neutralized."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re

import openpyxl
import pytest
import sqlalchemy as sa
from babel.support import Translations
from hypothesis import given
from hypothesis import strategies as st

from flask_dynamics_sync import export
from flask_dynamics_sync.i18n import DOMAIN
from flask_dynamics_sync.i18n import TRANSLATIONS_DIR
from flask_dynamics_sync.models import SyncError

from .conftest import ERROR_ROWS
from .conftest import ERRORS_URL
from .conftest import fuzz
from .conftest import load_errors_dataset

EXPORT_URL = ERRORS_URL + "export/{}/"

CSV_HEADER = "ID,Time (UTC),Object,Record ID,Record label,Operation,Direction,Error code,Error message,Attempt,State"
CSV_ROWS = {
    700001: "700001,2026-03-10T14:10:00Z,Lead,L-1,Ada Lovelace,insert,to_dynamics,0x80040237,"
            "Duplicate record: a lead with this email already exists.,1,open",
    700002: '700002,2026-03-10T14:05:30Z,Contact,C-7,"\'=HYPERLINK(""http://evil.example"",""click"")",update,'
            "to_dynamics,0x80048306,'+SUM(A1:A9) is not a valid value,2,open",
    700003: "700003,2026-03-10T13:50:00Z,Lead,42,Grace Hopper,update,from_dynamics,0x8004431A,"
            "100% of the API quota is used,3,open",
    700004: "700004,2026-03-10T13:15:00Z,Account,A-100,Acme_Corp,insert,to_dynamics,0x80040237,Duplicate record,1,ignored",
    700005: "700005,2026-03-10T12:00:00Z,Lead,420,,update,to_dynamics,0x80060891,"
            '"\'-1 is out of range; ""quotes"", commas, and a line\nbreak",1,resolved',
    700006: "700006,2026-03-10T11:30:00Z,Opportunity,O-1,Big deal @home,insert,to_dynamics,0x80040265,"
            "'@mention\tis not allowed,1,retried",
    700007: "700007,2026-03-09T23:30:00Z,Lead,L-1,Ada Lovelace,insert,to_dynamics,0x80040237,Duplicate record,1,open",
    700008: "700008,2026-03-09T22:00:00Z,Account,A-200,Acme Corp,update,to_dynamics,0x80040220,"
            "\"'\rAccess denied for DOMAIN\\svc_sync\",1,open",
}


def csv_bytes(*ids: int) -> bytes:
    return ("\ufeff" + "".join(line + "\r\n" for line in [CSV_HEADER, *(CSV_ROWS[i] for i in ids)])).encode()


JSON_TEXT = """[
{"id": 700001, "time": "2026-03-10T14:10:00Z", "object": "Lead", "record_id": "L-1", "record_label": "Ada Lovelace", "operation": "insert", "direction": "to_dynamics", "error_code": "0x80040237", "error_message": "Duplicate record: a lead with this email already exists.", "attempt": 1, "state": "open"},
{"id": 700002, "time": "2026-03-10T14:05:30Z", "object": "Contact", "record_id": "C-7", "record_label": "=HYPERLINK(\\"http://evil.example\\",\\"click\\")", "operation": "update", "direction": "to_dynamics", "error_code": "0x80048306", "error_message": "+SUM(A1:A9) is not a valid value", "attempt": 2, "state": "open"},
{"id": 700003, "time": "2026-03-10T13:50:00Z", "object": "Lead", "record_id": "42", "record_label": "Grace Hopper", "operation": "update", "direction": "from_dynamics", "error_code": "0x8004431A", "error_message": "100% of the API quota is used", "attempt": 3, "state": "open"},
{"id": 700004, "time": "2026-03-10T13:15:00Z", "object": "Account", "record_id": "A-100", "record_label": "Acme_Corp", "operation": "insert", "direction": "to_dynamics", "error_code": "0x80040237", "error_message": "Duplicate record", "attempt": 1, "state": "ignored"},
{"id": 700005, "time": "2026-03-10T12:00:00Z", "object": "Lead", "record_id": "420", "record_label": null, "operation": "update", "direction": "to_dynamics", "error_code": "0x80060891", "error_message": "-1 is out of range; \\"quotes\\", commas, and a line\\nbreak", "attempt": 1, "state": "resolved"},
{"id": 700006, "time": "2026-03-10T11:30:00Z", "object": "Opportunity", "record_id": "O-1", "record_label": "Big deal @home", "operation": "insert", "direction": "to_dynamics", "error_code": "0x80040265", "error_message": "@mention\\tis not allowed", "attempt": 1, "state": "retried"},
{"id": 700007, "time": "2026-03-09T23:30:00Z", "object": "Lead", "record_id": "L-1", "record_label": "Ada Lovelace", "operation": "insert", "direction": "to_dynamics", "error_code": "0x80040237", "error_message": "Duplicate record", "attempt": 1, "state": "open"},
{"id": 700008, "time": "2026-03-09T22:00:00Z", "object": "Account", "record_id": "A-200", "record_label": "Acme Corp", "operation": "update", "direction": "to_dynamics", "error_code": "0x80040220", "error_message": "\\rAccess denied for DOMAIN\\\\svc_sync", "attempt": 1, "state": "open"}
]
"""

XLSX_ROWS = [
    ["ID", "Time (UTC)", "Object", "Record ID", "Record label", "Operation", "Direction", "Error code",
     "Error message", "Attempt", "State"],
    [700001, dt.datetime(2026, 3, 10, 14, 10), "Lead", "L-1", "Ada Lovelace", "insert", "to_dynamics", "0x80040237",
     "Duplicate record: a lead with this email already exists.", 1, "open"],
    [700002, dt.datetime(2026, 3, 10, 14, 5, 30), "Contact", "C-7", "'=HYPERLINK(\"http://evil.example\",\"click\")",
     "update", "to_dynamics", "0x80048306", "'+SUM(A1:A9) is not a valid value", 2, "open"],
    [700003, dt.datetime(2026, 3, 10, 13, 50), "Lead", "42", "Grace Hopper", "update", "from_dynamics", "0x8004431A",
     "100% of the API quota is used", 3, "open"],
    [700004, dt.datetime(2026, 3, 10, 13, 15), "Account", "A-100", "Acme_Corp", "insert", "to_dynamics", "0x80040237",
     "Duplicate record", 1, "ignored"],
    [700005, dt.datetime(2026, 3, 10, 12, 0), "Lead", "420", None, "update", "to_dynamics", "0x80060891",
     "'-1 is out of range; \"quotes\", commas, and a line\nbreak", 1, "resolved"],
    [700006, dt.datetime(2026, 3, 10, 11, 30), "Opportunity", "O-1", "Big deal @home", "insert", "to_dynamics",
     "0x80040265", "'@mention\tis not allowed", 1, "retried"],
    [700007, dt.datetime(2026, 3, 9, 23, 30), "Lead", "L-1", "Ada Lovelace", "insert", "to_dynamics", "0x80040237",
     "Duplicate record", 1, "open"],
    [700008, dt.datetime(2026, 3, 9, 22, 0), "Account", "A-200", "Acme Corp", "update", "to_dynamics", "0x80040220",
     # OOXML writes a carriage return as _x000D_; openpyxl does not decode it back.
     "'_x000D_Access denied for DOMAIN\\svc_sync", 1, "open"],
]


def download(client, export_format: str, query: dict[str, str] | None = None):
    response = client.get(EXPORT_URL.format(export_format), query_string=query or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def exported_ids(client, query: dict[str, str]) -> list[int]:
    return [record["id"] for record in json.loads(download(client, "json", query).data)]


def read_xlsx(data: bytes) -> openpyxl.worksheet.worksheet.Worksheet:
    return openpyxl.load_workbook(io.BytesIO(data)).active


# -- contents -------------------------------------------------------------------------


def test_csv_export_is_byte_exact(client, errors_dataset):
    response = download(client, "csv")

    assert response.data == csv_bytes(*CSV_ROWS)
    assert response.mimetype == "text/csv"


def test_json_export_is_byte_exact(client, errors_dataset):
    response = download(client, "json")

    assert response.get_data(as_text=True) == JSON_TEXT
    assert response.mimetype == "application/json"


def test_xlsx_export_holds_exactly_the_cells(client, errors_dataset):
    sheet = read_xlsx(download(client, "xlsx").data)

    assert [list(row) for row in sheet.iter_rows(values_only=True)] == XLSX_ROWS


def test_xlsx_times_are_date_cells_shown_as_iso_8601_utc(client, errors_dataset):
    sheet = read_xlsx(download(client, "xlsx").data)

    assert {sheet.cell(row, 2).number_format for row in range(2, 10)} == {'yyyy-mm-dd"T"hh:mm:ss"Z"'}


def test_xlsx_text_cells_are_never_formulas(client, errors_dataset):
    sheet = read_xlsx(download(client, "xlsx").data)

    types = {cell.data_type for row in sheet.iter_rows() for cell in row if cell.value is not None}
    assert "f" not in types and types == {"s", "n", "d"}  # text, numbers, dates


def test_an_empty_selection_exports_the_header_only(client, errors_dataset):
    assert download(client, "csv", {"search": "no such error"}).data == csv_bytes()
    assert download(client, "json", {"search": "no such error"}).data == b"[\n]\n"
    sheet = read_xlsx(download(client, "xlsx", {"search": "no such error"}).data)
    assert [list(row) for row in sheet.iter_rows(values_only=True)] == XLSX_ROWS[:1]


def test_the_header_is_in_the_viewers_language(make_babel_app):
    app = make_babel_app()
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
    french = Translations.load(TRANSLATIONS_DIR, ["fr"], DOMAIN)
    expected = ",".join(french.gettext(msgid) for msgid in CSV_HEADER.split(","))

    data = app.test_client().get(EXPORT_URL.format("csv"), headers={"Accept-Language": "fr"}).data
    assert expected != CSV_HEADER
    assert data.decode("utf-8-sig").split("\r\n")[0] == expected


# -- selection ----------------------------------------------------------------------


def test_export_follows_the_search(client, errors_dataset):
    assert download(client, "csv", {"search": "Duplicate Ada"}).data == csv_bytes(700001, 700007)


def test_export_follows_the_filters(client, errors_dataset):
    assert exported_ids(client, {"flt0_0": "Lead", "flt4_4": "open"}) == [700001, 700003, 700007]


def test_export_follows_search_and_filters_together(client, errors_dataset):
    assert exported_ids(client, {"search": "Duplicate", "flt4_4": "open"}) == [700001, 700007]


def test_export_follows_the_sort(client, errors_dataset):
    # Column 1 is the object; within an object, the later recorded (higher id) first, as in the list.
    assert exported_ids(client, {"sort": "1"}) == [700008, 700004, 700002, 700007, 700005, 700003, 700001, 700006]


def test_xlsx_follows_search_and_filters(client, errors_dataset):
    sheet = read_xlsx(download(client, "xlsx", {"flt2_2": "from_dynamics"}).data)

    assert [list(row) for row in sheet.iter_rows(values_only=True)] == [XLSX_ROWS[0], XLSX_ROWS[3]]


def test_the_page_and_page_size_do_not_limit_an_export(client, errors_dataset):
    assert len(exported_ids(client, {"page": "1", "page_size": "2"})) == 8


def test_a_host_row_cap_limits_the_export_and_says_so_in_the_file_name(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_EXPORT_MAX_ROWS": 3})
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
        response = app.test_client().get(EXPORT_URL.format("csv"))
    assert response.data == csv_bytes(700001, 700002, 700003)
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="dynamics-sync-errors-first-3-20260310T142000Z.csv"'
    )


# -- file names ---------------------------------------------------------------------


@pytest.mark.parametrize("export_format", ["csv", "json", "xlsx"])
def test_the_file_name_says_what_it_holds_and_when(client, errors_dataset, export_format):
    response = download(client, export_format)

    assert response.headers["Content-Disposition"].replace('"', "") == (
        f"attachment; filename=dynamics-sync-errors-20260310T142000Z.{export_format}"
    )


def test_a_filtered_export_says_so_in_its_file_name(client, errors_dataset):
    response = download(client, "csv", {"search": "Ada"})

    assert response.headers["Content-Disposition"] == (
        'attachment; filename="dynamics-sync-errors-filtered-20260310T142000Z.csv"'
    )


# -- streaming ------------------------------------------------------------------------


def test_csv_and_json_are_streamed(client, errors_dataset):
    for export_format in ("csv", "json"):
        with client.get(EXPORT_URL.format(export_format), buffered=False) as response:
            assert response.is_streamed


def test_rows_are_read_in_chunks_through_a_streaming_cursor(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_EXPORT_CHUNK_SIZE": 3})
    seen: list[dict] = []
    with app.app_context():
        db = app.extensions["test_db"]
        load_errors_dataset(db)
        sa.event.listen(db.engine, "before_execute", lambda conn, clause, mp, p, options: seen.append(dict(options)))
        data = app.test_client().get(EXPORT_URL.format("csv")).data
    assert data == csv_bytes(*CSV_ROWS)
    assert [options.get("yield_per") for options in seen if "yield_per" in options] == [3]


def test_the_row_source_yields_plain_rows_chunk_by_chunk(db, errors_dataset):
    stmt = export.select_columns().order_by(SyncError.id)

    with db.engine.connect() as conn:
        chunks = list(export.iter_row_chunks(conn, stmt, 3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 2]
    assert isinstance(chunks[0][0], sa.Row)


def test_an_export_loads_no_orm_objects(client, errors_dataset):
    loaded: list[object] = []

    def on_load(target, context):
        loaded.append(target)

    sa.event.listen(SyncError, "load", on_load)
    try:
        for export_format in ("csv", "json", "xlsx"):
            download(client, export_format)
    finally:
        sa.event.remove(SyncError, "load", on_load)
    assert loaded == []


@pytest.mark.parametrize("export_format", ["csv", "xlsx", "json"])
def test_an_export_leaves_no_file_in_the_temporary_folder_while_or_after_it_is_sent(
    client, errors_dataset, tmp_path, monkeypatch, export_format
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    with client.get(EXPORT_URL.format(export_format), buffered=False) as response:
        assert os.listdir(tmp_path) == []
        response.get_data()
    assert os.listdir(tmp_path) == []


# -- neutralization -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        (" \tx", "' \tx"),
        ("a=1", "a=1"),
        (" a=1", " a=1"),
        ("'a", "'a"),
        ("\u200b=1", "'\u200b=1"),
        ("'=1", "''=1"),
        ("", ""),
        (" ", " "),
    ],
)
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_neutralized(value, cell):
    assert export.neutralize(value) == cell


#: Found by an outside probe: exported unchanged while spreadsheets trim what comes first.
TRIMMED_FORMULAS = [" =1+1", "\xa0=1+1", "\u3000=1+1", "\n=1+1", "  +cmd|' /C calc'!A0", '"=1+1"']


def export_cells(client, export_format: str) -> list[str]:
    """The error messages of an export, as a spreadsheet or a program reads them."""
    data = download(client, export_format).data
    if export_format == "csv":
        return [row[8] for row in csv.reader(io.StringIO(data.decode("utf-8-sig")))][1:]
    return [row[8] for row in read_xlsx(data).iter_rows(min_row=2, values_only=True)]


@pytest.mark.parametrize("export_format", ["csv", "xlsx"])
def test_a_formula_behind_whitespace_or_a_quote_is_neutralized(client, db, export_format):
    with db.engine.begin() as conn:
        conn.execute(sa.insert(SyncError.__table__), [
            {**ERROR_ROWS[0], "id": 710000 + i, "error_message": message}
            for i, message in enumerate(reversed(TRIMMED_FORMULAS))
        ])

    assert export_cells(client, export_format) == ["'" + message for message in TRIMMED_FORMULAS]


def test_json_keeps_the_exact_values(client, db):
    with db.engine.begin() as conn:
        conn.execute(sa.insert(SyncError.__table__), [{**ERROR_ROWS[0], "error_message": TRIMMED_FORMULAS[0]}])

    assert [record["error_message"] for record in json.loads(download(client, "json").data)] == [TRIMMED_FORMULAS[0]]


#: Characters a spreadsheet may trim before it parses a cell.
TRIMMABLE = st.characters(categories=["Zs", "Zl", "Zp", "Cc", "Cf"]) | st.sampled_from("\t\n\v\f\r\x1c\x85'\"")


@fuzz(200)
@given(prefix=st.text(TRIMMABLE, max_size=6), start=st.sampled_from("=+-@"), rest=st.text(max_size=20))
def test_a_formula_behind_any_trimmable_prefix_is_neutralized(prefix, start, rest):
    value = prefix + start + rest

    assert export.neutralize(value) == "'" + value


@fuzz(200)
@given(value=st.text(st.characters(categories=["L", "N", "P", "S", "Z", "Cc", "Cf"]), max_size=12))
def test_neutralizing_round_trips(value):
    cell = export.neutralize(value)
    restored = cell[1:] if cell.startswith("'") and export.needs_neutralizing(cell[1:]) else cell

    assert restored == value


@fuzz(200)
@given(prefix=st.text(TRIMMABLE.filter(lambda ch: ch not in "\t\r"), max_size=6),
       rest=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8))
def test_text_behind_a_trimmable_prefix_without_tab_or_carriage_return_is_left_alone(prefix, rest):
    assert export.neutralize(prefix + rest) == prefix + rest


def test_iso_utc_times():
    assert export.iso_utc(dt.datetime(2026, 3, 10, 14, 20, 0, 123456)) == "2026-03-10T14:20:00Z"


# -- without XlsxWriter -------------------------------------------------------------


def test_without_xlsxwriter_the_xlsx_export_is_hidden_and_answers_404(client, errors_dataset, monkeypatch):
    monkeypatch.setattr(export, "xlsxwriter", None)

    response = client.get(EXPORT_URL.format("xlsx"))
    html = client.get(ERRORS_URL).get_data(as_text=True)
    assert response.status_code == 404
    assert "XLSX export needs XlsxWriter" in response.get_data(as_text=True)
    assert 'data-format="xlsx"' not in html and 'data-format="csv"' in html


def test_the_export_links_carry_the_lists_search_filters_and_sort_only(client, errors_dataset):
    html = client.get(ERRORS_URL, query_string={
        "search": "Ada", "flt0_0": "Lead", "sort": "1", "page": "2", "export_type": "x", "_external": "1",
    }).get_data(as_text=True)

    assert re.findall(r'class="dropdown-item ds-export" data-format="csv"\s+href="([^"]+)"', html) == [
        ERRORS_URL + "export/csv/?search=Ada&amp;flt0_0=Lead&amp;sort=1&amp;state=open",
    ]


def test_an_unknown_format_answers_404(client, errors_dataset):
    assert client.get(EXPORT_URL.format("xml")).status_code == 404
