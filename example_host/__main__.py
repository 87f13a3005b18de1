"""``python -m example_host``: start the Acme CRM console with demo data and the sync simulator."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import typing as t

from werkzeug.serving import is_running_from_reloader
from werkzeug.serving import make_server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m example_host",
        description="Acme CRM console: a Flask-Admin host embedding Flask-Dynamics-Sync, with demo data.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in example_host/instance/)")
    parser.add_argument("--no-simulator", action="store_true", help="do not change records every second")
    parser.add_argument(
        "--dataverse-port",
        type=int,
        default=0,
        help="port of the local Dataverse the records are sent to (default: a free one); "
        "ignored when DYNAMICS_SYNC_DATAVERSE_URL is set in the environment",
    )
    parser.add_argument("--reset", action="store_true", help="drop every table and seed fresh demo data")
    parser.add_argument("--debug", action="store_true", help="Flask debug mode with the reloader")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The worker runs every second: no line per run and per request.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Under the reloader this module runs twice: a watcher parent and the serving
    # child. Only the child seeds, schedules and simulates.
    serving = not args.debug or is_running_from_reloader()

    from example_host import connector
    from example_host import create_app
    from example_host import sync
    from example_host.demo import DEMO_USERS
    from example_host.simulator import Simulator
    from flask_dynamics_sync.dataverse.settings import local_dataverse_config

    config: dict[str, t.Any] = {
        "DYNAMICS_SYNC_SCHEDULER": serving,
        "EXAMPLE_HOST_DEMO_DATA": serving,
        # Reset once: in the reloader's parent, not again in each restarted child.
        "EXAMPLE_HOST_RESET": args.reset and not is_running_from_reloader(),
    }
    if args.database_url:
        config["SQLALCHEMY_DATABASE_URI"] = args.database_url
    # Records go to the environment named in DYNAMICS_SYNC_DATAVERSE_URL, else to a local Dataverse.
    config.update(connector.environment_settings())
    dataverse = None
    if serving and "DYNAMICS_SYNC_DATAVERSE_URL" not in config:
        dataverse = connector.start_local_dataverse(args.dataverse_port)
        config.update(local_dataverse_config(dataverse))
    started = time.monotonic()
    app = create_app(config)

    # Bind before printing the URL: once it is printed, the console answers.
    # (Under the reloader the watcher process has bound the socket already.)
    try:
        server = None if args.debug else make_server(args.host, args.port, app, threaded=True)
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror}. Try --port.", file=sys.stderr)
        if dataverse is not None:
            dataverse.stop()
        return 1
    simulator = None
    if serving:
        print(f" * Database: {app.config['SQLALCHEMY_DATABASE_URI']} (ready in {time.monotonic() - started:.1f} s)")
        target = app.config.get("DYNAMICS_SYNC_DATAVERSE_URL")
        if target:
            where = "local Dataverse" if dataverse is not None else "Dataverse environment"
            print(f" * Sync worker: sending records to the {where} at {target}")
        if not args.no_simulator:
            simulator = Simulator(app, sync, plays_sync=not target, dataverse=dataverse).start()
            print(" * Demo simulator: changing records every second (--no-simulator to stop it)")
        url_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        print(f" * Acme CRM console: http://{url_host}:{args.port}/admin/")
        for username, password, operator, _tz in DEMO_USERS:
            role = "operator" if operator else "read-only"
            print(f" * Demo login: {username} / {password} ({role})")
        print(" * Press Ctrl+C to stop", flush=True)
    try:
        if server is not None:
            server.serve_forever()  # returns (and closes the socket) on Ctrl+C
        else:
            app.run(host=args.host, port=args.port, debug=True, use_reloader=True, threaded=True)
    except KeyboardInterrupt:
        pass
    finally:
        if simulator is not None:
            simulator.stop()
        if dataverse is not None:
            with app.app_context():
                sync.shutdown_scheduler()  # the worker finishes its batch before the Dataverse goes
            dataverse.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
