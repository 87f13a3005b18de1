"""A local Dataverse for tests: a real HTTPS server that behaves like Microsoft's Web API.

It knows nothing of the rest of the plugin; it fakes Microsoft's service, not our code::

    from flask_dynamics_sync.testing import LocalDataverse, Table, Fault

    with LocalDataverse([Table("contacts", "contact", "contactid",
                               alternate_keys={"acme_contact_hostid": ("acme_hostid",)})]) as dv:
        app = msal.ConfidentialClientApplication(
            dv.client_id, client_credential=dv.client_secret,
            authority=dv.authority, instance_discovery=False, verify=dv.ca_file)
        token = app.acquire_token_for_client(scopes=[dv.scope])["access_token"]
        ...  # talk to dv.api_url with httpx.Client(verify=dv.ssl_context())
        dv.rows("contacts")

See docs/local-dataverse.md for what it simulates and what it does not.
"""

from .certificate import ClientCertificate
from .certificate import make_client_certificate
from .errors import DataverseError
from .faults import ALWAYS
from .faults import Fault
from .limits import Limits
from .server import API_PATH
from .server import LocalDataverse
from .server import LoggedRequest
from .tables import HOST_ID_COLUMN
from .tables import Table
from .tables import demo_tables

__all__ = [
    "ALWAYS",
    "API_PATH",
    "HOST_ID_COLUMN",
    "ClientCertificate",
    "DataverseError",
    "Fault",
    "Limits",
    "LocalDataverse",
    "LoggedRequest",
    "Table",
    "demo_tables",
    "make_client_certificate",
]
