"""Who may see the Sync Errors view and who may act: the host decides.

``DynamicsSync(can_view=..., can_act=...)``; by default whatever the host's admin
index view allows. Export and actions obey the same checks as the list.
"""

from __future__ import annotations

import re

import pytest
from flask_admin import Admin
from flask_admin import AdminIndexView

from .conftest import ERRORS_URL
from .conftest import SQLITE_ONLY
from .conftest import load_errors_dataset

#: Access rules do not depend on the database.
pytestmark = SQLITE_ONLY

PROTECTED = [
    ("GET", ERRORS_URL),
    ("GET", ERRORS_URL + "?search=Duplicate"),
    ("GET", ERRORS_URL + "details/?id=700001"),
    ("GET", ERRORS_URL + "export/csv/"),
    ("GET", ERRORS_URL + "export/xlsx/"),
    ("GET", ERRORS_URL + "export/json/"),
    ("POST", ERRORS_URL + "action/"),
]


def host(make_app, db_url, **sync_kwargs):
    app = make_app(db_url, sync_kwargs=sync_kwargs)
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
    return app


def request(client, method: str, url: str):
    if method == "POST":
        return client.post(url, data={"action": "resolve", "scope": "all", "confirmed": "1"})
    return client.get(url)


@pytest.mark.parametrize(("method", "url"), PROTECTED)
def test_a_viewer_the_host_denies_gets_403(make_app, db_url, method, url):
    client = host(make_app, db_url, can_view=lambda: False).test_client()

    assert request(client, method, url).status_code == 403


def test_the_menu_hides_the_view_from_a_denied_viewer(make_app, db_url):
    allowed = make_app(db_url).test_client().get("/admin/").get_data(as_text=True)
    denied = make_app(db_url, sync_kwargs={"can_view": lambda: False}).test_client().get("/admin/").get_data(as_text=True)

    assert f'href="{ERRORS_URL}"' in allowed
    assert f'href="{ERRORS_URL}"' not in denied


def test_by_default_the_host_index_views_policy_applies(make_app, db_url):
    class LockedIndex(AdminIndexView):
        def is_accessible(self):
            return False

    app = make_app(db_url, admin=Admin(name="Locked", index_view=LockedIndex()))

    assert app.test_client().get(ERRORS_URL).status_code == 403


@pytest.mark.parametrize(("method", "url"), [(m, u) for m, u in PROTECTED if m == "GET"])
def test_a_viewer_who_may_not_act_can_still_browse_and_export(make_app, db_url, method, url):
    client = host(make_app, db_url, can_act=lambda: False).test_client()

    assert request(client, method, url).status_code == 200


def test_a_viewer_who_may_not_act_gets_403_on_actions_and_sees_none(make_app, db_url):
    client = host(make_app, db_url, can_act=lambda: False).test_client()

    list_html = client.get(ERRORS_URL).get_data(as_text=True)
    details_html = client.get(ERRORS_URL + "details/?id=700001").get_data(as_text=True)
    assert request(client, "POST", ERRORS_URL + "action/").status_code == 403
    for html in (list_html, details_html):
        assert "action/" not in html and 'name="rowid"' not in html


def test_a_viewer_who_may_act_sees_the_actions(make_app, db_url):
    html = host(make_app, db_url).test_client().get(ERRORS_URL).get_data(as_text=True)

    assert re.findall(r'name="action" value="(\w+)"', html) == ["retry", "ignore", "resolve"] * 2
