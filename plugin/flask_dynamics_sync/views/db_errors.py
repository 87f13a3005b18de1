"""What the plugin's pages answer while the database cannot be reached: 503 and a plain message.

The handler is registered on each plugin view's own blueprint
(:meth:`~.base.PluginViewMixin.create_blueprint`), so it answers for the
plugin's URLs only and never changes how the host's other pages fail.

* HTML pages (and exports) get the console's layout with a short message, or a
  bare page if even the layout cannot be drawn (a host menu that reads the
  database); the JSON endpoint gets ``{"error": "database_unavailable", ...}``
  and the Prometheus endpoint plain text. All with status 503, a
  ``Retry-After`` header and no traceback; the exception goes to the log.
* Nothing is kept between requests: SQLAlchemy discards pooled connections of
  a server that went away, so the first request after the database is back is
  served normally. ``SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True}``
  spares even the first request on a connection the server dropped while idle.

Only errors that say the database is unreachable or busy are handled
(:data:`DATABASE_UNAVAILABLE`); a programming error (a missing table, bad SQL)
stays an ordinary 500, because retrying will not help.

A statement stopped by its time limit (:mod:`..time_limits`) gets the same
503 and ``Retry-After`` with its own message: the page took too long, narrow
the search or filters (``{"error": "query_timeout", ...}`` for the JSON).
"""

from __future__ import annotations

import logging
import typing as t

import sqlalchemy as sa
from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from markupsafe import Markup
from markupsafe import escape

from ..export_slots import ExportsBusy
from ..i18n import format_number
from ..i18n import gettext
from ..state import get_state
from ..time_limits import QueryTimeout
from ..time_limits import is_timeout

if t.TYPE_CHECKING:
    from .base import PluginViewMixin

logger = logging.getLogger(__name__)

#: Errors meaning "the database cannot be used right now": connection refused or lost, server
#: gone, SQLite's "database is locked" (all ``OperationalError``), a dead driver connection
#: (``InterfaceError``), no pooled connection free within ``pool_timeout`` (``TimeoutError``).
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
    QueryTimeout,
)

#: SQLite's generic error code: a missing table or column, bad SQL (also an ``OperationalError``).
SQLITE_ERROR = 1

#: Seconds a client is asked to wait before trying again.
RETRY_AFTER_SECONDS = 30

TEMPLATE = "dynamics_sync/notice.html"


def unavailable_title() -> str:
    return gettext("Database unavailable")


def unavailable_message() -> str:
    return gettext("The database does not answer right now. Nothing is lost: try again in a moment.")


def timeout_title() -> str:
    return gettext("Took too long")


def timeout_message(seconds: float) -> str:
    return gettext(
        "Reading the database took longer than %(seconds)s seconds and was stopped. "
        "Narrow the search or filters, or try again in a moment.",
        seconds=format_number(seconds),
    )


def exports_busy_title() -> str:
    return gettext("Export not started")


def exports_busy_message(busy: ExportsBusy) -> str:
    if busy.mine:
        return gettext("Your previous export is still being prepared or downloaded. Wait until it has finished, then try again.")
    return gettext("Too many exports are being prepared right now. Try again in a moment.")


#: Seconds a viewer whose export was not started is asked to wait.
EXPORT_RETRY_AFTER_SECONDS = 10


def _bare_page(title: str, message: str) -> str:
    return Markup(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
        '<body><h1>{title}</h1><p class="ds-db-unavailable">{message}</p></body></html>\n'
    ).format(title=title, message=message)


def _html(view: PluginViewMixin, title: str, message: str, link: tuple[str, str] | None = None) -> str:
    try:
        return view.render(  # type: ignore[attr-defined, no-any-return]
            TEMPLATE,
            **{**view.plugin_template_args(), "title": title, "message": message,
               "notice_class": "alert-warning ds-db-unavailable",
               "back_url": link[0] if link else None, "back_label": link[1] if link else None},
        )
    except Exception:  # noqa: BLE001 - the layout itself needs the database (e.g. a host menu)
        logger.debug("the console layout could not be drawn without the database", exc_info=True)
        return _bare_page(escape(title), escape(message))


def message_response(
    view: PluginViewMixin,
    status: int,
    title: str,
    message: str,
    *,
    retry_after: int | None = None,
    link: tuple[str, str] | None = None,
) -> Response:
    """A page of the console's layout (bare if the layout needs the database) saying ``message``; never cached."""
    response = Response(_html(view, title, message, link), status=status, content_type="text/html; charset=utf-8")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    response.cache_control.no_store = True
    return response


def exports_busy_response(view: PluginViewMixin, busy: ExportsBusy) -> Response:
    """429 when the viewer's own exports hold their slots, 503 when all slots are taken; with ``Retry-After``."""
    return message_response(
        view,
        429 if busy.mine else 503,
        exports_busy_title(),
        exports_busy_message(busy),
        retry_after=EXPORT_RETRY_AFTER_SECONDS,
    )


def _rollback(view: PluginViewMixin) -> None:
    """Leave the host's session usable for whatever else runs in this request (teardown, layout)."""
    try:
        get_state().database.session.rollback()
    except Exception:  # noqa: BLE001 - a dead connection cannot roll back; the pool drops it
        pass


def is_outage(exc: Exception) -> bool:
    """Does ``exc`` (one of :data:`DATABASE_UNAVAILABLE`) say the database cannot be used right now?"""
    orig = getattr(exc, "orig", None)
    # SQLite raises OperationalError for "no such table" too: retrying will not help.
    return getattr(orig, "sqlite_errorcode", None) != SQLITE_ERROR


def unavailable_response(view: PluginViewMixin, exc: Exception) -> Response:
    """The 503 answer to ``exc`` for the endpoint being served (a programming error is raised again)."""
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    if is_timeout(exc):
        settings = view.sync.settings
        seconds = settings.export_time_limit if endpoint == "export" else settings.page_time_limit
        logger.warning("Flask-Dynamics-Sync: %s %s stopped after %ss", request.method, request.path, seconds)
        title, message, error = timeout_title(), timeout_message(seconds), "query_timeout"
    elif is_outage(exc):
        logger.error("Flask-Dynamics-Sync: database unavailable on %s %s", request.method, request.path, exc_info=exc)
        title, message, error = unavailable_title(), unavailable_message(), "database_unavailable"
    else:
        raise exc
    _rollback(view)
    if endpoint == "json":
        response = jsonify(error=error, message=message)
    elif endpoint == "metrics":
        response = Response(message + "\n", content_type="text/plain; charset=utf-8")
    else:
        return message_response(view, 503, title, message, retry_after=RETRY_AFTER_SECONDS)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.cache_control.no_store = True
    return response


def register_database_error_handler(blueprint: Blueprint, view: PluginViewMixin) -> None:
    """Answer :data:`DATABASE_UNAVAILABLE` errors of ``view``'s endpoints with a 503 page."""
    for error in DATABASE_UNAVAILABLE:
        blueprint.register_error_handler(error, lambda exc: unavailable_response(view, exc))
