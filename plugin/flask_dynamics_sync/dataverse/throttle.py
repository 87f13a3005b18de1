"""Pacing below Dataverse's service protection limits, and the pause a 429 imposes.

The limits (``api-limits.md``) are per user: a number of requests in a sliding
window (6,000 in 300 s) and a number of concurrent requests (52). A
:class:`Throttle` gives each request a *slot* only when sending it keeps both
below the configured limits, and a 429's ``Retry-After`` closes every slot of
the client until it has passed, not just the one request's.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator

#: The window is stretched by this share, for the server's clock granularity. (That the server
#: counts a request when it arrives is handled by counting each slot from its answer, see slot().)
WINDOW_MARGIN = 0.02


class Throttle:
    """Admits requests below ``limit`` per ``window`` seconds and ``max_concurrent`` at once.

    Thread-safe; one per client (per set of credentials) in a process.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        max_concurrent: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window * (1 + WINDOW_MARGIN)
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._sent: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._condition = threading.Condition()

    @property
    def paused_until(self) -> float:
        """The clock value before which no request is sent (0: not paused)."""
        return self._paused_until

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (a 429's ``Retry-After``); never shortens a pause."""
        with self._condition:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._condition.notify_all()

    def wait_needed(self) -> float:
        """Seconds until the next request may go (0: now; infinite while every concurrent slot is taken)."""
        with self._condition:
            return self._wait_needed(self._clock())

    def _wait_needed(self, now: float) -> float:
        """Seconds until a request may go (0: now)."""
        if self._in_flight >= self.max_concurrent:
            return float("inf")  # woken by a release
        waits = [self._paused_until - now]
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        if len(self._sent) >= self.limit:
            waits.append(self._sent[0] + self.window - now)
        return max(0.0, *waits)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one request's slot: wait for it, send inside the block."""
        with self._condition:
            while True:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 0:
                    break
                self._condition.wait(None if wait == float("inf") else wait)
            self._in_flight += 1
            self._sent.append(now)
        try:
            yield
        finally:
            with self._condition:
                self._in_flight -= 1
                # The server counted the request when it arrived, somewhere between the send and the
                # answer: counting the slot from the answer keeps two arrivals a window apart however
                # long the request took on its way (a loaded machine, a slow network).
                with contextlib.suppress(ValueError):  # already out of the window
                    self._sent.remove(now)
                self._sent.append(self._clock())
                self._condition.notify_all()
