"""Collection reads of the local Dataverse: plain queries, paging and change tracking.

* Paging (powerapps-docs webapi/query-data-web-api.md): ``Prefer: odata.maxpagesize=N`` limits a
  page; the answer carries ``@odata.nextLink`` (with a ``$skiptoken``) until the last page.
* Plain reads understand ``$select``, ``$top`` and a ``$filter`` of ``column eq value`` terms
  joined by ``and`` — enough to look rows up; other filters are refused with 400.
* Change tracking (use-change-tracking-synchronize-data-external-systems.md): ``Prefer:
  odata.track-changes`` on a table with change tracking returns every row and, on the last
  page, an ``@odata.deltaLink`` with a ``$deltatoken``; reading that link returns the rows
  changed since (by version) followed by ``$deletedEntity`` entries for deleted rows, and a
  new delta link. ``$filter``, ``$orderby``, ``$expand`` and ``$top`` are refused with the
  documented message. A token older than the retention period (7 days by default) answers
  an error: the client must read everything again.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import typing as t
import urllib.parse
from collections.abc import Callable

from . import errors
from .odata import parse_key
from .odata import representation
from .odata import selected_columns
from .store import Row
from .store import Store
from .tables import Table

if t.TYPE_CHECKING:
    from .webapi import Operation

DEFAULT_PAGE_SIZE = 5000
EXPIRED_VERSION_STAMP = "0x80044352"  # ExpiredVersionStamp: "perform a full sync"
TRACKING_REFUSED_OPTIONS = ("$filter", "$orderby", "$expand", "$top")


class CollectionReader:
    """Answers ``GET {entity_set}`` and remembers when each delta token was issued."""

    def __init__(self, store: Store, clock: Callable[[], float], retention_seconds: float) -> None:
        self._store = store
        self._clock = clock
        self.retention_seconds = retention_seconds
        self._issued: dict[int, float] = {}
        self._lock = threading.Lock()

    def read(self, table: Table, op: Operation, service_root: str) -> tuple[dict[str, t.Any], list[tuple[str, str]]]:
        """The body and extra headers of a collection read (the store lock is held by the caller)."""
        query = op.query
        preferences = op.preferences
        offset, snapshot, tracked_pages = _skiptoken(query.get("$skiptoken"), self._store.version)
        tracking = "$deltatoken" in query or "odata.track-changes" in preferences or tracked_pages
        page_size = _page_size(preferences)
        applied = [f"odata.maxpagesize={page_size}"] if "odata.maxpagesize" in preferences else []
        select = query.get("$select")
        selected = selected_columns(table, select)
        columns = f"({select})" if select else ""
        if tracking:
            if not table.change_tracking:
                raise errors.bad_request(f"Change tracking is not enabled for the entity '{table.logical_name}'.")
            for option in TRACKING_REFUSED_OPTIONS:
                if option in query:
                    raise errors.bad_request(
                        f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.'
                    )
            if "$deltatoken" in query:
                since = self._delta_version(query["$deltatoken"])
                changed, deleted = self._store.changes_since(table.entity_set, since)
                entries = [row for row in changed if row["versionnumber"] <= snapshot] + [
                    {
                        "@odata.context": f"{service_root}$metadata#{table.entity_set}/$deletedEntity",
                        "id": row_id,
                        "reason": "deleted",
                    }
                    for row_id in deleted
                ]
                context = f"{service_root}$metadata#{table.entity_set}{columns}/$delta"
            else:
                entries = sorted(
                    (row for row in self._store.live_rows(table.entity_set) if row["versionnumber"] <= snapshot),
                    key=lambda row: row["versionnumber"],
                )
                context = f"{service_root}$metadata#{table.entity_set}{columns}"
                applied.insert(0, "odata.track-changes")
        else:
            matches = _filter(query.get("$filter"))
            entries = [row for row in self._store.live_rows(table.entity_set) if matches(row)]
            if "$top" in query:
                if not query["$top"].isdigit():
                    raise errors.bad_request(f"Invalid value '{query['$top']}' for $top: a whole number is expected.")
                entries = entries[: int(query["$top"])]
            context = f"{service_root}$metadata#{table.entity_set}{columns}"
        page = entries[offset : offset + page_size]
        body: dict[str, t.Any] = {
            "@odata.context": context,
            "value": [entry if "reason" in entry else representation(table, entry, selected) for entry in page],
        }
        base = {name: value for name, value in query.items() if name not in ("$skiptoken", "$deltatoken")}
        if offset + page_size < len(entries):
            next_query = {**query, "$skiptoken": f"{offset + page_size}:{snapshot}{':tracked' if tracking else ''}"}
            body["@odata.nextLink"] = _link(service_root, table, next_query)
        elif tracking:
            body["@odata.deltaLink"] = _link(service_root, table, {**base, "$deltatoken": self._issue(snapshot)})
        headers = [("Preference-Applied", ",".join(applied))] if applied else []
        return body, headers

    def _issue(self, version: int) -> str:
        with self._lock:
            self._issued.setdefault(version, self._clock())
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%m/%d/%Y %H:%M:%S")
        return f"{version}!{stamp}"

    def _delta_version(self, token: str) -> int:
        version_text = token.partition("!")[0]
        with self._lock:
            issued = self._issued.get(int(version_text)) if version_text.isdigit() else None
        if issued is None or self._clock() - issued > self.retention_seconds:
            raise errors.DataverseError(
                400,
                EXPIRED_VERSION_STAMP,
                "Version stamp associated with the client has expired. Please perform a full sync.",
            )
        return int(version_text)


def _page_size(preferences: dict[str, str]) -> int:
    value = preferences.get("odata.maxpagesize", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_PAGE_SIZE


def _skiptoken(token: str | None, current_version: int) -> tuple[int, int, bool]:
    """``offset:snapshot[:tracked]`` — later pages read the rows as they were at the first page's
    version, and a change-tracking read stays one without the ``Prefer`` header repeated."""
    if not token:
        return 0, current_version, False
    offset, _, rest = token.partition(":")
    snapshot, _, mode = rest.partition(":")
    if not (offset.isdigit() and snapshot.isdigit() and mode in ("", "tracked")):
        raise errors.bad_request(f"Invalid $skiptoken '{token}'.")
    return int(offset), int(snapshot), mode == "tracked"


def _link(service_root: str, table: Table, query: dict[str, str]) -> str:
    return f"{service_root}{table.entity_set}?{urllib.parse.urlencode(query, safe='$,:')}"


_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s+eq\s+(.+?)\s*$")


def _filter(expression: str | None) -> Callable[[Row], bool]:
    """``a eq 'x' and b eq 2`` as a predicate; anything richer is refused."""
    if not expression:
        return lambda row: True
    terms = {}
    for term in re.split(r"\s+and\s+", expression):
        match = _TERM.match(term)
        if not match:
            raise errors.bad_request(
                f"The local Dataverse supports only 'column eq value' terms joined by 'and' in $filter: {expression!r}."
            )
        name, literal = match.groups()
        parsed = parse_key(f"{name}={literal}")
        assert isinstance(parsed, dict)
        terms.update(parsed)
    return lambda row: all(row.get(name) == value for name, value in terms.items())
