"""Browser-like clients of the load test: ``python -m tests.load.clients BASE_URL SECONDS THREADS FIRST``.

Each thread signs in as the demo admin (the console's login form, CSRF token
and session cookie), then requests the pages in :data:`PAGES` in turn on one
keep-alive connection until SECONDS have passed. Prints one JSON line: per page,
the latency of every request (ms); every server error (5xx, broken connection)
and every other answer than 200.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import time
import typing as t
from http.cookies import SimpleCookie
from urllib.parse import urlencode
from urllib.parse import urlsplit

#: What the clients ask for, in turn: both views of Sync Status, its JSON, the Sync Errors list.
PAGES = (
    "/admin/dynamics/status/",
    "/admin/dynamics/status/?view=last_hour",
    "/admin/dynamics/status/json",
    "/admin/dynamics/errors/",
)
USER = ("admin", "admin")
TIMEOUT = 30
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class Client:
    """One signed-in viewer on one keep-alive connection."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # reconnect on the next request
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
            raise
        for header in response.headers.get_all("Set-Cookie") or ():
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response.status, data

    def sign_in(self) -> None:
        status, page = self.request("GET", "/login")
        match = CSRF.search(page.decode())
        if status != 200 or match is None:
            raise RuntimeError(f"no login form (status {status})")
        form = urlencode({"username": USER[0], "password": USER[1], "csrf_token": match.group(1)})
        status, _ = self.request("POST", "/login", form)
        if status != 302:
            raise RuntimeError(f"sign-in refused (status {status})")


def run_client(base_url: str, deadline: float, first: int, out: dict[str, t.Any], lock: threading.Lock) -> None:
    """One viewer until ``deadline``; adds its latencies, server errors (5xx, broken connections)
    and other unexpected answers (e.g. a redirect to the login page) to ``out``."""
    latencies: dict[str, list[float]] = {page: [] for page in PAGES}
    server_errors: list[str] = []
    unexpected: list[str] = []
    client = Client(base_url)
    try:
        client.sign_in()
    except (OSError, http.client.HTTPException, RuntimeError) as exc:
        server_errors.append(f"sign-in: {type(exc).__name__}: {exc}")
        deadline = 0
    turn = first
    while time.monotonic() < deadline:
        page = PAGES[turn % len(PAGES)]
        turn += 1
        started = time.perf_counter()
        try:
            status, _ = client.request("GET", page)
        except (OSError, http.client.HTTPException) as exc:
            server_errors.append(f"{page}: {type(exc).__name__}: {exc}")
            continue
        latencies[page].append((time.perf_counter() - started) * 1000)
        if status >= 500:
            server_errors.append(f"{page}: HTTP {status}")
        elif status != 200:
            unexpected.append(f"{page}: HTTP {status}")
    with lock:
        for page, values in latencies.items():
            out["latencies"].setdefault(page, []).extend(values)
        out["server_errors"].extend(server_errors)
        out["unexpected"].extend(unexpected)


def main(base_url: str, seconds: float, threads: int, first: int) -> dict[str, t.Any]:
    deadline = time.monotonic() + seconds
    out: dict[str, t.Any] = {"latencies": {}, "server_errors": [], "unexpected": []}
    lock = threading.Lock()
    workers = [
        threading.Thread(target=run_client, args=(base_url, deadline, first + i, out, lock), daemon=True)
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + TIMEOUT + 10)
    return out


if __name__ == "__main__":
    base, seconds, threads, first = sys.argv[1:]
    print(json.dumps(main(base, float(seconds), int(threads), int(first))), flush=True)
