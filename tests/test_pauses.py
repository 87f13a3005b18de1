"""Pause and resume an object in one direction: the queue, the API, the CLI and Sync Status.

A pause is a row of ``dynamics_sync_pause``: every worker sees it, it survives
restarts; while it lasts no claim hands the object's records out in that
direction (the backlog keeps growing), and on resume they drain oldest first.
"""

from __future__ import annotations

import re

import pytest

from flask_dynamics_sync import Direction
from flask_dynamics_sync.pauses import PauseInfo

from .conftest import NOW
from .conftest import page_text

STATUS_URL = "/admin/dynamics/status/"
PAUSE_URL = STATUS_URL + "pause/"
LEAD_DETAILS = STATUS_URL + "details/Lead"


def queue(sync, db, object_type: str, record_id: int, direction: str = "to_dynamics") -> None:
    """A host change to the record, committed."""
    sync.enqueue(object_type, record_id, "insert", direction=direction)
    db.session.commit()


def claimed_ids(sync, direction: str = "to_dynamics") -> list[str]:
    return [r.record_id for r in sync.claim(100, direction=direction)]


def test_a_paused_object_is_not_claimed_and_its_backlog_keeps_growing(sync, db):
    queue(sync, db, "Lead", 1)
    queue(sync, db, "Contact", 2)
    sync.pause("Lead", "to_dynamics", by="ops@example.com")
    queue(sync, db, "Lead", 3)

    assert claimed_ids(sync) == ["2"]


def test_a_pause_holds_only_its_direction(sync, db):
    queue(sync, db, "Lead", 1, "to_dynamics")
    queue(sync, db, "Lead", 2, "from_dynamics")
    sync.pause("Lead", "to_dynamics")

    assert (claimed_ids(sync, "to_dynamics"), claimed_ids(sync, "from_dynamics")) == ([], ["2"])


def test_on_resume_the_backlog_drains_oldest_first(sync, db, clock):
    sync.pause("Lead", "to_dynamics")
    for record_id in (5, 3, 9):
        queue(sync, db, "Lead", record_id)
        clock.advance(minutes=1)
    assert claimed_ids(sync) == []

    assert sync.resume("Lead", "to_dynamics") is True
    assert claimed_ids(sync) == ["5", "3", "9"]


def test_the_pause_says_who_and_when_and_the_first_pause_is_kept(sync, clock):
    assert sync.pause("Lead", Direction.FROM_DYNAMICS, by="ana") is True
    clock.advance(minutes=5)
    assert sync.pause("Lead", "from_dynamics", by="bob") is False

    assert sync.pauses() == {"Lead": [PauseInfo("Lead", Direction.FROM_DYNAMICS, "ana", NOW)]}


def test_resuming_what_is_not_paused_says_so(sync):
    assert sync.resume("Lead", "to_dynamics") is False


def test_an_unknown_object_or_direction_is_refused(sqlite_url, make_app):
    app = make_app(sqlite_url)
    sync = app.extensions["dynamics_sync"].extension
    with app.app_context():
        with pytest.raises(ValueError, match="unknown object type 'Invoice'"):
            sync.pause("Invoice", "to_dynamics")
        with pytest.raises(ValueError, match="unknown direction 'sideways'"):
            sync.pause("Lead", "sideways")


# -- the CLI -------------------------------------------------------------------------------


def cli(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["dynamics-sync", *args])
    return result.output


def test_the_cli_pauses_lists_and_resumes(app, sync):
    assert cli(app, "pause", "Lead", "to_dynamics", "--by", "night shift") == "Lead to_dynamics: paused.\n"
    assert cli(app, "paused") == "Lead to_dynamics: paused by night shift at 2026-03-10 14:20:00 UTC\n"
    assert cli(app, "resume", "Lead", "to_dynamics") == "Lead to_dynamics: resumed.\n"
    assert cli(app, "paused") == "Nothing is paused.\n"


def test_the_cli_refuses_an_unknown_object(app):
    result = app.test_cli_runner().invoke(args=["dynamics-sync", "pause", "Invoice", "to_dynamics"])
    assert result.exit_code == 2
    assert "unknown object type 'Invoice'" in result.output


# -- Sync Status ---------------------------------------------------------------------------


def csrf_token(client) -> str:
    html = client.get(LEAD_DETAILS).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def post_pause(client, action: str = "pause", *, confirmed: bool = True, token: str | None = "fetch", **fields):
    data = {"action": action, "object_type": "Lead", "direction": "to_dynamics", "url": LEAD_DETAILS, **fields}
    if confirmed:
        data["confirmed"] = "1"
    if token is not None:
        data["csrf_token"] = csrf_token(client) if token == "fetch" else token
    return client.post(PAUSE_URL, data=data)


def test_the_first_post_asks_for_confirmation_and_pauses_nothing(client, sync):
    response = post_pause(client, confirmed=False)

    assert response.status_code == 200
    assert "Pause Lead, To Dynamics? Nothing is sent or read for it until it is resumed" in page_text(
        response.get_data(as_text=True)
    )
    assert sync.pauses() == {}


def test_an_operator_pauses_and_sees_paused_with_who_and_when(client, sync):
    response = client.post(
        PAUSE_URL,
        data={"action": "pause", "object_type": "Lead", "direction": "to_dynamics", "url": LEAD_DETAILS,
              "confirmed": "1", "csrf_token": csrf_token(client)},
        environ_base={"REMOTE_USER": "ana@example.com"},
    )
    assert (response.status_code, response.headers["Location"]) == (302, LEAD_DETAILS)
    assert sync.pauses()["Lead"] == [PauseInfo("Lead", Direction.TO_DYNAMICS, "ana@example.com", NOW)]

    details = page_text(client.get(LEAD_DETAILS).get_data(as_text=True))
    assert "To Dynamics: Paused by ana@example.com" in details
    assert "From Dynamics: Running" in details
    overview = client.get(STATUS_URL).get_data(as_text=True)
    assert 'data-ds-direction="to_dynamics">Paused: To Dynamics</span>' in overview


def test_an_operator_resumes(client, sync):
    sync.pause("Lead", "to_dynamics", by="ana")
    details = client.get(LEAD_DETAILS).get_data(as_text=True)
    assert 'name="action" value="resume"' in details

    assert post_pause(client, "resume").status_code == 302
    assert sync.pauses() == {}


def test_a_post_without_csrf_token_is_refused_and_pauses_nothing(client, sync):
    assert post_pause(client, token=None).status_code == 400
    assert sync.pauses() == {}


def test_nothing_is_paused_on_get(client, sync):
    assert client.get(PAUSE_URL + "?action=pause&object_type=Lead&direction=to_dynamics&confirmed=1").status_code == 405
    assert sync.pauses() == {}


def test_an_unknown_object_is_refused(client, sync):
    assert post_pause(client, object_type="Invoice").status_code == 400
    assert sync.pauses() == {}


def test_an_outside_return_url_is_replaced_by_the_objects_page(client):
    response = post_pause(client, url="https://evil.example/")
    assert response.headers["Location"] == LEAD_DETAILS


def test_a_viewer_who_may_not_act_sees_the_state_and_no_buttons(make_app, db_url):
    app = make_app(db_url, sync_kwargs={"can_act": lambda: False})
    sync = app.extensions["dynamics_sync"].extension
    with app.app_context():
        sync.pause("Lead", "to_dynamics", by="ana")
    client = app.test_client()

    details = client.get(LEAD_DETAILS).get_data(as_text=True)
    assert "Paused" in page_text(details) and "pause/" not in details
    assert client.post(PAUSE_URL, data={"action": "resume"}).status_code == 403
    with app.app_context():
        assert list(sync.pauses()) == ["Lead"]


@pytest.mark.parametrize(
    ("locale", "paused", "button"),
    [("it", "In pausa", "Riprendi"), ("pt-BR", "Pausado", "Retomar"), ("de", "Pausiert", "Fortsetzen"),
     ("es", "En pausa", "Reanudar"), ("fr", "Suspendu", "Reprendre")],
)
def test_the_pause_is_shown_in_the_viewers_language(babel_app, locale, paused, button):
    sync = babel_app.extensions["dynamics_sync"].extension
    with babel_app.app_context():
        sync.pause("Lead", "to_dynamics", by="ana")
    html = babel_app.test_client().get(LEAD_DETAILS, headers={"Accept-Language": locale}).get_data(as_text=True)
    text = page_text(html)
    assert paused in text and button in text


def test_pause_state_is_shared_by_every_app_on_the_database(make_app, db_url):
    first, second = make_app(db_url), make_app(db_url)
    with first.app_context():
        first.extensions["dynamics_sync"].extension.pause("Contact", "from_dynamics", by="ana")
    with second.app_context():
        assert [p.paused_by for p in second.extensions["dynamics_sync"].extension.pauses()["Contact"]] == ["ana"]


# -- the worker ----------------------------------------------------------------------------


def test_no_worker_sends_a_paused_object_and_all_is_sent_after_resume(crm, make_worker, local_dataverse):
    from tests.workers.crm_host import Company
    from tests.workers.crm_host import db

    sync = crm.extensions["dynamics_sync"].extension
    sync.pause("Account", "to_dynamics", by="ana")
    db.session.add_all([Company(name=f"Company {n}") for n in range(1, 6)])
    db.session.commit()
    workers = [make_worker(crm), make_worker(crm)]

    assert [w.run_once().claimed for w in workers] == [0, 0]
    assert local_dataverse.rows("accounts") == []

    sync.resume("Account", "to_dynamics")
    assert sum(w.run_once().synced for w in workers) == 5
    assert sorted(r["name"] for r in local_dataverse.rows("accounts")) == [f"Company {n}" for n in range(1, 6)]
