"""An app factory with module-level extension objects, as in Flask's tutorial and per-test app fixtures."""

from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_admin.theme import Bootstrap4Theme
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import DynamicsSync

db = SQLAlchemy()
admin = Admin(name="Warehouse", theme=Bootstrap4Theme())
sync = DynamicsSync(can_act=lambda: True)


class Product(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str]


admin.add_view(ModelView(Product, db.session))


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="factory-secret", SQLALCHEMY_DATABASE_URI=database_url)
    db.init_app(app)
    admin.init_app(app)
    sync.init_app(app, admin=admin, db=db)
    with app.app_context():
        db.create_all()
        sync.create_all()
    return app
