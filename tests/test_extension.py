"""The extension object: registration, configuration, views, menus, endpoints."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_admin import Admin
from flask_admin import AdminIndexView
from flask_sqlalchemy import SQLAlchemy

from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync import NotInitializedError
from flask_dynamics_sync.config import DEFAULTS
from flask_dynamics_sync.errors import AccessPolicyWarning


def test_init_app_registers_the_extension(make_app, sqlite_url):
    app = make_app(sqlite_url)

    state = app.extensions["dynamics_sync"]
    assert isinstance(state.extension, DynamicsSync)
    assert list(state.settings.objects) == ["Lead", "Contact", "Account", "Opportunity"]


def test_init_twice_on_one_app_raises_a_clear_error(make_app, sqlite_url):
    app = make_app(sqlite_url)
    sync = app.extensions["dynamics_sync"].extension

    with pytest.raises(RuntimeError, match="already initialised on this application"):
        sync.init_app(app, db=app.extensions["test_db"])


def test_init_app_needs_the_hosts_db(sqlite_url):
    app = Flask("host")
    with pytest.raises(TypeError, match="needs db="):
        DynamicsSync().init_app(app)


def test_init_app_before_db_init_app_is_refused(sqlite_url):
    app = Flask("host")
    with pytest.raises(RuntimeError, match=r"call db.init_app\(app\) before"):
        DynamicsSync().init_app(app, db=SQLAlchemy())


def test_every_config_key_is_set_with_its_default(make_app, sqlite_url):
    app = make_app(sqlite_url)

    assert {key: app.config[key] for key in DEFAULTS} == DEFAULTS


def test_config_is_read_once_at_init(make_app, sqlite_url):
    app = make_app(sqlite_url, config={"DYNAMICS_SYNC_MAX_ATTEMPTS": 3})
    app.config["DYNAMICS_SYNC_MAX_ATTEMPTS"] = 99

    assert app.extensions["dynamics_sync"].settings.max_attempts == 3


def test_objects_and_labels_are_configurable(make_app, sqlite_url):
    app = make_app(sqlite_url, config={"DYNAMICS_SYNC_OBJECTS": {"Lead": "Prospect", "Invoice": "Invoice"}})

    assert app.extensions["dynamics_sync"].settings.objects == {"Lead": "Prospect", "Invoice": "Invoice"}


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"DYNAMICS_SYNC_OBJECTS": []}, ValueError, "at least one object type"),
        ({"DYNAMICS_SYNC_OBJECTS": "Lead"}, TypeError, "list of names or a"),
        ({"DYNAMICS_SYNC_CLAIM_TIMEOUT": 0}, ValueError, "DYNAMICS_SYNC_CLAIM_TIMEOUT must be > 0"),
        ({"DYNAMICS_SYNC_MAX_ATTEMPTS": "5"}, TypeError, "DYNAMICS_SYNC_MAX_ATTEMPTS must be an integer"),
        ({"DYNAMICS_SYNC_DEFAULT_DIRECTION": "up"}, ValueError, "'up' is not a valid Direction"),
        ({"DYNAMICS_SYNC_URL_SEGMENT": "/"}, ValueError, "DYNAMICS_SYNC_URL_SEGMENT must not be empty"),
        ({"DYNAMICS_SYNC_NOTIFY_LOCALE": "xx_YY"}, ValueError, "DYNAMICS_SYNC_NOTIFY_LOCALE: unknown locale 'xx_YY'"),
        ({"DYNAMICS_SYNC_TIMEZONE": "Europe/Roma"}, ValueError, "DYNAMICS_SYNC_TIMEZONE: unknown time zone 'Europe/Roma'"),
    ],
)
def test_bad_config_is_refused_at_init(make_app, sqlite_url, config, error, message):
    with pytest.raises(error, match=message):
        make_app(sqlite_url, config=config)


def test_the_api_outside_an_app_context_says_so():
    with pytest.raises(NotInitializedError, match="application context"):
        DynamicsSync().claim()


def test_the_api_on_an_app_it_was_not_initialised_on_says_so(make_app, sqlite_url):
    app = make_app(sqlite_url)
    with app.app_context(), pytest.raises(NotInitializedError, match="call init_app"):
        DynamicsSync().claim()


def test_views_are_added_under_the_microsoft_dynamics_category(make_app, sqlite_url):
    app = make_app(sqlite_url)
    [admin] = app.extensions["admin"]

    category = admin.get_category_menu_item("Microsoft Dynamics")
    assert [str(child.name) for child in category.get_children()] == ["Sync Status", "Sync Errors"]


def test_views_have_prefixed_endpoints_and_urls(make_app, sqlite_url):
    app = make_app(sqlite_url)

    endpoints = {rule.rule: rule.endpoint.split(".")[0] for rule in app.url_map.iter_rules()}
    assert endpoints["/admin/dynamics/status/"] == "dynamics_sync_status"
    assert endpoints["/admin/dynamics/errors/"] == "dynamics_sync_errors"


def test_the_menu_shows_both_views(make_app, sqlite_url):
    app = make_app(sqlite_url)

    page = app.test_client().get("/admin/").get_data(as_text=True)

    assert "Microsoft Dynamics" in page
    assert 'href="/admin/dynamics/status/"' in page
    assert 'href="/admin/dynamics/errors/"' in page


def test_views_follow_an_admin_at_another_url(make_app, sqlite_url):
    app = make_app(sqlite_url, admin=Admin(name="Ops", url="/ops", endpoint="ops"))

    client = app.test_client()
    assert client.get("/ops/dynamics/status/").status_code == 200
    assert client.get("/ops/dynamics/errors/").status_code == 200


def test_a_second_admin_gets_its_own_endpoints(make_app, sqlite_url):
    app = make_app(sqlite_url)
    second = Admin(app, name="Support", url="/support", endpoint="support")

    app.extensions["dynamics_sync"].extension.add_views(second, app=app)

    client = app.test_client()
    assert client.get("/admin/dynamics/status/").status_code == 200
    assert client.get("/support/dynamics/status/").status_code == 200
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert {"support_dynamics_sync_status.index", "dynamics_sync_status.index"} <= endpoints


def test_the_url_segment_is_configurable(make_app, sqlite_url):
    app = make_app(sqlite_url, config={"DYNAMICS_SYNC_URL_SEGMENT": "crm-sync"})

    assert app.test_client().get("/admin/crm-sync/status/").status_code == 200


def test_static_files_are_served_from_the_plugin_blueprint(make_app, sqlite_url):
    app = make_app(sqlite_url)
    with app.test_request_context():
        from flask import url_for

        assert url_for("dynamics_sync.static", filename="x.js") == "/static/dynamics_sync/x.js"


class LockedIndex(AdminIndexView):
    def is_accessible(self) -> bool:
        return False


def test_by_default_access_follows_the_hosts_admin_policy(make_app, sqlite_url):
    app = make_app(sqlite_url, admin=Admin(index_view=LockedIndex()))

    client = app.test_client()
    assert client.get("/admin/dynamics/status/").status_code == 403
    assert client.get("/admin/dynamics/errors/").status_code == 403


def test_can_view_overrides_the_default_policy(make_app, sqlite_url):
    app = make_app(
        sqlite_url, admin=Admin(index_view=LockedIndex()), sync_kwargs={"can_view": lambda: True}
    )

    assert app.test_client().get("/admin/dynamics/status/").status_code == 200


def test_a_denied_viewer_does_not_see_the_menu(make_app, sqlite_url):
    app = make_app(sqlite_url, sync_kwargs={"can_view": lambda: False})

    page = app.test_client().get("/admin/").get_data(as_text=True)

    assert "Microsoft Dynamics" not in page
    assert "/admin/dynamics/status/" not in page


def test_pages_work_when_flask_babel_is_installed_but_not_initialised(make_app, sqlite_url):
    app = make_app(sqlite_url)

    response = app.test_client().get("/admin/dynamics/status/")

    assert response.status_code == 200


def test_a_public_console_without_a_policy_is_warned_once_however_many_apps(sqlite_url):
    sync = DynamicsSync()

    with pytest.warns(AccessPolicyWarning, match=r"Pass DynamicsSync\(access=") as caught:
        for n in range(3):
            app = Flask(f"host_{n}")
            app.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
            db = SQLAlchemy(app)
            sync.init_app(app, admin=Admin(app), db=db)

    assert len([w for w in caught if issubclass(w.category, AccessPolicyWarning)]) == 1


@pytest.mark.parametrize("policy", [{"access": AdminIndexView}, {"can_view": lambda: True}, {"can_act": lambda: True}])
def test_any_policy_or_a_protected_index_view_means_no_warning(sqlite_url, policy, recwarn):
    for sync, index_view in ((DynamicsSync(**policy), None), (DynamicsSync(), LockedIndex())):
        app = Flask("host")
        app.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
        sync.init_app(app, admin=Admin(app, index_view=index_view), db=SQLAlchemy(app))

    assert [w for w in recwarn if issubclass(w.category, AccessPolicyWarning)] == []


def test_init_app_takes_an_engine_without_a_session(sqlite_url):
    app = Flask("host")
    engine = sa.create_engine(sqlite_url)
    sync = DynamicsSync(can_act=lambda: True)
    sync.init_app(app, admin=Admin(app), engine=engine)

    with app.app_context():
        sync.enqueue("Lead", "L-9", "insert")
        sync._state().database.session.commit()
        [record] = sync.claim()

    assert record.record_id == "L-9"
    engine.dispose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "sqlite://"}, "engine= must be a sqlalchemy Engine"),
        ({"engine": sa.create_engine("sqlite://"), "session": object()}, "session= must be a scoped_session"),
        ({"db": SQLAlchemy(), "engine": sa.create_engine("sqlite://")}, "not both"),
    ],
)
def test_init_app_refuses_a_database_it_cannot_use(kwargs, message):
    with pytest.raises(TypeError, match=message):
        DynamicsSync().init_app(Flask("host"), **kwargs)


def test_a_factory_may_call_sync_init_app_before_admin_init_app(sqlite_url):
    admin = Admin()
    sync = DynamicsSync(can_act=lambda: True)
    apps = []
    for n in range(2):
        app = Flask(f"host_{n}")
        app.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
        sync.init_app(app, admin=admin, db=SQLAlchemy(app))
        admin.init_app(app)
        apps.append(app)

    assert [app.test_client().get("/admin/dynamics/errors/").status_code for app in apps] == [200, 200]
    assert [str(child.name) for child in admin.get_category_menu_item("Microsoft Dynamics").get_children()] == [
        "Sync Status",
        "Sync Errors",
    ]
