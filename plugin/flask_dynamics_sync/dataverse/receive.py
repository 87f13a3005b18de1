"""Changes from Dynamics into the host: change-tracking reads, the host's ``receive``, conflicts, events and errors.

Per mapped table with a ``receive`` callback, one worker at a time (a lease
per table, shared by every worker through the database):

1. read from the stored link (:mod:`.changes`): nothing stored means a full
   read; the link after each page is stored once the page is applied, so a
   worker killed mid-read goes on from the last page applied;
2. hand each change to the mapping's ``receive(session, change)`` in the
   host's session, marked as coming from Dynamics (tracking does not queue it
   back: no echo), then settle conflicts with a pending host change
   (``DYNAMICS_SYNC_CONFLICT_RULE``) and commit the host's change together
   with its ``from_dynamics`` sync event;
3. a change ``receive`` refuses (raises) is rolled back and becomes an open
   Sync Error (direction ``from_dynamics``, the exception's message). An
   operator's retry queues the row; the worker reads it again by id
   (:meth:`Receiver.receive_queued`) and applies it like any other change.

An expired delta token starts a full read again. ``receive`` finds the host
record by the Dataverse row id (or key), so a row read twice is applied twice
to the same host record, never duplicated; a change that changes nothing in
the host (a row read again, or the connector's own write coming back) is not
counted.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import typing as t

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from ..errors import ClaimLostError
from ..leases import make_lease
from ..models import change_tracking_table
from ..models import queue_table
from ..pauses import is_paused
from ..recorder import insert_error
from ..recorder import insert_events
from ..recorder import resolve_errors
from ..recorder import validate_error_message
from ..state import get_state
from ..tracking import RECEIVING
from ..types import ClaimedRecord
from ..types import Direction
from ..types import Operation
from .batch import ApiRequest
from .changes import DataverseChange
from .changes import DeltaExpired
from .changes import ReadFailed
from .changes import parse_change
from .changes import read_page
from .changes import row_request
from .client import DataverseClient
from .client import TransientError
from .mapping import BoundMapping

logger = logging.getLogger(__name__)

#: Error codes of changes the host refused.
HOST_REFUSED = "HostRefused"
READ_FAILED = "ReadFailed"


class Outcome(str, enum.Enum):
    """What became of one change from Dynamics."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    """``receive`` changed nothing in the host."""
    HOST_WINS = "host_wins"
    """The host changed the record too and its change wins (``DYNAMICS_SYNC_CONFLICT_RULE``)."""
    REFUSED = "refused"


@dataclasses.dataclass(frozen=True)
class Applied:
    """One change's outcome, with the operation recorded or the host's message."""

    outcome: Outcome
    operation: Operation | None = None
    message: str = ""


@dataclasses.dataclass
class ReceiveReport:
    """What one :meth:`Receiver.run_once` did, over every table."""

    applied: int = 0
    unchanged: int = 0
    host_wins: int = 0
    refused: int = 0
    full_reads: int = 0
    pages: int = 0
    read_failures: int = 0
    """Tables whose read failed this cycle (Dataverse refused it, or no answer after the retries)."""

    def add(self, applied: Applied) -> None:
        name = applied.outcome.value
        setattr(self, name, getattr(self, name) + 1)


class Receiver:
    """Reads the changes of every mapped table with ``receive`` and applies them to the host.

    :param app: the host application.
    :param client: the Web API client (the worker's).
    :param mappings: the mappings by object type (those without ``receive`` are left out).
    :param claim_size: rows queued ``from_dynamics`` (retries) taken per cycle.
    """

    def __init__(self, app: Flask, client: DataverseClient, mappings: dict[str, BoundMapping], *, claim_size: int) -> None:
        state = get_state(app)
        self.app = app
        self.sync = state.extension
        self.db = state.database
        self.settings = state.settings
        self.page_size = state.connector.page_size
        self.conflict_rule = state.connector.conflict_rule
        self.client = client
        self.claim_size = claim_size
        self.mappings = {o: m for o, m in mappings.items() if m.mapping.receive is not None}

    # -- a cycle ---------------------------------------------------------------------------

    def run_once(self) -> ReceiveReport:
        """Read every receiving table's changes (those no other worker is reading), then retried rows."""
        report = ReceiveReport()
        with self.app.app_context():
            try:
                for object_type, mapping in self.mappings.items():
                    with self.db.engine.connect() as conn:
                        if is_paused(conn, object_type, Direction.FROM_DYNAMICS):
                            continue
                    lease = make_lease(
                        self.db.engine, f"receive:{object_type}", clock=self.sync.now, seconds=self.settings.lease_seconds
                    )
                    if not lease.acquire():
                        continue
                    try:
                        self.receive_table(mapping, report)
                    except (ReadFailed, TransientError) as exc:
                        # This table waits for the next cycle (from the last page applied); the others go on.
                        logger.warning("reading the changes of %s from Dataverse failed: %s", mapping.entity_set, exc)
                        report.read_failures += 1
                    finally:
                        lease.release()
                self.receive_queued(report)
            finally:
                self.db.session.remove()
        return report

    def receive_table(self, mapping: BoundMapping, report: ReceiveReport) -> None:
        """Read one table from its stored link to the end (a new delta link), applying each page."""
        link = self._stored_link(mapping.object_type)
        while True:
            if link is None:
                self._store_link(mapping.object_type, None, new_full_read=True)
                report.full_reads += 1
            try:
                page = read_page(self.client, mapping, link, self.page_size)
            except DeltaExpired:
                logger.warning("Dataverse delta token of %s expired: reading the table in full again", mapping.entity_set)
                link = None
                continue
            report.pages += 1
            for change in page.changes:
                report.add(self.apply(mapping, change, record_event=True))
            if page.next_link is not None:
                link = page.next_link
                self._store_link(mapping.object_type, link)
                continue
            self._store_link(mapping.object_type, page.delta_link)
            return

    def receive_queued(self, report: ReceiveReport) -> None:
        """Apply the rows queued ``from_dynamics`` (an operator's retry), each read again by id."""
        if not self.mappings:
            return
        claimed = self.sync.claim(self.claim_size, object_types=list(self.mappings), direction=Direction.FROM_DYNAMICS)
        synced: list[ClaimedRecord] = []
        for record in claimed:
            mapping = self.mappings[record.object_type]
            try:
                change = self.read_row(mapping, record.record_id)
            except (ReadFailed, TransientError) as exc:
                self._failed(record, READ_FAILED, str(exc), retry=True)
                continue
            applied = self.apply(mapping, change, record_event=False)
            report.add(applied)
            if applied.outcome is Outcome.REFUSED:
                self._failed(record, HOST_REFUSED, applied.message, retry=False)
            elif applied.operation is not None:  # the event says what the host did
                synced.append(dataclasses.replace(record, operation=applied.operation))
            else:
                synced.append(record)
        if synced:
            self.sync.mark_synced(synced)

    def _failed(self, record: ClaimedRecord, code: str, message: str, *, retry: bool) -> None:
        try:
            self.sync.mark_failed(record, code, message, retry=retry)
        except ClaimLostError:
            # Another worker claimed the row after this claim ran out: it applies it again.
            logger.info("claim on %s %r taken over before its failure was reported", record.object_type, record.record_id)

    def read_row(self, mapping: BoundMapping, row_id: str) -> DataverseChange:
        """One row as a change (a deleted one when Dataverse no longer has it)."""
        answer = self.client.send(ApiRequest("GET", row_request(mapping, row_id)))
        if answer.status == 404:
            return DataverseChange(mapping.entity_set, row_id, True, {}, None)
        if not answer.ok:
            code, message = answer.error
            raise ReadFailed(f"{code}: {message}")
        return parse_change(mapping, answer.json())

    # -- one change ------------------------------------------------------------------------

    def apply(self, mapping: BoundMapping, change: DataverseChange, *, record_event: bool) -> Applied:
        """Hand one change to the host's ``receive`` and settle it (see the module doc)."""
        session = self.db.session()
        changed: list[tuple[t.Any, Operation | None]] = []

        def collect(flushing: Session, context: t.Any) -> None:
            # after_flush still shows the pre-flush new, dirty and deleted objects.
            for obj in flushing.new:
                if isinstance(obj, mapping.model):
                    changed.append((obj, Operation.INSERT))
            for obj in flushing.dirty:
                if isinstance(obj, mapping.model) and flushing.is_modified(obj):
                    changed.append((obj, Operation.UPDATE))
            for obj in flushing.deleted:
                if isinstance(obj, mapping.model):
                    changed.append((obj, None))

        receiving = session.info.setdefault(RECEIVING, set())
        receiving.add(mapping.object_type)
        sa.event.listen(session, "after_flush", collect)
        try:
            try:
                assert mapping.mapping.receive is not None
                mapping.mapping.receive(session, change)
                session.flush()
            except Exception as exc:  # noqa: BLE001 - the host's code refused the change: a Sync Error
                session.rollback()
                message = str(exc) or type(exc).__name__
                if record_event:
                    self._refused(mapping, change, message)
                return Applied(Outcome.REFUSED, message=message)
            if not changed:
                session.rollback()
                return Applied(Outcome.UNCHANGED)
            record_ids = [str(mapping.tracking.record_id(obj)) for obj, _ in changed]
            if self._host_wins(session, mapping, change, record_ids):
                session.rollback()
                return Applied(Outcome.HOST_WINS)
            # A delete is counted with the updates (the figures split inserts and updates).
            operation = Operation.INSERT if any(op is Operation.INSERT for _, op in changed) else Operation.UPDATE
            if record_event:
                conn = session.connection()
                now = self.sync.now()
                direction = Direction.FROM_DYNAMICS.value
                insert_events(conn, [(mapping.object_type, change.row_id, operation.value, direction, change.modified_on)], now)
                resolve_errors(conn, [(mapping.object_type, change.row_id, direction)], now)
            session.commit()
            return Applied(Outcome.APPLIED, operation)
        finally:
            sa.event.remove(session, "after_flush", collect)
            receiving.discard(mapping.object_type)

    def _host_wins(self, session: Session, mapping: BoundMapping, change: DataverseChange, record_ids: list[str]) -> bool:
        """Settle a record changed on both sides (``DYNAMICS_SYNC_CONFLICT_RULE``).

        ``host``: a host change waiting to go to Dynamics always wins. ``last_writer``: the
        later one wins (the host's change time against Dataverse's ``modifiedon``; a delete
        counts as now); a losing host change leaves the queue unless it is already in flight.
        """
        conn = session.connection()
        waiting = conn.execute(
            sa.select(queue_table.c.id, queue_table.c.changed_at, queue_table.c.claim_token).where(
                queue_table.c.object_type == mapping.object_type,
                queue_table.c.direction == Direction.TO_DYNAMICS.value,
                queue_table.c.record_id.in_(record_ids),
            )
        ).all()
        if not waiting:
            return False
        if self.conflict_rule == "host":
            return True
        if change.modified_on is not None and any(row.changed_at >= change.modified_on for row in waiting):
            return True
        not_in_flight = [row.id for row in waiting if row.claim_token is None]
        if not_in_flight:
            conn.execute(sa.delete(queue_table).where(queue_table.c.id.in_(not_in_flight)))
        return False

    def _refused(self, mapping: BoundMapping, change: DataverseChange, message: str) -> None:
        logger.info("the host refused %s %s from Dynamics: %s", mapping.object_type, change.row_id, message)
        with self.db.engine.begin() as conn:
            insert_error(
                conn,
                mapping.object_type,
                change.row_id,
                None,
                Operation.UPDATE.value,
                Direction.FROM_DYNAMICS.value,
                HOST_REFUSED,
                validate_error_message(message),
                self.sync.now(),
                1,
            )

    # -- the stored link -------------------------------------------------------------------

    def _stored_link(self, object_type: str) -> str | None:
        table = change_tracking_table
        with self.db.engine.connect() as conn:
            return conn.scalar(sa.select(table.c.link).where(table.c.object_type == object_type))

    def _store_link(self, object_type: str, link: str | None, *, new_full_read: bool = False) -> None:
        table = change_tracking_table
        now = self.sync.now()
        with self.db.engine.begin() as conn:
            values: dict[str, t.Any] = {"link": link, "updated_at": now}
            if new_full_read:
                values["full_reads"] = table.c.full_reads + 1
            if conn.execute(sa.update(table).where(table.c.object_type == object_type).values(values)).rowcount:
                return
            conn.execute(
                sa.insert(table).values(
                    object_type=object_type, link=link, updated_at=now, full_reads=int(new_full_read)
                )
            )
