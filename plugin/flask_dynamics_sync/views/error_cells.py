"""How the *Sync Errors* list and details show each column: labels of stored values and cell formatters.

Flask-Admin calls a formatter as ``formatter(view, context, model, name)``; the
view is the :class:`~.errors.SyncErrorsView`, whose ``sync`` and ``record_html``
the formatters use. Every value is escaped (``Markup.format``).
"""

from __future__ import annotations

import typing as t

from markupsafe import Markup

from .. import i18n
from ..error_actions import ErrorAction
from ..error_overview import StateTab
from ..i18n import lazy_gettext
from ..models import SyncError
from ..types import Direction
from ..types import ErrorState
from ..types import Operation
from .base import time_html

if t.TYPE_CHECKING:
    from jinja2.runtime import Context

    from .errors import SyncErrorsView

OPERATION_LABELS = {Operation.INSERT.value: lazy_gettext("Insert"), Operation.UPDATE.value: lazy_gettext("Update")}
DIRECTION_LABELS = {
    Direction.TO_DYNAMICS.value: lazy_gettext("To Dynamics"),
    Direction.FROM_DYNAMICS.value: lazy_gettext("From Dynamics"),
}
STATE_LABELS = {
    ErrorState.OPEN.value: lazy_gettext("Open"),
    ErrorState.RETRIED.value: lazy_gettext("Retried"),
    ErrorState.IGNORED.value: lazy_gettext("Ignored"),
    ErrorState.RESOLVED.value: lazy_gettext("Resolved"),
}
STATE_BADGES = {
    ErrorState.OPEN.value: "badge-danger",
    ErrorState.RETRIED.value: "badge-info",
    ErrorState.IGNORED.value: "badge-secondary",
    ErrorState.RESOLVED.value: "badge-success",
}
TAB_LABELS = {
    StateTab.OPEN: lazy_gettext("Open"),
    StateTab.IGNORED: lazy_gettext("Ignored"),
    StateTab.RESOLVED: lazy_gettext("Resolved"),
    StateTab.ALL: lazy_gettext("All"),
}
#: The actions a group of open errors offers, as its buttons say them.
GROUP_ACTION_LABELS = {
    ErrorAction.RETRY: lazy_gettext("Retry all"),
    ErrorAction.IGNORE: lazy_gettext("Ignore all"),
}
ACTION_LABELS = {
    ErrorAction.RETRY: lazy_gettext("Retry"),
    ErrorAction.IGNORE: lazy_gettext("Ignore"),
    ErrorAction.RESOLVE: lazy_gettext("Resolve"),
}

#: Characters of an error message shown in the list; the details page shows all of it.
MESSAGE_PREVIEW_LENGTH = 140



def _time_cell(view: SyncErrorsView, context: Context | None, model: SyncError, name: str) -> Markup:
    return time_html(getattr(model, name), view.sync.now())


def optional_text_cell(view: t.Any, context: Context | None, model: SyncError, name: str) -> Markup | str:
    return getattr(model, name) or Markup('<span class="text-muted">—</span>')


def _object_cell(view: SyncErrorsView, context: Context | None, model: SyncError, name: str) -> str:
    return view.sync.settings.objects.get(model.object_type, model.object_type)


def _record_cell(view: SyncErrorsView, context: Context | None, model: SyncError, name: str) -> Markup:
    record = view.record_html(model.object_type, model.record_id)
    if not model.record_label:
        return record
    return Markup('{} <span class="ds-record-label">{}</span>').format(record, model.record_label)


def record_id_cell(view: SyncErrorsView, context: Context | None, model: SyncError, name: str) -> Markup:
    return view.record_html(model.object_type, model.record_id)


def _label_cell(labels: dict[str, t.Any]) -> t.Callable[..., str]:
    def cell(view: t.Any, context: Context | None, model: SyncError, name: str) -> str:
        value = getattr(model, name)
        return str(labels.get(value, value))

    return cell


def _state_cell(view: t.Any, context: Context | None, model: SyncError, name: str) -> Markup:
    return Markup('<span class="badge {}">{}</span>').format(
        STATE_BADGES.get(model.state, "badge-light"), str(STATE_LABELS.get(model.state, model.state))
    )


def _code_cell(view: t.Any, context: Context | None, model: SyncError, name: str) -> Markup:
    return Markup('<code class="ds-error-code">{}</code>').format(model.error_code)


def message_preview_cell(view: t.Any, context: Context | None, model: SyncError, name: str) -> str:
    return message_preview(model.error_message)


def message_preview(message: str) -> str:
    """The start of a message, as the list shows it."""
    if len(message) <= MESSAGE_PREVIEW_LENGTH:
        return message
    return message[: MESSAGE_PREVIEW_LENGTH - 1].rstrip() + "\u2026"


def message_full_cell(view: t.Any, context: Context | None, model: SyncError, name: str) -> Markup:
    return Markup('<pre class="ds-error-message">{}</pre>').format(model.error_message)


def _number_cell(view: t.Any, context: Context | None, model: SyncError, name: str) -> str:
    return i18n.format_number(getattr(model, name))


LIST_FORMATTERS: dict[str, t.Callable[..., t.Any]] = {
    "occurred_at": _time_cell,
    "state_changed_at": _time_cell,
    "object_type": _object_cell,
    "record": _record_cell,
    "operation": _label_cell(OPERATION_LABELS),
    "direction": _label_cell(DIRECTION_LABELS),
    "error_code": _code_cell,
    "error_message": message_preview_cell,
    "attempt": _number_cell,
    "state": _state_cell,
}
