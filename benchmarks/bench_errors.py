"""Sync Errors figures: the list's first page, its search and the error groups, against a stock ``ModelView``.

300k errors over 30 days; every 1000th message mentions "quota" (the matching
term finds 300 errors), the non-matching term finds none. The stock view is
Flask-Admin's ``ModelView(SyncError, db)`` on the same app and table, with the
same page size, default sort and searchable columns. Requests alternate
between the two views through the Flask test client.
"""

from __future__ import annotations

import time
import typing as t
from urllib.parse import urlencode

from flask_admin.contrib.sqla import ModelView

from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.search import SEARCH_COLUMNS

from . import seed
from .apps import engine_of
from .apps import fresh_database
from .apps import make_app
from .harness import Figure
from .harness import median_p95

PLUGIN_URL = "/admin/dynamics/errors/"
GROUPS_URL = PLUGIN_URL + "groups/"
STOCK_URL = "/admin/stock-errors/"
MATCHING = seed.RARE_WORD
NOT_MATCHING = "throttled"
SAMPLES = 30
WARMUP = 2


class StockErrorsView(ModelView):
    """Flask-Admin's stock view of the same table, configured like the plugin's list."""

    page_size = 50
    column_default_sort = ("occurred_at", True)
    column_searchable_list = tuple(column.key for column in SEARCH_COLUMNS)
    can_create = can_edit = can_delete = False
    can_export = True
    export_types = ["csv"]
    export_max_rows = 0  # every row


def errors_database(backend: str, server: str | None, count: int, name: str = "errors") -> str:
    url = fresh_database(backend, name, server)
    engine = engine_of(url)
    seed.seed_errors(engine, count)
    seed.analyze(engine)
    engine.dispose()
    return url


def errors_app(url: str, config: dict[str, t.Any] | None = None):
    """The bench host with the plugin's views and the stock view at ``/admin/stock-errors/``."""
    app, db, sync = make_app(url, config=config)
    admin = app.extensions["admin"][0]
    admin.add_view(StockErrorsView(SyncError, db, name="Stock errors", endpoint="stock_errors", url="stock-errors"))
    return app, db, sync


def _get_ms(client, url: str, expect: bytes | None) -> float:
    began = time.perf_counter()
    response = client.get(url)
    body = response.data
    elapsed = (time.perf_counter() - began) * 1000
    assert response.status_code == 200, (url, response.status_code)
    assert expect is None or expect in body, (url, expect)
    return elapsed


def run_backend(scale, backend: str, server: str | None) -> list[Figure]:
    count = scale.n(300_000)
    url = errors_database(backend, server, count)
    app, _db, _sync = errors_app(url)
    client = app.test_client()
    cases = {
        "first page": ("", None),
        "search, matching": (MATCHING, MATCHING.encode()),
        "search, non-matching": (NOT_MATCHING, None),
    }
    timings: dict[tuple[str, str], list[float]] = {(c, v): [] for c in cases for v in ("plugin", "stock")}
    timings[("groups", "plugin")] = []
    for round_ in range(WARMUP + SAMPLES):
        elapsed = _get_ms(client, GROUPS_URL, b"ds-group")
        if round_ >= WARMUP:
            timings[("groups", "plugin")].append(elapsed)
        for case, (term, expect) in cases.items():
            query = "?" + urlencode({"search": term}) if term else ""
            for view, base in (("plugin", PLUGIN_URL), ("stock", STOCK_URL)):
                elapsed = _get_ms(client, base + query, expect)
                if round_ >= WARMUP:
                    timings[(case, view)].append(elapsed)
    suffix = "" if backend == "sqlite" else f" [{backend}]"
    targets = {"first page": 30, "search, matching": 150, "search, non-matching": 150}
    figures = []
    for case, target in targets.items():
        med, p95 = median_p95(timings[(case, "plugin")])
        base, _ = median_p95(timings[(case, "stock")])
        term = cases[case][0]
        figures.append(Figure(
            name=f"errors list, {case}" + suffix, scale=f"{count:,} errors", unit="ms", median=med, p95=p95,
            target=target, baseline=base,
            baseline_label=f"stock ModelView, same table{' and search' if term else ''} (median)",
            note=f"term {term!r}" if term else "",
        ))
    med, p95 = median_p95(timings[("groups", "plugin")])
    base, _ = median_p95(timings[("first page", "stock")])
    figures.append(Figure(
        name="error groups page" + suffix, scale=f"{count:,} errors, half of them open", unit="ms", median=med, p95=p95,
        target=100, baseline=base, baseline_label="stock ModelView, first page of the same table (median)",
        note="open errors grouped by code, object and direction from their index",
    ))
    return figures

