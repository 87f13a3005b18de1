"""Dataverse mappings and connector settings: mistakes are clear errors at track() or init_app, not at 3 a.m."""

from __future__ import annotations

import re
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_dynamics_sync import DataverseMapping
from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync import Lookup
from flask_dynamics_sync.dataverse import MappingError
from flask_dynamics_sync.dataverse.mapping import json_value
from flask_dynamics_sync.dataverse.mapping import key_literal
from flask_dynamics_sync.dataverse.mapping import send_levels
from tests.workers.crm_host import HOST_KEY
from tests.workers.crm_host import Company
from tests.workers.crm_host import Customer
from tests.workers.crm_host import Prospect


@pytest.fixture
def sync() -> t.Iterator[DynamicsSync]:
    """An extension not yet initialised; its trackings are removed afterwards."""
    extension = DynamicsSync()
    yield extension
    for tracking in extension._trackings:
        tracking.remove()


def host(url: str, **config: t.Any) -> tuple[Flask, SQLAlchemy]:
    app = Flask("mapping_host")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, **config)
    db = SQLAlchemy(app)
    return app, db


CONTACT_FIELDS = {"fullname": "name"}

TRACK_ERRORS = [
    (
        DataverseMapping("contacts", fields=CONTACT_FIELDS),
        "give exactly one of alternate_key= and id_column= (the idempotency key)",
    ),
    (
        DataverseMapping("contacts", alternate_key=HOST_KEY, id_column="id", fields=CONTACT_FIELDS),
        "give exactly one of alternate_key= and id_column=",
    ),
    (DataverseMapping("contacts", alternate_key=HOST_KEY), "give exactly one of fields= and payload= (what to send)"),
    (
        DataverseMapping("contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS, payload=dict),
        "give exactly one of fields= and payload=",
    ),
    (DataverseMapping("contacts", alternate_key=HOST_KEY, fields={"fullname": "nmae"}), "Customer has no attribute 'nmae' (for 'fullname')"),
    (DataverseMapping("contacts", alternate_key={"dsync_hostid": "uid"}, fields=CONTACT_FIELDS), "Customer has no attribute 'uid'"),
    (DataverseMapping("contacts", id_column="crm_id", fields=CONTACT_FIELDS), "id_column 'crm_id' is not a column of Customer"),
    (DataverseMapping("contacts/x", alternate_key=HOST_KEY, fields=CONTACT_FIELDS), "entity_set must be a Dataverse name"),
    (DataverseMapping("contacts", alternate_key=HOST_KEY, fields={"full name": "name"}), "fields column must be a Dataverse name"),
    (
        DataverseMapping("contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS, send="fast"),
        "send must be one of bulk, batch, single, got 'fast'",
    ),
    (
        DataverseMapping("contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS, lookups={"parentcustomerid_account": Lookup("Account", "employer")}),
        "lookup 'parentcustomerid_account': Customer has no attribute 'employer'",
    ),
    (
        DataverseMapping("contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS, lookups={"parentcustomerid_account": "Account"}),  # type: ignore[dict-item]
        "lookup 'parentcustomerid_account' must be a Lookup(object_type, related)",
    ),
]


@pytest.mark.parametrize(("mapping", "message"), TRACK_ERRORS, ids=[m for _, m in TRACK_ERRORS])
def test_track_refuses_a_mapping_that_cannot_work(sync, mapping, message):
    with pytest.raises(MappingError, match=re.escape(message)):
        sync.track(Customer, "Contact", dataverse=mapping)


def test_track_refuses_a_mapping_for_records_coming_from_dynamics(sync):
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS)

    with pytest.raises(MappingError, match="the connector sends records to Dynamics; the tracking's direction is 'from_dynamics'"):
        sync.track(Customer, "Contact", direction="from_dynamics", dataverse=mapping)


def test_a_callable_record_id_needs_a_loader(sync):
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS)

    with pytest.raises(MappingError, match=re.escape("track() got a callable record_id, so pass load=")):
        sync.track(Customer, "Contact", record_id=lambda c: f"C-{c.id}", dataverse=mapping)


def test_init_app_refuses_a_lookup_to_an_object_type_without_mapping(sync, sqlite_url):
    mapping = DataverseMapping(
        "contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS, lookups={"parentcustomerid_account": Lookup("Account", "company")}
    )
    sync.track(Customer, "Contact", dataverse=mapping)
    app, db = host(sqlite_url)

    with pytest.raises(MappingError, match=re.escape("lookup 'parentcustomerid_account' points at 'Account', which has no Dataverse mapping")):
        sync.init_app(app, db=db)


def test_init_app_refuses_a_mapping_of_an_object_type_not_configured(sync, sqlite_url):
    sync.track(Company, "Company", dataverse=DataverseMapping("accounts", alternate_key=HOST_KEY, fields={"name": "name"}))
    app, db = host(sqlite_url)

    with pytest.raises(MappingError, match=re.escape("mapped to Dataverse as 'Company', which is not in DYNAMICS_SYNC_OBJECTS")):
        sync.init_app(app, db=db)


def test_init_app_refuses_two_mappings_of_one_object_type(sync, sqlite_url):
    sync.track(Customer, "Contact", dataverse=DataverseMapping("contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS))
    sync.track(Prospect, "Contact", dataverse=DataverseMapping("contacts", id_column="dataverse_id", fields={"fullname": "name"}))
    app, db = host(sqlite_url)

    with pytest.raises(MappingError, match=re.escape("'Contact' has two Dataverse mappings (Customer and Prospect)")):
        sync.init_app(app, db=db)


def test_track_after_init_app_checks_the_mapping_at_once(sync, sqlite_url):
    app, db = host(sqlite_url)
    sync.init_app(app, db=db)
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS, lookups={"parentcustomerid_account": Lookup("Account", "company")})
    listeners = len(sa.inspect(Customer).dispatch.after_insert)

    with app.app_context(), pytest.raises(MappingError, match="points at 'Account', which has no Dataverse mapping"):
        sync.track(Customer, "Contact", dataverse=mapping)
    assert len(sa.inspect(Customer).dispatch.after_insert) == listeners  # the refused tracking listens to nothing


SETTINGS_ERRORS = [
    ({"DYNAMICS_SYNC_DATAVERSE_URL": "contoso.crm.dynamics.com"}, ValueError, "must be an http(s) URL"),
    (
        {"DYNAMICS_SYNC_DATAVERSE_URL": "https://contoso.crm.dynamics.com", "DYNAMICS_SYNC_DATAVERSE_CLIENT_ID": "app"},
        ValueError,
        "set DYNAMICS_SYNC_DATAVERSE_TENANT, DYNAMICS_SYNC_DATAVERSE_CLIENT_SECRET or _CERTIFICATE",
    ),
    ({"DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 1001}, ValueError, "DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE must be between 1 and 1000"),
    ({"DYNAMICS_SYNC_DATAVERSE_IN_FLIGHT": 0}, ValueError, "DYNAMICS_SYNC_DATAVERSE_IN_FLIGHT must be between 1 and 64"),
    ({"DYNAMICS_SYNC_DATAVERSE_TOKEN": "abc"}, TypeError, "must be a callable returning an access token"),
    ({"DYNAMICS_SYNC_DATAVERSE_CERTIFICATE": "cert.pem"}, TypeError, "a mapping with a 'private_key'"),
]


@pytest.mark.parametrize(("config", "error", "message"), SETTINGS_ERRORS, ids=[m for _, _, m in SETTINGS_ERRORS])
def test_init_app_refuses_connector_settings_that_cannot_work(sync, sqlite_url, config, error, message):
    app, db = host(sqlite_url, **config)

    with pytest.raises(error, match=re.escape(message)):
        sync.init_app(app, db=db)


def test_the_client_secret_is_not_in_the_settings_repr(sync, sqlite_url):
    app, db = host(
        sqlite_url,
        DYNAMICS_SYNC_DATAVERSE_URL="https://contoso.crm.dynamics.com",
        DYNAMICS_SYNC_DATAVERSE_TENANT="contoso.onmicrosoft.com",
        DYNAMICS_SYNC_DATAVERSE_CLIENT_ID="app",
        DYNAMICS_SYNC_DATAVERSE_CLIENT_SECRET="s3cr3t-Value~1",
    )
    sync.init_app(app, db=db)

    assert "s3cr3t-Value~1" not in repr(app.extensions["dynamics_sync"])


# -- keys and values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [(42, "42"), ("H-1", "'H-1'"), ("O'Brien & Co", "'O''Brien%20%26%20Co'"), ("a/b?c#d", "'a%2Fb%3Fc%23d'")],
)
def test_key_values_are_odata_literals_safe_in_a_url(value, literal):
    assert key_literal(value) == literal


def test_json_values_are_what_dataverse_expects():
    import datetime as dt
    from decimal import Decimal

    assert json_value(dt.datetime(2026, 3, 10, 14, 20, 5)) == "2026-03-10T14:20:05Z"
    assert json_value(dt.datetime(2026, 3, 10, 15, 20, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == "2026-03-10T14:20:00Z"
    assert json_value(dt.date(2026, 3, 10)) == "2026-03-10"
    assert json_value(Decimal("12.50")) == 12.5
    assert json_value(Decimal(1200)) == 1200


def test_lookup_targets_are_sent_a_level_before_the_records_pointing_at_them(sync, sqlite_url):
    from tests.workers.crm_host import track_all

    track_all(sync)
    app, db = host(sqlite_url)
    sync.init_app(app, db=db)
    with app.app_context():
        levels = send_levels(sync.dataverse_mappings())

    assert [sorted(level) for level in levels] == [["Account", "Lead"], ["Contact", "Opportunity"]]


def test_a_cycle_of_lookups_is_broken_where_it_closes(sync, sqlite_url):
    primary_contact = {"primarycontactid": Lookup("Contact", lambda company: None)}
    sync.track(Company, "Account", dataverse=DataverseMapping("accounts", alternate_key=HOST_KEY, fields={"name": "name"}, lookups=primary_contact))
    sync.track(Customer, "Contact", dataverse=DataverseMapping(
        "contacts", alternate_key=HOST_KEY, fields=CONTACT_FIELDS, lookups={"parentcustomerid_account": Lookup("Account", "company")}))
    app, db = host(sqlite_url)
    sync.init_app(app, db=db)
    with app.app_context():
        levels = send_levels(sync.dataverse_mappings())

    assert levels == [["Contact"], ["Account"]]
