"""How many exports may run at a time: per viewer and in total, in one process.

An export reads at database speed into a temporary file (:func:`.export.spool`),
then the file is downloaded. Two bounds apply:

* ``DYNAMICS_SYNC_EXPORTS_TOTAL``: exports *reading the database* at a time, all
  viewers together. This protects the database; a download in progress does not count.
* ``DYNAMICS_SYNC_EXPORTS_PER_USER``: exports of one viewer *in flight*, from the
  first query until the download ended or was aborted. A viewer who opens many
  downloads and never reads them gets one file written, not one per request.

Beyond either, the answer comes at once (429 or 503 with ``Retry-After``), never a queue.
"""

from __future__ import annotations

import collections
import threading
import typing as t
from collections.abc import Hashable

from .errors import DynamicsSyncError


class ExportsBusy(DynamicsSyncError):
    """No export may start: ``mine`` when the viewer's own exports are in flight, else every reading slot is taken."""

    def __init__(self, *, mine: bool) -> None:
        super().__init__("the viewer's exports are in flight" if mine else "every export slot is taken")
        self.mine = mine


class ExportSlots:
    """Counts the exports in flight per viewer and those reading the database (thread safe)."""

    def __init__(self, *, per_viewer: int, total: int) -> None:
        self.per_viewer = per_viewer
        self.total = total
        self._lock = threading.Lock()
        self._in_flight: collections.Counter[Hashable] = collections.Counter()
        self._reading = 0

    def in_flight(self, viewer: Hashable) -> int:
        """The viewer's exports from their first query until their download ended."""
        with self._lock:
            return self._in_flight[viewer]

    def reading(self) -> int:
        """Exports reading the database now, all viewers together."""
        with self._lock:
            return self._reading

    def claim(self, viewer: Hashable) -> ExportClaim:
        """Start an export of ``viewer``: it reads until :meth:`ExportClaim.done_reading`, is in flight until :meth:`ExportClaim.release`.

        :raises ExportsBusy: the viewer's exports, or all reading slots, are taken.
        """
        with self._lock:
            if self._in_flight[viewer] >= self.per_viewer:
                raise ExportsBusy(mine=True)
            if self._reading >= self.total:
                raise ExportsBusy(mine=False)
            self._in_flight[viewer] += 1
            self._reading += 1
        return ExportClaim(self, viewer)

    def _done_reading(self) -> None:
        with self._lock:
            self._reading -= 1

    def _release(self, viewer: Hashable) -> None:
        with self._lock:
            self._in_flight[viewer] -= 1
            if not self._in_flight[viewer]:
                del self._in_flight[viewer]


class ExportClaim:
    """One export's hold on its slots; each end is given back once, whatever the order of calls."""

    def __init__(self, slots: ExportSlots, viewer: Hashable) -> None:
        self._slots = slots
        self._viewer = viewer
        self._reading = True
        self._in_flight = True

    def done_reading(self) -> None:
        """The database is no longer read: another export may read."""
        if self._reading:
            self._reading = False
            self._slots._done_reading()

    def release(self) -> None:
        """The export is over (downloaded, aborted or failed): the viewer may start another."""
        self.done_reading()
        if self._in_flight:
            self._in_flight = False
            self._slots._release(self._viewer)


def default_viewer_id() -> t.Hashable:
    """Who is exporting, when the host gave no ``viewer_id``: Flask-Login's user, else the client's address."""
    from flask import current_app
    from flask import request

    if getattr(current_app, "login_manager", None) is not None:
        from flask_login import current_user

        user_id = current_user.get_id()
        if user_id is not None:
            return ("user", user_id)
    return ("address", request.remote_addr)
