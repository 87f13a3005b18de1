"""The scheduler: job definitions, one run per tick across processes, start and stop."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter

import click
import pytest

from flask_dynamics_sync.jobs import JobStateInfo
from flask_dynamics_sync.jobs import job_states
from flask_dynamics_sync.leases import make_lease
from flask_dynamics_sync.scheduler import announce_next_runs
from flask_dynamics_sync.scheduler import build_scheduler
from flask_dynamics_sync.scheduler import job_specs
from flask_dynamics_sync.scheduler import run_job
from flask_dynamics_sync.scheduler import should_run_here

from .conftest import NOW
from .test_rollup import HOUR
from .test_rollup import add_events
from .test_rollup import buckets
from .test_rollup import event
from .workers.jobs_worker import CONFIG
from .workers.jobs_worker import Worker
from .workers.jobs_worker import start_together

D = dt.datetime
H = dt.timedelta(hours=1)


def scheduled_jobs(app) -> dict:
    scheduler = build_scheduler(app)
    return {job.id: job for job in scheduler.get_jobs()}


# -- job definitions ------------------------------------------------------------------


def test_the_default_configuration_schedules_rollup_refresh_prune_and_notify(make_app, sqlite_url):
    jobs = scheduled_jobs(make_app(sqlite_url))

    assert {name: str(job.trigger) for name, job in jobs.items() if name != "announce"} == {
        "rollup": "cron[minute='5']",
        "refresh": "cron[minute='*/5']",
        "prune": "cron[hour='3', minute='15']",
        "notify": "cron[hour='7', minute='0']",
    }
    assert str(jobs["announce"].trigger).startswith("date[")  # once, at start: see announce_next_runs


def test_jobs_run_late_rather_than_never_and_never_overlap(make_app, sqlite_url):
    jobs = scheduled_jobs(make_app(sqlite_url, config={"DYNAMICS_SYNC_ALERT_THRESHOLD": 5}))

    assert {
        name: (job.misfire_grace_time, job.coalesce, job.max_instances) for name, job in jobs.items() if name != "announce"
    } == {
        "rollup": (55 * 60, True, 1),
        "refresh": (5 * 60, True, 1),
        "prune": (6 * 3600, True, 1),
        "notify": (6 * 3600, True, 1),
        "alerts": (60, True, 1),
    }


def test_the_alert_check_runs_every_minute_when_a_threshold_is_set(make_app, sqlite_url):
    jobs = scheduled_jobs(make_app(sqlite_url, config={"DYNAMICS_SYNC_ALERT_THRESHOLD": 5}))

    assert str(jobs["alerts"].trigger) == "cron[minute='*']"


def test_the_refresh_follows_its_setting_and_is_left_out_from_an_hour_up(make_app, sqlite_url):
    every_10 = scheduled_jobs(make_app(sqlite_url, config={"DYNAMICS_SYNC_ROLLUP_REFRESH_MINUTES": 10}))
    hourly = scheduled_jobs(make_app(sqlite_url, config={"DYNAMICS_SYNC_ROLLUP_REFRESH_MINUTES": 60}))

    assert str(every_10["refresh"].trigger) == "cron[minute='*/10']"
    assert "refresh" not in hourly


def test_jobs_live_in_memory_not_in_a_shared_job_store(make_app, sqlite_url):
    scheduler = build_scheduler(make_app(sqlite_url))

    assert type(scheduler._jobstores["default"]).__name__ == "MemoryJobStore"


@pytest.mark.parametrize(
    ("job", "now", "latest", "following"),
    [
        ("rollup", D(2026, 3, 10, 14, 20), D(2026, 3, 10, 14, 5), D(2026, 3, 10, 15, 5)),
        ("rollup", D(2026, 3, 10, 14, 5), D(2026, 3, 10, 14, 5), D(2026, 3, 10, 15, 5)),
        ("rollup", D(2026, 3, 10, 14, 4, 59), D(2026, 3, 10, 13, 5), D(2026, 3, 10, 14, 5)),
        ("refresh", D(2026, 3, 10, 14, 22, 30), D(2026, 3, 10, 14, 20), D(2026, 3, 10, 14, 25)),
        ("prune", D(2026, 3, 10, 2, 0), D(2026, 3, 9, 3, 15), D(2026, 3, 10, 3, 15)),
        ("notify", D(2026, 3, 10, 7, 0, 0, 500), D(2026, 3, 10, 7, 0), D(2026, 3, 11, 7, 0)),
    ],
)
def test_ticks_are_the_same_in_every_process(make_app, sqlite_url, job, now, latest, following):
    spec = job_specs(make_app(sqlite_url).extensions["dynamics_sync"].settings)[job]

    assert (spec.latest_tick(now), spec.next_tick(now)) == (latest, following)


# -- one run per tick -----------------------------------------------------------------


def test_a_tick_runs_the_job_and_records_the_next_one(app, db):
    run = run_job(app, "rollup")

    info = job_states(db.engine)["rollup"]
    assert (run.ran, run.reason, run.tick) == (True, "ran", D(2026, 3, 10, 14, 5))
    assert (info.last_status, info.last_started_at, info.next_run_at) == ("ok", NOW, D(2026, 3, 10, 15, 5))


def test_a_refresh_tick_recomputes_the_current_hour_only(app, db):
    add_events(db, event(HOUR - 2 * H), event(HOUR))

    run = run_job(app, "refresh")

    assert (run.reason, run.result.start, run.result.end) == ("ran", HOUR, HOUR + H)
    assert list(buckets(db)) == [(HOUR, "Lead", "insert", "to_dynamics")]
    assert job_states(db.engine)["refresh"].next_run_at == D(2026, 3, 10, 14, 25)


def test_a_tick_already_run_is_not_run_again(app):
    run_job(app, "rollup", holder="first")

    again = run_job(app, "rollup", holder="second")

    assert (again.ran, again.reason) == (False, "done")


def test_the_next_tick_runs_again(app, clock):
    run_job(app, "rollup")
    clock.advance(hours=1)

    assert run_job(app, "rollup").reason == "ran"


def test_a_tick_is_skipped_while_another_process_holds_the_lease(app, db, clock):
    other = make_lease(db.engine, "rollup", clock=clock, seconds=120, holder="other process")
    assert other.acquire()
    try:
        run = run_job(app, "rollup", holder="me")
    finally:
        other.release()

    assert (run.ran, run.reason) == (False, "locked")
    assert job_states(db.engine)["rollup"].last_started_at is None


def test_a_failing_job_is_recorded_and_the_next_tick_runs(app, db, clock, monkeypatch):
    from flask_dynamics_sync import scheduler

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(scheduler, "roll_up", broken)
    failed = run_job(app, "rollup")
    monkeypatch.undo()
    clock.advance(hours=1)

    assert (failed.ran, failed.reason) == (True, "failed")
    assert job_states(db.engine)["rollup"].last_message == "RuntimeError: boom"
    assert run_job(app, "rollup").reason == "ran"


def test_four_processes_run_each_job_once_per_tick(app, db_url, backend):
    moments = [D(2026, 3, 11, 3, 15), D(2026, 3, 11, 3, 20), D(2026, 3, 11, 4, 5), D(2026, 3, 11, 7, 0)]
    settings = app.extensions["dynamics_sync"].settings
    specs = job_specs(dataclasses.replace(settings, alert_threshold=CONFIG["DYNAMICS_SYNC_ALERT_THRESHOLD"]))
    workers = [Worker("ticks", db_url, f"process-{i}", *(m.isoformat() for m in moments)) for i in range(4)]
    reports = []
    try:
        for _ in moments:
            start_together(workers)
            reports += [json.loads(worker.expect("{")) for worker in workers]
    finally:
        for worker in workers:
            worker.close()

    ran = Counter(name for report in reports for name, reason in report["runs"].items() if reason == "ran")
    assert [reason for report in reports for reason in report["runs"].values() if reason not in ("ran", "locked", "done")] == []
    assert dict(ran) == {name: len({spec.latest_tick(m) for m in moments}) for name, spec in specs.items()}
    assert dict(ran) == {"rollup": 3, "refresh": 4, "alerts": 4, "prune": 1, "notify": 2}


def test_a_killed_lease_holder_does_not_block_the_next_tick(app, db_url, clock, backend):
    from .test_leases import acquire_within

    holder = Worker("hold", db_url, "rollup", NOW.isoformat())
    try:
        holder.expect("held")
        assert run_job(app, "rollup").reason == "locked"
    finally:
        holder.kill()

    clock.advance(hours=1)  # the next tick, past the lease of a lease row
    assert acquire_within(lambda: make_lease(app.extensions["test_db"].engine, "rollup", clock=clock, seconds=120))
    assert run_job(app, "rollup").reason == "ran"


# -- announcing the next runs -----------------------------------------------------------


def test_a_fresh_deployment_shows_the_next_runs_at_once(app, db):
    announce_next_runs(app)

    assert {name: info.next_run_at for name, info in job_states(db.engine).items()} == {
        "rollup": D(2026, 3, 10, 15, 5),
        "refresh": D(2026, 3, 10, 14, 25),
        "prune": D(2026, 3, 11, 3, 15),
        "notify": D(2026, 3, 11, 7, 0),
    }


def test_announcing_leaves_a_schedule_another_process_keeps(app, db, clock):
    run_job(app, "rollup")
    clock.advance(minutes=50)  # 15:10: the 15:05 tick is due, another process may be running it

    announce_next_runs(app)

    assert job_states(db.engine)["rollup"].next_run_at == D(2026, 3, 10, 15, 5)


def test_job_states_gives_typed_rows_by_name(app, db):
    run_job(app, "prune")

    states = job_states(db.engine)

    assert isinstance(states["prune"], JobStateInfo)
    assert (states["prune"].last_status, states["prune"].next_run_at) == ("ok", D(2026, 3, 11, 3, 15))


# -- starting and stopping --------------------------------------------------------------


def test_the_extension_starts_the_scheduler_when_configured(make_app, sqlite_url):
    app = make_app(sqlite_url, config={"DYNAMICS_SYNC_SCHEDULER": True})
    scheduler = app.extensions["dynamics_sync"].scheduler

    try:
        assert scheduler.running
        assert {job.id for job in scheduler.get_jobs()} >= {"rollup", "refresh", "prune", "notify"}
    finally:
        with app.app_context():
            app.extensions["dynamics_sync"].extension.shutdown_scheduler()
    assert not scheduler.running


def test_the_scheduler_is_off_by_default(make_app, sqlite_url):
    assert make_app(sqlite_url).extensions["dynamics_sync"].scheduler is None


def run_context(command: str, **params: object) -> click.Context:
    ctx = click.Context(click.Command(command), info_name=command)
    ctx.params.update(params)
    return ctx


@pytest.mark.parametrize(
    ("command", "params", "reloader_child", "expected"),
    [
        ("run", {"reload": False}, False, True),
        ("run", {"reload": True}, False, False),  # the reloader's watcher process
        ("run", {"reload": True}, True, True),  # the reloader's child, serving requests
        ("rollup", {}, False, False),
        ("shell", {}, False, False),
        ("run-scheduler", {}, False, False),
    ],
)
def test_which_flask_commands_run_the_background_scheduler(
    make_app, sqlite_url, monkeypatch, command, params, reloader_child, expected
):
    app = make_app(sqlite_url)
    if reloader_child:
        monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    else:
        monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)

    with run_context(command, **params):
        assert should_run_here(app) is expected


def test_a_wsgi_server_runs_the_background_scheduler(make_app, sqlite_url):
    assert should_run_here(make_app(sqlite_url)) is True
