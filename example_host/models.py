"""The host's own data: a small CRM (companies, customers, prospects, deals) and its users.

These tables belong to the host, not to the plugin. Four of them are synced
with Microsoft Dynamics: ``create_app`` declares them tracked, so every insert
or update made through the ORM (the admin screens, the simulator) puts the
record in the plugin's queue in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class User(db.Model):  # type: ignore[name-defined]
    """Someone who may sign in to the console; operators may also act on sync errors."""

    __tablename__ = "acme_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    is_operator: Mapped[bool] = mapped_column(default=False)
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __str__(self) -> str:
        return self.username


class Company(db.Model):  # type: ignore[name-defined]
    """A customer organisation; synced as a Dynamics *Account*."""

    __tablename__ = "acme_company"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(160))
    industry: Mapped[str | None] = mapped_column(sa.String(64))
    city: Mapped[str | None] = mapped_column(sa.String(64))
    country: Mapped[str | None] = mapped_column(sa.String(64))
    website: Mapped[str | None] = mapped_column(sa.String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    customers: Mapped[list[Customer]] = relationship(back_populates="company")
    deals: Mapped[list[Deal]] = relationship(back_populates="company")

    def __str__(self) -> str:
        return self.name


class Customer(db.Model):  # type: ignore[name-defined]
    """A person at a company; synced as a Dynamics *Contact*."""

    __tablename__ = "acme_customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(40))
    company_id: Mapped[int | None] = mapped_column(sa.ForeignKey("acme_company.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    company: Mapped[Company | None] = relationship(back_populates="customers")

    def __str__(self) -> str:
        return self.name


class Prospect(db.Model):  # type: ignore[name-defined]
    """Someone who showed interest but is not a customer yet; synced as a Dynamics *Lead*."""

    __tablename__ = "acme_prospect"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    company_name: Mapped[str | None] = mapped_column(sa.String(160))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    source: Mapped[str | None] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(32), default="New")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __str__(self) -> str:
        return self.name


class Deal(db.Model):  # type: ignore[name-defined]
    """A sales opportunity with a company; synced as a Dynamics *Opportunity*."""

    __tablename__ = "acme_deal"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    company_id: Mapped[int | None] = mapped_column(sa.ForeignKey("acme_company.id"))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal("0"))
    stage: Mapped[str] = mapped_column(sa.String(32), default="Qualify")
    close_date: Mapped[dt.date | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    company: Mapped[Company | None] = relationship(back_populates="deals")

    def __str__(self) -> str:
        return self.name


#: Host model -> Dynamics object type, in the order the plugin shows them.
SYNCED_MODELS: dict[type, str] = {
    Prospect: "Lead",
    Customer: "Contact",
    Company: "Account",
    Deal: "Opportunity",
}
