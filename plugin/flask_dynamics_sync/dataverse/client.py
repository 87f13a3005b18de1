"""The Web API client: authentication, service protection, retries; one :class:`DataverseClient` per worker.

What happens to a request (``compose-http-requests-handle-errors.md``, ``api-limits.md``):

* **401**: the token is refreshed once and the request sent again.
* **429** (``0x80072322`` requests, ``0x80072321`` execution time, ``0x80072326``
  concurrency): every request of the client waits until ``Retry-After`` has
  passed (:meth:`.Throttle.pause`), then this one is sent again. A 429 is not
  a failure of the record and does not use up its retries.
* **Timeouts, dropped connections, 502/503/504**: sent again after a backoff
  (doubling, with jitter), up to ``retries`` times; then :class:`TransientError`.
  Every request the worker sends is an upsert by key, so sending one again
  after an unknown outcome can only give the same row.
* Anything else is returned as it is: the worker decides per record.

Built on an :class:`httpx.Client` (a connection pool sized for the requests in
flight, timeouts on every request). Request and response logging is left to
httpx's own loggers, which never see the ``Authorization`` header's value.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import ssl
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from .auth import TokenProvider
from .batch import ApiRequest
from .batch import ApiResponse
from .batch import decode_batch
from .batch import encode_batch
from .batch import encode_json
from .throttle import Throttle

ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-Version": "4.0",
    "OData-MaxVersion": "4.0",
}
TRANSIENT_STATUSES = frozenset({502, 503, 504})
#: Retry-After when a 429 carries none.
DEFAULT_RETRY_AFTER = 5.0


class TransientError(Exception):
    """A request whose outcome stayed unknown or failed for passing reasons after every retry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass
class ClientCounters:
    """What a client did since it was made (read by the worker's bookkeeping)."""

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    token_refreshes: int = 0


def retry_after_seconds(value: str | None) -> float:
    """``Retry-After`` as seconds: delta-seconds (possibly fractional) or an HTTP date."""
    if not value:
        return DEFAULT_RETRY_AFTER
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    return max(0.0, moment.timestamp() - time.time())


class DataverseClient:
    """Sends Web API requests for one environment and one identity.

    :param api_root: the Web API's URL, ending with ``/api/data/v9.2/``.
    :param in_flight: connections kept open (the worker's requests in flight).
    :param transport: an httpx transport (tests); default: a real connection pool.
    """

    def __init__(
        self,
        api_root: str,
        tokens: TokenProvider,
        throttle: Throttle,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        retry_backoff: float = 0.5,
        in_flight: int = 4,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_root = api_root if api_root.endswith("/") else api_root + "/"
        self.api_path = urlsplit(self.api_root).path
        self.tokens = tokens
        self.throttle = throttle
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.counters = ClientCounters()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._http = httpx.Client(
            base_url=self.api_root,
            timeout=timeout,
            limits=httpx.Limits(max_connections=in_flight + 1, max_keepalive_connections=in_flight + 1),
            headers=ODATA_HEADERS,
            verify=ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + value)

    def _bearer(self, refresh: bool) -> str:
        with self._lock:
            token = self._token
        if token is None or refresh:
            token = self.tokens.token(force_refresh=refresh)
            with self._lock:
                self._token = token
            if refresh:
                self._count(token_refreshes=1)
        return token

    def _backoff(self, attempt: int) -> float:
        return self.retry_backoff * (2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def send_raw(self, method: str, path: str, *, content: bytes | None, headers: dict[str, str]) -> ApiResponse:
        """Send one HTTP request with authentication, pacing, 429 pauses and retries (see the module doc).

        :raises TransientError: timeouts, dropped connections or 502/503/504 outlasted the retries.
        """
        refreshed = False
        failures = 0
        while True:
            token = self._bearer(refresh=False)
            try:
                with self.throttle.slot():
                    self._count(requests=1)
                    response = self._http.request(
                        method, path, content=content, headers={**headers, "Authorization": f"Bearer {token}"}
                    )
                    body = response.read()
            except httpx.TimeoutException as exc:
                failure = TransientError("Timeout", f"No answer within the timeout ({type(exc).__name__})")
            except httpx.TransportError as exc:
                failure = TransientError("ConnectionError", f"The connection failed ({type(exc).__name__})")
            else:
                answer = ApiResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()}, body)
                if answer.status == 401 and not refreshed:
                    refreshed = True
                    self._bearer(refresh=True)
                    continue
                if answer.status == 429:
                    self._count(throttled=1)
                    self.throttle.pause(retry_after_seconds(answer.headers.get("retry-after")))
                    continue
                if answer.status not in TRANSIENT_STATUSES:
                    return answer
                failure = TransientError(*answer.error)
            failures += 1
            if failures > self.retries:
                raise failure
            self._count(retries=1)
            self._sleep(self._backoff(failures))

    def send(self, request: ApiRequest) -> ApiResponse:
        """Send one request (JSON body)."""
        headers = dict(request.headers)
        content = None
        if request.body is not None:
            headers["Content-Type"] = "application/json"
            content = encode_json(request.body)
        return self.send_raw(request.method, request.path, content=content, headers=headers)

    def batch(self, requests: Sequence[ApiRequest], *, continue_on_error: bool = True) -> list[ApiResponse]:
        """Send ``requests`` in one ``$batch``; the answers in order (fewer if the batch stopped at an error).

        A batch answered as a whole with an error (e.g. 400 for a malformed body) is
        returned as one answer per request.
        """
        content_type, body = encode_batch(requests, self.api_path)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        answer = self.send_raw("POST", "$batch", content=body, headers=headers)
        if not answer.ok:
            return [answer] * len(requests)
        answers = decode_batch(answer.headers.get("content-type", ""), answer.body)
        for part in answers:
            if part.status == 429:  # a part throttled inside the batch: the client waits all the same
                self._count(throttled=1)
                self.throttle.pause(retry_after_seconds(part.headers.get("retry-after")))
        return answers[: len(requests)]
