"""A console on plain SQLAlchemy: an engine, a scoped_session, declarative models, no Flask-SQLAlchemy."""

from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from sqlalchemy import String
from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import scoped_session
from sqlalchemy.orm import sessionmaker

from flask_dynamics_sync import DynamicsSync


class Base(DeclarativeBase):
    pass


class Shipment(Base):
    __tablename__ = "shipment"
    id: Mapped[int] = mapped_column(primary_key=True)
    tracking_number: Mapped[str] = mapped_column(String(40))


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "logistics-secret"
    engine = create_engine(database_url, pool_pre_ping=True)
    db_session = scoped_session(sessionmaker(bind=engine))

    @app.teardown_appcontext
    def remove_session(exception=None):
        db_session.remove()

    admin = Admin(app, name="Logistics")
    admin.add_view(ModelView(Shipment, db_session))
    sync = DynamicsSync(can_act=lambda: True)
    sync.init_app(app, admin=admin, engine=engine, session=db_session)

    Base.metadata.create_all(engine)
    with app.app_context():
        sync.create_all()
    app.engine = engine
    return app
