"""The local Dataverse server: real HTTPS on a local port, threads, one store.

A WSGI application served by werkzeug's threaded server. TLS because MSAL accepts only
``https`` authorities; the handshake runs in each connection's own thread, not in the
accept loop. Werkzeug's development server closes every connection after one answer, so
clients reconnect for each request (real Dataverse keeps connections alive).
"""

from __future__ import annotations

import collections
import copy
import http
import re
import socket
import ssl
import threading
import time
import typing as t
import urllib.parse
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator

import requests
from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.wrappers import Request

from . import errors
from .auth import TokenError
from .auth import TokenIssuer
from .batch import BatchRunner
from .certificate import LocalCertificate
from .faults import GATEWAY_STATUS
from .faults import FaultSet
from .limits import Limits
from .limits import ServiceProtection
from .limits import requests_exceeded
from .odata import parse_resource
from .queries import CollectionReader
from .store import Row
from .store import Store
from .tables import Table
from .tables import demo_tables
from .webapi import Operation
from .webapi import Reply
from .webapi import WebApi
from .webapi import error_reply
from .webapi import json_reply

API_PATH = "/api/data/v9.2/"
WEEK = 7 * 24 * 3600

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment
    from typing_extensions import Self


class LoggedRequest(t.NamedTuple):
    """One HTTP exchange as the server saw it; ``status`` is None when it never answered."""

    time: float
    method: str
    path: str
    status: int | None
    error_code: str | None


class _Handler(WSGIRequestHandler):
    """Completes the TLS handshake in the connection's thread; logs nothing (see ``request_log``)."""

    _broken = False

    def setup(self) -> None:
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self._broken = True
        super().setup()

    def handle(self) -> None:
        if not self._broken:
            super().handle()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: t.Any) -> None:
        pass


class LocalDataverse:
    """A Dataverse environment and its Entra ID tenant, on ``https://127.0.0.1:<port>``.

    ``client_certificate`` (PEM) registers a certificate credential next to the secret
    (see :func:`~.certificate.make_client_certificate`).

    Give MSAL ``authority=dv.authority, instance_discovery=False,
    http_client=dv.requests_session()`` (MSAL skips instance discovery for an authority it
    does not know only when ``instance_discovery=False``; it then reads the OpenID
    configuration under the authority) and ask for ``scopes=[dv.scope]``. HTTP clients trust
    the server with ``verify=dv.ssl_context()`` (httpx) or ``verify=dv.ca_file``.
    """

    def __init__(
        self,
        tables: Iterable[Table] | None = None,
        *,
        tenant: str = "local-tenant",
        client_id: str = "local-client",
        client_secret: str = "local-secret",
        request_limit: int = 6000,
        window_seconds: float = 300,
        max_concurrent: int = 52,
        execution_time_limit: float = 1200,
        token_lifetime: float = 3600,
        change_retention_seconds: float = WEEK,
        host: str = "127.0.0.1",
        port: int = 0,
        ca_file: str | None = None,
        client_certificate: str | None = None,
        request_log_size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.tenant = tenant
        self._host = host
        self._port = port
        self._ca_file = ca_file
        self._clock = clock
        self.store = Store(demo_tables() if tables is None else tables)
        self.faults = FaultSet()
        self.protection = ServiceProtection(
            Limits(
                request_limit=request_limit,
                window_seconds=window_seconds,
                max_concurrent=max_concurrent,
                execution_time_limit=execution_time_limit,
            ),
            clock,
        )
        self.issuer = TokenIssuer(
            tenant=tenant,
            client_id=client_id,
            client_secret=client_secret,
            token_lifetime=token_lifetime,
            clock=clock,
            client_certificate=client_certificate,
        )
        self._reader = CollectionReader(self.store, clock, change_retention_seconds)
        self._log: collections.deque[LoggedRequest] = collections.deque(maxlen=request_log_size)
        self._log_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._certificate: LocalCertificate | None = None
        self._api: WebApi | None = None
        self._batch: BatchRunner | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the local Dataverse is already running")
        self._certificate = LocalCertificate(self._ca_file)
        server = make_server(self._host, self._port, self._wsgi, threaded=True, request_handler=_Handler)
        context = self._certificate.server_context()
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        server.ssl_context = context
        self._server = server
        self._stopping.clear()
        self._api = WebApi(self.store, self.faults, self._reader, self.url + API_PATH)
        self._batch = BatchRunner(self._api, self.store, API_PATH)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="local-dataverse", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests being held by a ``timeout`` fault are released."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._certificate is not None:
            self._certificate.remove()
            self._certificate = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until :meth:`stop_serving` is called (the command line's foreground loop)."""
        while not self._stopping.wait(0.5):
            pass

    def stop_serving(self) -> None:
        """Ask :meth:`wait` to return; safe from a signal handler."""
        self._stopping.set()

    # -- what clients need -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("start() the local Dataverse first")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The environment URL, e.g. ``https://127.0.0.1:5099`` (the Web API is under ``/api/data/v9.2/``)."""
        return f"https://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PATH

    @property
    def authority(self) -> str:
        """The token authority for MSAL: ``{url}/{tenant}``."""
        return f"{self.url}/{self.tenant}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def scope(self) -> str:
        return f"{self.url}/.default"

    @property
    def ca_file(self) -> str:
        """PEM file of the server certificate, for ``verify=``."""
        if self._certificate is None:
            raise RuntimeError("start() the local Dataverse first")
        return self._certificate.ca_file

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting this server (``httpx.Client(verify=dv.ssl_context())``)."""
        if self._certificate is None:
            raise RuntimeError("start() the local Dataverse first")
        return self._certificate.client_context()

    def requests_session(self) -> requests.Session:
        """A ``requests`` session trusting this server, e.g. MSAL's ``http_client``.

        Prefer it to MSAL's ``verify=dv.ca_file``: requests lets ``REQUESTS_CA_BUNDLE`` or
        ``CURL_CA_BUNDLE`` from the environment override a session's ``verify``, so that form
        fails on machines that set them. This session ignores the environment (and its proxies).
        """
        session = requests.Session()
        session.verify = self.ca_file
        session.trust_env = False
        return session

    # -- inspection and control --------------------------------------------------------------

    def rows(self, entity_set: str) -> list[Row]:
        """Copies of the stored rows of a table."""
        return self.store.rows(entity_set)

    def insert(self, entity_set: str, values: Row) -> Row:
        """Put a row in directly (test set-up), as if someone had created it in Dynamics."""
        with self.store.lock:
            return copy.deepcopy(self.store.insert(entity_set, dict(values)))

    def update(self, entity_set: str, row_id: str, values: Row) -> Row:
        """Change a row directly, as if someone had edited it in Dynamics (a new ``modifiedon`` and version)."""
        with self.store.lock:
            return copy.deepcopy(self.store.update(entity_set, row_id.lower(), dict(values)))

    def delete(self, entity_set: str, row_id: str) -> None:
        """Delete a row directly, as if someone had deleted it in Dynamics (change tracking reports it)."""
        with self.store.lock:
            self.store.delete(entity_set, row_id.lower())

    @property
    def request_log(self) -> list[LoggedRequest]:
        """Every exchange so far, oldest first (the last ``request_log_size`` of them)."""
        with self._log_lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def revoke_tokens(self) -> None:
        """Every token issued so far answers 401 from now on."""
        self.issuer.revoke_all()

    def set_limits(self, **changes: t.Any) -> None:
        """Change service protection limits while running (``request_limit``, ``window_seconds``, …)."""
        self.protection.set_limits(**changes)

    # -- the WSGI application ----------------------------------------------------------------

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            if request.path.startswith(API_PATH):
                return self._web_api(request, environ, start_response)
            return self._answer(request, self._token_side(request), start_response)
        except ClientDisconnected:  # the body stopped short: nobody is left to answer
            self._record(request, None, "client_disconnected")
            return _drop(environ, start_response)

    def _token_side(self, request: Request) -> Reply:
        discovery = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", request.path)
        token = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", request.path)
        try:
            if discovery and request.method == "GET":
                self.issuer.check_tenant(discovery.group(1))
                return json_reply(200, self.issuer.openid_configuration(self.authority))
            if token and request.method == "POST":
                self.issuer.check_tenant(token.group(1))
                form = {name: request.form.get(name, "") for name in request.form}
                body = self.issuer.issue(form, request.headers.get("Authorization", ""), self.url, self.token_endpoint)
                return json_reply(200, body, [("Cache-Control", "no-store, no-cache")])
        except TokenError as error:
            reply = json_reply(error.status, error.body())
            reply.error_code = error.error
            return reply
        return error_reply(errors.DataverseError(404, errors.RESOURCE_NOT_FOUND, f"No resource at '{request.path}'."))

    def _web_api(self, request: Request, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            client = self.issuer.client_for(request.headers.get("Authorization", ""), self.authority, self.url)
        except errors.DataverseError as error:  # 401: Dataverse sends only the WWW-Authenticate header
            return self._answer(request, Reply(401, list(error.headers.items()), error_code=error.code), start_response)
        try:
            started = self.protection.admit(client)
        except errors.DataverseError as error:
            return self._answer(request, error_reply(error), start_response)
        try:
            return self._admitted(request, client, environ, start_response)
        finally:
            self.protection.release(client, started)

    def _admitted(
        self, request: Request, client: str, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Run an authenticated, admitted request, through the request faults that match it."""
        assert self._api is not None and self._batch is not None
        service_path = request.path[len(API_PATH) :]
        fault = self.faults.take("request", request.method, *_target_of(service_path))
        kind = fault.kind if fault is not None else None
        if fault is not None and kind in GATEWAY_STATUS:
            status = GATEWAY_STATUS[fault.kind]
            reply = Reply(status, [("Content-Type", "text/plain")], _phrase(status).encode(), error_code=fault.kind)
            return self._answer(request, reply, start_response)
        if fault is not None and kind == "throttled":
            limits = self.protection.limits
            throttled = errors.DataverseError(
                429, errors.TOO_MANY_REQUESTS, requests_exceeded(limits), {"Retry-After": str(fault.retry_after)}
            )
            return self._answer(request, error_reply(throttled), start_response)
        if fault is not None and kind == "timeout":
            self._stopping.wait(fault.hold_seconds)
            if not fault.process:
                self._record(request, None, "timeout")
                return _drop(environ, start_response)
        op = Operation(
            method=request.method,
            path=service_path,
            query=dict(request.args.items()),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=request.get_data(),
            client=client,
        )
        is_batch = service_path == "$batch" and request.method == "POST"
        reply = self._batch.run(op) if is_batch else self._api.execute(op)
        reply.headers += [
            ("REQ_ID", str(uuid.uuid4())),
            ("x-ms-ratelimit-burst-remaining-xrm-requests", str(self.protection.remaining(client))),
        ]
        if kind == "drop_after_commit":
            self._record(request, None, "connection_dropped")
            return _send_part_then_drop(reply, environ, start_response) if is_batch else _drop(environ, start_response)
        return self._answer(request, reply, start_response)

    def _answer(self, request: Request, reply: Reply, start_response: StartResponse) -> list[bytes]:
        self._record(request, reply.status, reply.error_code)
        return _send(reply, start_response)

    def _record(self, request: Request, status: int | None, error_code: str | None) -> None:
        entry = LoggedRequest(self._clock(), request.method, request.path, status, error_code)
        with self._log_lock:
            self._log.append(entry)


def _target_of(service_path: str) -> tuple[str, set[str]]:
    """The entity set and key values a request URL names, for matching request faults."""
    if service_path == "$batch":
        return "$batch", set()
    try:
        resource = parse_resource(urllib.parse.unquote(service_path))
    except errors.DataverseError:
        return service_path, set()
    return resource.entity_set, resource.key_strings


def _phrase(status: int) -> str:
    return http.HTTPStatus(status).phrase


def _send(reply: Reply, start_response: StartResponse) -> list[bytes]:
    headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
    start_response(f"{reply.status} {_phrase(reply.status)}", headers)
    return [reply.body]


def _drop(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """Close the connection without a byte of answer."""
    _shutdown(environ)
    start_response("500 Dropped", [])
    return []


def _send_part_then_drop(reply: Reply, environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    """Send the headers and the first part of a multipart answer, then close mid-body."""
    second_part = reply.body.find(b"\r\n--batchresponse_", 1)
    cut = second_part if second_part > 0 else len(reply.body) // 2
    start_response(
        f"{reply.status} {_phrase(reply.status)}", [*reply.headers, ("Content-Length", str(len(reply.body)))]
    )
    yield reply.body[:cut]
    _shutdown(environ)


def _shutdown(environ: WSGIEnvironment) -> None:
    connection = environ.get("werkzeug.socket")
    if connection is not None:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
