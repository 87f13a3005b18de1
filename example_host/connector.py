"""Where the console's records go in Dynamics 365, and the local Dataverse the demo sends them to.

The mappings are declared next to ``sync.track()`` in :mod:`example_host`.
Every table is upserted by an alternate key on ``dsync_hostid``, the console's
own record id: on a real environment create that column and key on the four
tables (see docs/connector.md, "Pointing the example host at a real environment").

By default ``python -m example_host`` starts a :class:`LocalDataverse` on a local
port and points the connector at it; with ``DYNAMICS_SYNC_DATAVERSE_URL`` (and
the credentials) in the environment it sends to that environment instead.
"""

from __future__ import annotations

import os
import typing as t

from flask_dynamics_sync import DataverseMapping
from flask_dynamics_sync import Lookup

from .models import Deal

HOST_KEY = {"dsync_hostid": "id"}


def deal_payload(deal: Deal) -> dict[str, t.Any]:
    """An opportunity as the sales team keeps it in Dynamics."""
    return {
        "name": deal.name,
        "estimatedvalue": deal.amount,
        "stepname": deal.stage,
        "estimatedclosedate": deal.close_date,
    }


LEAD = DataverseMapping(
    "leads",
    alternate_key=HOST_KEY,
    fields={"lastname": "name", "companyname": "company_name", "emailaddress1": "email", "subject": "status"},
)
CONTACT = DataverseMapping(
    "contacts",
    alternate_key=HOST_KEY,
    fields={"lastname": "name", "emailaddress1": "email", "telephone1": "phone"},
    lookups={"parentcustomerid_account": Lookup("Account", "company")},
)
ACCOUNT = DataverseMapping(
    "accounts",
    alternate_key=HOST_KEY,
    fields={"name": "name", "address1_city": "city", "address1_country": "country", "websiteurl": "website"},
)
OPPORTUNITY = DataverseMapping(
    "opportunities",
    alternate_key=HOST_KEY,
    payload=deal_payload,
    lookups={"parentaccountid": Lookup("Account", "company")},
)

#: Environment variables passed on to the connector's settings (a real environment).
ENVIRONMENT_PREFIXES = ("DYNAMICS_SYNC_DATAVERSE_", "DYNAMICS_SYNC_WORKER_")


def environment_settings(environ: t.Mapping[str, str] = os.environ) -> dict[str, str]:
    """The connector settings given in the environment (``DYNAMICS_SYNC_DATAVERSE_URL``, …)."""
    return {key: value for key, value in environ.items() if key.startswith(ENVIRONMENT_PREFIXES)}


def start_local_dataverse(port: int = 0) -> t.Any:
    """A local Dataverse with the demo tables (leads, contacts, accounts, opportunities), started."""
    from flask_dynamics_sync.testing import LocalDataverse

    return LocalDataverse(port=port).start()
