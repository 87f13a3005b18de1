"""What both views share: the host's access policy and the plugin's template helpers."""

from __future__ import annotations

import contextlib
import datetime as dt
import typing as t
from collections.abc import Iterator

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import request
from flask.typing import ResponseReturnValue
from flask_admin.form import BaseForm
from flask_admin.form import SecureForm
from markupsafe import Markup

from .. import i18n
from ..time_limits import limited_connection
from .access import HostAccess
from .db_errors import register_database_error_handler
from .record_links import record_html

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ..extension import DynamicsSync


def csrf_form_base() -> type[BaseForm]:
    """Flask-WTF's form when the host runs ``CSRFProtect`` (its check needs its token), else ``SecureForm``."""
    if "csrf" in current_app.extensions and current_app.config.get("WTF_CSRF_ENABLED", True):
        from flask_wtf import FlaskForm

        return t.cast("type[BaseForm]", FlaskForm)
    return SecureForm


_F = t.TypeVar("_F", bound=BaseForm)


def posted_form(form_class: type[_F], invalid: str) -> _F:
    """The POSTed form of a state-changing request, validated; else a 400 that says why.

    ``invalid`` is the message for a form whose fields (not its CSRF token) are wrong.
    """
    form = form_class(formdata=request.form)
    if not form.validate():
        if "csrf_token" in form.errors:
            abort(400, description=i18n.gettext(
                "The form's security token is missing or has expired. Reload the page and try again."
            ))
        abort(400, description=invalid)
    return form


def local_url(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else ``None``: what a ``url=`` return address may be.

    Stricter than Flask-Admin's ``is_safe_url``: only a path starting with a
    single ``/``, without backslash, whitespace or control character, passes.
    Browsers read ``/\\evil.example`` as ``//evil.example``, and werkzeug's
    ``redirect()`` turns ``http:evil.example`` (which ``is_safe_url`` accepts)
    into ``http:///evil.example``: another site.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ch.isspace() or not ch.isprintable() for ch in target):
        return None
    return target


def time_html(moment: dt.datetime | None, now: dt.datetime) -> Markup:
    """A time as the pages show it: relative ("4 minutes ago"), the exact time and zone on hover.

    ``None`` is a dash. The ``datetime`` attribute carries the UTC instant for scripts.
    """
    if moment is None:
        return Markup('<span class="text-muted">—</span>')
    return Markup('<time datetime="{}Z" title="{}">{}</time>').format(
        moment.isoformat(), i18n.format_datetime(moment, "long"), i18n.format_relative(moment, now)
    )


def operator_name() -> str | None:
    """Who is acting, for the record (a pause's "by"): the Flask-Login user, else the HTTP user.

    Flask-Login's user gives its ``email``, ``username`` or ``get_id()``, the first it has; a host
    without Flask-Login behind HTTP authentication gives ``REMOTE_USER`` or the Basic user name.
    """
    from flask import current_app
    from flask import request

    if hasattr(current_app, "login_manager"):
        from flask_login import current_user

        if getattr(current_user, "is_authenticated", False):
            for name in ("email", "username", "name"):
                value = getattr(current_user, name, None)
                if isinstance(value, str) and value:
                    return value
            return str(current_user.get_id())
    if request.remote_user:
        return str(request.remote_user)
    if request.authorization is not None and request.authorization.username:
        return request.authorization.username
    return None


class PluginViewMixin:
    """Access follows the host (see :mod:`.access`); the plugin's template helpers.

    Mixed into a Flask-Admin view class; ``self.sync`` is the extension object.
    """

    sync: DynamicsSync
    admin: t.Any

    @property
    def host_access(self) -> HostAccess:
        return HostAccess(self.sync, self)

    def is_accessible(self) -> bool:
        return self.host_access.may_view()

    def can_act(self) -> bool:
        """May the viewer change state (retry, ignore, resolve)?"""
        return self.host_access.may_act()

    def _handle_view(self, name: str, **kwargs: t.Any) -> ResponseReturnValue | None:
        return self.host_access.handle(name, **kwargs)

    def inaccessible_callback(self, name: str, **kwargs: t.Any) -> ResponseReturnValue:
        return self.host_access.refuse(name, **kwargs)

    @contextlib.contextmanager
    def page_connection(self) -> Iterator[Connection]:
        """A connection whose statements stop after ``DYNAMICS_SYNC_PAGE_TIME_LIMIT`` seconds."""
        with limited_connection(self.sync.engine, self.sync.settings.page_time_limit) as conn:
            yield conn

    def create_blueprint(self, admin: t.Any) -> Blueprint:
        blueprint = super().create_blueprint(admin)  # type: ignore[misc]
        # 503 with a plain message while the database is away: on the plugin's URLs only.
        register_database_error_handler(blueprint, self)
        return blueprint

    def not_found(self, message: str, back_url: str, back_label: str) -> ResponseReturnValue:
        """A 404 page inside the host's console saying what was not found, with a way back."""
        page = self.render(  # type: ignore[attr-defined]
            "dynamics_sync/notice.html",
            **self.plugin_template_args(),
            title=i18n.gettext("Not found"),
            message=message,
            notice_class="alert-secondary ds-not-found",
            back_url=back_url,
            back_label=back_label,
        )
        return page, 404

    def record_html(self, object_type: str, record_id: str) -> Markup:
        """A record id, linked to the host's own page of the record when there is one."""
        return record_html(self.sync, self.admin, object_type, record_id)

    def plugin_template_args(self) -> dict[str, t.Any]:
        """Helpers every plugin template can use."""
        now = self.sync.now()
        return {
            "ds_time": lambda moment: time_html(moment, now),
            "ds_record": self.record_html,
            "_": i18n.gettext,
            "ds_gettext": i18n.gettext,
            "ds_ngettext": i18n.ngettext,
            "format_datetime": i18n.format_datetime,
            "format_number": i18n.format_number,
            "format_duration": i18n.format_duration,
            "format_hour_range": i18n.format_hour_range,
            "ds_settings": self.sync.settings,
        }
