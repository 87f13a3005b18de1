"""A host process for the jobs' multi-process tests: ``python -m tests.workers.jobs_worker MODE URL ...``.

Each process builds its own app on the test database with a frozen clock.
Processes start together: each prints ``ready`` and waits for a line on stdin.

Modes:
- ``rollup URL NOW REPEATS [START END]``: run ``sync.rollup()`` (or the backfill
  START–END) REPEATS times at NOW; prints ``done``.
- ``ticks URL HOLDER TIME...``: at each TIME (waiting for a line on stdin before
  each), run every scheduled job's tick as the scheduler would; prints one JSON
  line per time: ``{"time": ..., "runs": {job: reason}}``.
- ``hold URL JOB NOW``: take JOB's lease, print ``held``, then sleep until killed.

``create_app`` is an app factory for ``flask --app`` (the CLI tests).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import subprocess
import sys
import threading
import time

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_dynamics_sync import DynamicsSync


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


#: The configuration every process shares (alerts on, so that every job is scheduled).
CONFIG = {"DYNAMICS_SYNC_ALERT_THRESHOLD": 1}


def make_app(url: str, clock: Clock | None) -> tuple[Flask, DynamicsSync]:
    app = Flask("jobs_worker")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, **CONFIG)
    if url.startswith("sqlite"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}
    db = SQLAlchemy(app)
    sync = DynamicsSync(clock=clock)
    sync.init_app(app, db=db)
    return app, sync


def create_app() -> Flask:
    """For ``flask --app tests.workers.jobs_worker:create_app``: real clock, database from ``JOBS_WORKER_URL``."""
    return make_app(os.environ["JOBS_WORKER_URL"], None)[0]


def wait_for_go() -> None:
    print("ready", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("parent went away")


def rollup(url: str, now: str, repeats: str, start: str | None = None, end: str | None = None) -> None:
    app, sync = make_app(url, Clock(dt.datetime.fromisoformat(now)))
    backfill = (dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)) if start and end else (None, None)
    with app.app_context():
        sync.engine.connect().close()  # connect before the start signal
        wait_for_go()
        for _ in range(int(repeats)):
            sync.rollup(*backfill)
    print("done", flush=True)


def ticks(url: str, holder: str, *times: str) -> None:
    from flask_dynamics_sync.scheduler import job_specs
    from flask_dynamics_sync.scheduler import run_job

    clock = Clock(dt.datetime.fromisoformat(times[0]))
    app, sync = make_app(url, clock)
    names = list(job_specs(sync._state(app).settings))
    with app.app_context():
        sync.engine.connect().close()
    for moment in times:
        clock.now = dt.datetime.fromisoformat(moment)
        wait_for_go()
        runs = {name: run_job(app, name, holder=f"{holder}:{name}").reason for name in names}
        print(json.dumps({"time": moment, "runs": runs}), flush=True)


def hold(url: str, job: str, now: str) -> None:
    from flask_dynamics_sync.leases import make_lease

    app, sync = make_app(url, Clock(dt.datetime.fromisoformat(now)))
    with app.app_context():
        lease = make_lease(sync.engine, job, clock=sync.clock, seconds=app.config["DYNAMICS_SYNC_LEASE_SECONDS"])
        if not lease.acquire():
            raise SystemExit("could not take the lease")
        print("held", flush=True)
        while True:
            time.sleep(60)


# -- the parent's side ----------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Worker:
    """A running ``jobs_worker`` process (or another worker ``module``), read line by line with timeouts."""

    def __init__(self, mode: str, *args: object, module: str = "tests.workers.jobs_worker") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, mode, *map(str, args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 60) -> str:
        """The next line starting with ``prefix``; fails with the worker's stderr if it exits first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(f"worker printed no {prefix!r} within {timeout} s") from None
            if line is None:
                self.process.wait(timeout=10)
                assert self.process.stderr is not None
                raise AssertionError(f"worker exited before {prefix!r}:\n{self.process.stderr.read()}")
            if line.startswith(prefix):
                return line

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def close(self) -> None:
        """Close stdin and wait for the exit (killing after a timeout)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        finally:
            self.kill()


def start_together(workers: list[Worker]) -> None:
    """Wait until every worker is ready, then let them all go at once."""
    for worker in workers:
        worker.expect("ready")
    for worker in workers:
        worker.go()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"rollup": rollup, "ticks": ticks, "hold": hold}[mode](*args)
