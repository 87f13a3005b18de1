"""The outside probe's attack, replayed against the example host's own threaded server on each database.

Signed in as the read-only demo user, 30 connections ask for the CSV export
and never read, 10 XLSX exports of the operator run at once, and the
read-only user loads the *Sync Status* page and its JSON every second. Every status request must
answer 200 within a second, and no database session may be left *idle in
transaction*, neither while the downloads are stalled nor after the clients
left. Before the fix, 15 PostgreSQL sessions stayed idle in transaction and
``status/json`` answered 503 for minutes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_dynamics_sync.models import SyncError

from .conftest import backend_of

ROOT = Path(__file__).resolve().parents[1]
EXPORT = "/admin/dynamics/errors/export/{}/"
STATUS_PAGES = ["/admin/dynamics/status/", "/admin/dynamics/status/json"]
#: Errors added to the demo data, with 2,000-character messages: a CSV of about 6 MB, more than
#: the sockets' buffers hold, so a client that does not read stalls the download.
ERRORS = 3_000
STALLED_DOWNLOADS = 30
XLSX_EXPORTS = 10
STATUS_SECONDS = 6
#: "Probe 12", "Probe 120" ... "Probe 129", "Probe 1200" ... "Probe 1299": 1 + 10 + 100 errors.
XLSX_OF_111_ERRORS = EXPORT.format("xlsx") + "?" + urllib.parse.urlencode({"search": '"Probe 12"'})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def example_host(url: str) -> Iterator[int]:
    """``python -m example_host`` on ``url`` (its own threaded server, demo data); yields its port once it answers."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "example_host", "--database-url", url, "--port", str(port), "--no-simulator"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if request(port, "GET", "/login")[0] == 200:
                    break
            assert server.poll() is None, f"the example host exited with {server.returncode}"
            assert time.monotonic() < deadline, "the example host did not answer within 60 s"
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(15)


def request(port: int, method: str, path: str, *, cookie: str = "", body: str = "", timeout: float = 30) -> tuple[
    int, dict[str, str], bytes
]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Cookie": cookie} if cookie else {}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def session_cookie(headers: dict[str, str]) -> str:
    return headers["set-cookie"].split(";", 1)[0]


def sign_in(port: int, username: str) -> str:
    """Sign in through the login form; returns the session cookie."""
    status, headers, page = request(port, "GET", "/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert status == 200 and token, "the login page has no CSRF token"
    form = urllib.parse.urlencode({"username": username, "password": username, "csrf_token": token.group(1).decode()})
    status, signed_in, _ = request(port, "POST", "/login", cookie=session_cookie(headers), body=form)
    assert status == 302
    return session_cookie(signed_in)


def add_errors(url: str, count: int) -> None:
    engine = sa.create_engine(url)
    now = dt.datetime(2026, 3, 10, 14, 0)
    with engine.begin() as conn:
        conn.execute(sa.insert(SyncError.__table__), [
            {"object_type": "Lead", "record_id": f"P-{i}", "record_label": f"Probe {i}", "operation": "insert",
             "direction": "to_dynamics", "error_code": "0x80040237",
             "error_message": f"Duplicate record {i}: " + os.urandom(980).hex(), "occurred_at": now - dt.timedelta(seconds=i),
             "attempt": 1, "state": "open"}
            for i in range(count)
        ])
    engine.dispose()


def stalled_download(port: int, cookie: str) -> socket.socket:
    """Ask for the CSV export and never read the answer."""
    conn = socket.create_connection(("127.0.0.1", port))
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.sendall(f"GET {EXPORT.format('csv')} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode())
    return conn


def idle_in_transaction(url: str) -> int:
    """Sessions on the database of ``url`` that hold a transaction open without running anything."""
    backend = backend_of(url)
    if backend == "sqlite":
        # An open read transaction holds a SHARED lock, which an EXCLUSIVE one cannot get past.
        probe = sqlite3.connect(sa.make_url(url).database, timeout=0)
        try:
            probe.execute("BEGIN EXCLUSIVE")
            probe.rollback()
            return 0
        except sqlite3.OperationalError:
            return 1
        finally:
            probe.close()
    engine = sa.create_engine(url)
    database = sa.make_url(url).database
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                query = ("SELECT count(*) FROM pg_stat_activity WHERE datname = :db"
                         " AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()")
            else:
                query = ("SELECT count(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p"
                         " ON p.id = t.trx_mysql_thread_id WHERE p.db = :db AND p.command = 'Sleep'")
            return int(conn.execute(sa.text(query), {"db": database}).scalar_one())
    finally:
        engine.dispose()


def eventually_none_idle(url: str, seconds: float = 5) -> int:
    """Sessions idle in transaction, waiting up to ``seconds`` for short ones (a scheduler tick) to end."""
    deadline = time.monotonic() + seconds
    while (idle := idle_in_transaction(url)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return idle


@pytest.mark.slow
def test_stalled_downloads_and_xlsx_exports_leave_the_status_pages_answering(empty_db_url):
    url = empty_db_url
    with example_host(url) as port:
        add_errors(url, ERRORS)
        cookie, operator = sign_in(port, "viewer"), sign_in(port, "admin")
        for path in STATUS_PAGES:  # warm: the first request compiles templates
            assert request(port, "GET", path, cookie=cookie)[0] == 200

        stalled: list[socket.socket] = []
        xlsx: list[tuple[int, dict[str, str]]] = []

        def stall() -> None:  # one every 50 ms, as a probe script opens them
            for _ in range(STALLED_DOWNLOADS):
                stalled.append(stalled_download(port, cookie))
                time.sleep(0.05)

        def export_xlsx(delay: float) -> None:  # from half a second on, 50 ms apart, as fast as a person clicks
            time.sleep(delay)
            status, headers, _ = request(port, "GET", XLSX_OF_111_ERRORS, cookie=operator, timeout=120)
            xlsx.append((status, headers))

        clients = [
            threading.Thread(target=stall),
            *(threading.Thread(target=export_xlsx, args=(0.5 + 0.05 * i,)) for i in range(XLSX_EXPORTS)),
        ]
        for client in clients:
            client.start()
        timings: list[tuple[str, int, float]] = []
        for _ in range(STATUS_SECONDS):
            second = time.monotonic() + 1
            for path in STATUS_PAGES:
                started = time.monotonic()
                status = request(port, "GET", path, cookie=cookie, timeout=10)[0]
                timings.append((path, status, round(time.monotonic() - started, 3)))
            time.sleep(max(0.0, second - time.monotonic()))
        for client in clients:
            client.join(120)
        idle_while_stalled = eventually_none_idle(url)
        for conn in stalled:
            conn.close()
        idle_after = eventually_none_idle(url)

    assert [timing for timing in timings if timing[1] != 200 or timing[2] >= 1] == [], timings
    assert (idle_while_stalled, idle_after) == (0, 0)
    # One export per user at a time: the first is made, the others are told to come back.
    assert sorted(status for status, _ in xlsx)[0] == 200
    assert [(status, headers.get("retry-after")) for status, headers in xlsx if status != 200] == [
        (429, "10")
    ] * (XLSX_EXPORTS - sum(status == 200 for status, _ in xlsx))
