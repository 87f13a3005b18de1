"""Sync Errors list and details: columns, order, shortened messages, capped counts, read-only."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from flask_dynamics_sync.models import SyncError

from .conftest import ERRORS_URL
from .conftest import listed_error_ids
from .conftest import page_text


def row_cells(html: str, error_id: int) -> list[str]:
    """The visible text of each cell of one error's row."""
    row = re.search(rf"<tr>(?:(?!</tr>).)*?details/\?id={error_id}&.*?</tr>", html, re.S).group(0)
    return [page_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def insert_errors(db, count: int, **values) -> None:
    row = {
        "object_type": "Lead", "record_id": "L-1", "record_label": None, "operation": "insert",
        "direction": "to_dynamics", "error_code": "0x80040237", "error_message": "Duplicate record",
        "occurred_at": dt.datetime(2026, 3, 10, 14, 0), "attempt": 1, "state": "open",
    }
    row.update(values)
    with db.engine.begin() as conn:
        conn.execute(sa.insert(SyncError.__table__), [row] * count)


def test_a_row_shows_time_object_record_operation_direction_code_message_attempts_and_state(client, errors_dataset):
    html = client.get(ERRORS_URL).get_data(as_text=True)

    assert row_cells(html, 700003) == [
        "", "",  # selection box, details link
        "30 minutes ago", "Lead", "42 Grace Hopper", "Update", "From Dynamics",
        "0x8004431A", "100% of the API quota is used", "3", "Open",
    ]


def test_the_column_headers(client, errors_dataset):
    html = client.get(ERRORS_URL).get_data(as_text=True)

    headers = [page_text(h) for h in re.findall(r'<th class="column-header[^"]*">(.*?)</th>', html, re.S)]
    assert headers == [
        "Time", "Object", "Record", "Operation", "Direction", "Error code", "Error message", "Attempt", "State",
    ]


def test_the_time_cell_is_relative_with_the_exact_time_and_zone_on_hover(client, errors_dataset):
    html = client.get(ERRORS_URL).get_data(as_text=True)

    assert '<time datetime="2026-03-10T14:05:30Z" title="March 10, 2026, 2:05:30\u202fPM UTC">14 minutes ago</time>' in html


def test_newest_first(client, errors_dataset):
    newest_first = sorted(errors_dataset, key=lambda row: row["occurred_at"], reverse=True)
    assert listed_error_ids(client) == [row["id"] for row in newest_first]


def test_equal_times_keep_a_stable_order_across_pages(client, db):
    insert_errors(db, 5)
    ids = listed_error_ids(client, {"page_size": "20"})

    pages = [listed_error_ids(client, {"page_size": "2", "page": str(p)}) for p in range(3)]
    assert [i for page in pages for i in page] == ids == sorted(ids, reverse=True)


def test_a_long_message_is_shortened_in_the_list(client, db):
    insert_errors(db, 1, error_message="x" * 300)

    [cells] = [row_cells(client.get(ERRORS_URL).get_data(as_text=True), i) for i in listed_error_ids(client)]
    assert cells[8] == "x" * 139 + "\u2026"


def test_the_details_page_shows_the_whole_message(client, db):
    insert_errors(db, 1, error_message="y" * 300 + "\nsecond line")
    [error_id] = listed_error_ids(client)

    html = client.get(f"{ERRORS_URL}details/", query_string={"id": error_id}).get_data(as_text=True)
    assert f'<pre class="ds-error-message">{"y" * 300}\nsecond line</pre>' in html


def test_the_details_page_lists_every_field(client, errors_dataset):
    html = client.get(f"{ERRORS_URL}details/", query_string={"id": 700004}).get_data(as_text=True)

    rows = re.findall(r"<tr class=\"ds-detail-[^\"]+\">(.*?)</tr>", html, re.S)
    assert [page_text(row) for row in rows] == [
        "ID 700004",
        "Time 1 hour ago",
        "Object Account",
        "Record ID A-100",
        "Record label Acme_Corp",
        "Operation Insert",
        "Direction To Dynamics",
        "Error code 0x80040237",
        "Error message Duplicate record",
        "Attempt 1",
        "State Ignored",
        "State changed 5 minutes ago",
    ]


def test_html_in_the_data_is_escaped(client, db):
    insert_errors(db, 1, record_label="<b>bold</b>", error_message="<script>alert(1)</script>")
    html = client.get(ERRORS_URL).get_data(as_text=True)

    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_view_is_read_only(client, errors_dataset):
    assert client.get(f"{ERRORS_URL}new/").status_code == 302
    assert client.get(f"{ERRORS_URL}edit/", query_string={"id": 700001}).status_code == 302
    assert client.post(f"{ERRORS_URL}delete/", data={"id": "700001"}).status_code == 302
    html = client.get(ERRORS_URL).get_data(as_text=True)
    assert "/new/" not in html and "/edit/" not in html and "/delete/" not in html
    assert listed_error_ids(client) == [row["id"] for row in errors_dataset]


# -- counting -------------------------------------------------------------------------


def list_tab(client, query=None) -> str:
    """The active state tab: its name and count."""
    html = client.get(ERRORS_URL, query_string=query or {}).get_data(as_text=True)
    return page_text(re.search(r'<a [^>]*class="nav-link [^"]* active ds-count".*?</a>', html, re.S).group(0))


def test_a_count_up_to_the_cap_is_exact(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_COUNT_CAP": 3})
    with app.app_context():
        insert_errors(app.extensions["test_db"], 3)
        assert list_tab(app.test_client()) == "Open 3"


def test_a_count_above_the_cap_is_shown_capped(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_COUNT_CAP": 3})
    with app.app_context():
        insert_errors(app.extensions["test_db"], 4)
        assert list_tab(app.test_client()) == "Open 3+"


def test_the_default_cap_reads_ten_thousand_plus(make_app, db_url):
    app = make_app(db_url)
    with app.app_context():
        view = next(v for v in app.extensions["dynamics_sync"].views if v.endpoint.endswith("_errors"))
        assert (view.count_label(10_000), view.count_label(10_001)) == ("10,000", "10,000+")


def test_the_count_follows_search_and_filters(client, errors_dataset):
    assert list_tab(client, {"search": "Duplicate", "flt4_4": "open"}) == "All 2"


def test_the_count_query_reads_at_most_cap_plus_one_rows(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_COUNT_CAP": 3})
    statements: list[str] = []
    with app.app_context():
        db = app.extensions["test_db"]
        insert_errors(db, 10)
        sa.event.listen(db.engine, "before_cursor_execute", lambda c, cur, stmt, *a: statements.append(stmt))
        app.test_client().get(ERRORS_URL)
    [count_sql] = [s for s in statements if "count(" in s.lower()]
    assert count_sql.lower().count("count(") == count_sql.upper().count("LIMIT") == 4  # one per state tab
    assert not any("count(" in s.lower() and "limit" not in s.lower() for s in statements)


def test_a_capped_count_still_lists_the_whole_page(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_COUNT_CAP": 3})
    with app.app_context():
        insert_errors(app.extensions["test_db"], 5)
        client = app.test_client()
        html = client.get(ERRORS_URL, query_string={"page_size": "20"}).get_data(as_text=True)
    assert len(re.findall(r"/details/\?id=", html)) == 5
    assert "Open 3+" in page_text(html)
