"""The sync worker: claims queued records, sends them to Dataverse, reports one result per record.

One cycle (:meth:`SyncWorker.run_once`):

1. ``claim`` up to ``DYNAMICS_SYNC_WORKER_CLAIM_SIZE`` records of the mapped object
   types (the queue's own claim: leases, coalescing and the views stay true);
2. load their host records and build each one's upsert; records of ``id_column``
   mappings (and the lookup targets they point at) get their Dataverse id first,
   written to the host and committed before anything is sent;
3. send them in requests of ``DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE`` records,
   ``DYNAMICS_SYNC_DATAVERSE_IN_FLIGHT`` at a time: ``UpsertMultiple`` where the table
   has it, else ``$batch``, else single requests. Object types go by levels
   (:func:`.mapping.send_levels`): lookup targets first, each related host record
   upserted before the records pointing at it, even when its own queue row waits
   in another batch (sending it again then is harmless: an upsert);
4. ``mark_synced`` the successes, ``mark_failed`` each failure with Dataverse's
   code and message: validation, privilege, not-found (4xx) and duplicate
   detection (500 ``0x80040333``) are parked; anything passing is retried later.

Killed at any point, nothing is lost: the claim's lease runs out and the
records are claimed again; sending them again is an upsert of the same key
with the host record's latest values.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import typing as t
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm.attributes import set_committed_value

from ..errors import ClaimLostError
from ..state import get_state
from ..types import ClaimedRecord
from ..types import Direction
from .batch import ApiRequest
from .batch import ApiResponse
from .client import DataverseClient
from .client import TransientError
from .mapping import BoundMapping
from .mapping import send_levels
from .receive import Receiver
from .receive import ReceiveReport
from .settings import ConnectorSettings
from .stats import WorkerStats

logger = logging.getLogger(__name__)

#: Duplicate detection answers 500 with this code; it is not a passing server error.
DUPLICATE_DETECTED = "0x80040333"
#: Codes of failures found before anything is sent (the host's side).
HOST_RECORD_MISSING = "HostRecordMissing"
PAYLOAD_ERROR = "PayloadError"


@dataclasses.dataclass(frozen=True)
class Result:
    """What happened to one record: synced, or failed with a code and message (and whether to retry)."""

    ok: bool
    code: str = ""
    message: str = ""
    retry: bool = False


SYNCED = Result(ok=True)


def result_of(answer: ApiResponse) -> Result:
    """A Web API answer as a record's result."""
    if answer.ok:
        return SYNCED
    code, message = answer.error
    permanent = (400 <= answer.status < 500 and answer.status not in (401, 408, 429)) or (
        answer.status == 500 and code.lower() == DUPLICATE_DETECTED
    )
    return Result(ok=False, code=code, message=message, retry=not permanent)


def result_of_transient(error: TransientError) -> Result:
    return Result(ok=False, code=error.code, message=error.message, retry=True)


@dataclasses.dataclass
class Item:
    """One record ready to send: a claimed one, or a lookup target sent first (``record`` None)."""

    key: t.Hashable
    """The claimed record's queue id; for a lookup target, its object type and identity."""
    record: ClaimedRecord | None
    mapping: BoundMapping
    request: ApiRequest
    target: dict[str, t.Any]
    """The record as a bulk message's target."""


@dataclasses.dataclass(frozen=True)
class CycleReport:
    """What one :meth:`SyncWorker.run_once` did."""

    claimed: int
    synced: int
    failed: int
    parked: int
    received: ReceiveReport | None = None
    """The changes read from Dynamics (None: no mapping has ``receive``)."""

    def __str__(self) -> str:
        sent = f"claimed {self.claimed}, synced {self.synced}, failed {self.failed} (parked {self.parked})"
        if self.received is None:
            return sent
        r = self.received
        return f"{sent}; from Dynamics: applied {r.applied}, unchanged {r.unchanged}, host won {r.host_wins}, refused {r.refused}"


class SyncWorker:
    """Sends the queue's records to Dataverse for one application.

    :param app: the host application (initialised with mappings and connector settings).
    :param client: the Web API client (default: built from the settings).
    :param lease_seconds: how long a claim lasts (default ``DYNAMICS_SYNC_CLAIM_TIMEOUT``).
    """

    def __init__(
        self,
        app: Flask,
        *,
        client: DataverseClient | None = None,
        batch_size: int | None = None,
        in_flight: int | None = None,
        claim_size: int | None = None,
        lease_seconds: int | None = None,
        record_stats: bool = True,
    ) -> None:
        state = get_state(app)
        self.app = app
        self.sync = state.extension
        self.db = state.database
        self.connector: ConnectorSettings = state.connector
        with app.app_context():
            self.mappings = self.sync.dataverse_mappings()
        if not self.mappings:
            raise RuntimeError("no tracked model has a Dataverse mapping: track(..., dataverse=DataverseMapping(...))")
        self.levels = send_levels(self.mappings)
        self.batch_size = batch_size or self.connector.batch_size
        self.in_flight = in_flight or self.connector.in_flight
        self.claim_size = claim_size or self.connector.claim_size
        self.lease_seconds = lease_seconds
        self.client = client or make_client(self.connector, in_flight=self.in_flight)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.in_flight, thread_name_prefix="dynamics-sync-send")
        self._no_bulk: set[str] = set()
        self._no_bulk_lock = threading.Lock()
        self.stats = WorkerStats(self.db, self.client.counters, clock=self.sync.now) if record_stats else None
        self.receiver = Receiver(app, self.client, self.mappings, claim_size=self.claim_size)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()
        if self.stats is not None:
            with self.app.app_context():
                self.stats.stopped()

    # -- one cycle --------------------------------------------------------------------------

    def run_once(self) -> CycleReport:
        """Send one claimed batch to Dynamics, then read the changes from Dynamics. Returns what happened."""
        report = self.send_once()
        if self.receiver.mappings:
            report = dataclasses.replace(report, received=self.receiver.run_once())
        return report

    def send_once(self) -> CycleReport:
        """Claim one batch, send it, report every record. Returns what happened."""
        with self.app.app_context():
            claimed = self.sync.claim(
                self.claim_size,
                object_types=list(self.mappings),
                direction=Direction.TO_DYNAMICS,
                lease_seconds=self.lease_seconds,
            )
            if not claimed:
                if self.stats is not None:
                    self.stats.flush(0, 0)
                return CycleReport(0, 0, 0, 0)
            results: dict[t.Hashable, Result] = {}
            try:
                items = self._prepare(claimed, results)
            finally:
                self.db.session.remove()  # no host snapshot is kept across cycles (REPEATABLE READ)
            self._send(items, results)
            return self._report(claimed, results)

    def _prepare(self, claimed: Sequence[ClaimedRecord], results: dict[t.Hashable, Result]) -> list[Item]:
        session = self.db.session
        by_type: dict[str, list[ClaimedRecord]] = collections.defaultdict(list)
        for record in claimed:
            by_type[record.object_type].append(record)
        loaded: list[tuple[ClaimedRecord | None, BoundMapping, t.Any]] = []
        for object_type, records in by_type.items():
            mapping = self.mappings[object_type]
            objects = mapping.load(session, [r.record_id for r in records])
            for record in records:
                obj = objects.get(record.record_id)
                if obj is None:
                    results[record.queue_id] = Result(
                        False, HOST_RECORD_MISSING, f"No {mapping.model.__name__} with id {record.record_id} in the host database."
                    )
                else:
                    loaded.append((record, mapping, obj))
        self._assign_ids(session, loaded)
        # Lookup targets are upserted first, so that every @odata.bind finds its row even when
        # the target's own queue row is in another batch (it is sent again then: an upsert).
        claimed_keys = {(mapping.object_type, sa.inspect(obj).identity) for _, mapping, obj in loaded}
        targets: dict[t.Hashable, tuple[None, BoundMapping, t.Any]] = {}
        for _, mapping, obj in loaded:
            for object_type, other in mapping.related(obj):
                key = (object_type, sa.inspect(other).identity)
                if key not in claimed_keys:
                    targets[key] = (None, self.mappings[object_type], other)
        items = []
        for record, mapping, obj in [*targets.values(), *loaded]:
            key = record.queue_id if record is not None else (mapping.object_type, sa.inspect(obj).identity)
            try:
                payload = mapping.payload(obj, self.mappings)
                address, key_columns = mapping.key(obj)
                items.append(
                    Item(
                        key,
                        record,
                        mapping,
                        ApiRequest("PATCH", address, payload),
                        {"@odata.type": mapping.odata_type, **payload, **key_columns},
                    )
                )
            except Exception as exc:
                logger.warning("Dataverse payload of %s %s failed", mapping.object_type, key, exc_info=True)
                results[key] = Result(False, PAYLOAD_ERROR, f"{type(exc).__name__}: {exc}")
        return items

    def _assign_ids(self, session: t.Any, loaded: Sequence[tuple[ClaimedRecord | None, BoundMapping, t.Any]]) -> None:
        """Give every record (and lookup target) of an ``id_column`` mapping its Dataverse id, committed first."""
        needing: dict[tuple[str, t.Any], tuple[BoundMapping, t.Any]] = {}
        for _, mapping, obj in loaded:
            pairs = [(mapping, obj)] + [(self.mappings[o], other) for o, other in mapping.related(obj)]
            for target, other in pairs:
                if target.mapping.id_column and getattr(other, target.mapping.id_column) in (None, ""):
                    identity = sa.inspect(other).identity
                    needing[(target.object_type, identity)] = (target, other)
        if not needing:
            return
        with self.db.engine.begin() as conn:
            for target, other in needing.values():
                mapper = sa.inspect(target.model)
                column = mapper.column_attrs[target.mapping.id_column].columns[0]
                where = [pk == value for pk, value in zip(mapper.primary_key, sa.inspect(other).identity)]
                conn.execute(
                    sa.update(column.table).where(*where, column.is_(None)).values({column.name: str(uuid.uuid4())})
                )
                # Another worker may have given it one first: keep the stored id.
                stored = conn.scalar(sa.select(column).where(*where))
                set_committed_value(other, target.mapping.id_column, stored)

    # -- sending ---------------------------------------------------------------------------

    def _send(self, items: Sequence[Item], results: dict[t.Hashable, Result]) -> None:
        by_type: dict[str, list[Item]] = collections.defaultdict(list)
        for item in items:
            by_type[item.mapping.object_type].append(item)
        for level in self.levels:
            chunks = [
                group[i : i + self.batch_size]
                for object_type in level
                if (group := by_type.get(object_type))
                for i in range(0, len(group), self.batch_size)
            ]
            for chunk_results in self._pool.map(self._send_chunk, chunks):
                results.update(chunk_results)

    def _send_chunk(self, items: list[Item]) -> dict[t.Hashable, Result]:
        mapping = items[0].mapping
        mode = mapping.mapping.send
        if mode == "bulk" and mapping.entity_set not in self._no_bulk:
            return self._send_bulk(mapping, items)
        if mode in ("bulk", "batch"):
            return self._send_batch(items)
        return {item.key: self._send_single(item) for item in items}

    def _send_single(self, item: Item) -> Result:
        try:
            return result_of(self.client.send(item.request))
        except TransientError as exc:
            return result_of_transient(exc)

    def _send_bulk(self, mapping: BoundMapping, items: list[Item]) -> dict[t.Hashable, Result]:
        request = ApiRequest(
            "POST",
            f"{mapping.entity_set}/Microsoft.Dynamics.CRM.UpsertMultiple",
            {"Targets": [item.target for item in items]},
        )
        try:
            answer = self.client.send(request)
        except TransientError as exc:
            return dict.fromkeys((item.key for item in items), result_of_transient(exc))
        if answer.ok:
            return dict.fromkeys((item.key for item in items), SYNCED)
        # A bulk message fails as a whole: $batch tells which records Dataverse refuses.
        results = self._send_batch(items)
        if all(result.ok for result in results.values()):
            with self._no_bulk_lock:
                if mapping.entity_set not in self._no_bulk:
                    code, message = answer.error
                    logger.info("Dataverse table %s has no UpsertMultiple (%s: %s); using $batch", mapping.entity_set, code, message)
                    self._no_bulk.add(mapping.entity_set)
        return results

    def _send_batch(self, items: list[Item]) -> dict[t.Hashable, Result]:
        results: dict[t.Hashable, Result] = {}
        pending = items
        while pending:
            try:
                answers = self.client.batch([item.request for item in pending])
            except TransientError as exc:
                results.update(dict.fromkeys((item.key for item in pending), result_of_transient(exc)))
                break
            if not answers:
                failure = Result(False, "BatchNotAnswered", "The $batch response held no answer.", retry=True)
                results.update(dict.fromkeys((item.key for item in pending), failure))
                break
            again = []
            for item, answer in zip(pending, answers):
                if answer.status == 429:
                    again.append(item)  # the client paused: send it in the next batch
                else:
                    results[item.key] = result_of(answer)
            pending = again + pending[len(answers) :]  # a batch that stopped at an error: send the rest again
        return results

    # -- reporting -------------------------------------------------------------------------

    def _report(self, claimed: Sequence[ClaimedRecord], results: dict[t.Hashable, Result]) -> CycleReport:
        synced = [record for record in claimed if results[record.queue_id].ok]
        if synced:
            self.sync.mark_synced(synced)
        failed = parked = 0
        for record in claimed:
            result = results[record.queue_id]
            if result.ok:
                continue
            failed += 1
            try:
                parked += self.sync.mark_failed(record, result.code, result.message, retry=result.retry)
            except ClaimLostError:
                # Another worker owns the record now and sends it again; report the others.
                logger.info("claim on %s %r taken over before its failure was reported",
                            record.object_type, record.record_id)
        if self.stats is not None:
            self.stats.flush(len(synced), failed)
        return CycleReport(len(claimed), len(synced), failed, parked)

    # -- running ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run cycles until ``stop`` is set; the cycle in progress is always finished."""
        while not stop.is_set():
            try:
                report = self.run_once()
            except Exception:
                logger.exception("Flask-Dynamics-Sync worker cycle failed")
                stop.wait(self.connector.poll_seconds)
                continue
            if report.claimed < self.claim_size:
                stop.wait(self.connector.poll_seconds)


def make_client(settings: ConnectorSettings, *, in_flight: int | None = None, **msal_options: t.Any) -> DataverseClient:
    """A Web API client for the configured environment."""
    from .auth import token_provider
    from .throttle import Throttle

    if not settings.configured:
        raise RuntimeError("DYNAMICS_SYNC_DATAVERSE_URL is not set: the worker has no environment to send to")
    return DataverseClient(
        settings.api_root,
        token_provider(settings, **msal_options),
        Throttle(settings.request_limit, settings.window_seconds, settings.max_concurrent),
        timeout=settings.timeout,
        retries=settings.retries,
        retry_backoff=settings.retry_backoff,
        in_flight=in_flight or settings.in_flight,
        verify=settings.verify,
    )
