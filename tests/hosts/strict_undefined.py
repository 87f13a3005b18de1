"""A hardened console: Jinja's StrictUndefined, so a template that reads an undefined name fails."""

from flask import Flask
from flask import session
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_sqlalchemy import SQLAlchemy
from jinja2 import StrictUndefined
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import DynamicsSync

db = SQLAlchemy()


class Invoice(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str]


def is_staff() -> bool:
    return session.get("staff", False)


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="strict-host-secret", SQLALCHEMY_DATABASE_URI=database_url)
    app.jinja_env.undefined = StrictUndefined
    db.init_app(app)
    admin = Admin(app, name="Billing")
    admin.add_view(ModelView(Invoice, db.session))
    DynamicsSync(can_view=is_staff).init_app(app, admin=admin, db=db)
    with app.app_context():
        db.create_all()
        app.extensions["dynamics_sync"].extension.create_all()
    return app
