"""``$batch`` for the local Dataverse: multipart/mixed in, multipart/mixed out.

Follows powerapps-docs webapi/execute-batch-operations-using-web-api.md (and OData 4.0 §11.7):

* the body is ``multipart/mixed`` with a boundary; each part is ``application/http`` holding
  one request, or a nested ``multipart/mixed`` change set;
* at most 1,000 requests, no batch inside a batch, no GET inside a change set;
* a change set is atomic: if one of its requests fails, the ones before it are rolled back
  and the change set answers with that single failure;
* ``Content-ID`` in a change set makes ``$n`` stand for the URL of the row created or
  updated by that request, at the start of a later request's URL and as the value of
  ``@odata.bind``/``@odata.id`` in its body; an undeclared ``$n`` is a 400;
* without ``Prefer: odata.continue-on-error`` processing stops at the first error and the
  batch answers with that error's status; with it, the batch answers 200 and every part's
  own status;
* answers use ``batchresponse_<uuid>`` / ``changesetresponse_<uuid>`` boundaries, CRLF line
  ends, and repeat each part's ``Content-ID``.

The parser is small and strict on purpose (the stdlib ``email`` parser rewrites line ends and
does not read HTTP messages): delimiter lines are found on CRLF or LF line ends, the line end
before a delimiter belongs to it (RFC 2046 §5.1.1), and a missing closing delimiter is an error.
Like the service (webapi/web-api-client-errors.md), a body whose last line does not end with
CRLF (or with two bare line ends) makes every request payload in it fail with "Stream was not
readable".
"""

from __future__ import annotations

import dataclasses
import http
import json
import re
import urllib.parse
import uuid

from . import errors
from .store import Store
from .webapi import Operation
from .webapi import Reply
from .webapi import WebApi
from .webapi import error_reply

MAX_REQUESTS = 1000
CRLF = b"\r\n"


@dataclasses.dataclass
class PartRequest:
    """One request of a batch: its MIME ``Content-ID`` and the HTTP request inside."""

    content_id: str | None
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class ChangeSet:
    requests: list[PartRequest]


# -- reading ---------------------------------------------------------------------------------


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/mixed`` content type (quoted or not)."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/mixed":
        raise errors.bad_request("A $batch request must have Content-Type multipart/mixed with a boundary.")
    match = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', params, re.IGNORECASE)
    if not match:
        raise errors.bad_request("The multipart/mixed Content-Type of the $batch request has no boundary.")
    return match.group(1) or match.group(2)


def split_parts(body: bytes, boundary: str) -> list[bytes]:
    """The encapsulated parts of a multipart body (preamble and epilogue dropped)."""
    delimiter = b"--" + boundary.encode()
    parts: list[bytes] = []
    current: list[bytes] | None = None
    for line in body.splitlines(keepends=True):
        bare = line.rstrip(b"\r\n").rstrip(b" \t")
        if bare == delimiter or bare == delimiter + b"--":
            if current is not None:
                parts.append(_without_last_line_end(b"".join(current)))
            if bare.endswith(b"--") and bare != delimiter:
                return parts
            current = []
        elif current is not None:
            current.append(line)
    raise errors.bad_request(f"The multipart body has no closing delimiter '--{boundary}--'.")


def _without_last_line_end(data: bytes) -> bytes:
    if data.endswith(CRLF):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data


def _head_and_body(data: bytes) -> tuple[list[bytes], bytes]:
    """Split header lines from the body at the first empty line."""
    match = re.search(rb"\r?\n\r?\n", data)
    if data.startswith((CRLF, b"\n")):
        return [], data[2:] if data.startswith(CRLF) else data[1:]
    if not match:
        return data.splitlines(), b""
    return data[: match.start()].splitlines(), data[match.end() :]


def _headers(lines: list[bytes]) -> dict[str, str]:
    headers = {}
    for line in lines:
        name, colon, value = line.decode("utf-8").partition(":")
        if not colon:
            raise errors.bad_request(f"Malformed header line in $batch: {line[:100]!r}.")
        headers[name.strip().lower()] = value.strip()
    return headers


def parse_batch(body: bytes, content_type: str) -> list[PartRequest | ChangeSet]:
    """Read a ``$batch`` body into requests and change sets, in order."""
    items: list[PartRequest | ChangeSet] = []
    for part in split_parts(body, boundary_of(content_type)):
        head, content = _head_and_body(part)
        headers = _headers(head)
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            requests = []
            for inner in split_parts(content, boundary_of(part_type)):
                inner_head, inner_content = _head_and_body(inner)
                inner_headers = _headers(inner_head)
                if inner_headers.get("content-type", "").lower().startswith("multipart/"):
                    raise errors.bad_request("A change set cannot contain another change set.")
                requests.append(_http_request(inner_headers, inner_content))
            items.append(ChangeSet(requests))
        else:
            items.append(_http_request(headers, content))
    return items


def _http_request(part_headers: dict[str, str], content: bytes) -> PartRequest:
    if not part_headers.get("content-type", "").lower().startswith("application/http"):
        raise errors.bad_request("Each $batch part must have Content-Type application/http.")
    head, body = _head_and_body(content)
    if not head:
        raise errors.bad_request("A $batch part holds no HTTP request.")
    request_line = head[0].decode("utf-8").split()
    if len(request_line) not in (2, 3):
        raise errors.bad_request(f"Malformed request line in $batch: {head[0][:100]!r}.")
    return PartRequest(
        content_id=part_headers.get("content-id"),
        method=request_line[0].upper(),
        target=request_line[1],
        headers=_headers(head[1:]),
        body=body,
    )


# -- running ---------------------------------------------------------------------------------


class _Failed(Exception):
    """Unwinds a change set so its transaction rolls back."""

    def __init__(self, reply: Reply, content_id: str | None) -> None:
        self.reply = reply
        self.content_id = content_id


class BatchRunner:
    """Runs a parsed batch through a :class:`~.webapi.WebApi`."""

    def __init__(self, api: WebApi, store: Store, api_path: str) -> None:
        self._api = api
        self._store = store
        self._api_path = api_path  # "/api/data/v9.2/"

    def run(self, outer: Operation) -> Reply:
        """Answer a ``POST $batch`` operation."""
        try:
            items = parse_batch(outer.body, outer.header("Content-Type"))
            count = sum(len(item.requests) if isinstance(item, ChangeSet) else 1 for item in items)
            if count > MAX_REQUESTS:
                raise errors.bad_request(
                    f"The number of requests in the batch ({count}) exceeds the limit of {MAX_REQUESTS}."
                )
        except UnicodeDecodeError:
            return error_reply(errors.bad_request("The $batch body is not UTF-8 text."))
        except errors.DataverseError as error:
            return error_reply(error)
        preference = outer.preferences.get("odata.continue-on-error")
        continue_on_error = preference is not None and preference.lower() != "false"
        answers: list[bytes] = []
        status = 200
        batch_boundary = f"batchresponse_{uuid.uuid4()}"
        for item in items:
            if isinstance(item, ChangeSet):
                answer, failed = self._change_set(outer, item)
            else:
                reply = self._single(outer, item, {})
                answer, failed = _http_part(reply, item.content_id), (reply if reply.status >= 400 else None)
            answers.append(answer)
            if failed is not None and not continue_on_error:
                status = failed.status
                break
        body = b"".join(b"--" + batch_boundary.encode() + CRLF + answer + CRLF for answer in answers)
        body += b"--" + batch_boundary.encode() + b"--" + CRLF
        headers = [("OData-Version", "4.0"), ("Content-Type", f"multipart/mixed; boundary={batch_boundary}")]
        applied = [("Preference-Applied", "odata.continue-on-error")] if continue_on_error else []
        return Reply(status, headers + applied, body)

    def _change_set(self, outer: Operation, change_set: ChangeSet) -> tuple[bytes, Reply | None]:
        references: dict[str, str] = {}
        answers = []
        try:
            with self._store.transaction():
                for request in change_set.requests:
                    if request.method == "GET":
                        failure = error_reply(errors.bad_request("A change set cannot contain a GET request."))
                        raise _Failed(failure, request.content_id)
                    reply = self._single(outer, request, references)
                    if reply.status >= 400:
                        raise _Failed(reply, request.content_id)
                    if request.content_id and reply.entity_path:
                        references[request.content_id] = reply.entity_path
                    answers.append(_http_part(reply, request.content_id))
        except _Failed as failed:
            return _http_part(failed.reply, failed.content_id), failed.reply
        boundary = f"changesetresponse_{uuid.uuid4()}"
        body = b"".join(b"--" + boundary.encode() + CRLF + answer + CRLF for answer in answers)
        body += b"--" + boundary.encode() + b"--"
        head = f"Content-Type: multipart/mixed; boundary={boundary}".encode() + CRLF + CRLF
        return head + body, None

    def _single(self, outer: Operation, request: PartRequest, references: dict[str, str]) -> Reply:
        try:
            target = self._service_path(_substitute_url(request.target, references))
            body = _substitute_body(request.body, references)
        except errors.DataverseError as error:
            return error_reply(error)
        path, _, query = target.partition("?")
        if path == "$batch":
            return error_reply(errors.bad_request("A batch cannot contain another batch."))
        if body.strip() and not outer.body.endswith((CRLF, b"\n\n")):
            return error_reply(_stream_not_readable(path))
        return self._api.execute(
            Operation(
                method=request.method,
                path=urllib.parse.unquote(path),
                query=dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
                headers=request.headers,
                body=body,
                client=outer.client,
            )
        )

    def _service_path(self, target: str) -> str:
        """A part's URL relative to the service root (absolute, ``/api/data/v9.2/…`` or relative)."""
        parsed = urllib.parse.urlsplit(target)
        path = parsed.path
        if parsed.scheme or path.startswith("/"):
            if not path.startswith(self._api_path):
                raise errors.DataverseError(
                    404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{path}'."
                )
            path = path[len(self._api_path) :]
        return path + (f"?{parsed.query}" if parsed.query else "")


def _stream_not_readable(path: str) -> errors.DataverseError:
    """What Dataverse answers for each payload of a batch whose last line has no CRLF
    (webapi/web-api-client-errors.md: "Stream was not readable"; two bare line ends also do)."""
    entity_set = path.split("(", 1)[0].split("/", 1)[0]
    return errors.bad_request(
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For more information on this "
        "error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293 ---->  "
        "InnerException : System.ArgumentException: Stream was not readable.",
        errors.PAYLOAD_ERROR,
    )


def _substitute_url(target: str, references: dict[str, str]) -> str:
    match = re.match(r"^\$([A-Za-z0-9_.-]+)(.*)$", target)
    if not match:
        return target
    return _reference(match.group(1), references) + match.group(2)


def _substitute_body(body: bytes, references: dict[str, str]) -> bytes:
    if b"$" not in body:
        return body
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict):
        return body
    for name, value in document.items():
        if (name.endswith("@odata.bind") or name == "@odata.id") and isinstance(value, str) and value.startswith("$"):
            document[name] = _reference(value[1:], references)
    return json.dumps(document).encode()


def _reference(content_id: str, references: dict[str, str]) -> str:
    if content_id not in references:
        raise errors.bad_request(f"Content-ID Reference: '${content_id}' does not exist in the batch context.")
    return references[content_id]


def _http_part(reply: Reply, content_id: str | None) -> bytes:
    """One ``application/http`` part of the answer, status line and headers included."""
    mime = [b"Content-Type: application/http", b"Content-Transfer-Encoding: binary"]
    if content_id:
        mime.append(f"Content-ID: {content_id}".encode())
    phrase = http.HTTPStatus(reply.status).phrase
    lines = [f"HTTP/1.1 {reply.status} {phrase}".encode()]
    lines += [f"{name}: {value}".encode() for name, value in reply.headers]
    return CRLF.join(mime) + CRLF + CRLF + CRLF.join(lines) + CRLF + CRLF + reply.body
