"""Sync Errors opens on what needs attention: state tabs with capped counts, groups of open errors.

The known errors of ``load_errors_dataset`` (conftest) are read at the frozen time (14:20 UTC):
five open, one ignored, one resolved, one retried.
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from flask_dynamics_sync.error_overview import ErrorGroup
from flask_dynamics_sync.error_overview import StateTab
from flask_dynamics_sync.error_overview import open_error_groups
from flask_dynamics_sync.error_overview import tab_counts
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.types import Direction

from .conftest import ERRORS_URL
from .conftest import NOW
from .conftest import listed_error_ids
from .conftest import page_text

GROUPS_URL = ERRORS_URL + "groups/"
OBJECT, DIRECTION, ERROR_CODE = "flt0_0", "flt1_2", "flt2_3"


def tabs(client, query: dict[str, str] | None = None) -> dict[str, str]:
    """Each state tab's name and count as the list shows them, and which one is active (``*``)."""
    html = client.get(ERRORS_URL, query_string=query or {}).get_data(as_text=True)
    found = {}
    for classes, text in re.findall(r'<a href="[^"]*" class="nav-link ds-tab (ds-tab-(?!groups)[^"]*)"[^>]*>(.*?)</a>', html, re.S):
        name, count = page_text(text).rsplit(" ", 1)
        found[name + ("*" if "active" in classes.split() else "")] = count
    return found


def add_errors(db, count: int, state: str, **values) -> None:
    row = {
        "object_type": "Lead", "record_id": "L-9", "record_label": None, "operation": "update",
        "direction": "to_dynamics", "error_code": "0x80040237", "error_message": "Duplicate record",
        "occurred_at": dt.datetime(2026, 3, 10, 14, 0), "attempt": 1, "state": state, **values,
    }
    with db.engine.begin() as conn:
        conn.execute(sa.insert(SyncError.__table__), [row] * count)


# -- state tabs -----------------------------------------------------------------------


def test_the_list_opens_on_the_open_errors(client, errors_dataset):
    assert listed_error_ids(client, state=None) == [700001, 700002, 700003, 700007, 700008]


def test_each_tab_lists_the_errors_of_its_state(client, errors_dataset):
    assert listed_error_ids(client, state="ignored") == [700004]
    assert listed_error_ids(client, state="resolved") == [700005]
    assert listed_error_ids(client, state="all") == [row["id"] for row in errors_dataset[:5]] + [700006, 700007, 700008]


def test_the_tabs_count_their_errors_and_retried_ones_count_under_all_only(client, errors_dataset):
    assert tabs(client) == {"Open*": "5", "Ignored": "1", "Resolved": "1", "All": "8"}


def test_the_tab_counts_follow_the_search_and_filters(client, errors_dataset):
    assert tabs(client, {"search": "Duplicate", "state": "ignored"}) == {
        "Open": "2", "Ignored*": "1", "Resolved": "0", "All": "3",
    }
    assert tabs(client, {"flt0_0": "Lead"}) == {"Open*": "3", "Ignored": "0", "Resolved": "1", "All": "4"}


def test_the_tab_counts_are_capped_like_the_list_count(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_COUNT_CAP": 3})
    with app.app_context():
        db = app.extensions["test_db"]
        add_errors(db, 4, "open")
        add_errors(db, 1, "ignored")
        assert tabs(app.test_client()) == {"Open*": "3+", "Ignored": "1", "Resolved": "0", "All": "3+"}


def test_a_search_counts_its_tabs_in_its_one_pass(make_app, db_url):
    app = make_app(db_url)
    statements: list[str] = []
    with app.app_context():
        db = app.extensions["test_db"]
        add_errors(db, 2, "open")
        add_errors(db, 1, "resolved")
        sa.event.listen(db.engine, "before_cursor_execute", lambda c, cur, stmt, *a: statements.append(stmt))
        assert tabs(app.test_client(), {"search": "Duplicate"}) == {
            "Open*": "2", "Ignored": "0", "Resolved": "1", "All": "3",
        }
    # Only the menu badge counts (the open errors of every object, no search).
    assert [s for s in statements if "count(" in s.lower() and "like" in s.lower()] == []


def test_tab_links_keep_the_search_and_filters_and_leave_the_page(client, errors_dataset):
    html = client.get(ERRORS_URL, query_string={"search": "Ada", "flt0_0": "Lead", "page": "1"}).get_data(as_text=True)

    assert re.findall(r'<a href="([^"]*)" class="nav-link ds-tab ds-tab-resolved', html) == [
        ERRORS_URL + "?search=Ada&amp;flt0_0=Lead&amp;state=resolved"
    ]
    assert re.findall(r'<a href="([^"]*)" class="nav-link ds-tab ds-tab-open', html) == [
        ERRORS_URL + "?search=Ada&amp;flt0_0=Lead"
    ]


def test_the_filter_bar_sorting_and_details_stay_on_the_tab(client, errors_dataset):
    html = client.get(ERRORS_URL, query_string={"state": "all"}).get_data(as_text=True)

    assert '<input type="hidden" name="state" value="all">' in html
    assert f'href="{ERRORS_URL}?sort=1&amp;state=all&amp;page_size=50"' in html
    assert f'href="{ERRORS_URL}details/?id=700006&amp;url={ERRORS_URL}?state%3Dall%26page_size%3D50"' in html


def test_a_state_filter_in_the_url_shows_the_all_tab(client, errors_dataset):
    assert listed_error_ids(client, {"flt0_4": "retried"}, state=None) == [700006]


def test_tab_counts_within_a_selection(db, errors_dataset):
    lead = SyncError.__table__.c.object_type == "Lead"
    with db.engine.connect() as conn:
        assert tab_counts(conn, lead, 10_000) == {
            StateTab.OPEN: 3, StateTab.IGNORED: 0, StateTab.RESOLVED: 1, StateTab.ALL: 4,
        }


# -- groups ---------------------------------------------------------------------------


def test_open_errors_are_grouped_by_code_object_and_direction_biggest_first(db, errors_dataset):
    with db.engine.connect() as conn:
        groups = open_error_groups(conn)

    assert groups == [
        ErrorGroup("0x80040237", "Lead", Direction.TO_DYNAMICS, 2, dt.datetime(2026, 3, 9, 23, 30),
                   dt.datetime(2026, 3, 10, 14, 10), "Duplicate record: a lead with this email already exists.", 700001),
        ErrorGroup("0x80048306", "Contact", Direction.TO_DYNAMICS, 1, dt.datetime(2026, 3, 10, 14, 5, 30),
                   dt.datetime(2026, 3, 10, 14, 5, 30), "+SUM(A1:A9) is not a valid value", 700002),
        ErrorGroup("0x8004431A", "Lead", Direction.FROM_DYNAMICS, 1, dt.datetime(2026, 3, 10, 13, 50),
                   dt.datetime(2026, 3, 10, 13, 50), "100% of the API quota is used", 700003),
        ErrorGroup("0x80040220", "Account", Direction.TO_DYNAMICS, 1, dt.datetime(2026, 3, 9, 22, 0),
                   dt.datetime(2026, 3, 9, 22, 0), "\rAccess denied for DOMAIN\\svc_sync", 700008),
    ]


def test_a_groups_sample_is_its_latest_error(db, errors_dataset):
    add_errors(db, 1, "open", object_type="Account", record_id="A-300", error_code="0x80040220",
               error_message="Access denied for DOMAIN\\svc_sync (again)", occurred_at=dt.datetime(2026, 3, 10, 8, 0))
    add_errors(db, 1, "ignored", object_type="Account", record_id="A-301", error_code="0x80040220",
               error_message="ignored: not part of the group", occurred_at=dt.datetime(2026, 3, 10, 9, 0))
    with db.engine.connect() as conn:
        [account] = [g for g in open_error_groups(conn) if g.object_type == "Account"]

    assert (account.count, account.first_seen, account.last_seen, account.sample_message) == (
        2, dt.datetime(2026, 3, 9, 22, 0), dt.datetime(2026, 3, 10, 8, 0), "Access denied for DOMAIN\\svc_sync (again)",
    )


def group_rows(html: str) -> list[list[str]]:
    rows = re.findall(r'<tr class="ds-group".*?</tr>', html, re.S)
    return [[page_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)][:7] for row in rows]


def test_the_groups_page_shows_count_times_sample_and_direction(client, errors_dataset):
    html = client.get(GROUPS_URL).get_data(as_text=True)

    assert group_rows(html) == [
        ["0x80040237", "Lead", "To Dynamics", "2", "15 hours ago", "10 minutes ago",
         "Duplicate record: a lead with this email already exists."],
        ["0x80048306", "Contact", "To Dynamics", "1", "14 minutes ago", "14 minutes ago", "+SUM(A1:A9) is not a valid value"],
        ["0x8004431A", "Lead", "From Dynamics", "1", "30 minutes ago", "30 minutes ago", "100% of the API quota is used"],
        ["0x80040220", "Account", "To Dynamics", "1", "16 hours ago", "16 hours ago", "Access denied for DOMAIN\\svc_sync"],
    ]


def show_these_url(html: str, code: str, object_type: str) -> str:
    row = re.search(rf'<tr class="ds-group" data-ds-code="{code}" data-ds-object="{object_type}".*?</tr>', html, re.S).group(0)
    return re.search(r'href="([^"]+)"[^>]*>\s*Show these', row).group(1).replace("&amp;", "&")


def test_show_these_lists_exactly_the_groups_open_errors(client, errors_dataset):
    url = show_these_url(client.get(GROUPS_URL).get_data(as_text=True), "0x80040237", "Lead")

    response = client.get(url)
    assert re.findall(r"/details/\?id=(\d+)", response.get_data(as_text=True)) == ["700001", "700007"]


def group_form(html: str, code: str, object_type: str) -> dict[str, str]:
    row = re.search(rf'<tr class="ds-group" data-ds-code="{code}" data-ds-object="{object_type}".*?</tr>', html, re.S).group(0)
    form = re.search(r'<form method="POST".*?</form>', row, re.S).group(0)
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))


def test_retry_all_of_a_group_requeues_exactly_that_group_after_confirmation(client, db, errors_dataset):
    fields = group_form(client.get(GROUPS_URL).get_data(as_text=True), "0x80040237", "Lead")

    confirmation = client.post(ERRORS_URL + "action/", data={**fields, "action": "retry"}).get_data(as_text=True)
    assert "Retry 2 sync errors? Their records are queued again." in page_text(confirmation)
    confirm = dict(re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)">',
        re.search(r'<form method="POST"[^>]*class="ds-confirm-form">.*?</form>', confirmation, re.S).group(0),
    ))
    response = client.post(ERRORS_URL + "action/", data={**confirm, "action": "retry"})

    assert response.headers["Location"] == GROUPS_URL
    table = SyncError.__table__
    with db.engine.connect() as conn:
        states = dict(conn.execute(sa.select(table.c.id, table.c.state)).all())
        queued = conn.execute(
            sa.select(QueueItem.__table__.c.object_type, QueueItem.__table__.c.record_id, QueueItem.__table__.c.state,
                      QueueItem.__table__.c.queued_at)
            .order_by(QueueItem.__table__.c.object_type)
        ).all()
    assert {k for k, v in states.items() if v == "retried"} == {700001, 700006, 700007}
    assert [k for k, v in sorted(states.items()) if v == "open"] == [700002, 700003, 700008]
    assert queued == [("Contact", "C-7", "parked", dt.datetime(2026, 3, 10, 9, 0)), ("Lead", "L-1", "pending", NOW)]


def test_ignore_all_of_a_group_changes_only_that_group(client, db, errors_dataset):
    fields = group_form(client.get(GROUPS_URL).get_data(as_text=True), "0x80040220", "Account")

    client.post(ERRORS_URL + "action/", data={**fields, "action": "ignore", "confirmed": "1"})

    assert listed_error_ids(client, state="ignored") == [700004, 700008]
    assert listed_error_ids(client, state=None) == [700001, 700002, 700003, 700007]


def test_the_group_forms_carry_the_csrf_token(client, errors_dataset):
    fields = group_form(client.get(GROUPS_URL).get_data(as_text=True), "0x80040237", "Lead")

    assert fields["csrf_token"]
    assert client.post(ERRORS_URL + "action/", data={**fields, "csrf_token": "", "action": "retry"}).status_code == 400


def test_without_open_errors_the_groups_page_says_so(client):
    assert "No open sync errors." in page_text(client.get(GROUPS_URL).get_data(as_text=True))


# -- confirmation and details ---------------------------------------------------------


def test_the_confirmation_lists_the_first_errors_it_changes_above_the_count(client, errors_dataset):
    fields = group_form(client.get(GROUPS_URL).get_data(as_text=True), "0x80040237", "Lead")

    html = client.post(ERRORS_URL + "action/", data={**fields, "action": "ignore"}).get_data(as_text=True)

    examples = re.search(r'<table class="table table-sm ds-confirm-examples">.*?</table>', html, re.S).group(0)
    assert [[page_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", examples.split("<tbody>")[1], re.S)] == [
        ["0x80040237", "Lead L-1", "Duplicate record: a lead with this email already exists."],
        ["0x80040237", "Lead L-1", "Duplicate record"],
    ]
    assert html.index("ds-confirm-examples") < html.index("ds-confirm-question")
    assert "ds-confirm-more" not in html


def test_a_long_selection_names_how_many_more_it_changes(client, db, errors_dataset):
    add_errors(db, 6, "open")

    html = client.post(ERRORS_URL + "action/", data={
        **group_form(client.get(GROUPS_URL).get_data(as_text=True), "0x80040237", "Lead"), "action": "ignore",
    }).get_data(as_text=True)

    assert len(re.findall(r"<tr>", html.split("<tbody>")[1].split("</tbody>")[0])) == 5
    assert page_text(re.search(r'<p class="small text-muted ds-confirm-more">.*?</p>', html, re.S).group(0)) == "and 3 more"
    assert "Ignore 8 sync errors?" in page_text(html)


def test_only_retry_looks_like_the_main_action_on_the_details_page(client, errors_dataset):
    html = client.get(ERRORS_URL + "details/", query_string={"id": 700001}).get_data(as_text=True)

    assert dict(re.findall(r'value="(\w+)" class="btn (btn-[\w-]+) btn-sm', html)) == {
        "retry": "btn-primary", "ignore": "btn-outline-secondary", "resolve": "btn-outline-secondary",
    }


def test_empty_detail_cells_show_a_dash(client, errors_dataset):
    html = client.get(ERRORS_URL + "details/", query_string={"id": 700005}).get_data(as_text=True)

    assert page_text(re.search(r'<tr class="ds-detail-record_label">.*?</tr>', html, re.S).group(0)) == "Record label —"
