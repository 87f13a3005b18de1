"""The demo simulator: users editing CRM records (and, without the connector, a pretend sync engine).

Every second it changes a few host records through the host's ORM (tracking
queues them in the same transaction). What happens next depends on how the
console runs:

* **With the connector** (``python -m example_host``, ``plays_sync=False``): the
  plugin's real worker sends the records to Dataverse over HTTP. The simulator
  only edits records, and, when the environment is the local Dataverse, now and
  then makes Dynamics refuse one (a validation, privilege or duplicate fault) or
  throttle the client (429), so that *Sync Errors* shows real exchanges.
* **Without it** (``plays_sync=True``, tests and offline demos): it also receives
  a few changes made in Dynamics (``sync.enqueue(..., direction="from_dynamics")``)
  and plays the sync engine: ``sync.claim()`` a batch, then ``mark_synced`` most
  records and ``mark_failed`` a few with real Dataverse errors. Its pace follows
  the backlog, so the backlog wanders around its seeded size.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import typing as t
from decimal import Decimal

import sqlalchemy as sa
from flask import Flask

from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync import QueueState
from flask_dynamics_sync.models import QueueItem

from .dataverse import pick_error
from .demo import DEAL_STAGES
from .demo import FIRST_NAMES
from .demo import LAST_NAMES
from .demo import PROSPECT_SOURCES
from .demo import PROSPECT_STATUSES
from .models import SYNCED_MODELS
from .models import Company
from .models import Customer
from .models import Deal
from .models import Prospect
from .models import db

log = logging.getLogger(__name__)

#: Failure odds per synced record: throttled (retried later) and permanent (parked).
THROTTLED_ODDS = 0.025
PERMANENT_ODDS = 0.004
#: Backlog the worker's pace steers towards.
TARGET_BACKLOG = 450
#: With a local Dataverse: odds that Dynamics refuses a changed record, and that a step is throttled.
REFUSAL_ODDS = 0.02
THROTTLE_ODDS = 0.01
REFUSALS = ("validation", "privilege", "duplicate")
ENTITY_SETS = {"Lead": "leads", "Contact": "contacts", "Account": "accounts", "Opportunity": "opportunities"}


@dataclasses.dataclass(frozen=True)
class StepReport:
    """What one simulator step did."""

    changed: list[tuple[str, str]]
    """``(object_type, record_id)`` of host records inserted or updated through the ORM."""
    pulled: list[tuple[str, str]]
    """``(object_type, record_id)`` of changes received from Dynamics."""
    claimed: int
    synced: int
    """Records reported synced (one sync event each)."""
    failed: int
    """Records reported failed (one sync error each)."""
    parked: int
    """Failed records parked rather than retried."""


def _some(rng: random.Random, model: type) -> t.Any:
    """An existing record of ``model`` (``None`` when there is none; ids may have gaps)."""
    highest = db.session.scalar(sa.select(sa.func.max(model.id)))  # type: ignore[attr-defined]
    return db.session.get(model, rng.randint(1, highest)) if highest else None


def _change_record(rng: random.Random, model: type) -> t.Any:
    """Insert a new record (one time in eight) or edit an existing one, as a user would."""
    record = _some(rng, model) if rng.random() >= 0.125 else None
    person = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    if model is Prospect:
        record = record or Prospect(name=person, source=rng.choice(PROSPECT_SOURCES))
        record.status = rng.choice(PROSPECT_STATUSES)
    elif model is Customer:
        record = record or Customer(name=person, company=_some(rng, Company))
        record.phone = f"+39 02 {rng.randint(1000000, 9999999)}"
    elif model is Company:
        record = record or Company(name=f"{rng.choice(LAST_NAMES)} & Partners", industry="Services")
        record.website = f"https://www.{rng.choice(LAST_NAMES).lower().encode('ascii', 'ignore').decode()}.example"
    else:
        record = record or Deal(name=f"New business – {person}", company=_some(rng, Company))
        record.stage = rng.choice(DEAL_STAGES)
        record.amount = Decimal(rng.randrange(2_000, 250_000, 500))
    db.session.add(record)
    return record


class Simulator:
    """Drives the demo; call :meth:`step` once (tests) or :meth:`start` a background thread."""

    def __init__(
        self,
        app: Flask,
        sync: DynamicsSync,
        rng: random.Random | None = None,
        *,
        interval: float = 1.0,
        plays_sync: bool = True,
        dataverse: t.Any = None,
    ):
        """:param plays_sync: also pretend to be the sync engine (off when the connector's worker runs).
        :param dataverse: the :class:`~flask_dynamics_sync.testing.LocalDataverse` to make misbehave now and then.
        """
        self.app = app
        self.sync = sync
        self.rng = rng or random.Random()
        self.interval = interval
        self.plays_sync = plays_sync
        self.dataverse = dataverse
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one step ---------------------------------------------------------------

    def step(self) -> StepReport:
        """Change some records, then sync a batch. Runs in its own application context."""
        with self.app.app_context():
            changed = self._edit()
            if not self.plays_sync:
                self._misbehave(changed)
                return StepReport(changed, [], 0, 0, 0, 0)
            pulled = self._pull()
            claimed, synced, failed, parked = self._sync_batch(inflow=len(changed) + len(pulled))
        return StepReport(changed, pulled, claimed, synced, failed, parked)

    def _edit(self) -> list[tuple[str, str]]:
        rng = self.rng
        models = rng.choices(list(SYNCED_MODELS), weights=[4, 4, 1, 2], k=rng.randint(1, 4))
        records = [(_change_record(rng, model), SYNCED_MODELS[model]) for model in models]
        db.session.commit()
        return [(object_type, str(record.id)) for record, object_type in records]

    def _misbehave(self, changed: list[tuple[str, str]]) -> None:
        """Make the local Dataverse refuse a changed record or throttle the client, now and then."""
        if self.dataverse is None:
            return
        from flask_dynamics_sync.testing import Fault

        for object_type, record_id in changed:
            if self.rng.random() < REFUSAL_ODDS:
                kind = self.rng.choice(REFUSALS)
                self.dataverse.faults.add(Fault(kind, entity_set=ENTITY_SETS[object_type], key=record_id, count=3))
        if self.rng.random() < THROTTLE_ODDS:
            self.dataverse.faults.add(Fault("throttled", retry_after=2))

    def _pull(self) -> list[tuple[str, str]]:
        rng = self.rng
        pulled = []
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            model = rng.choices(list(SYNCED_MODELS), weights=[2, 4, 2, 2])[0]
            record = _some(rng, model)
            if record is not None:
                object_type = SYNCED_MODELS[model]
                self.sync.enqueue(object_type, record.id, "update", direction="from_dynamics", label=record.name)
                pulled.append((object_type, str(record.id)))
        db.session.commit()
        return pulled

    def _sync_batch(self, *, inflow: int) -> tuple[int, int, int, int]:
        """Claim about as many records as just changed (more when the backlog is big) and report them.

        Returns how many were claimed, synced, failed and parked.
        """
        rng = self.rng
        queue = QueueItem.__table__
        pending = db.session.scalar(
            sa.select(sa.func.count()).select_from(queue).where(queue.c.state == QueueState.PENDING.value)
        )
        db.session.commit()  # end the read transaction: SQLite lets one writer in at a time
        pace = min(1.6, max(0.4, (pending or 0) / TARGET_BACKLOG))
        limit = max(1, round((inflow + rng.uniform(-1.5, 2.0)) * pace))
        claimed = self.sync.claim(limit=limit)
        succeeded, failed, parked = [], 0, 0
        for record in claimed:
            roll = rng.random()
            if roll < THROTTLED_ODDS + PERMANENT_ODDS:
                retry = roll < THROTTLED_ODDS
                code, message, retry = pick_error(rng, record.object_type, record.operation.value, retry=retry)
                parked += self.sync.mark_failed(record, code, message, retry=retry)
                failed += 1
            else:
                succeeded.append(record)
        self.sync.mark_synced(succeeded)
        return len(claimed), len(succeeded), failed, parked

    # -- background thread ------------------------------------------------------

    def run(self) -> None:
        """Step every ``interval`` seconds until :meth:`stop`; a failed step is logged and skipped."""
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a demo must keep going (e.g. "database is locked")
                log.exception("simulator step failed; continuing")

    def start(self) -> Simulator:
        """Run in a daemon thread (it never keeps the process alive)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="example-host-simulator", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish its step and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
