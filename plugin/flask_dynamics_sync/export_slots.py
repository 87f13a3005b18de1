"""How many exports may read the database at a time: per viewer and in total, in one process.

An export reads at database speed into a temporary file (:func:`.export.spool`);
while it does, it holds a slot. A viewer who already holds
``DYNAMICS_SYNC_EXPORTS_PER_USER`` slots, or a process whose
``DYNAMICS_SYNC_EXPORTS_TOTAL`` slots are all taken, gets a clear answer at
once (429 or 503 with ``Retry-After``) instead of a queue: the database keeps
serving the pages of everyone else.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import typing as t
from collections.abc import Hashable
from collections.abc import Iterator

from .errors import DynamicsSyncError


class ExportsBusy(DynamicsSyncError):
    """No export slot is free: ``mine`` when the viewer's own exports took them, else the process's."""

    def __init__(self, *, mine: bool) -> None:
        super().__init__("the viewer's exports are all running" if mine else "every export slot is taken")
        self.mine = mine


class ExportSlots:
    """Counts the exports reading the database, per viewer and in total (thread safe)."""

    def __init__(self, *, per_viewer: int, total: int) -> None:
        self.per_viewer = per_viewer
        self.total = total
        self._lock = threading.Lock()
        self._running: collections.Counter[Hashable] = collections.Counter()

    def running(self, viewer: Hashable | None = None) -> int:
        """Exports holding a slot: the viewer's, or all of them."""
        with self._lock:
            return self._running[viewer] if viewer is not None else sum(self._running.values())

    @contextlib.contextmanager
    def taken(self, viewer: Hashable) -> Iterator[None]:
        """Hold one slot for ``viewer`` during the block.

        :raises ExportsBusy: the viewer's slots, or all slots, are taken.
        """
        with self._lock:
            if self._running[viewer] >= self.per_viewer:
                raise ExportsBusy(mine=True)
            if sum(self._running.values()) >= self.total:
                raise ExportsBusy(mine=False)
            self._running[viewer] += 1
        try:
            yield
        finally:
            with self._lock:
                self._running[viewer] -= 1
                if not self._running[viewer]:
                    del self._running[viewer]


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
