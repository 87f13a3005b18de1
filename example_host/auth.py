"""Session login and the console's access policy.

* Signed-in users may look at everything (``is_signed_in``).
* Only operators (``User.is_operator``) may change data: edit host records,
  and retry, ignore or resolve sync errors (``is_operator``, given to the
  plugin as its ``can_act`` policy).

Forms carry a CSRF token (Flask-Admin's ``SecureForm``: WTForms' session CSRF).
"""

from __future__ import annotations

import typing as t
import unicodedata
import urllib.parse

import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_admin.form import SecureForm
from flask_babel import gettext
from flask_babel import lazy_gettext
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import InputRequired

from .models import User
from .models import db

SESSION_KEY = "user_id"

bp = Blueprint("auth", __name__)


class LoginForm(SecureForm):
    username = StringField(lazy_gettext("Username"), validators=[InputRequired()])
    password = PasswordField(lazy_gettext("Password"), validators=[InputRequired()])


class LogoutForm(SecureForm):
    """Signing out changes state, so it is a POST with a CSRF token."""


def load_user() -> None:
    """Put the signed-in user (or ``None``) on ``g.user`` for this request."""
    user_id = session.get(SESSION_KEY)
    g.user = db.session.get(User, user_id) if user_id is not None else None


def current_user() -> User | None:
    return g.get("user")


def current_user_id() -> int | None:
    """The signed-in user's id: who an export belongs to."""
    user = current_user()
    return user.id if user is not None else None


def is_signed_in() -> bool:
    return current_user() is not None


def is_operator() -> bool:
    user = current_user()
    return user is not None and user.is_operator


def safe_next(target: str | None) -> str:
    """Where to go after login: ``target`` if it is a path on this site, else the console's index.

    Decided by :func:`urllib.parse.urlsplit`, not by prefixes: no scheme, no
    network location, a path starting with a single ``/``. A value holding a
    backslash, whitespace or a control character is refused before parsing:
    browsers drop tabs and newlines (``/%09/evil.example`` becomes
    ``//evil.example``) and read ``\\`` as ``/``.
    """
    index = url_for("admin.index")
    if not target or "\\" in target or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in target):
        return index
    parts = urllib.parse.urlsplit(target)
    # "///x" parses as the path "/x" with an empty authority: malformed, not a path.
    if parts.scheme or parts.netloc or target.startswith("//") or not parts.path.startswith("/"):
        return index
    return urllib.parse.urlunsplit(("", "", parts.path, parts.query, parts.fragment))


def login_redirect() -> ResponseReturnValue:
    """Where an anonymous visitor of a protected page is sent, coming back afterwards."""
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm(request.form)
    if request.method == "POST" and form.validate():
        user = db.session.scalar(sa.select(User).where(User.username == form.username.data))
        if user is not None and user.check_password(form.password.data or ""):
            # A new session on sign-in: nothing from before survives (session fixation).
            lang = session.get("lang")
            session.clear()
            session[SESSION_KEY] = user.id
            if lang:
                session["lang"] = lang
            return redirect(safe_next(request.args.get("next")))
        flash(gettext("Wrong username or password."), "error")
    return render_template("example_host/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    if LogoutForm(request.form).validate():
        session.pop(SESSION_KEY, None)
    return redirect(url_for("auth.login"))


def init_auth(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(load_user)

    @app.context_processor
    def auth_helpers() -> dict[str, t.Any]:
        return {"host_user": g.get("user"), "host_logout_form": LogoutForm}
