"""A console whose schema is kept by Flask-Migrate: ``flask db migrate`` / ``flask db upgrade``."""

from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import DynamicsSync

db = SQLAlchemy()
migrate = Migrate()


class Supplier(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))


def create_app(database_url: str, migrations_directory: str = "migrations") -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="procurement-secret", SQLALCHEMY_DATABASE_URI=database_url)
    db.init_app(app)
    migrate.init_app(app, db, directory=migrations_directory)
    admin = Admin(app, name="Procurement")
    admin.add_view(ModelView(Supplier, db.session))
    DynamicsSync(can_act=lambda: True).init_app(app, admin=admin, db=db)
    return app
