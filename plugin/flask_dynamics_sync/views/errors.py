"""The *Sync Errors* view: browse, search, filter, export and act on failed syncs.

A read-only Flask-Admin ``ModelView`` over :class:`~flask_dynamics_sync.models.SyncError`
that replaces the parts of the stock view that do not scale or are unsafe:

* search (:mod:`..search`): terms are literal (``%`` and ``_`` too), short
  terms match ids and codes exactly instead of scanning every row;
* counting: at most ``DYNAMICS_SYNC_COUNT_CAP + 1`` rows are counted per page
  load, shown as an exact number or as "10,000+";
* export (:mod:`..export`): written to a temporary file in constant memory within a time limit
  and an export slot, then sent; neutralized cells;
* actions (:mod:`..error_actions`): retry / ignore / resolve the ticked rows
  or every row matching the search and filters, after a confirmation page that
  states how many errors will change; POST only, with a CSRF token.

URLs (under the admin URL and ``DYNAMICS_SYNC_URL_SEGMENT``): ``errors/`` (list),
``errors/details/?id=``, ``errors/export/<csv|xlsx|json>/?<list arguments>``,
``errors/action/`` (POST).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import typing as t
import weakref

import sqlalchemy as sa
from flask import Flask
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import request
from flask.typing import ResponseReturnValue
from flask_admin import expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.model.template import TemplateLinkRowAction
from markupsafe import Markup
from markupsafe import escape
from werkzeug.datastructures import MultiDict
from wtforms import Form
from wtforms import HiddenField
from wtforms import IntegerField
from wtforms import validators

from .. import export
from .. import i18n
from ..error_actions import MAX_ERROR_ID
from ..error_actions import SOURCE_STATES
from ..error_actions import ActionOutcome
from ..error_actions import ErrorAction
from ..error_actions import applicable
from ..error_actions import by_ids
from ..error_actions import preview
from ..error_actions import run_action
from ..error_actions import sample
from ..error_overview import TAB_STATES
from ..error_overview import ErrorGroup
from ..error_overview import OpenErrorCount
from ..error_overview import StateTab
from ..error_overview import capped_count
from ..error_overview import open_error_count
from ..error_overview import open_error_groups
from ..error_overview import tab_condition
from ..error_overview import tab_counts
from ..error_overview import tab_counts_of_states
from ..export_slots import ExportsBusy
from ..i18n import gettext
from ..i18n import lazy_gettext
from ..i18n import ngettext
from ..models import SyncError
from ..search import search_condition
from ..search import search_problem
from ..state import get_state
from ..time_limits import time_limit
from .base import PluginViewMixin
from .base import csrf_form_base
from .base import local_url
from .base import posted_form
from .db_errors import exports_busy_response
from .db_errors import message_response
from .error_cells import ACTION_LABELS
from .error_cells import DIRECTION_LABELS
from .error_cells import GROUP_ACTION_LABELS
from .error_cells import LIST_FORMATTERS
from .error_cells import OPERATION_LABELS
from .error_cells import STATE_LABELS
from .error_cells import TAB_LABELS
from .error_cells import message_full_cell
from .error_cells import message_preview
from .error_cells import optional_text_cell
from .error_cells import record_id_cell
from .error_filters import EqualFilter
from .error_filters import FilterField
from .error_filters import TimeFilter
from .error_filters import choices

if t.TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.orm import scoped_session

    from ..extension import DynamicsSync
    from .status import SyncStatusView

Filter = tuple[int, str, str]
"""An active filter as Flask-Admin passes it around: (index, name, raw value)."""

#: Highest list page a URL may name: far beyond any list, an OFFSET every database takes.
MAX_PAGE = 1_000_000_000

#: The URL argument of the state tabs.
STATE_ARG = "state"

SCOPE_SELECTED = "selected"
SCOPE_ALL = "all"


@dataclasses.dataclass(frozen=True)
class StateTabLink:
    """One state tab of the list: its label, capped count and URL."""

    tab: StateTab
    label: str
    count_label: str
    url: str
    active: bool


# -- the action form --------------------------------------------------------------


def action_form_class() -> type[Form]:
    """The CSRF-protected form every state-changing POST of the view carries."""

    class ErrorActionForm(csrf_form_base()):  # type: ignore[misc, valid-type]
        action = HiddenField(validators=[validators.AnyOf([a.value for a in ErrorAction])])
        scope = HiddenField(validators=[validators.AnyOf([SCOPE_SELECTED, SCOPE_ALL])])
        url = HiddenField()
        confirmed = HiddenField()
        up_to_id = IntegerField(validators=[validators.Optional(), validators.NumberRange(min=0, max=MAX_ERROR_ID)])

    return ErrorActionForm


# -- the view ---------------------------------------------------------------------


class _SessionLookedUpPerRequest:
    """What ``ModelView.__init__`` is given for its ``db``: the real session is :attr:`SyncErrorsView.session`."""

    session = None


class MenuNameWithBadge:
    """The *Sync Errors* menu entry: the view's name, then a badge with the open errors.

    Flask-Admin renders a menu item's ``name`` escaped: ``__html__`` gives the
    badge there, while ``str()`` stays the plain name for anything else.
    """

    def __init__(self, view: SyncErrorsView) -> None:
        self.view = view

    def __str__(self) -> str:
        return str(self.view.name)

    def __html__(self) -> str:
        return str(self.view.menu_label())


_M = t.TypeVar("_M", bound=t.Callable[..., t.Any])


def within_page_time_limit(method: _M) -> _M:
    """Run a view method that reads through the host's session within ``DYNAMICS_SYNC_PAGE_TIME_LIMIT``."""

    @functools.wraps(method)
    def limited(self: SyncErrorsView, *args: t.Any, **kwargs: t.Any) -> t.Any:
        with self.limited_session():
            return method(self, *args, **kwargs)

    return t.cast(_M, limited)


class SyncErrorsView(PluginViewMixin, ModelView):
    """Records that failed to sync, newest first; read-only except for the error actions."""

    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    can_export = True
    can_set_page_size = True
    page_size = 50
    page_size_options = (20, 50, 100)

    list_template = "dynamics_sync/errors_list.html"
    details_template = "dynamics_sync/errors_details.html"
    confirm_template = "dynamics_sync/errors_confirm.html"

    column_list = (
        "occurred_at",
        "object_type",
        "record",
        "operation",
        "direction",
        "error_code",
        "error_message",
        "attempt",
        "state",
    )
    column_details_list = (
        "id",
        "occurred_at",
        "object_type",
        "record_id",
        "record_label",
        "operation",
        "direction",
        "error_code",
        "error_message",
        "attempt",
        "state",
        "state_changed_at",
    )
    column_labels = {
        "id": lazy_gettext("ID"),
        "occurred_at": lazy_gettext("Time"),
        "object_type": lazy_gettext("Object"),
        "record": lazy_gettext("Record"),
        "record_id": lazy_gettext("Record ID"),
        "record_label": lazy_gettext("Record label"),
        "operation": lazy_gettext("Operation"),
        "direction": lazy_gettext("Direction"),
        "error_code": lazy_gettext("Error code"),
        "error_message": lazy_gettext("Error message"),
        "attempt": lazy_gettext("Attempt"),
        "state": lazy_gettext("State"),
        "state_changed_at": lazy_gettext("State changed"),
    }
    # Only columns with an index that starts with them: sorting never sorts the whole table.
    column_sortable_list = ("occurred_at", "object_type", "error_code", "state")
    column_default_sort = ("occurred_at", True)
    column_searchable_list = ("record_id", "record_label", "error_code", "error_message")
    column_formatters = LIST_FORMATTERS
    column_formatters_detail = {
        **LIST_FORMATTERS,
        "error_message": message_full_cell,
        "record_id": record_id_cell,
        "record_label": optional_text_cell,
    }

    #: Filter bar, in order; ``flt<i>_<i>`` in URLs. Object choices come from the settings.
    column_filters = [
        EqualFilter(SyncError.object_type, lazy_gettext("Object")),
        EqualFilter(SyncError.operation, lazy_gettext("Operation"), options=choices(OPERATION_LABELS)),
        EqualFilter(SyncError.direction, lazy_gettext("Direction"), options=choices(DIRECTION_LABELS)),
        EqualFilter(SyncError.error_code, lazy_gettext("Error code")),
        EqualFilter(SyncError.state, lazy_gettext("State"), options=choices(STATE_LABELS)),
        TimeFilter(SyncError.occurred_at, lazy_gettext("From"), until=False),
        TimeFilter(SyncError.occurred_at, lazy_gettext("Until"), until=True),
    ]
    _OBJECT_FILTER = 0
    _DIRECTION_FILTER = 2
    _CODE_FILTER = 3
    #: Replaced in the filter bar by the state tabs; still honoured in URLs.
    _STATE_FILTER = 4

    def __init__(self, sync: DynamicsSync, **kwargs: t.Any) -> None:
        self.sync = sync
        # The menu badge's count per application (an app factory shares the views between apps).
        self._open_errors: weakref.WeakKeyDictionary[Flask, OpenErrorCount] = weakref.WeakKeyDictionary()
        #: The *Sync Status* view of the same console (set by ``make_views``).
        self.status_view: SyncStatusView | None = None
        # The session is looked up per request (:attr:`session`): views are built before any app context.
        super().__init__(SyncError, _SessionLookedUpPerRequest(), **kwargs)  # type: ignore[arg-type]

    # -- the menu badge -------------------------------------------------------------

    @property
    def open_errors(self) -> OpenErrorCount:
        """The current app's open-error count, read at most every ``OPEN_COUNT_SECONDS``."""
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        counter = self._open_errors.get(app)
        if counter is None:
            counter = self._open_errors[app] = OpenErrorCount()
        return counter

    def show_menu_badge(self) -> None:
        """Give the view's menu entry (made by ``Admin.add_view``) the open-error badge."""
        if self.menu is not None:
            self.menu.name = MenuNameWithBadge(self)  # type: ignore[assignment]

    def read_open_errors(self) -> int:
        """Open errors now, capped: one read of the ``(state, occurred_at)`` index."""
        with self.page_connection() as conn:
            return open_error_count(conn, self.sync.settings.count_cap)

    def menu_label(self) -> Markup:
        """The escaped name with a badge when there are open errors.

        A database that cannot answer (down, or tables not created yet) leaves
        the name alone: every page of the host shows the menu.
        """
        name = escape(str(self.name))
        try:
            count = self.open_errors.get(self.read_open_errors)
        except sa.exc.SQLAlchemyError:
            return name
        if not count:
            return name
        title = ngettext("%(number)s open sync error", "%(number)s open sync errors", count, number=self.count_label(count))
        return Markup('{} <span class="badge badge-pill badge-danger ds-open-errors" title="{}">{}</span>').format(
            name, title, self.count_label(count)
        )

    def object_errors_url(self, object_type: str) -> str:
        """The list of one object's open errors."""
        flt = (self._filters or [])[self._OBJECT_FILTER]
        return self.list_url(**self._get_filters([(self._OBJECT_FILTER, str(flt.name), object_type)]))

    def list_url(self, **args: t.Any) -> str:
        """The list's URL with ``args``, from any view (a ``.`` endpoint would be the current view's)."""
        return self.get_url(f"{self.endpoint}.index_view", **args)

    # -- plumbing -----------------------------------------------------------------

    @property  # type: ignore[override]
    def session(self) -> scoped_session[Session]:
        """The host's session of the current app (Flask-SQLAlchemy's ``db.session`` or the host's own)."""
        return get_state().database.session

    @session.setter
    def session(self, value: t.Any) -> None:
        pass  # ModelView.__init__ stores the placeholder; the property looks the real one up.

    def scaffold_form(self) -> type[Form]:
        # Read-only: no create or edit form (and no database access while the view is built).
        return type("NoForm", (self.form_base_class,), {})

    def render(self, template: str, **kwargs: t.Any) -> str:
        kwargs.update(self.plugin_template_args())
        return super().render(template, **kwargs)

    # Read-only: Flask-Admin's create, edit and delete pages go back to the list, never to
    # their ``url=`` (which Flask-Admin checks less strictly than ``local_url``).
    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> ResponseReturnValue:
        return redirect(self.get_url(".index_view"))

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self) -> ResponseReturnValue:
        return redirect(self.get_url(".index_view"))

    @expose("/delete/", methods=("POST",))
    def delete_view(self) -> ResponseReturnValue:
        return redirect(self.get_url(".index_view"))

    def is_action_allowed(self, name: str) -> bool:
        return False  # The stock actions (delete) are off; ours go through action_view.

    def get_list_row_actions(self) -> list[TemplateLinkRowAction]:
        return [TemplateLinkRowAction("row_actions.view_row", lazy_gettext("Show details"))]

    def get_empty_list_message(self) -> str:
        return gettext("No sync errors match.")

    def search_placeholder(self) -> str:
        return gettext("Record, label, error code or message")

    def get_one(self, id: t.Any) -> SyncError | None:
        try:
            key = int(id)
        except (TypeError, ValueError):
            return None
        if not 0 < key <= MAX_ERROR_ID:  # no database takes a key beyond 64 bits: there is no such error
            return None
        return self._get_error(key)

    @within_page_time_limit
    def _get_error(self, key: int) -> SyncError | None:
        return self.session.get(SyncError, key)

    def limited_session(self) -> t.ContextManager[None]:
        """Stop the host session's statements after ``DYNAMICS_SYNC_PAGE_TIME_LIMIT`` seconds in this block."""
        connection = self.session.connection(bind_arguments={"mapper": SyncError})
        return time_limit(connection, self.sync.settings.page_time_limit)

    def _get_list_extra_args(self) -> t.Any:
        args = super()._get_list_extra_args()
        # A negative or 20-digit OFFSET is a database error on every backend: clamp ?page=.
        args.page = min(max(args.page or 0, 0), MAX_PAGE)
        return args

    # -- selection: search + filters ------------------------------------------------

    def _apply_search(
        self, query: t.Any, count_query: t.Any, joins: dict[t.Any, t.Any], count_joins: dict[t.Any, t.Any], search: str
    ) -> tuple[t.Any, t.Any, dict[t.Any, t.Any], dict[t.Any, t.Any]]:
        condition = search_condition(search)
        if condition is not None:
            query = query.filter(condition)
            if count_query is not None:
                count_query = count_query.filter(condition)
        return query, count_query, joins, count_joins

    def parse_filter_args(self, args: MultiDict[str, str]) -> tuple[list[Filter], list[str]]:
        """The active filters of ``args`` (``flt<pos>_<index>``), and the invalid values.

        Empty values are no filter (the filter bar submits every input).
        """
        if not self._filter_args:
            return [], []
        found: list[tuple[float, Filter]] = []
        invalid: list[str] = []
        for arg, value in args.items():
            if not arg.startswith("flt") or "_" not in arg or value.strip() == "":
                continue
            position, key = arg[3:].split("_", 1)
            if key not in self._filter_args:
                continue
            index, flt = self._filter_args[key]
            if flt.validate(value):
                found.append((int(position) if position.isdigit() else float("inf"), (index, str(flt.name), value)))
            else:
                invalid.append(value)
        return [f for _, f in sorted(found, key=lambda item: item[0])], invalid

    def _get_list_filter_args(self) -> list[Filter]:
        filters, invalid = self.parse_filter_args(request.args)
        self._template_args["invalid_filter_values"] = invalid
        return filters

    def state_tab(self, args: MultiDict[str, str], default: StateTab = StateTab.OPEN) -> StateTab:
        """The tab of ``?state=``, else ``default``; *All* when the arguments filter on a state themselves.

        The list opens on *Open*. The list's export links and action forms always
        name their tab; an export URL or action post without one covers every state.
        """
        try:
            return StateTab(args.get(STATE_ARG, ""))
        except ValueError:
            filters, _invalid = self.parse_filter_args(args)
            return StateTab.ALL if any(index == self._STATE_FILTER for index, _, _ in filters) else default

    def selection_condition(
        self, search: str | None, filters: t.Sequence[Filter] | None, tab: StateTab = StateTab.ALL
    ) -> sa.ColumnElement[bool] | None:
        """The ``WHERE`` condition selecting what the list shows for ``search``, ``filters`` and ``tab``."""
        stmt = sa.select(SyncError.id)
        condition = tab_condition(tab)
        if condition is not None:
            stmt = stmt.where(condition)
        condition = search_condition(search)
        if condition is not None:
            stmt = stmt.where(condition)
        for index, _name, value in filters or ():
            flt = self._filters[index]  # type: ignore[index]
            stmt = flt.apply(stmt, flt.clean(value), None)
        return stmt.whereclause

    def selection_from(self, args: MultiDict[str, str]) -> tuple[str | None, list[Filter]]:
        """Search string and filters carried by request arguments or a posted form."""
        filters, _invalid = self.parse_filter_args(args)
        return args.get("search") or None, filters

    def runnable_selection_from(self, args: MultiDict[str, str]) -> tuple[str | None, list[Filter]]:
        """:meth:`selection_from`, refusing with 400 a search beyond the bounds of :mod:`..search`."""
        search, filters = self.selection_from(args)
        problem = search_problem(search)
        if problem is not None:
            abort(400, description=problem)
        return search, filters

    def capped_count(self, condition: sa.ColumnElement[bool] | None) -> int:
        """Matching errors, counting at most ``DYNAMICS_SYNC_COUNT_CAP + 1`` of them."""
        return capped_count(self.session, condition, self.sync.settings.count_cap)

    def matching_states(self, condition: sa.ColumnElement[bool] | None) -> list[tuple[int, str]]:
        """Id and state of the errors ``condition`` selects, at most ``DYNAMICS_SYNC_COUNT_CAP + 1`` of them."""
        stmt = sa.select(SyncError.id, SyncError.state).limit(self.sync.settings.count_cap + 1)
        if condition is not None:
            stmt = stmt.where(condition)
        return [(row.id, row.state) for row in self.session.execute(stmt)]

    def count_label(self, count: int) -> str:
        """``1,234`` or, above the cap, ``10,000+``."""
        cap = self.sync.settings.count_cap
        if count > cap:
            return gettext("%(count)s+", count=i18n.format_number(cap))
        return i18n.format_number(count)

    def _ordered(self, query: t.Any, sort_column: t.Any, sort_desc: bool) -> t.Any:
        query, _joins = self._apply_sorting(query, {}, sort_column, sort_desc)
        return query.order_by(SyncError.id.desc())  # stable pages when times are equal

    @within_page_time_limit
    def get_list(  # type: ignore[override]
        self,
        page: int | None,
        sort_column: t.Any,
        sort_desc: bool,
        search: str | None,
        filters: t.Sequence[Filter] | None,
        execute: bool = True,
        page_size: int | None = None,
    ) -> tuple[int | None, t.Any]:
        """One page of the current tab's errors and their count: exact up to the cap, else ``None`` (simple pager).

        Also counts every tab (capped) for the tab bar. A search beyond the bounds
        of :mod:`..search` lists nothing (the page says why).
        """
        tab = self.state_tab(request.args)
        if search_problem(search) is not None:
            self._template_args.update(self.tab_bar_args(tab, {}, 0))
            return 0, ([] if execute else self.get_query().filter(sa.false()))
        selection = self.selection_condition(search, filters)
        condition = self.selection_condition(search, filters, tab)
        query = self.get_query()
        if condition is not None:
            query = query.filter(condition)
        cap = self.sync.settings.count_cap
        counts: dict[StateTab, int] | None = None
        if execute and search_condition(search) is not None:
            # A substring search reads every row it cannot rule out: collect the matching
            # ids and states in that one pass, count them, and page through them by primary key.
            matches = self.matching_states(selection)
            if len(matches) <= cap:
                counts = tab_counts_of_states(state for _id, state in matches)
                wanted = TAB_STATES[tab]
                ids = [id for id, state in matches if wanted is None or state == wanted.value]
                query = self.get_query().filter(SyncError.id.in_(ids))
        if execute:
            if counts is None:
                counts = tab_counts(self.session, selection, cap)
            count = counts[tab]
            if selection is None:
                self.open_errors.put(counts[StateTab.OPEN])  # the menu badge of this page: no second count
        else:
            count = self.capped_count(condition)
        self._template_args.update(self.tab_bar_args(tab, counts or {}, count))
        query = self._apply_pagination(self._ordered(query, sort_column, sort_desc), page, page_size)
        exact = count if count <= cap else None
        return exact, (query.all() if execute else query)

    def tab_bar_args(self, tab: StateTab, counts: dict[StateTab, int], count: int) -> dict[str, t.Any]:
        """Template arguments of the tab bar and the count of the current tab."""
        return {
            "state_tabs": [
                StateTabLink(each, str(TAB_LABELS[each]), self.count_label(counts.get(each, 0)), self.tab_url(each), each is tab)
                for each in StateTab
            ],
            "state_tab": tab.value,
            "count_label": self.count_label(count),
            "match_count": count,
        }

    # -- list -----------------------------------------------------------------------

    def tab_url(self, tab: StateTab) -> str:
        """The list on ``tab``, keeping the current search, filters, sort and page size."""
        args = {k: v for k, v in request.args.items() if k not in ("page", STATE_ARG)}
        if tab is not StateTab.OPEN:
            args[STATE_ARG] = tab.value
        return self.get_url(".index_view", **args)

    def filter_fields(self, filters: t.Sequence[Filter]) -> list[FilterField]:
        """The filter bar's inputs with the current values."""
        current = {index: value for index, _name, value in filters}
        fields = []
        for index, flt in enumerate(self._filters or ()):
            if index == self._STATE_FILTER:
                continue
            arg = f"flt{index}_{self.get_filter_arg(index, flt)}"
            value = current.get(index, "")
            if isinstance(flt, TimeFilter):
                kind, options = "datetime", []
                if value:  # shown as the datetime-local input expects it
                    try:
                        local = i18n.to_local(flt.clean(value))
                    except OverflowError:  # valid in UTC, before year 1 or after 9999 here: shown as typed
                        pass
                    else:
                        value = local.strftime("%Y-%m-%dT%H:%M:%S" if local.second else "%Y-%m-%dT%H:%M")
            elif index == self._OBJECT_FILTER:
                kind, options = "select", list(self.sync.settings.objects.items())
            elif flt.options:
                kind, options = "select", [(k, str(v)) for k, v in flt.options]
            else:
                kind, options = "text", []
            fields.append(FilterField(arg, str(flt.name), kind, options, value))
        return fields

    @expose("/")
    def index_view(self) -> ResponseReturnValue:
        search, filters = self.selection_from(request.args)
        search_error = search_problem(search)
        self._template_args.update(
            search_error=search_error,
            filter_fields=self.filter_fields(filters),
            # The stock filter widgets are replaced by the filter bar.
            filters=None,
            filter_groups=None,
            time_zone=str(i18n.get_timezone()),
            export_formats=list(export.available_formats()),
            # Only the list's own arguments: never url_for's (_external, _scheme...).
            export_args={
                **{k: v for k, v in request.args.items() if k in ("search", "sort", "desc") or k.startswith("flt")},
                STATE_ARG: self.state_tab(request.args).value,
            },
            **self.action_args(),
            scope_all=SCOPE_ALL,
        )
        page = super().index_view()
        return (page, 400) if search_error is not None else page

    # -- groups ---------------------------------------------------------------------

    def group_filter_args(self, group: ErrorGroup) -> dict[str, str]:
        """The list arguments selecting exactly one group's open errors."""
        filters = self._filters or []
        return {
            **self._get_filters([
                (index, str(filters[index].name), value)
                for index, value in (
                    (self._OBJECT_FILTER, group.object_type),
                    (self._DIRECTION_FILTER, group.direction.value),
                    (self._CODE_FILTER, group.error_code),
                )
            ]),
            STATE_ARG: StateTab.OPEN.value,
        }

    @expose("/groups/")
    def groups_view(self) -> str:
        """Open errors grouped by error code, object and direction: one row per cause to fix."""
        with self.page_connection() as conn:
            groups = open_error_groups(conn)
        return self.render(
            "dynamics_sync/errors_groups.html",
            groups=[(group, self.group_filter_args(group)) for group in groups],
            object_label=lambda object_type: self.sync.settings.objects.get(object_type, object_type),
            direction_labels=DIRECTION_LABELS,
            preview=message_preview,
            **self.action_args(),
            group_actions=[(a.value, label) for a, label in GROUP_ACTION_LABELS.items()],
            scope_all=SCOPE_ALL,
            return_url=self.get_url(".groups_view"),
        )

    # -- details --------------------------------------------------------------------

    @expose("/details/")
    def details_view(self) -> ResponseReturnValue:
        # Flask-Admin's details view, with the plugin's stricter return address (``local_url``).
        return_url = self._return_url(request.args.get("url"))
        if request.args.get("id") is None:
            return redirect(return_url)
        model = self.get_one(request.args["id"])
        if model is None:
            return self.not_found(
                gettext("There is no sync error with the ID %(id)s.", id=request.args["id"]),
                return_url,
                gettext("Back to Sync Errors"),
            )
        self._template_args.update(
            **self.action_args(),
            object_status_url=self.status_view.object_url(model.object_type) if self.status_view is not None else None,
            object_label=self.sync.settings.objects.get(model.object_type, model.object_type),
            # Only the actions that apply to the error's state are offered.
            action_states={a.value: [s.value for s in SOURCE_STATES[a]] for a in ErrorAction},
        )
        return self.render(
            self.details_template,
            model=model,
            details_columns=self._details_columns,
            get_value=self.get_detail_value,
            return_url=return_url,
        )

    # -- export ---------------------------------------------------------------------

    @staticmethod
    def export_filename(filtered: bool, limit: int | None, now: dt.datetime) -> str:
        """``dynamics-sync-errors[-filtered][-first-N]-20260310T142000Z``: what the file holds and when."""
        parts = ["dynamics-sync-errors"]
        if filtered:
            parts.append("filtered")
        if limit is not None:
            parts.append(f"first-{limit}")
        parts.append(now.strftime("%Y%m%dT%H%M%SZ"))
        return "-".join(parts)

    @expose("/export/<export_type>/")
    def export(self, export_type: str) -> ResponseReturnValue:
        """Download exactly what the list selects (search, filters, sort).

        ``HEAD`` gets the headers and reads nothing. The rows are written to a
        temporary file first, within the export time limit and an export slot
        (:mod:`..export_slots`); the file is sent once the database connection
        is back in the pool.
        """
        export_format = export.available_formats().get(export_type)
        if export_format is None:
            if export_type == export.XLSX.name:
                abort(404, description=gettext("XLSX export needs XlsxWriter (pip install 'Flask-Dynamics-Sync[xlsx]')."))
            abort(404, description=gettext("Unknown export format."))
        search, filters = self.runnable_selection_from(request.args)
        tab = self.state_tab(request.args, StateTab.ALL)
        now = self.sync.now()
        filtered = bool(search or filters or tab is not StateTab.ALL)
        if request.method == "HEAD":
            stem = self.export_filename(filtered, None, now)
            return export.head_response(export_format, export_format.filename(stem))
        condition = self.selection_condition(search, filters, tab)
        sort = self._get_column_by_idx(request.args.get("sort", None, type=int))
        stmt = self._ordered(export.select_columns(), sort[0] if sort else None, bool(request.args.get("desc", 0, type=int)))
        if condition is not None:
            stmt = stmt.where(condition)
        try:
            # The slots first: a refusal costs no query.
            claim = get_state().export_slots.claim(self.sync.viewer_id())  # type: ignore[union-attr]
        except ExportsBusy as busy:
            return exports_busy_response(self, busy)
        try:
            outcome = self.spooled_export(export_format, stmt, condition, filtered=filtered, now=now)
        except BaseException:
            claim.release()
            raise
        claim.done_reading()
        if isinstance(outcome, Response):  # refused: nothing to download
            claim.release()
            return outcome
        file, filename = outcome
        # In flight for the viewer until the download ended or was aborted.
        return export.file_response(file, export_format, filename, on_close=claim.release)

    def spooled_export(
        self,
        export_format: export.ExportFormat,
        stmt: sa.Select[t.Any],
        condition: sa.ColumnElement[bool] | None,
        *,
        filtered: bool,
        now: dt.datetime,
    ) -> tuple[t.BinaryIO, str] | Response:
        """The file of the export and its name, or a refusal (XLSX too large).

        Counts what the file would hold where a limit needs it, then writes it.
        """
        settings = self.sync.settings
        truncated_at = None
        if settings.export_max_rows is not None or export_format is export.XLSX:
            with self.page_connection() as conn:
                # Exact, or up to one beyond the host's cap: what the file would hold.
                count = export.count_matching(conn, condition, settings.export_max_rows)
            if settings.export_max_rows is not None and count > settings.export_max_rows:
                stmt = stmt.limit(settings.export_max_rows)
                count = truncated_at = settings.export_max_rows
            if export_format is export.XLSX and count > settings.xlsx_max_rows:
                return self.too_many_rows_for_xlsx(count)
        file = export.spool(
            export_format,
            self.sync.engine,
            stmt,
            chunk_size=settings.export_chunk_size,
            seconds=settings.export_time_limit,
            now=now,
        )
        return file, export_format.filename(self.export_filename(filtered, truncated_at, now))

    def too_many_rows_for_xlsx(self, count: int) -> Response:
        """400: the selection holds more rows than an XLSX export may; the same selection as CSV is offered."""
        limit = self.sync.settings.xlsx_max_rows
        csv_url = self.get_url(".export", export_type=export.CSV.name, **request.args.to_dict())
        message = gettext(
            "This selection holds %(count)s errors; an XLSX export holds at most %(limit)s. "
            "Download it as CSV, or narrow the search or filters.",
            count=i18n.format_number(count),
            limit=i18n.format_number(limit),
        )
        return message_response(
            self, 400, gettext("Too many rows for XLSX"), message, link=(csv_url, gettext("Download as CSV"))
        )

    # -- actions --------------------------------------------------------------------

    def actions_off_reason(self) -> str | None:
        """Why retry, ignore and resolve are off for everyone on this console, or ``None``."""
        if not current_app.secret_key:
            return gettext(
                "Retry, ignore and resolve need a session to protect them against forged requests, "
                "and this console sets no SECRET_KEY."
            )
        if not self.host_access.acting_configured():
            return gettext(
                "Retry, ignore and resolve are off: this console has not said who may use them "
                "(DynamicsSync(access=...) or can_act=...)."
            )
        return None

    def actions_enabled(self) -> bool:
        """May the viewer retry, ignore and resolve here and now?"""
        return self.actions_off_reason() is None and self.can_act()

    def action_args(self) -> dict[str, t.Any]:
        """Template arguments of the action buttons and their CSRF-protected form."""
        enabled = self.actions_enabled()
        return {
            "can_act": enabled,
            "actions_off_reason": self.actions_off_reason() if self.is_accessible() else None,
            "error_actions": [(a.value, ACTION_LABELS[a]) for a in ErrorAction],
            "ds_action_form": action_form_class()() if enabled else None,
            "scope_selected": SCOPE_SELECTED,
        }

    def _return_url(self, value: str | None) -> str:
        return local_url(value) or self.get_url(".index_view")

    @expose("/action/", methods=("POST",))
    def action_view(self) -> ResponseReturnValue:
        """Retry, ignore or resolve errors: a confirmation page first, then the change.

        The first POST shows how many errors the action will change; the
        confirmed POST changes them in one transaction. An "all matching"
        selection is pinned to the errors that existed at the confirmation.
        """
        reason = self.actions_off_reason()
        if reason is not None:
            abort(403, description=reason)
        if not self.can_act():
            abort(403)
        form = posted_form(action_form_class(), gettext("Unknown action or selection."))
        action = ErrorAction(form.action.data)
        scope = form.scope.data
        if scope == SCOPE_SELECTED:
            try:
                where: sa.ColumnElement[bool] | None = by_ids(request.form.getlist("rowid"))
            except ValueError:
                abort(400, description=gettext("Unknown action or selection."))
            search, filters, tab = None, [], StateTab.ALL
        else:
            search, filters = self.runnable_selection_from(request.form)
            tab = self.state_tab(request.form, StateTab.ALL)
            where = self.selection_condition(search, filters, tab)
        settings = self.sync.settings
        condition = applicable(action, where, object_types=settings.objects, up_to_id=form.up_to_id.data)
        return_url = self._return_url(form.url.data)
        if form.confirmed.data != "1":
            with self.page_connection() as conn:
                count, highest = preview(conn, condition)
                examples = sample(conn, condition) if count else []
            return self.render(
                self.confirm_template,
                action=action,
                action_label=ACTION_LABELS[action],
                scope=scope,
                count=count,
                up_to_id=highest if scope == SCOPE_ALL else None,
                rowids=request.form.getlist("rowid") if scope == SCOPE_SELECTED else [],
                selection_args=self._selection_args(search, filters, tab),
                form=action_form_class()(formdata=None),
                return_url=return_url,
                question=self.confirmation_question(action, count),
                examples=examples,
                object_label=lambda object_type: self.sync.settings.objects.get(object_type, object_type),
                preview=message_preview,
            )
        with self.sync.engine.begin() as conn, time_limit(conn, settings.export_time_limit):
            outcome = run_action(conn, action, condition, recorder=get_state().recorder, now=self.sync.now())
        flash(self.outcome_message(action, outcome), "success" if outcome.errors else "info")
        return redirect(return_url)

    def _selection_args(self, search: str | None, filters: t.Sequence[Filter], tab: StateTab) -> dict[str, str]:
        args = self._get_filters(filters)
        if search:
            args["search"] = search
        args[STATE_ARG] = tab.value
        return args

    @staticmethod
    def confirmation_question(action: ErrorAction, count: int) -> str:
        """The question of the confirmation page, with the number of errors it changes."""
        number = i18n.format_number(count)
        if action is ErrorAction.RETRY:
            return ngettext(
                "Retry %(number)s sync error? Its record is queued again.",
                "Retry %(number)s sync errors? Their records are queued again.",
                count,
                number=number,
            )
        if action is ErrorAction.IGNORE:
            return ngettext("Ignore %(number)s sync error?", "Ignore %(number)s sync errors?", count, number=number)
        return ngettext("Resolve %(number)s sync error?", "Resolve %(number)s sync errors?", count, number=number)

    @staticmethod
    def outcome_message(action: ErrorAction, outcome: ActionOutcome) -> str:
        """The flash message after an action."""
        number = i18n.format_number(outcome.errors)
        if action is ErrorAction.RETRY:
            retried = ngettext(
                "%(number)s sync error retried.", "%(number)s sync errors retried.", outcome.errors, number=number
            )
            queued = ngettext(
                "%(number)s record queued again.",
                "%(number)s records queued again.",
                outcome.records,
                number=i18n.format_number(outcome.records),
            )
            return f"{retried} {queued}"
        if action is ErrorAction.IGNORE:
            return ngettext(
                "%(number)s sync error ignored.", "%(number)s sync errors ignored.", outcome.errors, number=number
            )
        return ngettext(
            "%(number)s sync error resolved.", "%(number)s sync errors resolved.", outcome.errors, number=number
        )
