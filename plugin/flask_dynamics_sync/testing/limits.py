"""Service protection limits of the local Dataverse.

Follows powerapps-docs, developer/data-platform/api-limits.md:

* per user (here: per OAuth client), evaluated in a sliding window (300 s by default):
  the number of requests (6,000) and their combined execution time (1,200 s);
* the number of concurrent requests (52), which "will immediately return an error";
* the answer is ``429 Too Many Requests`` with ``Retry-After`` in whole seconds and one of
  three codes and messages;
* "If the application continues to send such demanding requests, the duration will be
  extended": each request that arrives before its ``Retry-After`` has passed pushes the
  end of the pause back by ``penalty_seconds``;
* ``x-ms-ratelimit-burst-remaining-xrm-requests`` reports the requests left in the window.

A ``$batch`` counts as one request, as on the service. Limits can be changed while the
server runs (:meth:`ServiceProtection.set_limits`).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
import typing as t
from collections.abc import Callable

from . import errors


@dataclasses.dataclass
class Limits:
    """The configurable limits (defaults: the documented per-web-server values)."""

    request_limit: int = 6000
    window_seconds: float = 300
    max_concurrent: int = 52
    execution_time_limit: float = 1200
    penalty_seconds: float = 1


@dataclasses.dataclass
class _ClientState:
    arrivals: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    executions: collections.deque[tuple[float, float]] = dataclasses.field(default_factory=collections.deque)
    in_flight: int = 0
    blocked_until: float = 0.0
    blocked_code: str = ""
    blocked_message: str = ""


class ServiceProtection:
    """Admits or throttles each Web API request of a client."""

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, _ClientState] = collections.defaultdict(_ClientState)

    @property
    def limits(self) -> Limits:
        with self._lock:
            return dataclasses.replace(self._limits)

    def set_limits(self, **changes: t.Any) -> None:
        """Change limits at run time, e.g. ``set_limits(request_limit=100, window_seconds=10)``."""
        with self._lock:
            self._limits = dataclasses.replace(self._limits, **changes)

    def admit(self, client: str) -> float:
        """Count a request in; raise a 429 :class:`~.errors.DataverseError` if a limit is exceeded.

        Returns the start time to hand back to :meth:`release` when the request ends.
        """
        with self._lock:
            limits = self._limits
            state = self._clients[client]
            now = self._clock()
            self._forget_before(state, now - limits.window_seconds)
            if now < state.blocked_until:
                state.blocked_until += limits.penalty_seconds
                raise self._too_many(state.blocked_code, state.blocked_message, state.blocked_until - now)
            if state.in_flight >= limits.max_concurrent:
                raise self._too_many(
                    errors.CONCURRENT_REQUESTS,
                    f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}.",
                    1,
                )
            if len(state.arrivals) >= limits.request_limit:
                wait = state.arrivals[0] + limits.window_seconds - now
                self._block(state, now, wait, errors.TOO_MANY_REQUESTS, requests_exceeded(limits))
            if sum(duration for _, duration in state.executions) > limits.execution_time_limit:
                wait = state.executions[0][0] + limits.window_seconds - now
                self._block(
                    state,
                    now,
                    wait,
                    errors.EXECUTION_TIME,
                    f"Combined execution time of incoming requests exceeded limit of "
                    f"{round(limits.execution_time_limit * 1000):,} milliseconds over time window of "
                    f"{_seconds(limits.window_seconds)} seconds. Decrease number of concurrent requests or "
                    f"reduce the duration of requests and try again later.",
                )
            state.arrivals.append(now)
            state.in_flight += 1
            return time.perf_counter()

    def release(self, client: str, started: float) -> None:
        """A request admitted by :meth:`admit` has finished; record its execution time."""
        duration = time.perf_counter() - started
        with self._lock:
            state = self._clients[client]
            state.in_flight -= 1
            state.executions.append((self._clock(), duration))

    def remaining(self, client: str) -> int:
        """Requests this client may still send in the current window."""
        with self._lock:
            state = self._clients[client]
            self._forget_before(state, self._clock() - self._limits.window_seconds)
            return max(0, self._limits.request_limit - len(state.arrivals))

    def _block(self, state: _ClientState, now: float, wait: float, code: str, message: str) -> t.NoReturn:
        state.blocked_until = now + _whole_seconds(wait)
        state.blocked_code = code
        state.blocked_message = message
        raise self._too_many(code, message, wait)

    @staticmethod
    def _forget_before(state: _ClientState, horizon: float) -> None:
        while state.arrivals and state.arrivals[0] <= horizon:
            state.arrivals.popleft()
        while state.executions and state.executions[0][0] <= horizon:
            state.executions.popleft()

    @staticmethod
    def _too_many(code: str, message: str, wait: float) -> errors.DataverseError:
        return errors.DataverseError(429, code, message, {"Retry-After": str(_whole_seconds(wait))})


def requests_exceeded(limits: Limits) -> str:
    """The documented message of ``0x80072322`` for these limits."""
    return (
        f"Number of requests exceeded the limit of {limits.request_limit} over time window "
        f"of {_seconds(limits.window_seconds)} seconds."
    )


def _whole_seconds(wait: float) -> int:
    """``Retry-After`` is a whole number of seconds, at least 1."""
    return max(1, math.ceil(wait - 1e-9))


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
