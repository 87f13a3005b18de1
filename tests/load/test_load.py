"""The load test's short version, in CI: the example host under gunicorn on PostgreSQL, 16 clients
for 10 s while 2,000 changes a second are enqueued and drained. The full one is
``python -m tests.load.run_load`` (60 s, 32 clients); latencies are printed, never asserted."""

from __future__ import annotations

import pytest

from ..conftest import SERVER_URLS
from .run_load import LoadConfig
from .run_load import run


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # the server must answer (or CI fails)
def test_a_short_load_gives_no_server_error_and_loses_no_record(db_url):
    report = run(LoadConfig(seconds=10, clients=16, server_url=SERVER_URLS["postgresql"]))
    print(report.text())

    assert (report.server_errors, report.unexpected, report.tracebacks) == ([], [], 0)
    assert (report.lost, report.unfinished) == (0, 0)
    assert report.overall.requests > 0 and all(page.requests > 0 for page in report.pages.values())
