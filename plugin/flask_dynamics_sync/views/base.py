"""What both views share: the host's access policy and the plugin's template helpers."""

from __future__ import annotations

import datetime as dt
import typing as t

from flask import Blueprint
from flask import abort
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from .. import i18n
from .db_errors import register_database_error_handler

if t.TYPE_CHECKING:
    from ..extension import DynamicsSync


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


class PluginViewMixin:
    """Access follows the host: ``can_view``/``can_act`` given to :class:`DynamicsSync`,
    or by default whatever the host's admin index view allows.

    Mixed into a Flask-Admin view class; ``self.sync`` is the extension object.
    """

    sync: DynamicsSync
    admin: t.Any

    def is_accessible(self) -> bool:
        policy = self.sync.can_view
        if policy is not None:
            return bool(policy())
        index_view = getattr(self.admin, "index_view", None)
        if index_view is None or index_view is self:
            return True
        return bool(index_view.is_accessible())

    def can_act(self) -> bool:
        """May the viewer change state (retry, ignore, resolve)?"""
        if not self.is_accessible():
            return False
        policy = self.sync.can_act
        return True if policy is None else bool(policy())

    def create_blueprint(self, admin: t.Any) -> Blueprint:
        blueprint = super().create_blueprint(admin)  # type: ignore[misc]
        # 503 with a plain message while the database is away: on the plugin's URLs only.
        register_database_error_handler(blueprint, self)
        return blueprint

    def inaccessible_callback(self, name: str, **kwargs: t.Any) -> ResponseReturnValue:
        # The host's own reaction (e.g. a redirect to its login page) when it has one.
        index_view = getattr(self.admin, "index_view", None)
        if self.sync.can_view is None and index_view is not None and index_view is not self:
            return index_view.inaccessible_callback(name, **kwargs)
        return abort(403)

    def plugin_template_args(self) -> dict[str, t.Any]:
        """Helpers every plugin template can use."""
        now = self.sync.now()
        return {
            "ds_time": lambda moment: time_html(moment, now),
            "_": i18n.gettext,
            "ds_gettext": i18n.gettext,
            "ds_ngettext": i18n.ngettext,
            "format_datetime": i18n.format_datetime,
            "format_number": i18n.format_number,
            "format_duration": i18n.format_duration,
            "format_hour_range": i18n.format_hour_range,
            "ds_settings": self.sync.settings,
        }
