"""Errors the local Dataverse answers, with Dataverse's own codes and messages.

The body is ``{"error": {"code": "0x…", "message": "…"}}``
(powerapps-docs, webapi/compose-http-requests-handle-errors.md).
"""

from __future__ import annotations

# Codes. Pages of MicrosoftDocs/powerapps-docs, developer/data-platform/:
NOT_FOUND = "0x80040217"  # ObjectDoesNotExist, 404 (webapi/perform-conditional-operations-using-web-api.md)
PRIVILEGE_DENIED = "0x80040220"  # 403 (reference/web-service-error-codes.md)
VALIDATION = "0x80044331"  # 400, the validation example of webapi/execute-batch-operations-using-web-api.md
DUPLICATE_DETECTED = (
    "0x80040333"  # duplicate detection answers 500 (webapi/manage-duplicate-detection-create-update.md)
)
DUPLICATE_KEY = "0x80040237"  # DuplicateRecord: a row with the same key values exists, 412
VERSION_MISMATCH = "0x80060882"  # ConcurrencyVersionMismatch, 412 (optimistic-concurrency.md)
KEY_NOT_FOUND = "0x80060891"  # RecordNotFoundByEntityKey: no row has these alternate key values, 404
ODATA_INPUT = "0x0"  # an unknown property in a payload or $select, 400 (webapi/web-api-client-errors.md)
INVALID_ARGUMENT = "0x80040203"  # malformed request, 400
PAYLOAD_ERROR = "0x80048d19"  # a payload that cannot be read, 400 (webapi/web-api-client-errors.md)
RESOURCE_NOT_FOUND = "0x8006088a"  # an unknown entity set or action, 404 (webapi/web-api-client-errors.md)
UNEXPECTED = "0x80040216"  # generic server error, 500
TOO_MANY_REQUESTS = "0x80072322"  # api-limits.md: number of requests
EXECUTION_TIME = "0x80072321"  # api-limits.md: combined execution time
CONCURRENT_REQUESTS = "0x80072326"  # api-limits.md: concurrent requests


DUPLICATE_MESSAGE = "A record was not created or updated because a duplicate of the current record already exists."


class DataverseError(Exception):
    """An error answer: HTTP status, Dataverse code and message, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self, annotations: str = "") -> dict[str, dict[str, str]]:
        """The JSON error; ``annotations`` is what ``Prefer: odata.include-annotations`` asked for.

        With it the error carries the annotations of compose-http-requests-handle-errors.md
        ("Include more details with errors") that a platform error has: the help link and the
        inner error's message.
        """
        error = {"code": self.code, "message": self.message}
        details = {
            "@Microsoft.PowerApps.CDS.HelpLink": "http://go.microsoft.com/fwlink/?LinkID=398563&error="
            f"Microsoft.Crm.CrmException%3a{self.code.removeprefix('0x')}&client=platform",
            "@Microsoft.PowerApps.CDS.InnerError.Message": self.message,
        }
        wanted = [pattern.strip() for pattern in annotations.split(",") if pattern.strip()]
        for name, value in details.items():
            if any(_annotation_matches(pattern, name[1:]) for pattern in wanted):
                error[name] = value
        return {"error": error}


def _annotation_matches(pattern: str, name: str) -> bool:
    return pattern == "*" or pattern == name or (pattern.endswith("*") and name.startswith(pattern[:-1]))


def bad_request(message: str, code: str = INVALID_ARGUMENT) -> DataverseError:
    return DataverseError(400, code, message)
