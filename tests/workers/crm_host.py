"""A small CRM host that syncs to Dataverse through the connector, for the connector tests.

Four models, one per mapping form:

* ``Company`` → ``accounts``: alternate key, field mapping;
* ``Customer`` → ``contacts``: alternate key, field mapping, a lookup to its company;
* ``Prospect`` → ``leads``: the host stores the Dataverse id (``id_column``);
* ``Deal`` → ``opportunities``: alternate key, a payload function, a lookup to its company.

``create_app`` is an app factory for ``flask --app tests.workers.crm_host:create_app``
(subprocess tests): it reads the database URL and the connector's settings from
``CRM_*`` environment variables.
"""

from __future__ import annotations

import dataclasses
import os
import typing as t
from decimal import Decimal

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from flask_dynamics_sync import DataverseChange
from flask_dynamics_sync import DataverseMapping
from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync import Lookup
from flask_dynamics_sync.tracking import Tracking

db = SQLAlchemy()


class Company(db.Model):  # type: ignore[name-defined]
    __tablename__ = "crm_company"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(160))
    website: Mapped[str | None] = mapped_column(sa.String(200))


class Customer(db.Model):  # type: ignore[name-defined]
    __tablename__ = "crm_customer"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    phone: Mapped[str | None] = mapped_column(sa.String(40))
    company_id: Mapped[int | None] = mapped_column(sa.ForeignKey("crm_company.id"))
    company: Mapped[Company | None] = relationship()


class Prospect(db.Model):  # type: ignore[name-defined]
    __tablename__ = "crm_prospect"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(20), default="new")
    dataverse_id: Mapped[str | None] = mapped_column(sa.String(36))


class Deal(db.Model):  # type: ignore[name-defined]
    __tablename__ = "crm_deal"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    company_id: Mapped[int | None] = mapped_column(sa.ForeignKey("crm_company.id"))
    company: Mapped[Company | None] = relationship()


def deal_payload(deal: Deal) -> dict[str, t.Any]:
    """How the sales team wants a deal in Dynamics."""
    return {"name": deal.title.strip(), "estimatedvalue": deal.amount, "description": f"Host deal #{deal.id}"}


HOST_KEY = {"dsync_hostid": "id"}

MAPPINGS: dict[type, tuple[str, DataverseMapping]] = {
    Company: ("Account", DataverseMapping("accounts", alternate_key=HOST_KEY, fields={"name": "name", "websiteurl": "website"})),
    Customer: (
        "Contact",
        DataverseMapping(
            "contacts",
            alternate_key=HOST_KEY,
            fields={"fullname": "name", "telephone1": "phone"},
            lookups={"parentcustomerid_account": Lookup("Account", "company")},
        ),
    ),
    Prospect: ("Lead", DataverseMapping("leads", id_column="dataverse_id", fields={"subject": "name", "dsync_status": "status"})),
    Deal: (
        "Opportunity",
        DataverseMapping(
            "opportunities",
            alternate_key=HOST_KEY,
            payload=deal_payload,
            lookups={"parentaccountid": Lookup("Account", "company")},
        ),
    ),
}


#: The statuses the host knows; a lead with another one is refused (a Sync Error).
PROSPECT_STATUSES = {"new", "contacted"}


def receive_lead(session: sa.orm.Session, change: DataverseChange) -> None:
    """Leads created, edited or deleted in Dynamics become the host's prospects."""
    prospect = session.scalar(sa.select(Prospect).where(Prospect.dataverse_id == change.row_id))
    if change.deleted:
        if prospect is not None:
            session.delete(prospect)
        return
    status = change.values.get("dsync_status") or "new"
    if status not in PROSPECT_STATUSES:
        raise ValueError(f"Unknown prospect status {status!r}.")
    if prospect is None:
        prospect = Prospect(dataverse_id=change.row_id)
        session.add(prospect)
    prospect.name = change.values["subject"]
    prospect.status = status


#: Prospects both ways: sent to Dynamics as leads, and leads changed in Dynamics received.
LEADS_BOTH_WAYS = dataclasses.replace(MAPPINGS[Prospect][1], receive=receive_lead)


def track_all(sync: DynamicsSync, **overrides: DataverseMapping) -> list[Tracking]:
    """Track the four models with their mappings (``overrides`` by object type, e.g. ``Contact=...``)."""
    return [
        sync.track(model, object_type, label="name" if hasattr(model, "name") else "title",
                   dataverse=overrides.get(object_type, mapping))
        for model, (object_type, mapping) in MAPPINGS.items()
    ]


def create_app() -> Flask:
    """The host as a separate process: ``CRM_DATABASE_URL``, and ``CRM_CONFIG`` (JSON: the connector's settings)."""
    import json

    app = Flask("crm_host")
    url = os.environ["CRM_DATABASE_URL"]
    app.config.update(SQLALCHEMY_DATABASE_URI=url, SECRET_KEY="crm-host")
    if url.startswith("sqlite"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}
    app.config.update(json.loads(os.environ["CRM_CONFIG"]))
    db.init_app(app)
    sync = DynamicsSync()
    track_all(sync)
    sync.init_app(app, db=db)
    return app
