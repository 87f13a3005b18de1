"""Tracked host models: ORM inserts and updates enqueue themselves, in the host's transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync.models import QueueItem

host_db = SQLAlchemy()


class Customer(host_db.Model):
    __tablename__ = "host_customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    notes: Mapped[str | None] = mapped_column(sa.String(100))


@pytest.fixture
def host(make_app, db_url):
    app = make_app(db_url, db=host_db)
    with app.app_context():
        host_db.create_all()
        sync = app.extensions["dynamics_sync"].extension
        tracking = sync.track(Customer, "Contact", label="name", fields=["name"])
        try:
            yield app
        finally:
            tracking.remove()
            host_db.session.rollback()
            host_db.drop_all()


def pending(app):
    q = QueueItem.__table__
    with host_db.engine.connect() as conn:
        return [
            (r.object_type, r.record_id, r.operation, r.label, r.change_count)
            for r in conn.execute(sa.select(q).order_by(q.c.record_id))
        ]


def test_an_orm_insert_enqueues_a_pending_insert(host):
    host_db.session.add(Customer(id=1, name="Ada"))
    host_db.session.commit()

    assert pending(host) == [("Contact", "1", "insert", "Ada", 1)]


def test_an_orm_update_of_a_tracked_field_coalesces_into_the_pending_insert(host):
    customer = Customer(id=1, name="Ada")
    host_db.session.add(customer)
    host_db.session.commit()

    customer.name = "Ada King"
    host_db.session.commit()

    assert pending(host) == [("Contact", "1", "insert", "Ada King", 2)]


def test_an_update_of_an_untracked_field_enqueues_nothing(host):
    host_db.session.add(Customer(id=1, name="Ada"))
    host_db.session.commit()
    host_db.session.execute(sa.delete(QueueItem.__table__))
    host_db.session.commit()

    customer = host_db.session.get(Customer, 1)
    customer.notes = "met at conference"
    host_db.session.commit()

    assert pending(host) == []


def test_a_rolled_back_host_change_leaves_no_queue_row(host):
    host_db.session.add(Customer(id=1, name="Ada"))
    host_db.session.flush()

    host_db.session.rollback()

    assert pending(host) == []


def test_a_removed_tracking_enqueues_nothing_more(host):
    sync = host.extensions["dynamics_sync"].extension
    for tracking in list(sync._trackings):
        tracking.remove()

    host_db.session.add(Customer(id=2, name="Grace"))
    host_db.session.commit()

    assert pending(host) == []


def test_tracking_an_unknown_object_type_is_refused(host):
    sync = host.extensions["dynamics_sync"].extension

    with pytest.raises(ValueError, match="unknown object type 'Invoice'"):
        sync.track(Customer, "Invoice")


def test_tracking_something_that_is_not_a_model_is_refused(host):
    sync = host.extensions["dynamics_sync"].extension

    with pytest.raises(TypeError, match="is not a mapped model class"):
        sync.track(object, "Contact")
