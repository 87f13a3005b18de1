"""The connector's ``DYNAMICS_SYNC_DATAVERSE_*`` and ``DYNAMICS_SYNC_WORKER_*`` keys, read once in ``init_app``.

Documented in ``docs/connector.md``. Like :func:`~flask_dynamics_sync.config.load_settings`,
:func:`load_connector_settings` fills ``app.config`` with the defaults. The
client secret is kept out of ``repr()`` so that it never reaches a log line.
"""

from __future__ import annotations

import dataclasses
import typing as t
from collections.abc import Callable
from collections.abc import Mapping

#: Microsoft's documented service protection limits, per user and web server (api-limits.md).
DOCUMENTED_REQUEST_LIMIT = 6000
DOCUMENTED_WINDOW_SECONDS = 300
DOCUMENTED_MAX_CONCURRENT = 52
#: Requests in one $batch, at most (execute-batch-operations-using-web-api.md).
MAX_BATCH_REQUESTS = 1000

CONNECTOR_DEFAULTS: dict[str, t.Any] = {
    # Environment URL, e.g. https://contoso.crm4.dynamics.com (the Web API is under /api/data/v9.2/).
    "DYNAMICS_SYNC_DATAVERSE_URL": None,
    # Microsoft Entra tenant (id or domain) and the app registration's client id.
    "DYNAMICS_SYNC_DATAVERSE_TENANT": None,
    "DYNAMICS_SYNC_DATAVERSE_CLIENT_ID": None,
    # The credential: a client secret, or a certificate as MSAL takes it
    # ({"private_key": PEM, "thumbprint": hex} or {"private_key": PEM, "public_certificate": PEM}).
    "DYNAMICS_SYNC_DATAVERSE_CLIENT_SECRET": None,
    "DYNAMICS_SYNC_DATAVERSE_CERTIFICATE": None,
    # Token authority; default https://login.microsoftonline.com/<tenant>. When set, MSAL's instance
    # discovery (a call to login.microsoftonline.com) is switched off.
    "DYNAMICS_SYNC_DATAVERSE_AUTHORITY": None,
    # TLS verification of the environment and the authority: True, or the path of a CA bundle.
    "DYNAMICS_SYNC_DATAVERSE_VERIFY": True,
    # Instead of the above: the host's callable returning an access token; called with
    # force_refresh=True after a 401.
    "DYNAMICS_SYNC_DATAVERSE_TOKEN": None,
    # Web API version in the URL.
    "DYNAMICS_SYNC_DATAVERSE_API_VERSION": "v9.2",
    # Records per bulk message or $batch (at most 1,000).
    "DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 100,
    # Requests one worker has in flight at once.
    "DYNAMICS_SYNC_DATAVERSE_IN_FLIGHT": 4,
    # Service protection limits the worker paces itself below (per worker process).
    "DYNAMICS_SYNC_DATAVERSE_REQUEST_LIMIT": DOCUMENTED_REQUEST_LIMIT,
    "DYNAMICS_SYNC_DATAVERSE_WINDOW_SECONDS": DOCUMENTED_WINDOW_SECONDS,
    "DYNAMICS_SYNC_DATAVERSE_MAX_CONCURRENT": DOCUMENTED_MAX_CONCURRENT,
    # Seconds before a request counts as timed out (its outcome is unknown: it is sent again).
    "DYNAMICS_SYNC_DATAVERSE_TIMEOUT": 30.0,
    # Times a request is sent again after a timeout, a dropped connection or a 502/503/504.
    "DYNAMICS_SYNC_DATAVERSE_RETRIES": 4,
    # First wait before such a retry, in seconds; doubles each time (with jitter).
    "DYNAMICS_SYNC_DATAVERSE_RETRY_BACKOFF": 0.5,
    # Records the worker claims per cycle (split into requests of BATCH_SIZE records).
    "DYNAMICS_SYNC_WORKER_CLAIM_SIZE": 400,
    # Seconds the worker waits when the queue has nothing for it.
    "DYNAMICS_SYNC_WORKER_POLL_SECONDS": 2.0,
    # Run a worker thread inside the scheduler process (run-scheduler, or DYNAMICS_SYNC_SCHEDULER=True).
    "DYNAMICS_SYNC_WORKER_IN_SCHEDULER": False,
    # Rows per page of a change-tracking read (Prefer: odata.maxpagesize; Dataverse's default is 5,000).
    "DYNAMICS_SYNC_DATAVERSE_PAGE_SIZE": 5000,
    # A record changed on both sides: "last_writer" (the later change wins, by Dataverse's modifiedon
    # and the host's change time) or "host" (the host's pending change always wins).
    "DYNAMICS_SYNC_CONFLICT_RULE": "last_writer",
}

#: The values of ``DYNAMICS_SYNC_CONFLICT_RULE``.
CONFLICT_RULES = ("last_writer", "host")

TokenCallable = Callable[..., str]


@dataclasses.dataclass(frozen=True)
class ConnectorSettings:
    """The connector's configuration for one application."""

    url: str | None
    tenant: str | None
    client_id: str | None
    client_secret: str | None = dataclasses.field(repr=False)
    certificate: Mapping[str, t.Any] | None = dataclasses.field(repr=False)
    authority: str | None
    verify: bool | str
    token: TokenCallable | None = dataclasses.field(repr=False)
    api_version: str
    batch_size: int
    in_flight: int
    request_limit: int
    window_seconds: float
    max_concurrent: int
    timeout: float
    retries: int
    retry_backoff: float
    claim_size: int
    poll_seconds: float
    worker_in_scheduler: bool
    page_size: int
    conflict_rule: str

    @property
    def configured(self) -> bool:
        """Whether an environment URL is set (the worker can run)."""
        return bool(self.url)

    @property
    def api_root(self) -> str:
        """The Web API's base URL, ending with a slash."""
        assert self.url
        return f"{self.url.rstrip('/')}/api/data/{self.api_version}/"

    @property
    def scope(self) -> str:
        """The OAuth scope of the environment: ``<url>/.default``."""
        assert self.url
        return f"{self.url.rstrip('/')}/.default"


def _number(config: Mapping[str, t.Any], key: str, kind: type, minimum: float, maximum: float | None = None) -> t.Any:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise TypeError(f"{key} must be a number, not {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{key} must be {bound}, got {value}")
    return kind(value)


def _optional_text(config: Mapping[str, t.Any], key: str) -> str | None:
    value = config[key]
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a str")
    return value


def _verify(value: t.Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return value
    raise TypeError("DYNAMICS_SYNC_DATAVERSE_VERIFY must be True, False or the path of a CA bundle")


def _conflict_rule(value: t.Any) -> str:
    if value not in CONFLICT_RULES:
        raise ValueError(f"DYNAMICS_SYNC_CONFLICT_RULE must be one of {', '.join(CONFLICT_RULES)}, got {value!r}")
    return str(value)


def load_connector_settings(config: t.MutableMapping[str, t.Any]) -> ConnectorSettings:
    """Fill in the connector's defaults with ``setdefault`` and return its validated settings.

    :raises ValueError: an environment URL without a way to get a token, or a limit out of range.
    """
    for key, default in CONNECTOR_DEFAULTS.items():
        config.setdefault(key, default)
    url = _optional_text(config, "DYNAMICS_SYNC_DATAVERSE_URL")
    if url is not None and not url.startswith(("https://", "http://")):
        raise ValueError(f"DYNAMICS_SYNC_DATAVERSE_URL must be an http(s) URL, got {url!r}")
    token = config["DYNAMICS_SYNC_DATAVERSE_TOKEN"]
    if token is not None and not callable(token):
        raise TypeError("DYNAMICS_SYNC_DATAVERSE_TOKEN must be a callable returning an access token")
    certificate = config["DYNAMICS_SYNC_DATAVERSE_CERTIFICATE"]
    if certificate is not None and not (isinstance(certificate, Mapping) and "private_key" in certificate):
        raise TypeError("DYNAMICS_SYNC_DATAVERSE_CERTIFICATE must be a mapping with a 'private_key' (MSAL's form)")
    settings = ConnectorSettings(
        url=url,
        tenant=_optional_text(config, "DYNAMICS_SYNC_DATAVERSE_TENANT"),
        client_id=_optional_text(config, "DYNAMICS_SYNC_DATAVERSE_CLIENT_ID"),
        client_secret=_optional_text(config, "DYNAMICS_SYNC_DATAVERSE_CLIENT_SECRET"),
        certificate=certificate,
        authority=_optional_text(config, "DYNAMICS_SYNC_DATAVERSE_AUTHORITY"),
        verify=_verify(config["DYNAMICS_SYNC_DATAVERSE_VERIFY"]),
        token=token,
        api_version=str(config["DYNAMICS_SYNC_DATAVERSE_API_VERSION"]),
        batch_size=_number(config, "DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE", int, 1, MAX_BATCH_REQUESTS),
        in_flight=_number(config, "DYNAMICS_SYNC_DATAVERSE_IN_FLIGHT", int, 1, 64),
        request_limit=_number(config, "DYNAMICS_SYNC_DATAVERSE_REQUEST_LIMIT", int, 1),
        window_seconds=_number(config, "DYNAMICS_SYNC_DATAVERSE_WINDOW_SECONDS", float, 0.001),
        max_concurrent=_number(config, "DYNAMICS_SYNC_DATAVERSE_MAX_CONCURRENT", int, 1),
        timeout=_number(config, "DYNAMICS_SYNC_DATAVERSE_TIMEOUT", float, 0.001),
        retries=_number(config, "DYNAMICS_SYNC_DATAVERSE_RETRIES", int, 0, 100),
        retry_backoff=_number(config, "DYNAMICS_SYNC_DATAVERSE_RETRY_BACKOFF", float, 0),
        claim_size=_number(config, "DYNAMICS_SYNC_WORKER_CLAIM_SIZE", int, 1, 10_000),
        poll_seconds=_number(config, "DYNAMICS_SYNC_WORKER_POLL_SECONDS", float, 0.001),
        worker_in_scheduler=bool(config["DYNAMICS_SYNC_WORKER_IN_SCHEDULER"]),
        page_size=_number(config, "DYNAMICS_SYNC_DATAVERSE_PAGE_SIZE", int, 1, 5000),
        conflict_rule=_conflict_rule(config["DYNAMICS_SYNC_CONFLICT_RULE"]),
    )
    if url is not None and token is None:
        missing = [
            key
            for key, value in (
                ("DYNAMICS_SYNC_DATAVERSE_TENANT", settings.tenant or settings.authority),
                ("DYNAMICS_SYNC_DATAVERSE_CLIENT_ID", settings.client_id),
                ("DYNAMICS_SYNC_DATAVERSE_CLIENT_SECRET or _CERTIFICATE", settings.client_secret or certificate),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                "DYNAMICS_SYNC_DATAVERSE_URL is set but not how to get a token: set "
                + ", ".join(missing)
                + " (or DYNAMICS_SYNC_DATAVERSE_TOKEN, a callable returning one)"
            )
    return settings


def local_dataverse_config(dataverse: t.Any) -> dict[str, t.Any]:
    """The ``DYNAMICS_SYNC_DATAVERSE_*`` settings for a running
    :class:`~flask_dynamics_sync.testing.LocalDataverse` (its URL, authority, credentials, CA file)."""
    return {
        "DYNAMICS_SYNC_DATAVERSE_URL": dataverse.url,
        "DYNAMICS_SYNC_DATAVERSE_AUTHORITY": dataverse.authority,
        "DYNAMICS_SYNC_DATAVERSE_TENANT": dataverse.tenant,
        "DYNAMICS_SYNC_DATAVERSE_CLIENT_ID": dataverse.client_id,
        "DYNAMICS_SYNC_DATAVERSE_CLIENT_SECRET": dataverse.client_secret,
        "DYNAMICS_SYNC_DATAVERSE_VERIFY": dataverse.ca_file,
    }
