"""Sync Errors actions: retry, ignore and resolve the ticked rows or every matching row.

Every action is a POST with a CSRF token: the first shows how many errors it
will change, the confirmed one changes them in one transaction.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError

from .conftest import ERRORS_URL
from .conftest import NOW
from .conftest import page_text

ACTION_URL = ERRORS_URL + "action/"
PARKED_SINCE = dt.datetime(2026, 3, 10, 9, 0)


def csrf_token(client) -> str:
    html = client.get(ERRORS_URL).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def post_action(client, action: str, *, rowids=(), confirmed: bool = True, token: str | None = "fetch", **selection):
    data: dict[str, object] = {"action": action, "scope": "all" if selection or not rowids else "selected"}
    if rowids:
        data["scope"] = "selected"
        data["rowid"] = [str(i) for i in rowids]
    data.update(selection)
    if confirmed:
        data["confirmed"] = "1"
    if token is not None:
        data["csrf_token"] = csrf_token(client) if token == "fetch" else token
    return client.post(ACTION_URL, data=data)


def error_states(db) -> dict[int, str]:
    table = SyncError.__table__
    with db.engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c.id, table.c.state).order_by(table.c.id)).all())


def queue(db) -> list[tuple]:
    table = QueueItem.__table__
    with db.engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.select(
                    table.c.object_type, table.c.record_id, table.c.direction, table.c.operation,
                    table.c.state, table.c.label, table.c.queued_at,
                ).order_by(table.c.object_type, table.c.record_id, table.c.direction)
            )
        ]


def snapshot(db) -> tuple:
    with db.engine.connect() as conn:
        return tuple(
            sorted(tuple(str(v) for v in row) for row in conn.execute(sa.select(model.__table__)))
            for model in (SyncError, QueueItem)
        )


INITIAL_STATES = {
    700001: "open", 700002: "open", 700003: "open", 700004: "ignored",
    700005: "resolved", 700006: "retried", 700007: "open", 700008: "open",
}
C7_LABEL = '=HYPERLINK("http://evil.example","click")'
INITIAL_QUEUE = [
    ("Contact", "C-7", "to_dynamics", "update", "parked", None, PARKED_SINCE),
    ("Lead", "L-1", "to_dynamics", "insert", "parked", "Ada Lovelace", PARKED_SINCE),
]


# -- confirmation -------------------------------------------------------------------


def test_the_first_post_asks_for_confirmation_with_the_number_of_errors(client, db, errors_dataset):
    response = post_action(client, "retry", rowids=[700001, 700002], confirmed=False)

    assert response.status_code == 200
    assert page_text(re.search(r'<p class="lead ds-confirm-question">.*?</p>', response.get_data(as_text=True), re.S).group(0)) == (
        "Retry 2 sync errors? Their records are queued again."
    )
    assert (error_states(db), queue(db)) == (INITIAL_STATES, INITIAL_QUEUE)


def test_the_confirmation_counts_only_errors_the_action_applies_to(client, errors_dataset):
    # 700005 is resolved: retrying it makes no sense.
    html = post_action(client, "retry", rowids=[700001, 700005], confirmed=False).get_data(as_text=True)

    assert "Retry 1 sync error? Its record is queued again." in page_text(html)


def test_the_confirmation_of_all_matching_counts_the_matching_errors(client, errors_dataset):
    html = post_action(client, "resolve", confirmed=False, search="Duplicate").get_data(as_text=True)

    assert "Resolve 3 sync errors?" in page_text(html)


def test_nothing_to_do_offers_no_confirm_button(client, errors_dataset):
    html = post_action(client, "ignore", rowids=[700004], confirmed=False).get_data(as_text=True)

    assert "ds-confirm-button" not in html
    assert "Nothing to do" in page_text(html)


def test_confirming_carries_the_selection(client, errors_dataset):
    html = post_action(client, "ignore", confirmed=False, search="Duplicate", flt4_4="open").get_data(as_text=True)

    form = re.search(r'<form method="POST"[^>]*class="ds-confirm-form">.*?</form>', html, re.S).group(0)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))
    assert {k: v for k, v in fields.items() if k != "csrf_token"} == {
        "action": "ignore", "scope": "all", "url": ERRORS_URL, "confirmed": "1", "up_to_id": "700007",
        "search": "Duplicate", "flt0_4": "open", "state": "all",
    }


@pytest.mark.parametrize(
    ("error_id", "offered"),
    [(700001, ["retry", "ignore", "resolve"]), (700004, ["retry", "resolve"]), (700006, ["ignore", "resolve"]), (700005, [])],
)
def test_the_details_page_offers_the_actions_that_apply_to_the_error(client, errors_dataset, error_id, offered):
    html = client.get(ERRORS_URL + "details/", query_string={"id": error_id}).get_data(as_text=True)

    assert re.findall(r'name="action" value="(\w+)"', html) == offered


# -- retry --------------------------------------------------------------------------


def test_retry_requeues_exactly_the_selected_records(client, db, errors_dataset):
    post_action(client, "retry", rowids=[700002, 700003])

    assert queue(db) == [
        ("Contact", "C-7", "to_dynamics", "update", "pending", C7_LABEL, NOW),
        ("Lead", "42", "from_dynamics", "update", "pending", "Grace Hopper", NOW),
        ("Lead", "L-1", "to_dynamics", "insert", "parked", "Ada Lovelace", PARKED_SINCE),
    ]


def test_retry_marks_exactly_the_selected_errors_retried(client, db, errors_dataset):
    post_action(client, "retry", rowids=[700002, 700003])

    assert error_states(db) == {**INITIAL_STATES, 700002: "retried", 700003: "retried"}


def test_retry_records_when_the_state_changed(client, db, errors_dataset):
    post_action(client, "retry", rowids=[700001])

    table = SyncError.__table__
    with db.engine.connect() as conn:
        assert conn.scalar(sa.select(table.c.state_changed_at).where(table.c.id == 700001)) == NOW


def test_retry_of_several_errors_of_one_record_queues_it_once(client, db, errors_dataset):
    response = post_action(client, "retry", rowids=[700001, 700007])

    assert queue(db) == [INITIAL_QUEUE[0], ("Lead", "L-1", "to_dynamics", "insert", "pending", "Ada Lovelace", NOW)]
    flashed = page_text(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "2 sync errors retried. 1 record queued again." in flashed


def test_retry_leaves_errors_it_does_not_apply_to(client, db, errors_dataset):
    post_action(client, "retry", rowids=[700005, 700006])  # resolved, already retried

    assert (error_states(db), queue(db)) == (INITIAL_STATES, INITIAL_QUEUE)


def test_retry_of_all_matching_requeues_exactly_the_matching_records(client, db, errors_dataset):
    # "Duplicate" matches 700001 and 700007 (L-1, open) and 700004 (A-100, ignored).
    post_action(client, "retry", search="Duplicate")

    assert queue(db) == [
        ("Account", "A-100", "to_dynamics", "insert", "pending", "Acme_Corp", NOW),
        INITIAL_QUEUE[0],
        ("Lead", "L-1", "to_dynamics", "insert", "pending", "Ada Lovelace", NOW),
    ]
    assert error_states(db) == {**INITIAL_STATES, 700001: "retried", 700004: "retried", 700007: "retried"}


def test_retry_of_all_matching_follows_the_filters(client, db, errors_dataset):
    post_action(client, "retry", flt0_0="Contact")

    assert queue(db) == [("Contact", "C-7", "to_dynamics", "update", "pending", C7_LABEL, NOW), INITIAL_QUEUE[1]]
    assert error_states(db) == {**INITIAL_STATES, 700002: "retried"}


def test_all_matching_is_what_was_confirmed_not_what_arrived_since(client, db, errors_dataset):
    html = post_action(client, "resolve", confirmed=False, flt0_0="Contact").get_data(as_text=True)
    up_to_id = re.search(r'name="up_to_id" value="(\d+)"', html).group(1)
    with db.engine.begin() as conn:
        conn.execute(sa.insert(SyncError.__table__), {
            "id": 700009, "object_type": "Contact", "record_id": "C-8", "operation": "insert",
            "direction": "to_dynamics", "error_code": "0x1", "error_message": "late", "occurred_at": NOW,
            "attempt": 1, "state": "open",
        })

    post_action(client, "resolve", flt0_0="Contact", up_to_id=up_to_id)

    assert error_states(db) == {**INITIAL_STATES, 700002: "resolved", 700009: "open"}


def test_retry_through_the_recording_api_turns_a_parked_record_pending(client, sync, db):
    sync.enqueue("Lead", "7", "update", label="Marie Curie")
    db.session.commit()
    [record] = sync.claim()
    sync.mark_failed(record, "0x80040237", "Duplicate", retry=False)
    [error_id] = error_states(db)

    post_action(client, "retry", rowids=[error_id])

    assert queue(db) == [("Lead", "7", "to_dynamics", "update", "pending", "Marie Curie", NOW)]
    assert [r.queue_id for r in sync.claim()] != []


def test_a_retried_record_that_syncs_resolves_its_errors(client, sync, db, errors_dataset):
    post_action(client, "retry", rowids=[700003])  # Lead 42 was no longer queued

    [record] = sync.claim()
    assert (record.record_id, record.attempts) == ("42", 3)
    sync.mark_synced(record)
    assert error_states(db)[700003] == "resolved"


# -- ignore and resolve -------------------------------------------------------------


def test_ignore_marks_the_selected_errors_ignored_and_queues_nothing(client, db, errors_dataset):
    post_action(client, "ignore", rowids=[700001, 700006])

    assert error_states(db) == {**INITIAL_STATES, 700001: "ignored", 700006: "ignored"}
    assert queue(db) == INITIAL_QUEUE


def test_resolve_all_matching_the_filters(client, db, errors_dataset):
    post_action(client, "resolve", flt4_4="open")

    assert error_states(db) == {**INITIAL_STATES, **{i: "resolved" for i in (700001, 700002, 700003, 700007, 700008)}}
    assert queue(db) == INITIAL_QUEUE


def test_after_an_action_the_list_comes_back_with_its_search(client, errors_dataset):
    list_url = ERRORS_URL + "?search=Duplicate"

    response = post_action(client, "ignore", rowids=[700001], url=list_url)
    assert (response.status_code, response.headers["Location"]) == (302, list_url)


def test_an_outside_return_url_is_replaced_by_the_list(client, errors_dataset):
    response = post_action(client, "ignore", rowids=[700001], url="https://evil.example/")

    assert response.headers["Location"] == ERRORS_URL


# -- safety ---------------------------------------------------------------------------


def test_nothing_changes_on_get(client, db, errors_dataset):
    before = snapshot(db)
    urls = [
        ERRORS_URL, ERRORS_URL + "?search=Duplicate", ERRORS_URL + "details/?id=700001",
        ERRORS_URL + "export/csv/", ERRORS_URL + "export/json/", ERRORS_URL + "export/xlsx/",
        ACTION_URL + "?action=retry&scope=all&confirmed=1", ACTION_URL + "?action=retry&scope=selected&rowid=700001&confirmed=1",
    ]
    statuses = [client.get(url).status_code for url in urls]

    assert statuses == [200, 200, 200, 200, 200, 200, 405, 405]
    assert snapshot(db) == before


@pytest.mark.parametrize("confirmed", [False, True])
def test_a_post_without_csrf_token_is_refused_and_changes_nothing(client, db, errors_dataset, confirmed):
    before = snapshot(db)

    response = post_action(client, "retry", rowids=[700001], confirmed=confirmed, token=None)

    assert response.status_code == 400
    assert "security token is missing or has expired" in response.get_data(as_text=True)
    assert snapshot(db) == before


def test_a_post_with_a_forged_csrf_token_is_refused(client, db, errors_dataset):
    before = snapshot(db)

    response = post_action(client, "retry", search="Duplicate", token="forged##token")

    assert response.status_code == 400
    assert snapshot(db) == before


def test_a_token_from_another_session_is_refused(make_app, db_url, errors_dataset):
    other = make_app(db_url).test_client()
    stolen = csrf_token(other)

    client = make_app(db_url).test_client()
    assert post_action(client, "resolve", rowids=[700001], token=stolen).status_code == 400


def test_an_unknown_action_is_refused(client, db, errors_dataset):
    before = snapshot(db)

    assert post_action(client, "delete", rowids=[700001]).status_code == 400
    assert snapshot(db) == before


def test_a_non_numeric_row_id_is_refused(client, errors_dataset):
    assert post_action(client, "ignore", rowids=["1 OR 1=1"]).status_code == 400


def test_actions_work_with_flask_wtf_csrf_protection(make_app, db_url, db, errors_dataset):
    from flask_wtf.csrf import CSRFProtect

    app = make_app(db_url)
    CSRFProtect(app)
    client = app.test_client()

    assert post_action(client, "ignore", rowids=[700001], token=None).status_code == 400
    assert post_action(client, "ignore", rowids=[700001]).status_code == 302
    assert error_states(db)[700001] == "ignored"


# -- the same actions for the host's code ---------------------------------------------


def test_the_host_can_retry_errors_by_id(sync, db, errors_dataset):
    outcome = sync.retry_errors([700001, 700007, 700005])

    assert (outcome.errors, outcome.records) == (2, 1)
    assert error_states(db) == {**INITIAL_STATES, 700001: "retried", 700007: "retried"}
    assert queue(db) == [INITIAL_QUEUE[0], ("Lead", "L-1", "to_dynamics", "insert", "pending", "Ada Lovelace", NOW)]


def test_the_host_can_ignore_and_resolve_errors_by_id(sync, db, errors_dataset):
    assert sync.ignore_errors([700002]).errors == 1
    assert sync.resolve_errors([700002, 700003]).errors == 2

    assert error_states(db) == {**INITIAL_STATES, 700002: "resolved", 700003: "resolved"}
    assert queue(db) == INITIAL_QUEUE


def test_error_ids_must_be_integers(sync, db, errors_dataset):
    with pytest.raises(ValueError):
        sync.retry_errors(["700001; DROP TABLE x"])
    assert error_states(db) == INITIAL_STATES
