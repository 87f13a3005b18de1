"""Sync Status figures: the whole page and its Last Hour view, at scale and at 10k queue rows.

Two databases are seeded alike (hourly throughput for 8 days, a backlog
snapshot every five minutes for 7 days, the rollup job's row) except for their
size: 1M queue rows of which 50k pending with 5M sync events (40k an hour over
125 hours), and 10k queue rows of which 500 pending with 50k events. The page
is requested through the Flask test client, alternating between the two apps
so that both see the same machine load; the time is the server's, from request
to the last byte of the response.
"""

from __future__ import annotations

import time

from .apps import make_app
from .datasets import status_database
from .harness import Figure
from .harness import median_p95

STATUS_URL = "/admin/dynamics/status/"
SAMPLES = 60
WARMUP = 5


def _timed_get(client, url: str) -> float:
    began = time.perf_counter()
    response = client.get(url)
    _ = response.data  # the whole body rendered
    elapsed = time.perf_counter() - began
    assert response.status_code == 200, (url, response.status_code)
    return elapsed * 1000


def measure_pages(clients: dict[str, object], urls: dict[str, str], samples: int = SAMPLES) -> dict[tuple[str, str], list[float]]:
    """Milliseconds per request for every (client, page), round-robin so load hits all alike."""
    timings: dict[tuple[str, str], list[float]] = {(c, u): [] for c in clients for u in urls}
    for round_ in range(WARMUP + samples):
        for client_name, client in clients.items():
            for page, url in urls.items():
                elapsed = _timed_get(client, url)
                if round_ >= WARMUP:
                    timings[(client_name, page)].append(elapsed)
    return timings


def run_backend(scale, backend: str, server: str | None) -> list[Figure]:
    big, small = status_database(scale, backend, server), status_database(scale, backend, server, small=True)
    urls = {"big": big.url, "small": small.url}
    clients = {}
    for name, url in urls.items():
        app, _db, _sync = make_app(url)
        clients[name] = app.test_client()
    pages = {"backlog": STATUS_URL, "last_hour": STATUS_URL + "?view=last_hour"}
    timings = measure_pages(clients, pages)
    scale_text = big.describe()
    suffix = "" if backend == "sqlite" else f" [{backend}]"
    figures = []
    med, p95 = median_p95(timings[("big", "backlog")])
    base, _ = median_p95(timings[("small", "backlog")])
    figures.append(Figure(
        name="Sync Status page, all panels" + suffix, scale=scale_text, unit="ms", median=med, p95=p95,
        target=50, baseline=base, max_ratio=1.5,
        baseline_label=f"the same page at {small.queue:,} queue rows, {small.pending:,} pending (ratio of medians)",
    ))
    med, p95 = median_p95(timings[("big", "last_hour")])
    small_med, _ = median_p95(timings[("small", "last_hour")])
    figures.append(Figure(
        name="Last Hour view" + suffix, scale=scale_text, unit="ms", median=med, p95=p95, target=20,
        note=f"(at {small.queue:,} queue rows: median {small_med:.1f} ms)",
    ))
    return figures

