"""A console like Flask-Admin's own simple examples: no SECRET_KEY, no login, one model view."""

from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import DynamicsSync

db = SQLAlchemy()


class Customer(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db.init_app(app)
    admin = Admin(app, name="Customers")
    admin.add_view(ModelView(Customer, db.session))
    DynamicsSync().init_app(app, admin=admin, db=db)
    with app.app_context():
        db.create_all()
        app.extensions["dynamics_sync"].extension.create_all()
    return app
