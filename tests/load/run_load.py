"""The load test, one command: ``python -m tests.load.run_load [--seconds 60] [--clients 32]``.

What runs, all on 127.0.0.1 and all stopped when it ends (or fails):

1. a throw-away PostgreSQL database on ``--server-url`` (default: the test
   server, ``DYNAMICS_SYNC_TEST_POSTGRES_URL``), seeded with the example host's
   demo data, and dropped at the end;
2. the example host (:func:`example_host.create_app`: login, strict CSP, the
   plugin with its scheduler) under gunicorn, ``--workers`` processes of
   ``--threads`` threads each;
3. a feeder process playing the sync engine (:mod:`tests.load.feeder`):
   ``--rate`` changes a second enqueued through the recording API and drained;
4. ``--clients`` signed-in viewers (:mod:`tests.load.clients`, threads spread over a
   few processes) requesting both Sync Status views, its JSON and the Sync Errors
   list, each on a keep-alive connection, for ``--seconds``.

It prints requests, latency percentiles (p50, p95, p99) per page and overall,
server errors (5xx and broken connections), tracebacks in the server's log, the
feeder's figures and the records lost (enqueued, but neither synced nor parked
with an error) or left pending. Exit status 0 when there was no server error and
nothing was lost.
Latencies are reported, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

from .clients import PAGES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SERVER_URL = os.environ.get(
    "DYNAMICS_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STARTUP_TIMEOUT = 60
#: Time left to every process after the run for its last requests and the feeder's drain.
GRACE = 90


@dataclasses.dataclass(frozen=True)
class LoadConfig:
    """What to run: the defaults are the full test; CI runs a short one."""

    seconds: float = 60
    clients: int = 32
    workers: int = 4
    threads: int = 4
    rate: float = 2000
    client_processes: int = 4
    server_url: str = DEFAULT_SERVER_URL


@dataclasses.dataclass(frozen=True)
class Latencies:
    """Request count and latency percentiles (ms) of one page, or of all."""

    requests: int
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: list[float]) -> Latencies:
        ordered = sorted(values)

        def percentile(p: float) -> float:  # nearest rank
            return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1) if ordered else 0.0

        return cls(len(ordered), percentile(50), percentile(95), percentile(99))


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What the run measured."""

    config: LoadConfig
    pages: dict[str, Latencies]
    overall: Latencies
    server_errors: list[str]
    unexpected: list[str]
    tracebacks: int
    """``Traceback`` lines in the server's log."""
    feeder: dict[str, t.Any]
    lost: int
    """Records enqueued by the feeder that are neither synced nor parked with an open error."""
    unfinished: int
    """Records of the feeder still pending after its final drain."""

    @property
    def ok(self) -> bool:
        return (not self.server_errors and self.tracebacks == 0 and self.lost == self.unfinished == 0
                and self.overall.requests > 0)

    def text(self) -> str:
        c, f = self.config, self.feeder
        lines = [
            f"Example host under gunicorn ({c.workers} workers x {c.threads} threads) on PostgreSQL, 127.0.0.1: "
            f"{c.clients} clients for {c.seconds:g} s, feeder at {c.rate:,.0f} changes/s",
            f"{'page':<42}{'requests':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}",
        ]
        for name, figures in [*self.pages.items(), ("all", self.overall)]:
            lines.append(f"{name:<42}{figures.requests:>10,}{figures.p50:>10}{figures.p95:>10}{figures.p99:>10}")
        lines += [
            f"server errors: {len(self.server_errors)}; other answers than 200: {len(self.unexpected)}; "
            f"tracebacks in the server log: {self.tracebacks}",
            f"feeder: {f['enqueued']:,} changes enqueued ({f['enqueue_rate']:,}/s) on {f['records']:,} records; "
            f"{f['synced']:,} synced and {f['parked']:,} parked ({f['drain_rate']:,}/s); "
            f"{f['late_ticks']} of {f['ticks']} ticks late; lost: {self.lost}; still pending: {self.unfinished}",
            *(f"  {error}" for error in (self.server_errors + self.unexpected)[:20]),
            "OK" if self.ok else "FAILED",
        ]
        return "\n".join(lines)

    def jsonable(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self) | {"ok": self.ok}


# -- the pieces ------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    """A new empty database on the PostgreSQL server, dropped afterwards."""
    base = sa.make_url(server_url)
    name = f"dsync_load_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def host_config(url: str, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SECRET_KEY": "load-test",  # every worker signs the same sessions
        **extra,
    }


def seed(url: str) -> None:
    """The host's and the plugin's tables with the demo data (users, history, errors, backlog)."""
    from example_host import create_app

    app = create_app(host_config(url, DYNAMICS_SYNC_SCHEDULER=False))
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def python(module: str, *args: object, **popen: t.Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)], cwd=ROOT, text=True, start_new_session=True, **popen
    )


def stop(process: subprocess.Popen[str], timeout: float = 15) -> None:
    """End a process and its children (its process group): SIGTERM, then SIGKILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)


@contextlib.contextmanager
def gunicorn(url: str, config: LoadConfig, log_path: str) -> Iterator[str]:
    """The example host under gunicorn on a free loopback port; yields its base URL once it answers."""
    port = free_port()
    app = f"example_host:create_app({host_config(url, EXAMPLE_HOST_DEMO_DATA=False)!r})"
    with open(log_path, "w") as log:
        server = python(
            "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", config.workers, "--threads", config.threads,
            "--worker-class", "gthread", "--timeout", 60, "--graceful-timeout", 10, "--log-level", "warning", app,
            stdout=log, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({server.returncode}):\n{open(log_path).read()[-3000:]}")
            try:
                with urllib.request.urlopen(base_url + "/login", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer within {STARTUP_TIMEOUT} s")
            time.sleep(0.2)
        yield base_url
    finally:
        stop(server)


def json_output(process: subprocess.Popen[str], timeout: float) -> dict[str, t.Any]:
    """The last stdout line of a finished helper process, as JSON."""
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args[2]} failed ({process.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def unaccounted(url: str, records: int) -> tuple[int, int]:
    """(lost, unfinished) of the feeder's ``records`` distinct ``load-…`` records after its final drain.

    Lost: neither synced (an event) nor parked with an open error. Unfinished: still pending.
    """
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            unfinished = conn.scalar(sa.text(
                "SELECT count(*) FROM dynamics_sync_queue WHERE record_id LIKE 'load-%' AND state = 'pending'"
            ))
            accounted = conn.scalar(sa.text(
                "SELECT count(*) FROM ("
                " SELECT object_type, record_id FROM dynamics_sync_event WHERE record_id LIKE 'load-%'"
                " UNION SELECT q.object_type, q.record_id FROM dynamics_sync_queue q"
                "  JOIN dynamics_sync_error e ON e.object_type = q.object_type AND e.record_id = q.record_id"
                "  WHERE q.record_id LIKE 'load-%' AND q.state = 'parked' AND e.state = 'open') AS seen"
            ))
    finally:
        engine.dispose()
    return records - int(accounted), int(unfinished)


# -- the run ----------------------------------------------------------------------------


def run(config: LoadConfig) -> LoadReport:
    """Set everything up, load it for ``config.seconds``, tear it all down; the figures."""
    processes = max(1, min(config.client_processes, config.clients))
    with tempfile.TemporaryDirectory(prefix="dsync-load-") as scratch, throwaway_database(config.server_url) as url:
        seed(url)
        log_path = os.path.join(scratch, "gunicorn.log")
        with gunicorn(url, config, log_path) as base_url:
            helpers = [python("tests.load.feeder", url, config.seconds, config.rate,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
            first = 0
            for index in range(processes):
                threads = config.clients // processes + (index < config.clients % processes)
                helpers.append(python("tests.load.clients", base_url, config.seconds, threads, first,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
                first += threads
            try:
                feeder, *outputs = [json_output(helper, config.seconds + GRACE) for helper in helpers]
            finally:
                for helper in helpers:
                    stop(helper)
        with open(log_path) as log:
            tracebacks = sum("Traceback" in line for line in log)
        lost, unfinished = unaccounted(url, feeder["records"])
    latencies: dict[str, list[float]] = {page: [] for page in PAGES}
    for output in outputs:
        for page, values in output["latencies"].items():
            latencies[page].extend(values)
    return LoadReport(
        config=config,
        pages={page: Latencies.of(values) for page, values in latencies.items()},
        overall=Latencies.of([value for values in latencies.values() for value in values]),
        server_errors=[error for output in outputs for error in output["server_errors"]],
        unexpected=[error for output in outputs for error in output["unexpected"]],
        tracebacks=tracebacks,
        feeder=feeder,
        lost=lost,
        unfinished=unfinished,
    )


def main(argv: list[str] | None = None) -> int:
    defaults = LoadConfig()
    parser = argparse.ArgumentParser(prog="python -m tests.load.run_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="length of the load (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=defaults.clients, help="concurrent viewers (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="gunicorn workers (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="threads per worker (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="changes enqueued and drained per second")
    parser.add_argument("--server-url", default=defaults.server_url, help="PostgreSQL server for a throw-away database")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args(argv)
    report = run(LoadConfig(seconds=args.seconds, clients=args.clients, workers=args.workers, threads=args.threads,
                            rate=args.rate, server_url=args.server_url))
    print(report.text())
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report.jsonable(), out, indent=2)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
