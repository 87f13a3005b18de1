"""Links between the two views and to the host's own page of a record.

A record id links to the host's page of the record: ``record_url(object_type, record_id)``
given to ``DynamicsSync``, else the host's ``ModelView`` of the model tracked for that object.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask_admin.contrib.sqla import ModelView

from .conftest import ERRORS_URL
from .conftest import SQLITE_ONLY
from .conftest import load_errors_dataset

pytestmark = SQLITE_ONLY

STATUS = "/admin/dynamics/status/"


def record_links(html: str) -> dict[str, str]:
    """Record id → the URL it links to, for every linked record id of a page."""
    return dict(
        (text, href.replace("&amp;", "&"))
        for href, text in re.findall(r'<a class="ds-record-id ds-host-record" href="([^"]*)">([^<]*)</a>', html)
    )


def crm_url(object_type: str, record_id: str) -> str | None:
    return f"https://crm.example/{object_type.lower()}s/{record_id}" if object_type != "Account" else None


@pytest.fixture
def linked_app(make_app, db_url):
    app = make_app(db_url, sync_kwargs={"record_url": crm_url})
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
        yield app


def test_record_ids_in_the_errors_list_link_to_the_hosts_record_url(linked_app):
    html = linked_app.test_client().get(ERRORS_URL, query_string={"state": "all"}).get_data(as_text=True)

    assert record_links(html) == {
        "L-1": "https://crm.example/leads/L-1",
        "C-7": "https://crm.example/contacts/C-7",
        "42": "https://crm.example/leads/42",
        "420": "https://crm.example/leads/420",
        "O-1": "https://crm.example/opportunitys/O-1",
    }
    assert '<span class="ds-record-id">A-100</span>' in html  # no URL for accounts: plain text


def test_the_error_details_link_the_record_and_its_object_on_sync_status(linked_app):
    html = linked_app.test_client().get(ERRORS_URL + "details/", query_string={"id": 700003}).get_data(as_text=True)

    assert record_links(html) == {"42": "https://crm.example/leads/42"}
    assert re.findall(r'<a class="ds-object-status" href="([^"]*)">([^<]*)</a>', html) == [
        (STATUS + "details/Lead", "Sync status of Lead")
    ]


def test_the_oldest_waiting_records_link_to_the_host(make_app, db_url):
    app = make_app(db_url, sync_kwargs={"record_url": crm_url})
    with app.app_context():
        sync = app.extensions["dynamics_sync"].extension
        sync.enqueue("Lead", "L-5", "insert")
        sync.enqueue("Lead", "L-6", "update")
        app.extensions["test_db"].session.commit()
        html = app.test_client().get(STATUS + "details/Lead").get_data(as_text=True)

    assert record_links(html) == {"L-5": "https://crm.example/leads/L-5", "L-6": "https://crm.example/leads/L-6"}


@pytest.mark.parametrize("url", ["javascript:alert(1)", "//evil.example/x", "data:text/html,x", 42])
def test_a_record_url_that_is_not_a_web_address_is_not_linked(make_app, db_url, url):
    app = make_app(db_url, sync_kwargs={"record_url": lambda object_type, record_id: url})
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
        html = app.test_client().get(ERRORS_URL).get_data(as_text=True)

    assert record_links(html) == {}
    assert '<span class="ds-record-id">L-1</span>' in html


def test_the_status_details_link_to_the_objects_open_errors(linked_app):
    html = linked_app.test_client().get(STATUS + "details/Lead").get_data(as_text=True)

    assert re.findall(r'<a class="ds-object-errors" href="([^"]*)">([^<]*)</a>', html) == [
        (ERRORS_URL + "?flt0_0=Lead", "Open sync errors of Lead")
    ]


def test_an_objects_errors_link_lists_its_open_errors(linked_app):
    html = linked_app.test_client().get(ERRORS_URL + "?flt0_0=Lead").get_data(as_text=True)

    assert re.findall(r"/details/\?id=(\d+)", html) == ["700001", "700003", "700007"]


# -- the host's ModelView, found automatically ------------------------------------------


class ProspectView(ModelView):
    can_view_details = True


@pytest.fixture
def crm_host(make_app, db_url):
    """A host with a ``Prospect`` model tracked as Lead and its own ModelView."""
    from flask_sqlalchemy import SQLAlchemy

    db = SQLAlchemy()

    class Prospect(db.Model):
        id = sa.Column(sa.String(20), primary_key=True)
        name = sa.Column(sa.String(100))

    class Partner(db.Model):
        id = sa.Column(sa.Integer, primary_key=True)
        code = sa.Column(sa.String(20), unique=True)

    app = make_app(db_url, db=db)
    with app.app_context():
        db.create_all()
        sync = app.extensions["dynamics_sync"].extension
        sync.track(Prospect, "Lead", label="name")
        sync.track(Partner, "Account", record_id="code")  # not keyed by the primary key: no link
        admin = app.extensions["admin"][0]
        admin.add_view(ProspectView(Prospect, db, name="Prospects", endpoint="prospects"))
        admin.add_view(ModelView(Partner, db, name="Partners", endpoint="partners"))
        load_errors_dataset(db)
        yield app
        db.drop_all()
        for tracking in sync.trackings:
            tracking.remove()


def test_record_ids_link_to_the_tracked_models_modelview(crm_host):
    html = crm_host.test_client().get(ERRORS_URL, query_string={"state": "all"}).get_data(as_text=True)

    assert record_links(html) == {
        "L-1": "/admin/prospects/details/?id=L-1",
        "42": "/admin/prospects/details/?id=42",
        "420": "/admin/prospects/details/?id=420",
    }


def test_a_modelview_the_viewer_may_not_open_is_not_linked(crm_host):
    [prospects] = [v for v in crm_host.extensions["admin"][0]._views if getattr(v, "endpoint", "") == "prospects"]
    prospects.is_accessible = lambda: False

    html = crm_host.test_client().get(ERRORS_URL).get_data(as_text=True)

    assert record_links(html) == {}
