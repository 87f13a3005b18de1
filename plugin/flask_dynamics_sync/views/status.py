"""The *Sync Status* view: backlog, last hour, metrics, history; its JSON and Prometheus twins.

URLs, relative to the view (``/admin/dynamics/status/`` by default):

* ``?view=backlog`` (default) or ``?view=last_hour``: the page; the choice
  is in the URL so it can be bookmarked and refreshed.
* ``details/<object_type>``: one object's pending inserts and updates, its
  oldest insert and update records, metrics and history (double-click a row,
  or follow the object's link).
* ``json``: the page's figures for monitoring (documented in the README).
* ``metrics``: Prometheus text exposition.
* ``pause/`` (POST, CSRF, operators only): pause or resume an object in one
  direction; the first POST shows a confirmation page, the confirmed one acts.

All four read through :mod:`flask_dynamics_sync.status_data` and are behind
the same access check as the page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
from collections.abc import Sequence

from flask import Response
from flask import abort
from flask import flash
from flask import jsonify
from flask import redirect
from flask import request
from flask.typing import ResponseReturnValue
from flask_admin import BaseView
from flask_admin import expose
from markupsafe import Markup
from wtforms import HiddenField
from wtforms import validators

from .. import i18n
from .. import prometheus
from .. import status_data
from .. import status_json
from ..chart import BarChart
from ..chart import ChartSeries
from ..chart import render_bar_chart
from ..chart import render_legend
from ..clock import HOUR
from ..dataverse.stats import read_figures as read_worker_figures
from ..error_overview import open_error_count
from ..i18n import gettext
from ..i18n import lazy_gettext
from ..pauses import pause
from ..pauses import paused
from ..pauses import resume
from ..recorder import storable
from ..types import Direction
from .base import PluginViewMixin
from .base import csrf_form_base
from .base import local_url
from .base import operator_name
from .base import posted_form
from .errors import SyncErrorsView

if t.TYPE_CHECKING:
    from ..extension import DynamicsSync

BACKLOG = "backlog"
LAST_HOUR = "last_hour"

#: Bar colours per direction (colour-blind safe blue and orange).
DIRECTION_COLORS = {Direction.TO_DYNAMICS: "#1f6fb2", Direction.FROM_DYNAMICS: "#e07b00"}
DAY = 24
WEEK = status_data.HISTORY_HOURS
RANGE_TITLES = {DAY: lazy_gettext("Last 24 hours"), WEEK: lazy_gettext("Last 7 days")}


def direction_label(direction: Direction) -> str:
    """A direction as the viewer reads it."""
    return gettext("To Dynamics") if direction is Direction.TO_DYNAMICS else gettext("From Dynamics")


@dataclasses.dataclass(frozen=True)
class ObjectCharts:
    """The history charts of one object (``object_type`` ``None``: all objects)."""

    object_type: str | None
    label: str
    charts: tuple[tuple[str, Markup], ...]
    """(range title, SVG) per range."""


class ChartMaker:
    """Draws hourly history charts, formatting each hour's labels only once per page."""

    def __init__(self, history: status_data.History) -> None:
        self.history = history
        # A page draws a few hundred bars: look the viewer's locale and zone up once.
        self.formats = i18n.viewer_formats()
        self.buckets = [f"{self.formats.datetime(h, 'EEE')} {self.formats.hour_range(h)}" for h in history.hours]
        self._axis_labels: dict[int, list[str | None]] = {}

    def axis_label(self, hour: dt.datetime, hours: int) -> str | None:
        """Every sixth hour on a day chart, each local midnight (the weekday) on a week chart."""
        local = self.formats.to_local(hour)
        if hours <= DAY:
            return self.formats.time(hour) if local.hour % 6 == 0 else None
        return self.formats.datetime(hour, "EEE") if local.hour == 0 else None

    def axis_labels(self, hours: int) -> list[str | None]:
        """The axis labels of a chart of the last ``hours`` hours."""
        if hours not in self._axis_labels:
            self._axis_labels[hours] = [self.axis_label(h, hours) for h in self.history.hours[-hours:]]
        return self._axis_labels[hours]

    def chart(self, object_type: str | None, label: str, hours: int) -> Markup:
        """The last ``hours`` hours of ``object_type`` (``None``: all), stacked by direction."""
        first = len(self.history.hours) - hours
        window = self.history.window(self.history.hours[first], self.history.hours[-1] + HOUR)
        title = str(RANGE_TITLES[hours])
        chart = BarChart(
            title=f"{label} – {title}",
            buckets=self.buckets[first:],
            axis_labels=self.axis_labels(hours),
            series=[
                ChartSeries(
                    key=d.value,
                    label=direction_label(d),
                    values=window.per_direction(d, object_type),
                    color=DIRECTION_COLORS[d],
                )
                for d in Direction
            ],
            partial_last=window.partial_last,
            partial_note=gettext("(so far)"),
            empty_text=gettext("No records synced"),
        )
        return render_bar_chart(chart, format_number=self.formats.number)

    def charts(self, objects: Sequence[tuple[str | None, str]], ranges: Sequence[int]) -> list[ObjectCharts]:
        """The charts of each (object type, label) over each range (in hours)."""
        return [
            ObjectCharts(
                object_type,
                label,
                tuple((str(RANGE_TITLES[hours]), self.chart(object_type, label, hours)) for hours in ranges),
            )
            for object_type, label in objects
        ]


def legend() -> Markup:
    """The directions legend shared by every chart."""
    return render_legend([ChartSeries(d.value, direction_label(d), (), DIRECTION_COLORS[d]) for d in Direction])


PAUSE = "pause"
RESUME = "resume"


def pause_form_class() -> type[t.Any]:
    """The CSRF-protected form of a pause or resume."""

    class PauseForm(csrf_form_base()):  # type: ignore[misc]
        action = HiddenField(validators=[validators.AnyOf([PAUSE, RESUME])])
        object_type = HiddenField(validators=[validators.InputRequired()])
        direction = HiddenField(validators=[validators.AnyOf([d.value for d in Direction])])
        url = HiddenField()
        confirmed = HiddenField()

    return PauseForm


class SyncStatusView(PluginViewMixin, BaseView):
    """Backlog of inserts and updates per synced object, throughput and trends."""

    def object_url(self, object_type: str) -> str:
        """The details page of one object, from any view."""
        return self.get_url(f"{self.endpoint}.details", object_type=object_type)

    def __init__(self, sync: DynamicsSync, **kwargs: t.Any) -> None:
        self.sync = sync
        #: The *Sync Errors* view of the same console (set by ``make_views``).
        self.errors_view: SyncErrorsView | None = None
        super().__init__(**kwargs)

    def selected_view(self) -> str:
        """``backlog`` or ``last_hour`` from ``?view=``; anything else shows the backlog."""
        return LAST_HOUR if request.args.get("view") == LAST_HOUR else BACKLOG

    def page_args(self) -> dict[str, t.Any]:
        """Template arguments every status page gets."""
        view = self.selected_view()
        errors_view = self.errors_view
        return {
            **self.plugin_template_args(),
            "object_errors_url": errors_view.object_errors_url if errors_view is not None else None,
            "errors_url": errors_view.list_url() if errors_view is not None else None,
            "view": view,
            "view_query": {"view": view} if view != BACKLOG else {},
            "views": ((BACKLOG, gettext("Backlog")), (LAST_HOUR, gettext("Last Hour"))),
            "direction_label": direction_label,
            "chart_legend": legend(),
            "refresh_seconds": self.sync.settings.status_refresh_seconds,
            "plugin_css": "status.css",
            "plugin_js": "status.js",
            "ds_pauses": self.pauses(),
        }

    def pauses(self) -> dict[str, list[t.Any]]:
        """The pauses in force, by object type (a handful of rows)."""
        with self.sync.engine.connect() as conn:
            return paused(conn, self.sync.settings.objects)

    @expose("/")
    def index(self) -> str:
        settings = self.sync.settings
        report: status_data.StatusReport | status_data.ThroughputReport
        headline = None
        errors_view = self.errors_view
        with self.page_connection() as conn:
            if self.selected_view() == LAST_HOUR:
                # Throughput only, like the Inserts and Updates columns (N/A there): no count of the queue.
                report = status_data.throughput_report(conn, settings, self.sync.now())
                rows: Sequence[t.Any] = report.last_hour.rows
            else:
                report = status_data.status_report(conn, settings, self.sync.now())
                rows = report.backlog.rows
                open_errors = open_error_count(conn, settings.count_cap)
                headline = status_data.headline(report, open_errors)
                if errors_view is not None:
                    errors_view.open_errors.put(open_errors)  # the menu badge of this page shows the same
        objects = [(row.object_type, row.label) for row in rows]
        maker = ChartMaker(report.history)
        return self.render(
            "dynamics_sync/status.html",
            report=report,
            headline=headline,
            ds_count_label=errors_view.count_label if errors_view is not None else i18n.format_number,
            overview_charts=maker.charts([(None, gettext("All objects"))], (DAY, WEEK)),
            object_charts=maker.charts(objects, (DAY,)),
            **self.page_args(),
        )

    def unknown_object(self, object_type: str) -> ResponseReturnValue:
        """The 404 page of an object that is neither configured nor waiting in the queue."""
        return self.not_found(
            gettext("No object %(name)s is synced with Microsoft Dynamics.", name=object_type),
            self.get_url(".index"),
            gettext("Back to Sync Status"),
        )

    @expose("/details/<object_type>")
    def details(self, object_type: str) -> ResponseReturnValue:
        settings = self.sync.settings
        now = self.sync.now()
        if object_type not in settings.objects and not storable(object_type):
            return self.unknown_object(object_type)  # nothing stored can match it (a NUL byte...)
        with self.page_connection() as conn:
            details = status_data.object_details(conn, settings, now, object_type)
            if object_type not in settings.objects and details.backlog.total == 0:
                return self.unknown_object(object_type)
            history = status_data.throughput_history(conn, settings, now)
            metrics = status_data.backlog_metrics(conn, settings, now, history=history)
        can_act = self.can_act()
        return self.render(
            "dynamics_sync/status_details.html",
            can_act=can_act,
            pause_form=pause_form_class()(formdata=None) if can_act else None,
            directions=list(Direction),
            details=details,
            metrics=metrics,
            object_metrics=metrics.row(object_type),
            charts=ChartMaker(history).charts([(object_type, details.label)], (DAY, WEEK))[0],
            **self.page_args(),
        )

    @expose("/pause/", methods=("POST",))
    def pause_view(self) -> ResponseReturnValue:
        """Pause or resume an object in one direction: a confirmation page first, then the change."""
        if not self.can_act():
            abort(403)
        form = posted_form(pause_form_class(), gettext("Unknown object or direction."))
        object_type, action = form.object_type.data, form.action.data
        if object_type not in self.sync.settings.objects:
            abort(400, description=gettext("Unknown object or direction."))
        direction = Direction(form.direction.data)
        names = {
            "object": self.sync.settings.objects[object_type],
            "direction": direction_label(direction),
        }
        return_url = local_url(form.url.data) or self.object_url(object_type)
        if form.confirmed.data != "1":
            if action == PAUSE:
                question = gettext(
                    "Pause %(object)s, %(direction)s? Nothing is sent or read for it until it is resumed;"
                    " its backlog keeps growing.", **names
                )
            else:
                question = gettext("Resume %(object)s, %(direction)s? Its backlog is synced, oldest first.", **names)
            return self.render(
                "dynamics_sync/status_pause_confirm.html",
                form=pause_form_class()(formdata=None),
                action=action,
                action_label=gettext("Pause") if action == PAUSE else gettext("Resume"),
                object_type=object_type,
                direction=direction,
                question=question,
                return_url=return_url,
                **self.plugin_template_args(),
            )
        with self.sync.engine.begin() as conn:
            if action == PAUSE:
                changed = pause(conn, object_type, direction, operator_name(), self.sync.now())
                message = (
                    gettext("%(object)s, %(direction)s: paused.", **names)
                    if changed
                    else gettext("%(object)s, %(direction)s: was already paused.", **names)
                )
            else:
                changed = resume(conn, object_type, direction)
                message = (
                    gettext("%(object)s, %(direction)s: resumed.", **names)
                    if changed
                    else gettext("%(object)s, %(direction)s: was not paused.", **names)
                )
        flash(message, "success" if changed else "info")
        return redirect(return_url)

    @expose("/json")
    def json(self) -> Response:
        with self.page_connection() as conn:
            document = status_json.status_document(conn, self.sync.settings, self.sync.now())
        response = jsonify(document)
        response.cache_control.no_store = True
        return response

    @expose("/metrics")
    def metrics(self) -> Response:
        with self.page_connection() as conn:
            now = self.sync.now()
            families = prometheus.status_families(conn, self.sync.settings, now)
            families += prometheus.worker_families(read_worker_figures(conn, now))
        response = Response(prometheus.render(families), content_type=prometheus.CONTENT_TYPE)
        response.cache_control.no_store = True
        return response
