"""``flask dynamics-sync …``: the jobs from the command line."""

from __future__ import annotations

import datetime as dt
import os
import signal
import smtplib
import subprocess
import sys
import time

import pytest

from flask_dynamics_sync.jobs import job_states

from .conftest import NOW
from .test_notifications import MAIL
from .test_notifications import FakeSMTP
from .test_notifications import failure
from .test_rollup import HOUR
from .test_rollup import add_errors
from .test_rollup import add_events
from .test_rollup import buckets
from .test_rollup import event
from .workers.jobs_worker import ROOT

H = dt.timedelta(hours=1)
COMMANDS = ["create-tables", "db", "jobs", "notify", "pause", "paused", "prune", "resume", "rollup", "run-scheduler", "worker"]


def invoke(app, *args: str):
    return app.test_cli_runner().invoke(args=["dynamics-sync", *args])


def test_the_group_lists_every_command(app):
    result = invoke(app, "--help")

    listed = [line.split()[0] for line in result.output.split("Commands:")[1].strip().splitlines()]
    assert listed == COMMANDS


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ("rollup", ["--from", "--to", "DYNAMICS_SYNC_ROLLUP_WINDOW_HOURS", "backfill"]),
        ("prune", ["DYNAMICS_SYNC_EVENT_RETENTION_DAYS", "DYNAMICS_SYNC_ERROR_RETENTION_DAYS", "DYNAMICS_SYNC_PRUNE_BATCH_SIZE"]),
        ("notify", ["--digest / --no-digest", "--alerts / --no-alerts", "DYNAMICS_SYNC_NOTIFY_EMAILS", "status 1"]),
        ("run-scheduler", ["DYNAMICS_SYNC_SCHEDULER", "SIGTERM", "each tick runs in one of them"]),
        ("jobs", ["next run"]),
    ],
)
def test_each_command_explains_itself(app, command, mentions):
    result = invoke(app, command, "--help")

    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert [m for m in mentions if m not in text] == []


def test_rollup_rolls_up_and_says_what_it_did(app, db):
    add_events(db, event(HOUR), event(HOUR - H))

    result = invoke(app, "rollup")

    assert result.exit_code == 0
    assert result.output == (
        "Rollup: rolled up 4 hour(s) 2026-03-10 11:00 – 2026-03-10 15:00 UTC: 2 bucket(s), 0 removed; "
        "watermark 2026-03-10 11:00; backlog snapshot of 0 row(s).\n"
    )


def test_rollup_backfills_a_range(app, db):
    add_events(db, event(HOUR - 48 * H), event(HOUR - 30 * H), event(HOUR - H))

    result = invoke(app, "rollup", "--from", "2026-03-08", "--to", "2026-03-09 12:30")

    assert result.exit_code == 0
    assert "rolled up 37 hour(s) 2026-03-08 00:00 – 2026-03-09 13:00 UTC: 2 bucket(s)" in result.output
    assert sorted(key[0] for key in buckets(db)) == [HOUR - 48 * H, HOUR - 30 * H]


def test_rollup_refuses_an_empty_range(app):
    result = invoke(app, "rollup", "--from", "2026-03-09", "--to", "2026-03-08")

    assert result.exit_code != 0
    assert "empty range" in str(result.exception)


def test_prune_says_what_it_deleted(app, db):
    add_events(db, event(NOW - dt.timedelta(days=20)))
    invoke(app, "rollup")

    result = invoke(app, "prune")

    assert result.exit_code == 0
    assert result.output == (
        "Prune: deleted 1 sync event(s) (before 2026-02-24 14:00 UTC), 0 resolved/ignored error(s) "
        "(before 2025-12-10 14:00 UTC), 0 backlog snapshot row(s) (before 2026-02-24 14:20 UTC) "
        "in 4 batch(es); hourly rollups kept.\n"
    )


def test_notify_says_what_it_sent(app, db):
    add_errors(db, failure(NOW - H, "1"))

    result = invoke(app, "notify")

    assert result.exit_code == 0
    assert result.output == (
        "Notify: digest: 1 failed record(s), 1 attempt(s) since 2026-03-09 14:20 UTC; "
        "no threshold alert; 0 e-mail(s) sent.\n"
    )


def test_notify_fails_when_mail_cannot_be_sent(make_app, db_url, monkeypatch):
    monkeypatch.setattr(smtplib, "SMTP", FakeSMTP)
    monkeypatch.setattr(FakeSMTP, "fail_with", ConnectionRefusedError(111, "Connection refused"))
    app = make_app(db_url, config=MAIL)
    with app.app_context():
        add_errors(app.extensions["test_db"], failure(NOW - H, "1"))
        result = invoke(app, "notify")

    assert result.exit_code == 1
    assert "e-mail failed: ConnectionRefusedError: [Errno 111] Connection refused" in result.output


def test_jobs_shows_each_jobs_state(app, db):
    invoke(app, "rollup")

    result = invoke(app, "jobs")

    assert result.output.splitlines()[0] == (
        "rollup   last started 2026-03-10 14:20:00, finished 2026-03-10 14:20:00, status ok, "
        "next run -, watermark 2026-03-10 11:00:00"
    )


def test_jobs_before_any_run(app):
    assert invoke(app, "jobs").output == "No job has run yet.\n"


def test_run_scheduler_runs_until_terminated(db_url, db):
    env = {**os.environ, "JOBS_WORKER_URL": db_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.workers.jobs_worker:create_app", "dynamics-sync", "run-scheduler"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("Scheduler running"):
                break
        deadline = time.monotonic() + 30  # the scheduler's first job writes the next run times
        while "rollup" not in job_states(db.engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    assert process.returncode == 0, err
    assert [line.split()[0] for line in lines[:-1]] == ["rollup", "refresh", "prune", "notify", "alerts"]
    assert out.strip().splitlines()[-1] == "Scheduler stopped."
    states = job_states(db.engine)
    assert sorted(states) == ["alerts", "notify", "prune", "refresh", "rollup"]
    real_now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert all(info.next_run_at > real_now - dt.timedelta(minutes=1) for info in states.values())
