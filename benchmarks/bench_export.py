"""Export figures: CSV of 1M errors and XLSX of 200k errors, downloaded over HTTP.

Each download runs against a fresh gunicorn server (one sync worker) in a
child process, warmed up by one list page. The client streams the body in
1 MiB reads and counts its lines; meanwhile a thread samples the worker's
``VmRSS`` every 10 ms. Rows/s is rows ÷ (request sent → last byte); memory is
the peak RSS during the download minus the RSS before it. The baseline is the
stock ``ModelView`` export (``export_max_rows = 0``: every row) of the same table.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from .bench_errors import errors_database
from .harness import Figure
from .harness import rss_bytes

PLUGIN_CSV = "/admin/dynamics/errors/export/csv/"
PLUGIN_XLSX = "/admin/dynamics/errors/export/xlsx/"
STOCK_CSV = "/admin/stock-errors/export/csv/"
MB = 1024 * 1024
CSV_RUNS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(url: str) -> Iterator[tuple[int, int]]:
    """A gunicorn server of the bench app on ``url``'s database: yields (port, worker pid)."""
    port = _free_port()
    env = {**os.environ, "DSYNC_BENCH_URL": url}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "1", "--timeout", "900", "--log-level", "warning",
         "--bind", f"127.0.0.1:{port}", "benchmarks.export_server:create_app()"],
        env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _get(port, "/bench/pid")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)
        yield port, int(body)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class RssSampler(threading.Thread):
    """Samples a process's resident memory at a fixed interval until stopped; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.before = self.peak = rss_bytes(pid)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(self.interval)

    def stop(self) -> int:
        """Stop sampling; the growth in bytes (peak − before)."""
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, rss_bytes(self.pid))
        return self.peak - self.before


def download(url: str, path: str, warmup: str) -> tuple[int, float, int, int]:
    """Download ``path`` from a fresh server: (rows, seconds, bytes, RSS growth in bytes)."""
    with server(url) as (port, pid):
        assert _get(port, warmup)[0] == 200
        sampler = RssSampler(pid)
        sampler.start()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
        began = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, (path, response.status)
        size = lines = 0
        while chunk := response.read(MB):
            size += len(chunk)
            lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - began
        conn.close()
        growth = sampler.stop()
    return lines - 1, elapsed, size, growth


def run_backend(scale, backend: str, server_url: str | None) -> list[Figure]:
    suffix = "" if backend == "sqlite" else f" [{backend}]"
    count = scale.n(1_000_000)
    url = errors_database(backend, server_url, count, name="export")
    runs = [download(url, PLUGIN_CSV, "/admin/dynamics/errors/") for _ in range(CSV_RUNS)]
    stock = download(url, STOCK_CSV, "/admin/stock-errors/")
    for rows, *_ in runs + [stock]:
        assert rows == count, (rows, count)
    rates = sorted(rows / seconds for rows, seconds, _, _ in runs)
    growth = max(g for *_, g in runs) / MB
    stock_rate = stock[0] / stock[1]
    stock_growth = stock[3] / MB
    figures = [
        Figure(
            name="CSV export over HTTP" + suffix, scale=f"{count:,} errors", unit="rows/s",
            median=rates[len(rates) // 2], p95=rates[0], target=200_000, higher_is_better=True,
            baseline=stock_rate, baseline_label="stock ModelView CSV export of the same rows",
            note=f"p95 column: slowest of {CSV_RUNS}; gunicorn, 1 sync worker; {runs[0][2] / MB:,.0f} MB body",
        ),
        Figure(
            name="CSV export, server RSS growth" + suffix, scale=f"{count:,} errors", unit="MB",
            median=growth, p95=growth, target=50, baseline=stock_growth,
            baseline_label="stock ModelView CSV export (RSS growth)",
            note=f"largest of {CSV_RUNS} downloads, sampled every 10 ms",
        ),
    ]
    xlsx_count = scale.n(200_000)
    xlsx_url = errors_database(backend, server_url, xlsx_count, name="export_xlsx")
    _rows, seconds, size, growth = download(xlsx_url, PLUGIN_XLSX, "/admin/dynamics/errors/")
    figures.append(Figure(
        name="XLSX export, server RSS growth" + suffix, scale=f"{xlsx_count:,} errors", unit="MB",
        median=growth / MB, p95=growth / MB, target=80,
        note=f"{seconds:.1f} s, {size / MB:,.1f} MB file, {xlsx_count / seconds:,.0f} rows/s",
    ))
    return figures

