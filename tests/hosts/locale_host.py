"""A console for a Portuguese, Austrian, Mexican and Canadian team: Flask-Babel with the user's regional locale."""

from flask import Flask
from flask import request
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_babel import Babel
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import DynamicsSync

db = SQLAlchemy()

#: The team's locales, as their user profiles store them.
LOCALES = ("pt_PT", "pt", "es_MX", "fr_CA", "de_AT", "it_CH", "en_GB")


class Branch(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    city: Mapped[str]


def user_locale() -> str:
    return request.cookies.get("locale", "en_GB")


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="branches-secret", SQLALCHEMY_DATABASE_URI=database_url)
    db.init_app(app)
    Babel(app, locale_selector=user_locale)
    admin = Admin(app, name="Branches")
    admin.add_view(ModelView(Branch, db.session))
    DynamicsSync(can_act=lambda: True).init_app(app, admin=admin, db=db)
    with app.app_context():
        db.create_all()
        app.extensions["dynamics_sync"].extension.create_all()
    return app
