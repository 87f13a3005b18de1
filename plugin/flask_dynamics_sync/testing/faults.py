"""Injectable faults: the failures a connector must survive, on demand.

Two levels:

* **operation** faults answer one Web API operation with Dataverse's own error — a single
  request, one part of a ``$batch`` (a failing change set rolls back), or a whole bulk
  message (standard tables roll the whole message back, powerapps-docs bulk-operations.md):
  ``validation`` (400 ``0x80044331``), ``privilege`` (403 ``0x80040220``), ``not_found``
  (404 ``0x80040217``), ``duplicate`` (duplicate detection: **500** ``0x80040333``,
  webapi/manage-duplicate-detection-create-update.md), ``server_error`` (500);
* **request** faults hit the HTTP exchange itself: ``bad_gateway`` (502),
  ``service_unavailable`` (503), ``gateway_timeout`` (504), ``throttled`` (429 with
  ``Retry-After``), ``timeout`` (the server holds the request for ``hold_seconds`` — longer
  than the client waits — then processes it or not, per ``process``) and
  ``drop_after_commit`` (the server commits, then closes the connection without an answer;
  on ``$batch`` it sends the start of the multipart answer and closes mid-body).

A fault matches by ``entity_set`` (``"$batch"`` for a batch request), ``method`` and
``key`` (a primary or alternate key value the operation names); it fires from the
``nth`` matching operation on, ``count`` times or ``ALWAYS``. An operation fault's ``code``
and ``message`` can be given, to answer another of Dataverse's errors with the same status.
"""

from __future__ import annotations

import dataclasses
import threading
import typing as t

from . import errors

ALWAYS: t.Final = "always"

OPERATION_KINDS = frozenset({"validation", "privilege", "not_found", "duplicate", "server_error"})
REQUEST_KINDS = frozenset(
    {"bad_gateway", "service_unavailable", "gateway_timeout", "throttled", "timeout", "drop_after_commit"}
)
GATEWAY_STATUS = {"bad_gateway": 502, "service_unavailable": 503, "gateway_timeout": 504}


@dataclasses.dataclass
class Fault:
    """One injected fault; see the module docstring for the kinds."""

    kind: str
    entity_set: str | None = None
    method: str | None = None
    key: str | None = None
    nth: int = 1
    count: int | t.Literal["always"] = 1
    message: str | None = None
    code: str | None = None
    hold_seconds: float = 5.0
    process: bool = True
    retry_after: int = 1
    seen: int = dataclasses.field(default=0, init=False)
    fired: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in OPERATION_KINDS | REQUEST_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.nth < 1:
            raise ValueError("nth counts from 1")
        if self.count != ALWAYS and (not isinstance(self.count, int) or self.count < 1):
            raise ValueError("count is a positive number or ALWAYS")
        if self.method:
            self.method = self.method.upper()

    @property
    def level(self) -> str:
        return "operation" if self.kind in OPERATION_KINDS else "request"

    def matches(self, method: str, entity_set: str, keys: t.Collection[str]) -> bool:
        return (
            (self.entity_set is None or self.entity_set == entity_set)
            and (self.method is None or self.method == method.upper())
            and (self.key is None or self.key in keys)
        )

    def error(self, logical_name: str, record: str) -> errors.DataverseError:
        """The answer of an operation fault, in Dataverse's words unless ``code``/``message`` are given
        (e.g. ``Fault("privilege", code="0x80040231")``, the other privilege code)."""
        status, code, message = {
            "validation": (
                400,
                errors.VALIDATION,
                f"A validation error occurred. A value of the '{logical_name}' entity is not valid.",
            ),
            "privilege": (
                403,
                errors.PRIVILEGE_DENIED,
                f"Principal user is missing prvWrite{logical_name} privilege on entity '{logical_name}'.",
            ),
            "not_found": (404, errors.NOT_FOUND, f"{logical_name} With Id = {record} Does Not Exist"),
            "duplicate": (500, errors.DUPLICATE_DETECTED, errors.DUPLICATE_MESSAGE),
            "server_error": (500, errors.UNEXPECTED, "An unexpected error occurred."),
        }[self.kind]
        return errors.DataverseError(status, self.code or code, self.message or message)


class FaultSet:
    """The faults of one local Dataverse; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __iter__(self) -> t.Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def take(self, level: str, method: str, entity_set: str, keys: t.Collection[str] = ()) -> Fault | None:
        """Count this operation against every matching fault of ``level``; return the first that fires."""
        firing = None
        with self._lock:
            for fault in self._faults:
                if fault.level != level or not fault.matches(method, entity_set, keys):
                    continue
                fault.seen += 1
                due = fault.seen >= fault.nth and (fault.count == ALWAYS or fault.fired < fault.count)
                if due and firing is None:
                    fault.fired += 1
                    firing = fault
        return firing
