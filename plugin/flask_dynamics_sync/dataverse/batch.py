"""``$batch`` bodies: encoding the requests, decoding the responses (``execute-batch-operations-using-web-api.md``).

Each request is a part of its own (no change set): the records are
independent, so one record's failure must not roll back the others. The
response is a ``multipart/mixed`` document with one ``application/http`` part
per request answered, in order; a change set's answers come nested.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing as t
import uuid
from collections.abc import Mapping
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class ApiRequest:
    """One Web API request: method, path under the API root (``contacts(…)``), JSON body."""

    method: str
    path: str
    body: Mapping[str, t.Any] | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ApiResponse:
    """One answer: status, headers (lower-case names) and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> t.Any:
        return json.loads(self.body) if self.body else None

    @property
    def error(self) -> tuple[str, str]:
        """Dataverse's ``(code, message)``, verbatim; the HTTP status when the body has none."""
        try:
            error = self.json()["error"]
            code, message = str(error.get("code") or ""), str(error.get("message") or "")
        except (ValueError, TypeError, KeyError, AttributeError):
            code, message = "", ""
        return code or f"HTTP {self.status}", message or _reason(self.status)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown status"


def encode_json(body: Mapping[str, t.Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_batch(requests: Sequence[ApiRequest], api_path: str) -> tuple[str, bytes]:
    """The ``Content-Type`` and body of a ``$batch`` carrying ``requests``.

    :param api_path: the Web API's absolute path, e.g. ``/api/data/v9.2/``.
    """
    boundary = f"batch_{uuid.uuid4()}"
    chunks: list[bytes] = []
    for request in requests:
        lines = [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            f"{request.method} {api_path}{request.path} HTTP/1.1",
        ]
        payload = b""
        if request.body is not None:
            lines.append("Content-Type: application/json; type=entry")
            payload = encode_json(request.body)
        lines.extend(f"{name}: {value}" for name, value in request.headers.items())
        chunks.append(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + payload + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/mixed; boundary={boundary}", b"".join(chunks)


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


class BatchFormatError(ValueError):
    """A ``$batch`` response that is not the multipart document it should be."""


def _split_head(block: bytes) -> tuple[dict[str, str], bytes]:
    head, sep, rest = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = block.partition(b"\n\n")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def decode_batch(content_type: str, body: bytes) -> list[ApiResponse]:
    """The answers in a ``$batch`` response, in order (change sets flattened)."""
    match = _BOUNDARY.search(content_type)
    if not match:
        raise BatchFormatError(f"no boundary in {content_type!r}")
    delimiter = b"--" + match.group(1).encode()
    responses: list[ApiResponse] = []
    sections = body.split(delimiter)
    for section in sections[1:]:
        if section.startswith(b"--"):
            break
        section = section.lstrip(b"\r\n")
        part_headers, content = _split_head(section)
        if content.endswith(b"\r\n"):
            content = content[:-2]
        part_type = part_headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            responses.extend(decode_batch(part_type, content))
            continue
        status_line, _, rest = content.partition(b"\n")
        fields = status_line.decode("latin-1").strip().split(" ", 2)
        if len(fields) < 2 or not fields[1].isdigit():
            raise BatchFormatError(f"not an HTTP response in a batch part: {status_line[:80]!r}")
        headers, payload = _split_head(rest if not rest.startswith(b"\r\n") else b"\r\n" + rest)
        responses.append(ApiResponse(int(fields[1]), headers, payload.strip()))
    return responses
