"""The WSGI app the export figures download from, run by gunicorn in a child process.

``gunicorn 'benchmarks.export_server:create_app()'`` with the database URL in
``DSYNC_BENCH_URL``. ``/bench/pid`` answers the worker's process id, whose
resident memory the benchmark samples.
"""

from __future__ import annotations

import os

from flask import Flask

from .bench_errors import errors_app


def create_app() -> Flask:
    # The XLSX figure is taken on 200,000 errors, beyond the default XLSX row limit.
    app, _db, _sync = errors_app(os.environ["DSYNC_BENCH_URL"], config={"DYNAMICS_SYNC_XLSX_MAX_ROWS": 1_000_000})

    @app.get("/bench/pid")
    def pid() -> str:
        return str(os.getpid())

    return app
