"""A console on Flask-Security-Too, guarded the way Flask-Admin's auth example does it.

Superusers may use the console; a signed-in user without the role gets 403, an
anonymous visitor the Flask-Security login page (and back after signing in).
"""

from flask import Flask
from flask import abort
from flask import redirect
from flask import request
from flask import url_for
from flask_admin import Admin
from flask_admin import AdminIndexView
from flask_admin.contrib.sqla import ModelView
from flask_security import Security
from flask_security import SQLAlchemyUserDatastore
from flask_security import current_user
from flask_security import hash_password
from flask_security.models import fsqla_v3 as fsqla
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import DynamicsSync

db = SQLAlchemy()
fsqla.FsModels.set_db_info(db)


class Role(db.Model, fsqla.FsRoleMixin):
    pass


class User(db.Model, fsqla.FsUserMixin):
    pass


class Order(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str]


class SuperuserView:
    def is_accessible(self) -> bool:
        return current_user.is_active and current_user.is_authenticated and current_user.has_role("superuser")

    def _handle_view(self, name, **kwargs):
        """Override builtin _handle_view in order to redirect users when a view is not accessible."""
        if not self.is_accessible():
            if current_user.is_authenticated:
                abort(403)  # permission denied
            return redirect(url_for("security.login", next=request.url))  # login required
        return None


class SecuredIndexView(SuperuserView, AdminIndexView):
    pass


class SecuredModelView(SuperuserView, ModelView):
    pass


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="orders-console-secret",
        SECURITY_PASSWORD_SALT="orders-console-salt",
        SQLALCHEMY_DATABASE_URI=database_url,
        # Flask-Security's forms carry Flask-WTF's CSRF token.
        WTF_CSRF_ENABLED=True,
    )
    db.init_app(app)
    user_datastore = SQLAlchemyUserDatastore(db, User, Role)
    app.security = Security(app, user_datastore)

    admin = Admin(app, name="Orders", index_view=SecuredIndexView())
    admin.add_view(SecuredModelView(Order, db.session))
    DynamicsSync(access=SecuredModelView).init_app(app, admin=admin, db=db)

    with app.app_context():
        db.create_all()
        app.extensions["dynamics_sync"].extension.create_all()
        if not user_datastore.find_user(email="boss@example.com"):
            superuser = user_datastore.find_or_create_role("superuser")
            user_datastore.create_user(email="boss@example.com", password=hash_password("s3cret-pass"),
                                       roles=[superuser])
            user_datastore.create_user(email="clerk@example.com", password=hash_password("s3cret-pass"))
        db.session.commit()
    return app
