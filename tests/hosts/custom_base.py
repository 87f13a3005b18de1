"""A branded console: Bootstrap 4 theme, its own base template that adds to the head and the navbar."""

import os

from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_admin.theme import Bootstrap4Theme
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import DynamicsSync

db = SQLAlchemy()


class Campaign(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]


def create_app(database_url: str) -> Flask:
    here = os.path.dirname(__file__)
    app = Flask(__name__, template_folder=os.path.join(here, "templates"), static_folder=os.path.join(here, "static"))
    app.config.update(SECRET_KEY="marketing-secret", SQLALCHEMY_DATABASE_URI=database_url)
    db.init_app(app)
    admin = Admin(app, name="Marketing", theme=Bootstrap4Theme(base_template="backoffice/base.html"))
    admin.add_view(ModelView(Campaign, db.session))
    DynamicsSync().init_app(app, admin=admin, db=db)
    with app.app_context():
        db.create_all()
        app.extensions["dynamics_sync"].extension.create_all()
    return app
