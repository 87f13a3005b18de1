"""A support console behind Flask-Login: one secured mixin guards every view, a login page sends people back."""

from urllib.parse import urlsplit

from flask import Flask
from flask import redirect
from flask import render_template_string
from flask import request
from flask import url_for
from flask_admin import Admin
from flask_admin import AdminIndexView
from flask_admin.contrib.sqla import ModelView
from flask_login import LoginManager
from flask_login import UserMixin
from flask_login import current_user
from flask_login import login_user
from flask_login import logout_user
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from flask_dynamics_sync import DynamicsSync

db = SQLAlchemy()
login_manager = LoginManager()

LOGIN_PAGE = """<!doctype html>
<title>Sign in</title>
<h1>Sign in to Support</h1>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
<form method="post">
  <label>E-mail <input name="email" type="email" required></label>
  <label>Password <input name="password" type="password" required></label>
  <button type="submit">Sign in</button>
</form>
"""


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str]


class Ticket(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str]


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


class SignedInOnly:
    """Every admin view of the console: signed-in staff only, others go to the login page."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("login", next=request.url))


class SecuredIndexView(SignedInOnly, AdminIndexView):
    pass


class SecuredModelView(SignedInOnly, ModelView):
    pass


def is_safe_next(target: str) -> bool:
    parts = urlsplit(target)
    return parts.scheme in ("", "http", "https") and parts.netloc in ("", request.host) and target.startswith(
        ("/", request.host_url)
    )


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="support-console-secret", SQLALCHEMY_DATABASE_URI=database_url)
    db.init_app(app)
    login_manager.init_app(app)

    admin = Admin(app, name="Support", index_view=SecuredIndexView())
    admin.add_view(SecuredModelView(Ticket, db.session))
    DynamicsSync(access=SignedInOnly).init_app(app, admin=admin, db=db)

    @app.route("/login", methods=["GET", "POST"])
    def login():
        error = None
        if request.method == "POST":
            user = db.session.scalar(db.select(User).filter_by(email=request.form["email"]))
            if user is not None and check_password_hash(user.password_hash, request.form["password"]):
                login_user(user)
                target = request.args.get("next", "")
                return redirect(target if target and is_safe_next(target) else url_for("admin.index"))
            error = "Wrong e-mail or password."
        return render_template_string(LOGIN_PAGE, error=error)

    @app.route("/logout")
    def logout():
        logout_user()
        return redirect(url_for("login"))

    with app.app_context():
        db.create_all()
        app.extensions["dynamics_sync"].extension.create_all()
        if db.session.scalar(db.select(User).filter_by(email="agent@example.com")) is None:
            db.session.add(User(email="agent@example.com", password_hash=generate_password_hash("s3cret")))
            db.session.commit()
    return app
