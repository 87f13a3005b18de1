"""``flask dynamics-sync …`` commands."""

from __future__ import annotations

import datetime as dt

import click
from flask import current_app
from flask.cli import with_appcontext

from . import schema
from .state import get_state


def _sync():
    return get_state().extension


@click.group("dynamics-sync", help="Flask-Dynamics-Sync: tables, rollup, retention, notifications, the Dataverse sync worker.")
def cli_group() -> None:
    pass


@cli_group.command("create-tables")
@with_appcontext
def create_tables() -> None:
    """Create the plugin's tables (hosts without migrations). Existing tables are kept."""
    _sync().create_all()
    click.echo("Created the dynamics_sync_* tables (existing ones were left as they are).")


# -- jobs (the same work the scheduler does, for cron or by hand) ---------------------

_DATETIME = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])


@cli_group.command("rollup")
@click.option("--from", "start", type=_DATETIME, help="Backfill from this time, UTC (rounded down to the hour).")
@click.option("--to", "end", type=_DATETIME, help="Backfill up to this time, UTC (excluded, rounded up to the hour).")
@with_appcontext
def rollup_command(start: dt.datetime | None, end: dt.datetime | None) -> None:
    """Recompute the hourly throughput from the raw sync events and errors.

    Without options, does what the hourly job does: recompute the last
    DYNAMICS_SYNC_ROLLUP_WINDOW_HOURS hours, the current hour, and every hour
    missed since the previous run. With --from and/or --to, recompute exactly
    those hours (backfill), e.g. after importing history:

        flask dynamics-sync rollup --from 2026-03-01 --to 2026-03-08

    A missing --from means the first event; a missing --to, the current hour.
    Safe to run at any time, also while the scheduler runs: whole hours are
    recomputed, so repeating a run changes nothing.
    """
    result = _sync().rollup(start, end)
    click.echo(f"Rollup: {result}.")


@cli_group.command("prune")
@with_appcontext
def prune_command() -> None:
    """Apply retention: delete old raw sync events, errors and backlog snapshots.

    Deletes sync events older than DYNAMICS_SYNC_EVENT_RETENTION_DAYS (only in
    hours the rollup has finished), resolved and ignored errors older than
    DYNAMICS_SYNC_ERROR_RETENTION_DAYS, and backlog snapshots older than the
    event retention, in batches of DYNAMICS_SYNC_PRUNE_BATCH_SIZE rows. Hourly
    rollups are kept.
    """
    result = _sync().prune()
    click.echo(f"Prune: {result}.")


@cli_group.command("notify")
@click.option("--digest/--no-digest", default=True, show_default=True, help="Send the daily digest of failed records.")
@click.option(
    "--alerts/--no-alerts", default=True, show_default=True, help="Check the error threshold (if configured)."
)
@with_appcontext
def notify_command(digest: bool, alerts: bool) -> None:
    """Send the digest of records that failed in the last 24 hours and check the error threshold.

    Both go out as blinker signals (errors_digest, error_threshold_reached) and,
    when DYNAMICS_SYNC_NOTIFY_EMAILS is set, by e-mail through the
    DYNAMICS_SYNC_SMTP_* server. The threshold alert (DYNAMICS_SYNC_ALERT_THRESHOLD
    errors of one code within DYNAMICS_SYNC_ALERT_WINDOW_MINUTES) fires once
    when a code crosses it. Exits with status 1 if an e-mail could not be sent.
    """
    from .notifications import NotificationError

    try:
        result = _sync().notify(digest=digest, alerts=alerts)
    except NotificationError as exc:
        click.echo(f"Notify: {exc.result}.")
        raise click.exceptions.Exit(1) from exc
    click.echo(f"Notify: {result}.")


@cli_group.command("run-scheduler")
@with_appcontext
def run_scheduler_command() -> None:
    """Run the scheduled jobs in this process, in the foreground, until stopped (Ctrl+C, SIGTERM).

    For hosts that prefer a dedicated scheduler process to
    DYNAMICS_SYNC_SCHEDULER=True in the web workers. Jobs (UTC): rollup hourly
    at :05, refresh of the current hour every DYNAMICS_SYNC_ROLLUP_REFRESH_MINUTES,
    prune daily at 03:15, notify daily at 07:00, alerts every minute when
    DYNAMICS_SYNC_ALERT_THRESHOLD > 0. Several scheduler processes (or web
    workers with the scheduler on) may run at once: each tick runs in one of them.
    """
    import signal

    from .scheduler import build_scheduler
    from .scheduler import job_specs

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    scheduler = build_scheduler(app, blocking=True)
    now = _sync().now()
    for name, spec in job_specs(_sync().settings).items():
        click.echo(f"  {name:<8} next run {spec.next_tick(now):%Y-%m-%d %H:%M} UTC  {spec.description}")
    def stop(signum: int, frame: object) -> None:
        if not scheduler.running:
            raise SystemExit(0)  # not started yet: leave before starting
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    try:
        click.echo("Scheduler running; Ctrl+C to stop.")
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    click.echo("Scheduler stopped.")


@cli_group.command("worker")
@click.option("--once", is_flag=True, help="Run one cycle (claim, send, report) and exit.")
@click.option("--batch-size", type=click.IntRange(1, 1000), help="Records per request (default DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE).")
@click.option("--in-flight", type=click.IntRange(1, 64), help="Requests in flight (default DYNAMICS_SYNC_DATAVERSE_IN_FLIGHT).")
@click.option("--claim-size", type=click.IntRange(1, 10000), help="Records claimed per cycle (default DYNAMICS_SYNC_WORKER_CLAIM_SIZE).")
@click.option("--lease", "lease_seconds", type=click.IntRange(1), help="Seconds a claim lasts (default DYNAMICS_SYNC_CLAIM_TIMEOUT).")
@with_appcontext
def worker_command(
    once: bool, batch_size: int | None, in_flight: int | None, claim_size: int | None, lease_seconds: int | None
) -> None:
    """Send the queue's records to Dataverse until stopped (Ctrl+C, SIGTERM).

    Claims records of the object types tracked with a Dataverse mapping, upserts
    them by key and reports each one synced or failed (with Dataverse's code and
    message). Run as many workers as you like, on as many machines: they share
    the queue safely. On SIGTERM the batch in flight is finished and reported,
    then the worker exits.
    """
    import signal
    import threading

    from .dataverse.worker import SyncWorker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    worker = SyncWorker(
        app, batch_size=batch_size, in_flight=in_flight, claim_size=claim_size, lease_seconds=lease_seconds
    )
    try:
        if once:
            click.echo(f"Worker: {worker.run_once()}.")
            return
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        click.echo(f"Worker {worker.stats.worker_id if worker.stats else ''} running; Ctrl+C to stop.")
        worker.run(stop)
    finally:
        worker.close()
    click.echo("Worker stopped.")


def _operator_name() -> str:
    import getpass

    try:
        return f"{getpass.getuser()} (CLI)"
    except (KeyError, OSError):  # no user name in this environment
        return "CLI"


_DIRECTIONS = click.Choice(["to_dynamics", "from_dynamics"])


@cli_group.command("pause")
@click.argument("object_type")
@click.argument("direction", type=_DIRECTIONS)
@click.option("--by", help="Who pauses it, shown on Sync Status (default: the system user).")
@with_appcontext
def pause_command(object_type: str, direction: str, by: str | None) -> None:
    """Pause OBJECT_TYPE in DIRECTION: nothing is sent (to_dynamics) or read (from_dynamics) for it.

    The backlog keeps growing and drains in order after `resume`. Every worker sees it at once.
    """
    try:
        changed = _sync().pause(object_type, direction, by=by or _operator_name())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="OBJECT_TYPE") from None
    click.echo(f"{object_type} {direction}: {'paused' if changed else 'was already paused'}.")


@cli_group.command("resume")
@click.argument("object_type")
@click.argument("direction", type=_DIRECTIONS)
@with_appcontext
def resume_command(object_type: str, direction: str) -> None:
    """Resume OBJECT_TYPE in DIRECTION: the workers drain its backlog, oldest first."""
    try:
        changed = _sync().resume(object_type, direction)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="OBJECT_TYPE") from None
    click.echo(f"{object_type} {direction}: {'resumed' if changed else 'was not paused'}.")


@cli_group.command("paused")
@with_appcontext
def paused_command() -> None:
    """List the paused objects and directions, with who paused them and when (UTC)."""
    pauses = [p for found in _sync().pauses().values() for p in found]
    if not pauses:
        click.echo("Nothing is paused.")
    for p in pauses:
        click.echo(f"{p.object_type} {p.direction.value}: paused by {p.paused_by or 'unknown'} at {p.paused_at:%Y-%m-%d %H:%M:%S} UTC")


@cli_group.command("jobs")
@with_appcontext
def jobs_command() -> None:
    """Show each job's last run, status, next run and watermark (times in UTC)."""
    from .scheduler import job_states

    def when(value: dt.datetime | None) -> str:
        return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"

    states = job_states(_sync().engine)
    if not states:
        click.echo("No job has run yet.")
    for name, info in states.items():
        click.echo(
            f"{name:<8} last started {when(info.last_started_at)}, finished {when(info.last_finished_at)}, "
            f"status {info.last_status or '-'}, next run {when(info.next_run_at)}, watermark {when(info.watermark)}"
        )
        if info.last_message:
            click.echo(f"         {info.last_message}")


@cli_group.group("db")
def db_group() -> None:
    """The plugin's own migrations (version table dynamics_sync_alembic_version)."""


def _report_revision() -> None:
    click.echo(f"dynamics_sync schema revision: {schema.current_revision(_sync().engine) or 'none'}")


@db_group.command("upgrade")
@click.argument("revision", default="head")
@click.option("--sql", is_flag=True, help="Print the SQL from an empty database instead of running it.")
@with_appcontext
def db_upgrade(revision: str, sql: bool) -> None:
    """Migrate the plugin's tables up to REVISION (default: head)."""
    if sql:
        schema.upgrade_sql(_sync().engine.dialect.name, revision)
        return
    schema.upgrade(_sync().engine, revision)
    _report_revision()


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Migrate the plugin's tables down to REVISION ("base" drops them, with their data)."""
    schema.downgrade(_sync().engine, revision)
    _report_revision()


@db_group.command("stamp")
@click.argument("revision")
@with_appcontext
def db_stamp(revision: str) -> None:
    """Record REVISION as current without migrating (tables made by create-tables: "head")."""
    schema.stamp(_sync().engine, revision)
    _report_revision()


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    """Show the plugin's schema revision in the database and the newest one shipped."""
    _report_revision()
    click.echo(f"newest shipped revision: {schema.head_revision()}")
