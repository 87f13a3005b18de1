"""The scheduled jobs, the APScheduler 3 scheduler that runs them, and job bookkeeping.

Jobs (all times UTC, cron triggers so that every process agrees on the ticks):

========== ============================ ====================================================
job        when                         what
========== ============================ ====================================================
rollup     every hour at :05            window + catch-up rollup (:func:`run_rollup`)
refresh    every ``ROLLUP_REFRESH``     the current hour only (not scheduled if >= 60 min)
           minutes
prune      daily at 03:15               retention (:func:`run_prune`)
notify     daily at 07:00               the errors digest and threshold check (:func:`run_notify`)
alerts     every minute                 threshold check only (only if ``ALERT_THRESHOLD`` > 0)
========== ============================ ====================================================

**One process per tick.** Every process of the host may start the scheduler;
each tick, every process tries the job's lease without waiting
(:mod:`~flask_dynamics_sync.leases`). The winner checks the job row: if its
``next_run_at`` is already past this tick, another process has run it and it
stops; otherwise it runs the job and writes the next tick into ``next_run_at``.
The jobs live in APScheduler's memory job store, never in a shared
``SQLAlchemyJobStore`` (which has no locking and runs jobs once per process).

**APScheduler options**, chosen on purpose (the defaults skip late runs):
``coalesce=True`` (runs missed while the process was busy or asleep become
one), ``max_instances=1`` (a slow run never overlaps itself in one process; the
lease covers the other processes) and ``misfire_grace_time`` of nearly the
job's period (a run that starts late still runs, up to when the next is due;
APScheduler's default of one second would skip an hourly rollup behind a busy
thread pool). A skipped tick is harmless anyway: the next rollup catches up.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as dt
import logging
import os
import typing as t
from collections.abc import Callable

import click
import sqlalchemy as sa
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask

from .config import Settings
from .jobs import JobName
from .jobs import JobStateInfo
from .jobs import ensure_job_row
from .jobs import job_states
from .jobs import job_table
from .jobs import read_job
from .jobs import record_run
from .leases import Lease
from .leases import make_lease
from .notifications import NotificationError
from .notifications import NotifyResult
from .notifications import SmtpMailer
from .notifications import notify
from .retention import PruneResult
from .retention import prune
from .rollup import RollupResult
from .rollup import refresh_current_hour
from .rollup import roll_up
from .state import get_state

__all__ = [
    "JobRun",
    "NotificationError",
    "JobSpec",
    "JobStateInfo",
    "build_scheduler",
    "job_specs",
    "job_states",
    "run_job",
    "run_notify",
    "run_prune",
    "run_rollup",
    "should_run_here",
    "start_scheduler",
]

logger = logging.getLogger(__name__)


#: Minute past the hour of the hourly rollup: late events of the hour just ended get a few minutes.
ROLLUP_MINUTE = 5
PRUNE_AT = (3, 15)
NOTIFY_AT = (7, 0)

UTC = dt.timezone.utc


# -- the jobs' work, with bookkeeping for direct calls ----------------------------------


def _rollup_work(app: Flask, start: dt.datetime | None = None, end: dt.datetime | None = None) -> RollupResult:
    state = get_state(app)
    now = state.extension.clock()
    window = state.settings.rollup_window_hours
    return state.recorder.transaction(lambda conn: roll_up(conn, now=now, window_hours=window, start=start, end=end))


def _refresh_work(app: Flask) -> RollupResult:
    state = get_state(app)
    now = state.extension.clock()
    window = state.settings.rollup_window_hours
    return state.recorder.transaction(lambda conn: refresh_current_hour(conn, now=now, window_hours=window))


def _prune_work(app: Flask, lease: Lease | None = None) -> PruneResult:
    state = get_state(app)
    settings = state.settings
    return prune(
        state.recorder.transaction,
        now=state.extension.clock(),
        event_retention_days=settings.event_retention_days,
        error_retention_days=settings.error_retention_days,
        batch_size=settings.prune_batch_size,
        between_batches=lease.renew if lease is not None else None,
    )


def _notify_work(app: Flask, *, digest: bool = True, alerts: bool = True) -> NotifyResult:
    state = get_state(app)
    result = notify(
        app,
        state.recorder.transaction,
        state.settings,
        now=state.extension.clock(),
        digest=digest,
        alerts=alerts,
        mailer=SmtpMailer.from_settings(state.settings),
    )
    if result.email_error:
        raise NotificationError(result)
    return result


def _recorded(app: Flask, name: str, work: Callable[[], t.Any]) -> t.Any:
    state = get_state(app)
    return record_run(state.database.engine, name, state.extension.clock, work)


def run_rollup(app: Flask, start: dt.datetime | None = None, end: dt.datetime | None = None) -> RollupResult:
    """Roll up now (window + catch-up, or the backfill range), recorded on the ``rollup`` job row."""
    return _recorded(app, JobName.ROLLUP, lambda: _rollup_work(app, start, end))


def run_prune(app: Flask) -> PruneResult:
    """Apply retention now, recorded on the ``prune`` job row."""
    return _recorded(app, JobName.PRUNE, lambda: _prune_work(app))


def run_notify(app: Flask, *, digest: bool = True, alerts: bool = True) -> NotifyResult:
    """Send the digest and check the alert threshold now, recorded on the ``notify`` job row.

    :raises NotificationError: an e-mail could not be sent (after the signals were).
    """
    return _recorded(app, JobName.NOTIFY, lambda: _notify_work(app, digest=digest, alerts=alerts))


# -- job definitions --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One scheduled job: its trigger, APScheduler options and work."""

    name: str
    description: str
    trigger: CronTrigger
    period: dt.timedelta
    """The longest time between two ticks."""
    misfire_grace_time: int
    work: Callable[[Flask, Lease], t.Any]
    coalesce: bool = True
    max_instances: int = 1

    def latest_tick(self, now: dt.datetime) -> dt.datetime:
        """The last scheduled time at or before ``now`` (naive UTC)."""
        aware = now.replace(tzinfo=UTC)
        fire = self.trigger.get_next_fire_time(None, aware - self.period)
        latest = fire
        while fire is not None and fire <= aware:
            latest = fire
            fire = self.trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        assert latest is not None and latest <= aware, "a tick within one period"
        return latest.astimezone(UTC).replace(tzinfo=None)

    def next_tick(self, now: dt.datetime) -> dt.datetime:
        """The first scheduled time after ``now`` (naive UTC)."""
        after = now.replace(microsecond=0, tzinfo=UTC) + dt.timedelta(seconds=1)
        fire = self.trigger.get_next_fire_time(None, after)
        return fire.astimezone(UTC).replace(tzinfo=None)


def _cron(**fields: t.Any) -> CronTrigger:
    return CronTrigger(timezone=UTC, **fields)


def job_specs(settings: Settings) -> dict[str, JobSpec]:
    """The jobs this configuration schedules, by name."""
    hour, day = dt.timedelta(hours=1), dt.timedelta(days=1)
    specs = [
        JobSpec(
            JobName.ROLLUP,
            "Hourly rollup: recompute the recent hours and catch up missed ones",
            _cron(minute=ROLLUP_MINUTE),
            period=hour,
            misfire_grace_time=55 * 60,
            work=lambda app, lease: _rollup_work(app),
        )
    ]
    refresh = settings.rollup_refresh_minutes
    if refresh < 60:
        specs.append(
            JobSpec(
                JobName.REFRESH,
                "Refresh of the current hour's rollup",
                _cron(minute=f"*/{refresh}"),
                period=dt.timedelta(minutes=refresh),
                misfire_grace_time=refresh * 60,
                work=lambda app, lease: _refresh_work(app),
            )
        )
    specs += [
        JobSpec(
            JobName.PRUNE,
            "Retention: delete old sync events, errors and backlog snapshots",
            _cron(hour=PRUNE_AT[0], minute=PRUNE_AT[1]),
            period=day,
            misfire_grace_time=6 * 3600,
            work=_prune_work,
        ),
        JobSpec(
            JobName.NOTIFY,
            "Daily digest of failed records",
            _cron(hour=NOTIFY_AT[0], minute=NOTIFY_AT[1]),
            period=day,
            misfire_grace_time=6 * 3600,
            work=lambda app, lease: _notify_work(app),
        ),
    ]
    if settings.alert_threshold > 0:
        specs.append(
            JobSpec(
                JobName.ALERTS,
                "Error threshold alert check",
                _cron(minute="*"),
                period=dt.timedelta(minutes=1),
                misfire_grace_time=60,
                work=lambda app, lease: _notify_work(app, digest=False),
            )
        )
    return {spec.name: spec for spec in specs}


# -- running one tick -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JobRun:
    """The outcome of one tick of a job in this process."""

    name: str
    tick: dt.datetime
    ran: bool
    reason: str
    """``ran``, ``failed``, ``locked`` (another process holds the lease) or ``done`` (tick already run)."""
    result: t.Any = None


def run_job(app: Flask, name: str, *, holder: str | None = None) -> JobRun:
    """Run job ``name`` for its latest tick, unless another process holds it or has run it.

    This is what the scheduler calls at each tick, in every process. The
    work's exceptions are logged and recorded on the job row, not raised.
    """
    state = get_state(app)
    spec = job_specs(state.settings)[name]
    clock = state.extension.clock
    with app.app_context():
        engine = state.database.engine
        now = clock()
        tick = spec.latest_tick(now)
        with engine.begin() as conn:
            ensure_job_row(conn, name)
        lease = make_lease(engine, name, clock=clock, seconds=state.settings.lease_seconds, holder=holder)
        if not lease.acquire():
            return JobRun(name, tick, ran=False, reason="locked")
        try:
            with engine.connect() as conn:
                info = read_job(conn, name)
            if info is not None and info.next_run_at is not None and info.next_run_at > tick:
                return JobRun(name, tick, ran=False, reason="done")
            try:
                result = record_run(
                    engine, name, clock, lambda: spec.work(app, lease), next_run_at=spec.next_tick(now)
                )
            except Exception:  # noqa: BLE001 - recorded on the job row; the scheduler keeps going
                logger.exception("Flask-Dynamics-Sync job %s failed", name)
                return JobRun(name, tick, ran=True, reason="failed")
            return JobRun(name, tick, ran=True, reason="ran", result=result)
        finally:
            lease.release()


def announce_next_runs(app: Flask) -> None:
    """Fill in ``next_run_at`` of jobs no scheduler has run lately (fresh deployments).

    A row whose ``next_run_at`` is recent is left alone: another process is
    running the schedule, and the field doubles as its "tick done" marker.
    """
    state = get_state(app)
    with app.app_context():
        engine = state.database.engine
        now = state.extension.clock()
        for spec in job_specs(state.settings).values():
            with engine.begin() as conn:
                ensure_job_row(conn, spec.name)
            with engine.begin() as conn:
                conn.execute(
                    job_table.update()
                    .where(
                        job_table.c.name == spec.name,
                        sa.or_(job_table.c.next_run_at.is_(None), job_table.c.next_run_at < now - spec.period),
                    )
                    .values(next_run_at=spec.next_tick(now))
                )


def _announce_safely(app: Flask) -> None:
    try:
        announce_next_runs(app)
    except Exception:  # noqa: BLE001 - e.g. tables not created yet; the jobs will write it
        logger.warning("Flask-Dynamics-Sync could not write the jobs' next run times", exc_info=True)


# -- the sync worker, for hosts that run it inside the scheduler ---------------------

WORKER_JOB = "worker"


def run_worker_cycles(app: Flask) -> int:
    """Run worker cycles until the queue has nothing more for now; the records handled.

    The scheduler calls this every ``DYNAMICS_SYNC_WORKER_POLL_SECONDS`` when
    ``DYNAMICS_SYNC_WORKER_IN_SCHEDULER`` is on; no lease is needed: workers
    share the queue through its claims.
    """
    from .dataverse.worker import SyncWorker

    state = get_state(app)
    if state.worker is None:
        state.worker = SyncWorker(app)
    handled = 0
    while True:
        report = state.worker.run_once()
        handled += report.claimed
        if report.claimed < state.worker.claim_size:
            return handled


# -- the scheduler ----------------------------------------------------------------


def build_scheduler(app: Flask, *, blocking: bool = False) -> BaseScheduler:
    """A scheduler (not started) with every job of the app's configuration.

    ``blocking=True`` gives a :class:`BlockingScheduler` for a dedicated
    scheduler process (``flask dynamics-sync run-scheduler``).
    """
    settings = get_state(app).settings
    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(
        timezone=UTC,
        # Each process keeps its own jobs: a shared SQLAlchemyJobStore has no locking.
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=4)},
    )
    for spec in job_specs(settings).values():
        scheduler.add_job(
            run_job,
            trigger=spec.trigger,
            args=(app, spec.name),
            id=spec.name,
            name=spec.description,
            misfire_grace_time=spec.misfire_grace_time,
            coalesce=spec.coalesce,
            max_instances=spec.max_instances,
            replace_existing=True,
        )
    connector = get_state(app).connector
    if connector.worker_in_scheduler and connector.configured:
        scheduler.add_job(
            run_worker_cycles,
            trigger=IntervalTrigger(seconds=connector.poll_seconds, timezone=UTC),
            args=(app,),
            id=WORKER_JOB,
            name="Dataverse sync worker",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
    scheduler.add_job(
        _announce_safely, args=(app,), id="announce", name="Write the jobs' next run times", misfire_grace_time=None
    )
    return scheduler


def should_run_here(app: Flask) -> bool:
    """Whether this process should run the background scheduler.

    Not in the Flask reloader's watcher process (``flask run --debug``: only the
    child that serves requests runs it), and not while a ``flask`` command other
    than ``run`` loads the app (``flask dynamics-sync rollup``, ``flask shell``,
    ``flask db upgrade``; ``run-scheduler`` runs its own). WSGI servers and
    scripts have no click context: they run it.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return True
    if ctx.info_name != "run":
        return False
    from flask.helpers import get_debug_flag

    reload = ctx.params.get("reload")
    if reload is None:
        reload = get_debug_flag()
    return not reload or os.environ.get("WERKZEUG_RUN_MAIN") == "true"


def _shutdown(scheduler: BaseScheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)


def start_scheduler(app: Flask) -> BackgroundScheduler:
    """Build the background scheduler and start it if this process should run it (:func:`should_run_here`).

    Returns the scheduler either way (``scheduler.running`` tells). It is shut
    down at interpreter exit; ``DynamicsSync.shutdown_scheduler()`` stops it sooner.
    """
    scheduler = t.cast(BackgroundScheduler, build_scheduler(app))
    if should_run_here(app):
        scheduler.start()
        atexit.register(_shutdown, scheduler)
        app.logger.info("Flask-Dynamics-Sync scheduler started: %s", ", ".join(job_specs(get_state(app).settings)))
    else:
        app.logger.debug("Flask-Dynamics-Sync scheduler not started in this process")
    return scheduler


def shutdown_scheduler(scheduler: BaseScheduler | None, *, wait: bool = True) -> None:
    """Stop ``scheduler`` if it runs (waiting for running jobs unless ``wait=False``)."""
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=wait)
