"""What needs attention first: the headline figures of Sync Status and the open-error badge of the menu.

The data set is ``conftest.status_dataset`` at 14:20 UTC: six records waiting (the oldest,
Lead L-1, for three hours), one open error (Account A-1, parked), 67 records synced 13:00-14:00.
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from flask_dynamics_sync.error_overview import OpenErrorCount
from flask_dynamics_sync.models import SyncError

from .conftest import page_text
from .test_status_view import STATUS
from .test_status_view import parse
from .test_status_view import table

ERRORS = "/admin/dynamics/errors/"


def headline(client) -> dict[str, str]:
    figures = parse(client.get(STATUS).data).find("dl", id="ds-headline")
    return {node.attrs["data-ds-field"]: node.find("dd").text() for node in figures.find_all(class_="ds-figure")}


def headline_links(client) -> dict[str, str]:
    figures = parse(client.get(STATUS).data).find("dl", id="ds-headline")
    return {node.attrs["data-ds-field"]: node.find("a").attrs["href"] for node in figures.find_all(class_="ds-figure")}


def menu_entry(html: str) -> str:
    return re.search(rf'<a class="dropdown-item[^"]*" href="{ERRORS}"\s*>(.*?)</a>', html, re.S).group(1)


def test_the_headline_shows_backlog_open_errors_last_hour_and_oldest_waiting(client, status_dataset):
    assert headline(client) == {
        "backlog": "6",
        "open-errors": "1",
        "synced-last-hour": "67",
        "oldest": "3 hours ago Lead",
    }


def test_the_headline_figures_equal_the_tables_below_them(client, status_dataset):
    figures = headline(client)
    backlog_total = table(parse(client.get(STATUS).data), "ds-backlog")[-1]
    last_hour_total = table(parse(client.get(STATUS + "?view=last_hour").data), "ds-last-hour")[-1]

    assert int(figures["backlog"]) == int(backlog_total[1]) + int(backlog_total[2])
    assert figures["synced-last-hour"] == last_hour_total[3]
    assert figures["oldest"].split(" Lead")[0] == backlog_total[3] + " ago"


def test_each_headline_figure_links_to_where_it_is_shown_in_full(client, status_dataset):
    assert headline_links(client) == {
        "backlog": "#ds-backlog",
        "open-errors": ERRORS,
        "synced-last-hour": STATUS + "?view=last_hour",
        "oldest": STATUS + "details/Lead",
    }


def test_the_oldest_waiting_record_shows_its_exact_time_on_hover(client, status_dataset):
    oldest = parse(client.get(STATUS).data).find(data_ds_field="oldest").find("time")

    assert (oldest.attrs["datetime"], oldest.attrs["title"], oldest.text()) == (
        "2026-03-10T11:20:00Z", "March 10, 2026, 11:20:00\u202fAM UTC", "3 hours ago",
    )


def test_an_empty_sync_has_zeros_and_a_dash(client):
    assert headline(client) == {"backlog": "0", "open-errors": "0", "synced-last-hour": "0", "oldest": "—"}


def test_the_last_hour_view_has_no_headline(client, status_dataset):
    assert 'id="ds-headline"' not in client.get(STATUS + "?view=last_hour").get_data(as_text=True)


def test_the_open_error_count_is_capped(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_COUNT_CAP": 2})
    with app.app_context():
        add_open_errors(app.extensions["test_db"], 3)
        assert headline(app.test_client())["open-errors"] == "2+"


def add_open_errors(db, count: int) -> None:
    row = {
        "object_type": "Lead", "record_id": "L-9", "record_label": None, "operation": "update",
        "direction": "to_dynamics", "error_code": "0x80040237", "error_message": "Duplicate record",
        "occurred_at": dt.datetime(2026, 3, 10, 14, 0), "attempt": 1, "state": "open",
    }
    with db.engine.begin() as conn:
        conn.execute(sa.insert(SyncError.__table__), [row] * count)


# -- the menu badge -------------------------------------------------------------------


def test_the_sync_errors_menu_entry_carries_the_open_error_count(client, status_dataset):
    entry = menu_entry(client.get(STATUS).get_data(as_text=True))

    assert page_text(entry) == "Sync Errors 1"
    assert 'title="1 open sync error"' in entry


def test_the_badge_is_on_the_hosts_own_pages_too(client, status_dataset):
    assert page_text(menu_entry(client.get("/admin/").get_data(as_text=True))) == "Sync Errors 1"


def test_without_open_errors_the_menu_entry_has_no_badge(client):
    assert page_text(menu_entry(client.get(STATUS).get_data(as_text=True))) == "Sync Errors"


def test_the_page_title_keeps_the_plain_name(client, status_dataset):
    html = client.get(ERRORS).get_data(as_text=True)

    assert re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip() == "Microsoft Dynamics - Sync Errors - Host console"


def error_reads(db, statements: list[str]) -> list[str]:
    return [s for s in statements if "dynamics_sync_error" in s]


def test_each_plugin_page_reads_the_open_errors_once_for_headline_and_badge(app, client, db, status_dataset):
    statements: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda c, cur, stmt, *a: statements.append(stmt))

    client.get(STATUS)
    assert len(error_reads(db, statements)) == 1
    statements.clear()
    client.get(ERRORS)
    assert len(error_reads(db, statements)) == 2  # the page of rows and the tab counts; the badge reuses Open's


def test_the_badge_count_is_reused_for_a_while_then_read_again():
    now = [100.0]
    reads: list[int] = []
    counter = OpenErrorCount(seconds=30, monotonic=lambda: now[0])

    def read() -> int:
        reads.append(len(reads) + 1)
        return reads[-1]

    assert [counter.get(read), counter.get(read)] == [1, 1]
    now[0] += 29.9
    assert counter.get(read) == 1
    now[0] += 0.1
    assert counter.get(read) == 2


def test_a_database_without_the_tables_leaves_the_menu_entry_plain(empty_app):
    response = empty_app.test_client().get("/admin/")

    assert response.status_code == 200
    assert page_text(menu_entry(response.get_data(as_text=True))) == "Sync Errors"


# -- cross-links ------------------------------------------------------------------------


def test_each_object_links_to_its_open_sync_errors(client, status_dataset):
    rows = parse(client.get(STATUS).data).find("table", id="ds-backlog").find_all("tr")[1:]

    assert [row.find("a", class_="ds-object-errors").attrs["href"] for row in rows] == [
        f"{ERRORS}?flt0_0={name}" for name in ("Lead", "Contact", "Account", "Opportunity")
    ] + [ERRORS]
