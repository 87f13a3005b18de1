"""Real Microsoft Dataverse (Dynamics 365) error codes and messages, for the demo data and simulator.

Codes and wording follow what the Dataverse Web API and SDK return; record ids,
user ids and plug-in messages are made up. ``retry`` says whether a sync
engine would try again (service protection limits) or park the record until
someone fixes the cause.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable

ENTITY = {"Lead": "lead", "Contact": "contact", "Account": "account", "Opportunity": "opportunity"}
OBJECT_TYPE_CODE = {"Account": 1, "Contact": 2, "Opportunity": 3, "Lead": 4}
#: Attribute and its maximum length, for validation errors.
LONG_ATTRIBUTE = {
    "Lead": ("companyname", 100),
    "Contact": ("firstname", 50),
    "Account": ("name", 160),
    "Opportunity": ("name", 300),
}
#: Messages a customer's own Dataverse plug-ins raise (code 0x80040265).
PLUGIN_MESSAGES = {
    "Lead": [
        "A lead cannot be qualified without a company name.",
        "Rejected by the Acme audit plug-in: the lead's e-mail domain is on the blocked list.",
    ],
    "Contact": [
        "The phone number is not in the E.164 format required by the telephony plug-in.",
        "A contact must belong to an active account.",
    ],
    "Account": [
        "Legacy ERP: the VAT number is already used by another account.",
        "Accounts on credit hold cannot be changed by integrations.",
    ],
    "Opportunity": [
        "Estimated revenue is required before an opportunity can move to the Propose stage.",
        "Pipeline is not a valid value for the forecast category.",
    ],
}


@dataclasses.dataclass(frozen=True)
class DataverseError:
    """One kind of failure: code, how its message reads, and when it happens."""

    code: str
    message: Callable[[str, str, random.Random], str]
    """``(object_type, operation, rng) -> message``"""
    retry: bool
    weight: int
    operations: tuple[str, ...] = ("insert", "update")


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _missing_privilege(object_type: str, operation: str, rng: random.Random) -> str:
    privilege = ("prvCreate" if operation == "insert" else "prvWrite") + object_type
    return (
        f"Principal user (Id={_guid(rng)}, type=8, roleCount=1, privilegeCount=412, accessMode=4), "
        f"is missing {privilege} privilege (Id={_guid(rng)}) on OTC={OBJECT_TYPE_CODE[object_type]} "
        f"for entity '{ENTITY[object_type]}'. context.Caller={_guid(rng)}"
    )


def _too_long(object_type: str, operation: str, rng: random.Random) -> str:
    attribute, length = LONG_ATTRIBUTE[object_type]
    return (
        f"A validation error occurred. The length of the '{attribute}' attribute of the "
        f"'{ENTITY[object_type]}' entity exceeded the maximum allowed length of '{length}'."
    )


CATALOGUE: tuple[DataverseError, ...] = (
    DataverseError(
        "0x80072322",
        lambda o, op, rng: "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        retry=True,
        weight=22,
    ),
    DataverseError(
        "0x80072326",
        lambda o, op, rng: "Number of concurrent requests exceeded the limit of 52.",
        retry=True,
        weight=14,
    ),
    DataverseError(
        "0x80072321",
        lambda o, op, rng: (
            "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over "
            "time window of 300 seconds. Decrease number of concurrent requests or reduce the duration "
            "of requests and try again later."
        ),
        retry=True,
        weight=5,
    ),
    DataverseError(
        "0x80040237",
        lambda o, op, rng: "Cannot insert duplicate key.",
        retry=False,
        weight=10,
        operations=("insert",),
    ),
    DataverseError("0x80040220", _missing_privilege, retry=False, weight=8),
    DataverseError(
        "0x80040265",
        lambda o, op, rng: rng.choice(PLUGIN_MESSAGES[o]),
        retry=False,
        weight=9,
    ),
    DataverseError(
        "0x80060891",
        lambda o, op, rng: f"A record with the specified key values does not exist in {ENTITY[o]} entity",
        retry=False,
        weight=6,
        operations=("update",),
    ),
    DataverseError(
        "0x80040217",
        lambda o, op, rng: f"{ENTITY[o]} With Id = {_guid(rng)} Does Not Exist",
        retry=False,
        weight=5,
        operations=("update",),
    ),
    DataverseError("0x80044331", _too_long, retry=False, weight=6),
)


def pick_error(
    rng: random.Random, object_type: str, operation: str, *, retry: bool | None = None
) -> tuple[str, str, bool]:
    """A plausible failure for this record: ``(code, message, retry)``; ``retry`` narrows the choice."""
    candidates = [e for e in CATALOGUE if operation in e.operations and retry in (None, e.retry)]
    error = rng.choices(candidates, weights=[e.weight for e in candidates])[0]
    return error.code, error.message(object_type, operation, rng), error.retry
