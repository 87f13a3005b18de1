"""Forks sync workers of the CRM host on request: ``python -m tests.workers.crm_forker`` (``CRM_*`` environment).

The kill -9 test kills a worker twenty times; starting Python and importing
Flask, SQLAlchemy, MSAL and httpx each time would cost seconds under load.
This parent builds the app once (without opening a connection) and, for each
``fork`` line on stdin, forks a child that runs the worker loop and prints its
pid; ``reap PID`` waits for that child and prints how it ended (``signal 9``).
"""

from __future__ import annotations

import os
import sys
import threading

from flask_dynamics_sync.dataverse.worker import SyncWorker

from .crm_host import create_app


def main() -> None:
    app = create_app()
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "fork":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    SyncWorker(app).run(threading.Event())
                    code = 0
                finally:
                    os._exit(code)
            print(pid, flush=True)
        elif command == "reap":
            _, status = os.waitpid(int(argument), 0)
            print(f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}", flush=True)


if __name__ == "__main__":
    main()
