"""The *Sync Errors* filters: equality with the plugin's wording, and times in the viewer's zone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from flask_admin.contrib.sqla.filters import FilterEqual

from .. import i18n
from ..i18n import lazy_gettext


def parse_viewer_time(value: str) -> dt.datetime:
    """A time typed by the viewer (ISO 8601, in their time zone unless it has an offset) as naive UTC.

    :raises ValueError: not a time, or one that is before year 1 or after year 9999 in UTC.
    """
    parsed = dt.datetime.fromisoformat(value.strip())
    try:
        if parsed.tzinfo is None:
            zone = i18n.get_timezone()
            # Flask-Babel's zones are pytz zones, whose replace() gives the zone's first offset (LMT).
            localize = getattr(zone, "localize", None)
            parsed = localize(parsed) if localize is not None else parsed.replace(tzinfo=zone)
        return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except OverflowError:  # Flask-Admin's filter validation only expects ValueError
        raise ValueError(f"time out of range in UTC: {value!r}") from None


class TimeFilter(BaseSQLAFilter):
    """Errors that happened from (inclusive) or until (exclusive) a time in the viewer's zone."""

    def __init__(self, column: t.Any, name: t.Any, *, until: bool) -> None:
        super().__init__(column, name, data_type="datetimepicker")
        self.until = until

    def clean(self, value: str) -> dt.datetime:
        return parse_viewer_time(value)

    def apply(self, query: t.Any, value: dt.datetime, alias: t.Any = None) -> t.Any:
        column = self.get_column(alias)
        return query.filter(column < value if self.until else column >= value)

    def operation(self) -> t.Any:
        return lazy_gettext("until") if self.until else lazy_gettext("from")


class EqualFilter(FilterEqual):
    """Equality with the plugin's own wording."""

    def clean(self, value: str) -> str:
        # As stored by the recorder, which replaces NUL (PostgreSQL refuses it in text).
        return value.replace("\x00", "\ufffd")

    def operation(self) -> t.Any:
        return lazy_gettext("is")


@dataclasses.dataclass(frozen=True)
class FilterField:
    """One input of the filter bar: URL argument, label, widget, choices and current value."""

    arg: str
    label: str
    kind: str  # "select", "text" or "datetime"
    options: list[tuple[str, str]]
    value: str


def choices(labels: dict[str, t.Any]) -> list[tuple[str, t.Any]]:
    return list(labels.items())
