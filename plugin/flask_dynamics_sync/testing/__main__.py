"""``python -m flask_dynamics_sync.testing``: run a local Dataverse in the foreground.

Prints the environment URL, the MSAL authority, the credentials and the certificate file,
then serves until interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
import typing as t

from .server import LocalDataverse
from .tables import demo_tables

TABLE_SETS = {"demo": demo_tables}


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flask_dynamics_sync.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tables", choices=sorted(TABLE_SETS), default="demo")
    parser.add_argument("--tenant", default="local-tenant")
    parser.add_argument("--client-id", default="local-client")
    parser.add_argument("--client-secret", default="local-secret")
    parser.add_argument("--ca-file", help="also write the server certificate (PEM) to this path")
    parser.add_argument("--request-limit", type=int, default=6000, help="requests per window and client")
    parser.add_argument("--window-seconds", type=float, default=300)
    parser.add_argument("--max-concurrent", type=int, default=52)
    parser.add_argument("--token-lifetime", type=float, default=3600)
    args = parser.parse_args(argv)
    dataverse = LocalDataverse(
        TABLE_SETS[args.tables](),
        tenant=args.tenant,
        client_id=args.client_id,
        client_secret=args.client_secret,
        request_limit=args.request_limit,
        window_seconds=args.window_seconds,
        max_concurrent=args.max_concurrent,
        token_lifetime=args.token_lifetime,
        host=args.host,
        port=args.port,
        ca_file=args.ca_file,
    )
    signal.signal(signal.SIGTERM, lambda *_: dataverse.stop_serving())
    dataverse.start()
    print(f"Local Dataverse at {dataverse.url} (Web API {dataverse.api_url})", flush=True)
    print(f"  authority:     {dataverse.authority}", flush=True)
    print(f"  client id:     {dataverse.client_id}", flush=True)
    print(f"  certificate:   {dataverse.ca_file}", flush=True)
    print(f"  tables:        {', '.join(sorted(dataverse.store.tables))}", flush=True)
    try:
        dataverse.wait()
    except KeyboardInterrupt:
        pass
    finally:
        dataverse.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
