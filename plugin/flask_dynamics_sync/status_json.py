"""The status figures as JSON: the document of ``<status view>/json`` (see docs/sync-status.md).

The figures themselves are computed in :mod:`.status_data`; the Prometheus
text of the same figures is in :mod:`.prometheus`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import typing as t
from collections.abc import Mapping

from sqlalchemy.engine import Connection

from .clock import isoformat_utc
from .config import Settings
from .dataverse.stats import read_figures
from .status_data import BacklogRow
from .status_data import History
from .status_data import StatusReport
from .status_data import status_report


def _iso_or_none(moment: dt.datetime | None) -> str | None:
    return None if moment is None else isoformat_utc(moment)


def to_jsonable(value: t.Any) -> t.Any:
    """Dataclasses, enums and datetimes of this module as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, BacklogRow):
            data["total"] = value.total
        return data
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return _iso_or_none(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def history_jsonable(history: History) -> dict[str, t.Any]:
    """The history as ``{"hours": [...], "series": [{"object_type", "direction", "synced": [...]}]}``."""
    return {
        "hours": [_iso_or_none(hour) for hour in history.hours],
        "partial_last": history.partial_last,
        "series": [
            {"object_type": name, "direction": direction.value, "synced": list(values)}
            for (name, direction), values in history.series.items()
        ],
    }


def report_jsonable(report: StatusReport) -> dict[str, t.Any]:
    """The JSON document of the status view (documented in the README)."""
    last = report.last_hour
    return {
        "generated_at": _iso_or_none(report.generated_at),
        "backlog": {"rows": to_jsonable(report.backlog.rows), "total": to_jsonable(report.backlog.total)},
        "last_hour": {
            "start": _iso_or_none(last.start),
            "end": _iso_or_none(last.end),
            "rows": to_jsonable(last.rows),
            "total": to_jsonable(last.total),
        },
        "metrics": {
            "window_start": _iso_or_none(report.metrics.window_start),
            "window_end": _iso_or_none(report.metrics.window_end),
            "compared_with": _iso_or_none(report.metrics.compared_with),
            "computed_at": _iso_or_none(report.metrics.rollup.last_finished_at),
            "next_at": _iso_or_none(report.metrics.rollup.next_run_at),
            "rows": to_jsonable(report.metrics.rows),
            "total": to_jsonable(report.metrics.total),
        },
        "history": history_jsonable(report.history),
    }


def status_document(conn: Connection, settings: Settings, now: dt.datetime) -> dict[str, t.Any]:
    """The whole JSON document of the status view: the report and the sync workers' figures."""
    report = status_report(conn, settings, now)
    return {**report_jsonable(report), "worker": to_jsonable(read_figures(conn, now))}
