"""The local Dataverse (flask_dynamics_sync.testing) behaves like Microsoft's Web API, over real HTTPS.

Each test names the behaviour and the powerapps-docs page it comes from. No database is
involved, so these run once. Clients are the ones the connector uses: MSAL for tokens and
httpx for the Web API.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import typing as t
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import msal
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_dynamics_sync.testing import ALWAYS
from flask_dynamics_sync.testing import ClientCertificate
from flask_dynamics_sync.testing import Fault
from flask_dynamics_sync.testing import LocalDataverse
from flask_dynamics_sync.testing import Table
from flask_dynamics_sync.testing import make_client_certificate

from .conftest import fuzz

TABLES = [
    Table(
        entity_set="contacts",
        logical_name="contact",
        primary_key="contactid",
        alternate_keys={"acme_contact_hostid": ("acme_hostid",)},
        change_tracking=True,
        columns=frozenset({"firstname", "lastname", "acme_hostid", "parentcustomerid_account"}),
    ),
    Table(
        entity_set="accounts",
        logical_name="account",
        primary_key="accountid",
        alternate_keys={"acme_account_number": ("accountnumber", "acme_region")},
    ),
    Table(entity_set="tasks", logical_name="task", primary_key="activityid", bulk_messages=False),
    Table(
        entity_set="leads",
        logical_name="lead",
        primary_key="leadid",
        alternate_keys={"acme_lead_hostid": ("acme_hostid",)},
        duplicate_rules=(("emailaddress1",),),
    ),
]
ODATA_HEADERS = {"OData-Version": "4.0", "OData-MaxVersion": "4.0", "Accept": "application/json"}


class Seconds:
    """A monotonic clock that moves only when told (token lifetimes, throttling windows)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def seconds() -> Seconds:
    return Seconds()


@pytest.fixture
def dv(seconds: Seconds) -> Iterator[LocalDataverse]:
    with LocalDataverse(TABLES, token_lifetime=3600, clock=seconds) as dataverse:
        yield dataverse


def wait_until(condition: t.Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll for something the server does on its own threads."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in time"
        threading.Event().wait(0.005)


def token_for(dv: LocalDataverse) -> str:
    response = httpx.post(
        dv.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "client_id": dv.client_id,
            "client_secret": dv.client_secret,
            "scope": dv.scope,
        },
        verify=dv.ssl_context(),
    )
    return response.json()["access_token"]


@pytest.fixture
def api(dv: LocalDataverse) -> Iterator[httpx.Client]:
    headers = {**ODATA_HEADERS, "Authorization": f"Bearer {token_for(dv)}"}
    with httpx.Client(base_url=dv.api_url, headers=headers, verify=dv.ssl_context(), timeout=5) as client:
        yield client


def create_contact(api: httpx.Client, host_id: str, **values: t.Any) -> str:
    response = api.patch(f"contacts(acme_hostid='{host_id}')", json=values)
    assert response.status_code == 204
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


# -- authentication (authenticate-oauth.md) ---------------------------------------------------


def test_msal_gets_a_token_for_the_environment_scope_and_the_web_api_accepts_it(dv: LocalDataverse) -> None:
    app = msal.ConfidentialClientApplication(
        dv.client_id,
        client_credential=dv.client_secret,
        authority=dv.authority,
        instance_discovery=False,
        http_client=dv.requests_session(),
    )
    result = app.acquire_token_for_client(scopes=[dv.scope])
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3600
    response = httpx.get(
        dv.api_url + "WhoAmI",
        headers={**ODATA_HEADERS, "Authorization": f"Bearer {result['access_token']}"},
        verify=dv.ssl_context(),
    )
    assert response.status_code == 200
    assert set(response.json()) == {"@odata.context", "BusinessUnitId", "UserId", "OrganizationId"}


def test_msal_reports_invalid_client_for_a_wrong_secret(dv: LocalDataverse) -> None:
    app = msal.ConfidentialClientApplication(
        dv.client_id,
        client_credential="not-the-secret",
        authority=dv.authority,
        instance_discovery=False,
        http_client=dv.requests_session(),
    )
    result = app.acquire_token_for_client(scopes=[dv.scope])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert dv.request_log[-1][3:] == (401, "invalid_client")


def test_msal_gets_a_token_with_a_registered_certificate_and_not_with_another(seconds: Seconds) -> None:
    registered, other = make_client_certificate(), make_client_certificate()
    with LocalDataverse(TABLES, client_certificate=registered.certificate_pem, clock=seconds) as dv:

        def token_with(credential: ClientCertificate) -> dict[str, t.Any]:
            app = msal.ConfidentialClientApplication(
                dv.client_id,
                client_credential={
                    "private_key": credential.private_key_pem,
                    "public_certificate": credential.certificate_pem,
                },
                authority=dv.authority,
                instance_discovery=False,
                http_client=dv.requests_session(),
            )
            return app.acquire_token_for_client(scopes=[dv.scope])

        accepted, refused = token_with(registered), token_with(other)
    assert accepted["token_type"] == "Bearer"
    assert refused["error"] == "invalid_client"
    assert refused["error_codes"] == [700027]


def test_token_endpoint_refuses_an_unknown_client_and_a_foreign_scope(dv: LocalDataverse) -> None:
    form = {"grant_type": "client_credentials", "client_id": dv.client_id, "client_secret": dv.client_secret}
    unknown = httpx.post(
        dv.token_endpoint, data={**form, "client_id": "other", "scope": dv.scope}, verify=dv.ssl_context()
    )
    foreign = httpx.post(
        dv.token_endpoint, data={**form, "scope": "https://other.crm.dynamics.com/.default"}, verify=dv.ssl_context()
    )
    assert (unknown.status_code, unknown.json()["error"]) == (400, "unauthorized_client")
    assert (foreign.status_code, foreign.json()["error"]) == (400, "invalid_scope")


def test_another_tenant_is_not_found(dv: LocalDataverse) -> None:
    response = httpx.get(f"{dv.url}/other-tenant/v2.0/.well-known/openid-configuration", verify=dv.ssl_context())
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_web_api_answers_401_without_a_token_and_with_an_unknown_one(dv: LocalDataverse) -> None:
    missing = httpx.get(dv.api_url + "contacts", headers=ODATA_HEADERS, verify=dv.ssl_context())
    unknown = httpx.get(
        dv.api_url + "contacts", headers={**ODATA_HEADERS, "Authorization": "Bearer made-up"}, verify=dv.ssl_context()
    )
    assert missing.status_code == unknown.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith(
        f'Bearer error="invalid_token", authorization_uri={dv.authority}'
    )
    assert missing.content == b""


def test_a_token_expires_after_its_lifetime(dv: LocalDataverse, api: httpx.Client, seconds: Seconds) -> None:
    seconds.advance(3599)
    assert api.get("contacts").status_code == 200
    seconds.advance(1)
    assert api.get("contacts").status_code == 401
    assert dv.request_log[-1][3:] == (401, "token_expired")


def test_after_a_revocation_msal_must_bypass_its_cache_to_get_a_working_token(dv: LocalDataverse) -> None:
    app = msal.ConfidentialClientApplication(
        dv.client_id,
        client_credential=dv.client_secret,
        authority=dv.authority,
        instance_discovery=False,
        http_client=dv.requests_session(),
    )
    first = app.acquire_token_for_client(scopes=[dv.scope])["access_token"]
    dv.revoke_tokens()
    cached = app.acquire_token_for_client(scopes=[dv.scope])
    fresh = app.acquire_token_for_client(scopes=[dv.scope], claims_challenge='{"access_token": {}}')

    def status_with(token: str) -> int:
        headers = {**ODATA_HEADERS, "Authorization": f"Bearer {token}"}
        return httpx.get(dv.api_url + "WhoAmI", headers=headers, verify=dv.ssl_context()).status_code

    assert (cached["token_source"], cached["access_token"]) == ("cache", first)
    assert (status_with(first), status_with(fresh["access_token"])) == (401, 200)


def test_revoked_tokens_answer_401_and_a_new_token_works(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.revoke_tokens()
    assert api.get("contacts").status_code == 401
    assert api.get("contacts", headers={"Authorization": f"Bearer {token_for(dv)}"}).status_code == 200


# -- create, update, upsert, delete (create-entity-web-api.md, update-delete-entities-using-web-api.md)


def test_create_answers_204_with_the_odata_entity_id(dv: LocalDataverse, api: httpx.Client) -> None:
    response = api.post("contacts", json={"firstname": "Ada", "acme_hostid": "H-1"})
    [row] = dv.rows("contacts")
    assert response.status_code == 204
    assert response.headers["OData-Version"] == "4.0"
    assert response.headers["OData-EntityId"] == f"{dv.api_url}contacts({row['contactid']})"
    assert (row["firstname"], row["acme_hostid"], row["versionnumber"]) == ("Ada", "H-1", 1)
    assert row["modifiedon"].endswith("Z")


def test_create_with_return_representation_answers_201_and_the_row(api: httpx.Client) -> None:
    response = api.post(
        "contacts?$select=firstname", json={"firstname": "Ada"}, headers={"Prefer": "return=representation"}
    )
    body = response.json()
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "return=representation"
    assert body["@odata.context"].endswith("$metadata#contacts/$entity")
    assert set(body) == {"@odata.context", "@odata.etag", "firstname", "contactid"}
    assert body["@odata.etag"] == 'W/"1"' == response.headers["ETag"]


def test_patch_by_alternate_key_creates_once_then_updates_the_same_row(dv: LocalDataverse, api: httpx.Client) -> None:
    first = create_contact(api, "H-1", firstname="Ada")
    second = create_contact(api, "H-1", lastname="Lovelace")
    [row] = dv.rows("contacts")
    assert first == second == row["contactid"]
    assert (row["firstname"], row["lastname"], row["versionnumber"]) == ("Ada", "Lovelace", 2)


def test_patch_with_return_representation_answers_201_when_created_and_200_when_updated(api: httpx.Client) -> None:
    prefer = {"Prefer": "return=representation"}
    created = api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Ada"}, headers=prefer)
    updated = api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Ida"}, headers=prefer)
    assert (created.status_code, updated.status_code) == (201, 200)
    assert updated.json()["firstname"] == "Ida"


def test_patch_by_an_unknown_id_creates_the_row_with_that_id(dv: LocalDataverse, api: httpx.Client) -> None:
    row_id = "6f1e0c5a-3b1d-4c7e-9a55-0123456789ab"
    assert api.patch(f"contacts({row_id})", json={"firstname": "Ada"}).status_code == 204
    assert [row["contactid"] for row in dv.rows("contacts")] == [row_id]


def test_a_key_of_several_columns_and_a_quote_in_a_key_value(dv: LocalDataverse, api: httpx.Client) -> None:
    response = api.patch("accounts(accountnumber='O''Brien',acme_region=7)", json={"name": "O'Brien Ltd"})
    [row] = dv.rows("accounts")
    assert response.status_code == 204
    assert (row["accountnumber"], row["acme_region"], row["name"]) == ("O'Brien", 7, "O'Brien Ltd")


def test_if_match_star_does_not_create_a_missing_row(dv: LocalDataverse, api: httpx.Client) -> None:
    response = api.patch("contacts(acme_hostid='H-9')", json={"firstname": "Ada"}, headers={"If-Match": "*"})
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "0x80060891",
            "message": "A record with the specified key values does not exist in contact entity",
        }
    }
    assert dv.rows("contacts") == []


def test_if_none_match_star_does_not_update_an_existing_row(dv: LocalDataverse, api: httpx.Client) -> None:
    create_contact(api, "H-1", firstname="Ada")
    response = api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Eve"}, headers={"If-None-Match": "*"})
    assert response.status_code == 412
    assert response.json()["error"]["message"] == "A record with matching key values already exists."
    assert dv.rows("contacts")[0]["firstname"] == "Ada"


def test_a_stale_etag_in_if_match_answers_412_and_the_current_one_updates(
    dv: LocalDataverse, api: httpx.Client
) -> None:
    create_contact(api, "H-1", firstname="Ada")
    create_contact(api, "H-1", firstname="Ida")
    stale = api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Eve"}, headers={"If-Match": 'W/"1"'})
    current = api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Eve"}, headers={"If-Match": 'W/"2"'})
    assert stale.status_code == 412
    assert stale.json()["error"] == {
        "code": "0x80060882",
        "message": "The version of the existing record doesn't match the RowVersion property provided.",
    }
    assert current.status_code == 204
    assert dv.rows("contacts")[0]["firstname"] == "Eve"


def test_the_if_none_match_null_the_docs_send_changes_nothing(api: httpx.Client) -> None:
    assert api.post("contacts", json={"firstname": "Ada"}, headers={"If-None-Match": "null"}).status_code == 204


def test_delete_answers_204_then_404(dv: LocalDataverse, api: httpx.Client) -> None:
    row_id = create_contact(api, "H-1")
    assert api.delete(f"contacts({row_id})").status_code == 204
    again = api.delete(f"contacts({row_id})")
    assert again.status_code == 404
    assert again.json()["error"] == {"code": "0x80040217", "message": f"contact With Id = {row_id} Does Not Exist"}
    assert dv.rows("contacts") == []


def test_delete_with_a_stale_etag_answers_412_and_keeps_the_row(dv: LocalDataverse, api: httpx.Client) -> None:
    row_id = create_contact(api, "H-1")
    create_contact(api, "H-1", firstname="Ada")
    assert api.delete(f"contacts({row_id})", headers={"If-Match": 'W/"1"'}).status_code == 412
    assert len(dv.rows("contacts")) == 1


def test_a_second_row_with_the_same_alternate_key_is_refused(dv: LocalDataverse, api: httpx.Client) -> None:
    create_contact(api, "H-1")
    response = api.post("contacts", json={"acme_hostid": "H-1"})
    assert response.status_code == 412
    assert response.json()["error"]["code"] == "0x80040237"
    assert len(dv.rows("contacts")) == 1


# The next three follow webapi/web-api-client-errors.md.


def test_an_unknown_column_is_refused_with_400(dv: LocalDataverse, api: httpx.Client) -> None:
    response = api.post("contacts", json={"firstname": "Ada", "nickname": "A"})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x0",
        "message": "An error occurred while validating input parameters: Microsoft.Crm.CrmException: Invalid property "
        "'nickname' was found in entity 'Microsoft.Dynamics.CRM.contact'. ---> Microsoft.OData.ODataException: "
        "Does not support untyped value in non-open type.",
    }
    assert dv.rows("contacts") == []


def test_binding_an_undeclared_navigation_property_is_refused_with_400(api: httpx.Client) -> None:
    response = api.post(
        "contacts", json={"parentcustomerid@odata.bind": "accounts(00000000-0000-0000-0000-000000000001)"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80048d19"
    assert response.json()["error"]["message"].startswith(
        "Error identified in Payload provided by the user for Entity :'contacts'  ---->  InnerException : "
        "Microsoft.OData.ODataException: An undeclared property 'parentcustomerid' which only has property "
        "annotations in the payload but no property value was found in the payload."
    )


def test_selecting_an_unknown_column_is_refused_with_400(api: httpx.Client) -> None:
    response = api.get("contacts", params={"$select": "Name"})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x0",
        "message": "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.contact'.",
    }


def test_who_am_i_is_a_function_answered_on_get_only(dv: LocalDataverse, api: httpx.Client) -> None:
    response = api.post("WhoAmI")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "",
        "message": f"No HTTP resource was found that matches the request URI '{dv.api_url}WhoAmI'.",
    }


def test_a_body_that_is_not_a_json_object_is_refused_with_400(api: httpx.Client) -> None:
    response = api.post("contacts", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80048d19"


def test_duplicate_detection_answers_500_when_the_request_asks_for_it(dv: LocalDataverse, api: httpx.Client) -> None:
    """webapi/manage-duplicate-detection-create-update.md"""
    detect = {"MSCRM.SuppressDuplicateDetection": "false"}
    api.post("leads", json={"emailaddress1": "monte@example.com"}, headers=detect)
    refused = api.post("leads", json={"emailaddress1": "monte@example.com"}, headers=detect)
    allowed = api.post("leads", json={"emailaddress1": "monte@example.com"})
    assert refused.status_code == 500
    assert refused.json()["error"] == {
        "code": "0x80040333",
        "message": "A record was not created or updated because a duplicate of the current record already exists.",
    }
    assert allowed.status_code == 204
    assert len(dv.rows("leads")) == 2


def test_duplicate_detection_on_update_ignores_the_row_itself(dv: LocalDataverse, api: httpx.Client) -> None:
    detect = {"MSCRM.SuppressDuplicateDetection": "false"}
    api.patch("leads(acme_hostid='L-1')", json={"emailaddress1": "monte@example.com"}, headers=detect)
    again = api.patch("leads(acme_hostid='L-1')", json={"emailaddress1": "monte@example.com"}, headers=detect)
    api.patch("leads(acme_hostid='L-2')", json={"emailaddress1": "other@example.com"}, headers=detect)
    clash = api.patch("leads(acme_hostid='L-2')", json={"emailaddress1": "monte@example.com"}, headers=detect)
    assert (again.status_code, clash.status_code) == (204, 500)
    assert sorted(row["emailaddress1"] for row in dv.rows("leads")) == ["monte@example.com", "other@example.com"]


def test_odata_bind_sets_a_lookup_and_a_missing_target_is_404(dv: LocalDataverse, api: httpx.Client) -> None:
    account = dv.insert("accounts", {"name": "Contoso", "accountnumber": "A-1", "acme_region": 1})
    bound = api.patch(
        "contacts(acme_hostid='H-1')",
        json={"parentcustomerid_account@odata.bind": "accounts(accountnumber='A-1',acme_region=1)"},
    )
    missing = api.patch(
        "contacts(acme_hostid='H-2')",
        json={"parentcustomerid_account@odata.bind": "/accounts(00000000-0000-0000-0000-000000000001)"},
    )
    assert bound.status_code == 204
    assert dv.rows("contacts")[0]["_parentcustomerid_account_value"] == account["accountid"]
    assert missing.status_code == 404
    assert len(dv.rows("contacts")) == 1


def test_get_a_row_with_select_and_a_current_etag_answers_304(api: httpx.Client) -> None:
    row_id = create_contact(api, "H-1", firstname="Ada", lastname="Lovelace")
    response = api.get(f"contacts({row_id})?$select=firstname")
    assert response.status_code == 200
    assert response.json() == {
        "@odata.context": f"{api.base_url}$metadata#contacts/$entity",
        "@odata.etag": 'W/"1"',
        "firstname": "Ada",
        "contactid": row_id,
    }
    assert api.get(f"contacts({row_id})", headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_a_collection_filtered_by_a_column(api: httpx.Client) -> None:
    create_contact(api, "H-1", firstname="Ada")
    create_contact(api, "H-2", firstname="Eve")
    response = api.get("contacts", params={"$select": "firstname", "$filter": "acme_hostid eq 'H-2'"})
    assert [row["firstname"] for row in response.json()["value"]] == ["Eve"]


def test_include_annotations_adds_the_help_link_and_inner_message_to_errors(api: httpx.Client) -> None:
    missing = "00000000-0000-0000-0000-000000000001"
    response = api.delete(f"contacts({missing})", headers={"Prefer": 'odata.include-annotations="*"'})
    assert response.json()["error"] == {
        "code": "0x80040217",
        "message": f"contact With Id = {missing} Does Not Exist",
        "@Microsoft.PowerApps.CDS.HelpLink": "http://go.microsoft.com/fwlink/?LinkID=398563"
        "&error=Microsoft.Crm.CrmException%3a80040217&client=platform",
        "@Microsoft.PowerApps.CDS.InnerError.Message": f"contact With Id = {missing} Does Not Exist",
    }


def test_top_limits_a_collection_and_must_be_a_whole_number(api: httpx.Client) -> None:
    for number in range(3):
        create_contact(api, f"H-{number}")
    assert len(api.get("contacts", params={"$top": "2"}).json()["value"]) == 2
    assert api.get("contacts", params={"$top": "two"}).status_code == 400


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "contacts", b'{"contactid": 5}'),
        ("POST", "contacts", b"\xff\xfe"),
        ("PATCH", "contacts(not-a-guid)", b"{}"),
        ("PATCH", "contacts(acme_hostid='unterminated)", b"{}"),
        ("PATCH", "contacts(nickname='x')", b"{}"),
        ("GET", "contacts?$filter=firstname gt 'A'", b""),
        ("GET", "contacts?$skiptoken=x", b""),
        ("PUT", "contacts(00000000-0000-0000-0000-000000000001)/firstname", b'{"no": "value"}'),
        ("POST", "contacts/Microsoft.Dynamics.CRM.UpsertMultiple", b'{"Targets": 1}'),
    ],
)
def test_malformed_requests_answer_400_and_change_nothing(
    dv: LocalDataverse, api: httpx.Client, method: str, url: str, body: bytes
) -> None:
    response = api.request(method, url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message"}
    assert dv.rows("contacts") == []


def test_a_batch_that_is_not_utf8_answers_400(api: httpx.Client) -> None:
    response = api.post(
        "$batch",
        content=b"--b\r\nContent-Type: application/http\xff\r\n\r\nGET contacts HTTP/1.1\r\n\r\n--b--\r\n",
        headers={"Content-Type": "multipart/mixed; boundary=b"},
    )
    assert response.status_code == 400


def test_an_unknown_entity_set_answers_404(api: httpx.Client) -> None:
    response = api.get("widgets")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "0x8006088a",
        "message": "Resource not found for the segment 'widgets'.",
    }


# -- $batch (execute-batch-operations-using-web-api.md) ----------------------------------------


def http_part(method: str, url: str, body: dict[str, t.Any] | None = None, content_id: str | None = None) -> str:
    mime = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        mime += f"Content-ID: {content_id}\r\n"
    request = f"{method} {url} HTTP/1.1\r\n"
    if body is not None:
        return f"{mime}\r\n{request}Content-Type: application/json; type=entry\r\n\r\n{json.dumps(body)}"
    return f"{mime}\r\n{request}\r\n"


def change_set(boundary: str, *parts: str) -> str:
    inner = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}--{boundary}--"


def post_batch(api: httpx.Client, *parts: str, prefer: str | None = None) -> httpx.Response:
    body = "".join(f"--batch_AAA123\r\n{part}\r\n" for part in parts) + "--batch_AAA123--\r\n"
    headers = {"Content-Type": 'multipart/mixed; boundary="batch_AAA123"'}
    if prefer:
        headers["Prefer"] = prefer
    return api.post("$batch", content=body.encode(), headers=headers)


class Answer(t.NamedTuple):
    change_set: int | None  # index of the change set the answer belongs to
    content_id: str | None
    status: int
    headers: dict[str, str]
    body: str


def answers(response: httpx.Response) -> list[Answer]:
    """Read a batch answer with the stdlib MIME parser: a second, independent reader of the format."""
    raw = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode() + response.content
    message = email.message_from_bytes(raw, policy=email.policy.HTTP)
    assert message.is_multipart() and message.defects == []
    found = []
    for index, part in enumerate(message.iter_parts()):
        members = list(part.iter_parts()) if part.is_multipart() else [part]
        for member in members:
            assert member["Content-Type"] == "application/http"
            assert member["Content-Transfer-Encoding"] == "binary"
            head, _, body = member.get_payload().replace("\r\n", "\n").partition("\n\n")
            status_line, *header_lines = head.split("\n")
            headers = dict(line.split(": ", 1) for line in header_lines)
            found.append(
                Answer(
                    index if part.is_multipart() else None,
                    member["Content-ID"],
                    int(status_line.split()[1]),
                    headers,
                    body.strip(),
                )
            )
    return found


def test_batch_runs_requests_in_order_and_answers_multipart(dv: LocalDataverse, api: httpx.Client) -> None:
    response = post_batch(
        api,
        http_part("POST", "/api/data/v9.2/contacts", {"firstname": "Ada", "acme_hostid": "H-1"}),
        http_part("PATCH", f"{dv.api_url}contacts(acme_hostid='H-1')", {"lastname": "Lovelace"}),
        http_part("GET", "contacts?$select=lastname"),
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    created, updated, read = answers(response)
    [row] = dv.rows("contacts")
    assert (created.status, updated.status, read.status) == (204, 204, 200)
    assert created.headers["OData-EntityId"] == f"{dv.api_url}contacts({row['contactid']})"
    assert [item["lastname"] for item in json.loads(read.body)["value"]] == ["Lovelace"]
    assert dv.request_log[-1][1:4] == ("POST", "/api/data/v9.2/$batch", 200)


def test_a_change_set_refers_to_rows_it_created_by_content_id(dv: LocalDataverse, api: httpx.Client) -> None:
    response = post_batch(
        api,
        change_set(
            "changeset_BBB456",
            http_part("POST", "accounts", {"name": "Contoso"}, content_id="1"),
            http_part("POST", "contacts", {"firstname": "Ada", "parentcustomerid_account@odata.bind": "$1"}, "2"),
            http_part("PATCH", "$2", {"lastname": "Lovelace"}, content_id="3"),
        ),
    )
    [account], [contact] = dv.rows("accounts"), dv.rows("contacts")
    assert [(a.change_set, a.content_id, a.status) for a in answers(response)] == [
        (0, "1", 204),
        (0, "2", 204),
        (0, "3", 204),
    ]
    assert contact["_parentcustomerid_account_value"] == account["accountid"]
    assert contact["lastname"] == "Lovelace"


def test_a_failing_change_set_rolls_back_and_answers_with_the_failure(dv: LocalDataverse, api: httpx.Client) -> None:
    response = post_batch(
        api,
        change_set(
            "changeset_BBB456",
            http_part("POST", "contacts", {"firstname": "Ada"}, content_id="1"),
            http_part("POST", "contacts", {"nickname": "not a column"}, content_id="2"),
        ),
    )
    [failure] = answers(response)
    assert response.status_code == 400
    assert (failure.content_id, failure.status) == ("2", 400)
    assert json.loads(failure.body)["error"]["code"] == "0x0"
    assert dv.rows("contacts") == []


def test_without_continue_on_error_the_batch_stops_at_the_first_error(dv: LocalDataverse, api: httpx.Client) -> None:
    response = post_batch(
        api,
        http_part("POST", "contacts", {"acme_hostid": "H-1"}),
        http_part("POST", "contacts", {"nickname": "x"}),
        http_part("POST", "contacts", {"acme_hostid": "H-3"}),
    )
    assert response.status_code == 400
    assert [answer.status for answer in answers(response)] == [204, 400]
    assert [row["acme_hostid"] for row in dv.rows("contacts")] == ["H-1"]


def test_with_continue_on_error_every_request_runs_and_answers(dv: LocalDataverse, api: httpx.Client) -> None:
    response = post_batch(
        api,
        http_part("POST", "contacts", {"nickname": "x"}),
        http_part("POST", "contacts", {"acme_hostid": "H-2"}),
        http_part("POST", "contacts", {"acme_hostid": "H-3"}),
        prefer="odata.continue-on-error",
    )
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "odata.continue-on-error"
    assert [answer.status for answer in answers(response)] == [400, 204, 204]
    assert sorted(row["acme_hostid"] for row in dv.rows("contacts")) == ["H-2", "H-3"]


def test_a_batch_of_more_than_1000_requests_is_refused(dv: LocalDataverse, api: httpx.Client) -> None:
    parts = [http_part("POST", "contacts", {"firstname": str(n)}) for n in range(1001)]
    response = post_batch(api, *parts)
    assert response.status_code == 400
    assert "exceeds the limit of 1000" in response.json()["error"]["message"]
    assert dv.rows("contacts") == []


def test_an_undeclared_content_id_reference_is_400(dv: LocalDataverse, api: httpx.Client) -> None:
    response = post_batch(
        api, change_set("changeset_BBB456", http_part("PATCH", "$1", {"firstname": "Ada"}, content_id="2"))
    )
    [failure] = answers(response)
    assert failure.status == 400
    assert json.loads(failure.body)["error"]["message"] == (
        "Content-ID Reference: '$1' does not exist in the batch context."
    )


def test_a_get_inside_a_change_set_is_refused(api: httpx.Client) -> None:
    response = post_batch(api, change_set("changeset_BBB456", http_part("GET", "contacts")))
    assert response.status_code == 400


def test_a_batch_that_is_not_multipart_is_refused(api: httpx.Client) -> None:
    response = api.post("$batch", json={"requests": []})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "A $batch request must have Content-Type multipart/mixed with a boundary."
    )


LF_BATCH = (
    "--batch_AAA123\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n\n"
    'POST contacts HTTP/1.1\nContent-Type: application/json\n\n{"firstname": "Ada"}\n--batch_AAA123--'
)


def test_a_batch_whose_last_line_has_no_crlf_cannot_read_its_payloads(dv: LocalDataverse, api: httpx.Client) -> None:
    """webapi/web-api-client-errors.md: "Stream was not readable"."""
    response = api.post(
        "$batch", content=LF_BATCH + "\n", headers={"Content-Type": "multipart/mixed; boundary=batch_AAA123"}
    )
    [failure] = answers(response)
    assert (response.status_code, failure.status) == (400, 400)
    assert json.loads(failure.body)["error"]["message"].endswith(
        "InnerException : System.ArgumentException: Stream was not readable."
    )
    assert dv.rows("contacts") == []


def test_a_batch_with_bare_line_feeds_is_read_when_it_ends_with_two(dv: LocalDataverse, api: httpx.Client) -> None:
    """The workaround web-api-client-errors.md gives for clients that cannot send CRLF."""
    response = api.post(
        "$batch", content=LF_BATCH + "\n\n", headers={"Content-Type": "multipart/mixed; boundary=batch_AAA123"}
    )
    assert [answer.status for answer in answers(response)] == [204]
    assert dv.rows("contacts")[0]["firstname"] == "Ada"


# -- bulk messages (bulk-operations.md, reference/upsertmultiple) -------------------------------


def bulk(api: httpx.Client, entity_set: str, action: str, targets: list[dict[str, t.Any]]) -> httpx.Response:
    return api.post(f"{entity_set}/Microsoft.Dynamics.CRM.{action}", json={"Targets": targets})


def test_upsert_multiple_creates_and_updates_by_alternate_key(dv: LocalDataverse, api: httpx.Client) -> None:
    existing = create_contact(api, "H-1", firstname="Ada")
    contact = "Microsoft.Dynamics.CRM.contact"
    response = bulk(
        api,
        "contacts",
        "UpsertMultiple",
        [
            {"@odata.type": contact, "@odata.id": "contacts(acme_hostid='H-1')", "lastname": "Lovelace"},
            {"@odata.type": contact, "acme_hostid": "H-2", "firstname": "Eve"},
        ],
    )
    rows = {row["acme_hostid"]: row for row in dv.rows("contacts")}
    assert response.status_code == 204
    assert (rows["H-1"]["contactid"], rows["H-1"]["lastname"]) == (existing, "Lovelace")
    assert rows["H-2"]["firstname"] == "Eve"


def test_create_multiple_answers_the_new_ids(dv: LocalDataverse, api: httpx.Client) -> None:
    response = bulk(
        api,
        "contacts",
        "CreateMultiple",
        [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "firstname": n} for n in "AB"],
    )
    assert response.status_code == 200
    assert response.json()["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    assert response.json()["Ids"] == [row["contactid"] for row in dv.rows("contacts")]


def test_update_multiple_with_a_missing_row_changes_nothing(dv: LocalDataverse, api: httpx.Client) -> None:
    existing = create_contact(api, "H-1", firstname="Ada")
    contact = "Microsoft.Dynamics.CRM.contact"
    response = bulk(
        api,
        "contacts",
        "UpdateMultiple",
        [
            {"@odata.type": contact, "contactid": existing, "firstname": "Ida"},
            {"@odata.type": contact, "contactid": "00000000-0000-0000-0000-000000000009", "firstname": "Eve"},
        ],
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "0x80040217"
    assert [row["firstname"] for row in dv.rows("contacts")] == ["Ada"]


def test_a_bulk_target_without_its_odata_type_is_refused(api: httpx.Client) -> None:
    response = bulk(api, "contacts", "UpsertMultiple", [{"acme_hostid": "H-1"}])
    assert response.status_code == 400


def test_a_table_without_bulk_messages_answers_404_for_them(api: httpx.Client) -> None:
    response = bulk(api, "tasks", "CreateMultiple", [{"@odata.type": "Microsoft.Dynamics.CRM.task"}])
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        "Resource not found for the segment 'Microsoft.Dynamics.CRM.CreateMultiple'."
    )


# -- service protection limits (api-limits.md) -------------------------------------------------


def test_the_request_after_the_limit_answers_429_with_retry_after(
    dv: LocalDataverse, api: httpx.Client, seconds: Seconds
) -> None:
    dv.set_limits(request_limit=100, window_seconds=10)
    for _ in range(100):
        assert api.get("contacts").status_code == 200
        seconds.advance(0.05)
    response = api.get("contacts")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"] == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 100 over time window of 10 seconds.",
    }


def test_the_window_slides(dv: LocalDataverse, api: httpx.Client, seconds: Seconds) -> None:
    dv.set_limits(request_limit=2, window_seconds=10)
    api.get("contacts")
    seconds.advance(4)
    api.get("contacts")
    assert api.get("contacts").headers["Retry-After"] == "6"
    seconds.advance(6)
    assert api.get("contacts").status_code == 200


def test_requests_sent_while_throttled_extend_the_wait(dv: LocalDataverse, api: httpx.Client, seconds: Seconds) -> None:
    dv.set_limits(request_limit=1, window_seconds=10)
    api.get("contacts")
    waits = [int(api.get("contacts").headers["Retry-After"]) for _ in range(3)]
    seconds.advance(10)
    assert waits == [10, 11, 12]
    assert api.get("contacts").status_code == 429
    seconds.advance(3)
    assert api.get("contacts").status_code == 200


def test_x_ms_ratelimit_burst_remaining_reports_the_requests_left_in_the_window(
    dv: LocalDataverse, api: httpx.Client
) -> None:
    dv.set_limits(request_limit=3)
    assert api.get("contacts").headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "2"


def test_more_concurrent_requests_than_allowed_answer_429_at_once(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.set_limits(max_concurrent=1)
    held = dv.faults.add(Fault("timeout", entity_set="accounts", hold_seconds=0.5))
    slow = threading.Thread(target=api.get, args=("accounts",))
    slow.start()
    wait_until(lambda: held.fired == 1)
    response = api.get("contacts")
    slow.join()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 1.",
    }


def test_combined_execution_time_over_the_limit_answers_429(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.set_limits(execution_time_limit=0.000001)
    api.get("contacts")
    response = api.get("contacts")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "0x80072321"
    assert response.json()["error"]["message"].startswith(
        "Combined execution time of incoming requests exceeded limit of 0 milliseconds over time window of 300 seconds."
    )


# -- injected faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("validation", 400, "0x80044331"),
        ("privilege", 403, "0x80040220"),
        ("not_found", 404, "0x80040217"),
        ("duplicate", 500, "0x80040333"),
        ("server_error", 500, "0x80040216"),
    ],
)
def test_an_operation_fault_answers_dataverses_error_and_changes_nothing(
    dv: LocalDataverse, api: httpx.Client, kind: str, status: int, code: str
) -> None:
    dv.faults.add(Fault(kind, entity_set="contacts"))
    response = api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Ada"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert dv.rows("contacts") == []
    assert api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Ada"}).status_code == 204


def test_an_operation_fault_can_answer_another_code_and_message(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.faults.add(Fault("privilege", code="0x80040231", message="Principal user is missing prvCreateContact."))
    response = api.post("contacts", json={})
    assert (response.status_code, response.json()["error"]) == (
        403,
        {"code": "0x80040231", "message": "Principal user is missing prvCreateContact."},
    )


@pytest.mark.parametrize(
    ("kind", "status"), [("bad_gateway", 502), ("service_unavailable", 503), ("gateway_timeout", 504)]
)
def test_a_gateway_fault_answers_its_status(dv: LocalDataverse, api: httpx.Client, kind: str, status: int) -> None:
    dv.faults.add(Fault(kind))
    assert api.get("contacts").status_code == status
    assert api.get("contacts").status_code == 200


def test_a_fault_matches_by_key_from_the_nth_time_for_count_times(dv: LocalDataverse, api: httpx.Client) -> None:
    fault = dv.faults.add(Fault("validation", key="H-2", nth=2, count=2))
    statuses = [
        api.patch(f"contacts(acme_hostid='{key}')", json={}).status_code for key in ["H-2", "H-1", "H-2", "H-2", "H-2"]
    ]
    assert statuses == [204, 204, 400, 400, 204]
    assert (fault.seen, fault.fired) == (4, 2)


def test_an_always_fault_fires_until_cleared(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.faults.add(Fault("privilege", method="POST", count=ALWAYS))
    assert [api.post("contacts", json={}).status_code for _ in range(3)] == [403, 403, 403]
    dv.faults.clear()
    assert api.post("contacts", json={}).status_code == 204


def test_an_operation_fault_in_a_batch_fails_that_part_and_rolls_its_change_set_back(
    dv: LocalDataverse, api: httpx.Client
) -> None:
    dv.faults.add(Fault("duplicate", key="H-2"))
    response = post_batch(
        api,
        http_part("PATCH", "contacts(acme_hostid='H-1')", {}),
        change_set(
            "changeset_BBB456",
            http_part("PATCH", "contacts(acme_hostid='H-3')", {}, content_id="1"),
            http_part("PATCH", "contacts(acme_hostid='H-2')", {}, content_id="2"),
        ),
        prefer="odata.continue-on-error",
    )
    assert [(a.content_id, a.status) for a in answers(response)] == [(None, 204), ("2", 500)]
    assert [row["acme_hostid"] for row in dv.rows("contacts")] == ["H-1"]


def test_a_fault_on_a_bulk_message_rolls_the_whole_message_back(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.faults.add(Fault("validation", key="H-2"))
    contact = "Microsoft.Dynamics.CRM.contact"
    response = bulk(
        api, "contacts", "UpsertMultiple", [{"@odata.type": contact, "acme_hostid": key} for key in ("H-1", "H-2")]
    )
    assert response.status_code == 400
    assert dv.rows("contacts") == []


@pytest.mark.parametrize(("process", "rows"), [(True, 1), (False, 0)])
def test_a_timeout_outlasts_the_client_and_then_commits_or_not(
    dv: LocalDataverse, api: httpx.Client, process: bool, rows: int
) -> None:
    fault = dv.faults.add(Fault("timeout", hold_seconds=0.4, process=process))
    with pytest.raises(httpx.ReadTimeout):
        api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Ada"}, timeout=0.1)
    wait_until(lambda: len(dv.request_log) == 2)  # the token request, then the held one once the server is done
    assert fault.fired == 1
    assert len(dv.rows("contacts")) == rows


def test_a_held_batch_outlasts_the_client_and_then_commits(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.faults.add(Fault("timeout", entity_set="$batch", hold_seconds=0.4))
    part = http_part("PATCH", "contacts(acme_hostid='H-1')", {})
    with pytest.raises(httpx.ReadTimeout):
        api.post(
            "$batch",
            content=f"--b\r\n{part}\r\n--b--\r\n".encode(),
            headers={"Content-Type": "multipart/mixed; boundary=b"},
            timeout=0.1,
        )
    wait_until(lambda: len(dv.request_log) == 2)
    assert [row["acme_hostid"] for row in dv.rows("contacts")] == ["H-1"]


def test_a_connection_dropped_after_commit_leaves_the_row_created(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.faults.add(Fault("drop_after_commit", method="PATCH"))
    with pytest.raises(httpx.RemoteProtocolError):
        api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Ada"})
    assert [row["firstname"] for row in dv.rows("contacts")] == ["Ada"]
    assert dv.request_log[-1][3:] == (None, "connection_dropped")
    assert api.patch("contacts(acme_hostid='H-1')", json={"firstname": "Ada"}).status_code == 204
    assert len(dv.rows("contacts")) == 1


def test_a_connection_dropped_in_the_middle_of_a_batch_answer_after_commit(
    dv: LocalDataverse, api: httpx.Client
) -> None:
    dv.faults.add(Fault("drop_after_commit", entity_set="$batch"))
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|peer closed"):
        post_batch(
            api,
            http_part("PATCH", "contacts(acme_hostid='H-1')", {}),
            http_part("PATCH", "contacts(acme_hostid='H-2')", {}),
        )
    assert sorted(row["acme_hostid"] for row in dv.rows("contacts")) == ["H-1", "H-2"]


def test_a_throttled_fault_answers_429_with_its_retry_after(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.faults.add(Fault("throttled", retry_after=7))
    response = api.get("contacts")
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    assert response.json()["error"]["code"] == "0x80072322"


# -- change tracking (use-change-tracking-synchronize-data-external-systems.md) -------------------


def test_track_changes_reads_every_row_then_the_delta_link_returns_changes_and_deletions(
    dv: LocalDataverse, api: httpx.Client
) -> None:
    kept, gone = create_contact(api, "H-1", firstname="Ada"), create_contact(api, "H-2", firstname="Eve")
    first = api.get("contacts", params={"$select": "firstname"}, headers={"Prefer": "odata.track-changes"})
    assert first.headers["Preference-Applied"] == "odata.track-changes"
    assert first.json()["@odata.context"] == f"{dv.api_url}$metadata#contacts(firstname)"
    assert [row["firstname"] for row in first.json()["value"]] == ["Ada", "Eve"]
    delta_link = first.json()["@odata.deltaLink"]
    assert delta_link.startswith(f"{dv.api_url}contacts?$select=firstname&$deltatoken=")
    create_contact(api, "H-1", firstname="Ida")
    api.delete(f"contacts({gone})")
    changes = api.get(delta_link).json()
    assert changes["@odata.context"] == f"{dv.api_url}$metadata#contacts(firstname)/$delta"
    assert changes["value"] == [
        {"@odata.etag": 'W/"3"', "firstname": "Ida", "contactid": kept},
        {"@odata.context": f"{dv.api_url}$metadata#contacts/$deletedEntity", "id": gone, "reason": "deleted"},
    ]
    assert api.get(changes["@odata.deltaLink"]).json()["value"] == []


def test_track_changes_pages_with_next_links_and_ends_with_the_delta_link(api: httpx.Client) -> None:
    for number in range(5):
        create_contact(api, f"H-{number}")
    pages, response = [], api.get("contacts", headers={"Prefer": "odata.track-changes,odata.maxpagesize=2"})
    while "@odata.nextLink" in response.json():
        pages.append(response.json())
        create_contact(api, "H-late")  # a change while paging waits for the next delta
        response = api.get(response.json()["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"})
    pages.append(response.json())
    assert [len(page["value"]) for page in pages] == [2, 2, 1]
    assert ["@odata.deltaLink" in page for page in pages] == [False, False, True]
    assert [row["acme_hostid"] for row in api.get(pages[-1]["@odata.deltaLink"]).json()["value"]] == ["H-late"]


def test_track_changes_refuses_filter(api: httpx.Client) -> None:
    response = api.get("contacts", params={"$filter": "firstname eq 'Ada'"}, headers={"Prefer": "odata.track-changes"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        'The "$filter" query parameter isn\'t supported when Change Tracking is enabled.'
    )


def test_a_delta_token_older_than_the_retention_answers_an_error(
    dv: LocalDataverse, api: httpx.Client, seconds: Seconds
) -> None:
    delta_link = api.get("contacts", headers={"Prefer": "odata.track-changes"}).json()["@odata.deltaLink"]
    seconds.advance(7 * 24 * 3600 + 1)
    response = api.get(delta_link, headers={"Authorization": f"Bearer {token_for(dv)}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80044352"


def test_a_table_without_change_tracking_refuses_track_changes(api: httpx.Client) -> None:
    assert api.get("accounts", headers={"Prefer": "odata.track-changes"}).status_code == 400


# -- robustness -------------------------------------------------------------------------------


def test_concurrent_upserts_of_the_same_keys_make_one_row_per_key(dv: LocalDataverse, api: httpx.Client) -> None:
    def send_all(worker: int) -> None:
        for number in range(10):
            api.patch(f"contacts(acme_hostid='H-{number}')", json={"lastname": f"worker {worker}"})

    threads = [threading.Thread(target=send_all, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(row["acme_hostid"] for row in dv.rows("contacts")) == [f"H-{n}" for n in range(10)]
    assert all(row["versionnumber"] <= 60 for row in dv.rows("contacts"))


def test_a_client_that_vanishes_mid_request_frees_its_concurrency_slot(dv: LocalDataverse, api: httpx.Client) -> None:
    dv.set_limits(max_concurrent=1)
    with (
        socket.create_connection(("127.0.0.1", dv.port)) as raw,
        dv.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            b"PATCH /api/data/v9.2/contacts(acme_hostid='H-1') HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {api.headers['Authorization']}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"firstname"'
        )
    wait_until(lambda: len(dv.request_log) == 2)  # the token request, then the cut one
    assert dv.request_log[-1][3:] == (None, "client_disconnected")
    assert api.patch("contacts(acme_hostid='H-2')", json={}).status_code == 204
    assert [row["acme_hostid"] for row in dv.rows("contacts")] == ["H-2"]


def test_a_client_speaking_plain_http_to_the_tls_port_does_not_stop_the_server(
    dv: LocalDataverse, api: httpx.Client
) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{dv.port}/api/data/v9.2/contacts", timeout=2)
    assert api.get("contacts").status_code == 200


KEY_SAFE = "'=,"
HEADER_CHARACTERS = string.ascii_letters + string.digits + ' =,*"/;.-_'  # what h11 lets a client send
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)


@fuzz(40)
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE"]),
    entity_set=st.sampled_from(["contacts", "accounts", "tasks", "leads", "widgets", "$batch", "WhoAmI", ""]),
    key=st.none() | st.text(max_size=30),
    tail=st.none() | st.sampled_from(["firstname", "Microsoft.Dynamics.CRM.UpsertMultiple", "x/y"]),
    query=st.dictionaries(
        st.sampled_from(["$select", "$filter", "$top", "$skiptoken", "$deltatoken"]), st.text(max_size=20), max_size=3
    ),
    body=st.binary(max_size=40)
    | st.dictionaries(
        st.sampled_from(["firstname", "acme_hostid", "contactid", "Targets", "x@odata.bind"]), JSON_SCALARS
    ).map(lambda value: json.dumps(value).encode()),
    headers=st.dictionaries(
        st.sampled_from(["Prefer", "If-Match", "If-None-Match", "Content-Type"]),
        st.text(HEADER_CHARACTERS, max_size=20).map(str.strip),
    ),
)
def test_no_request_makes_the_local_dataverse_fail(
    api: httpx.Client,
    method: str,
    entity_set: str,
    key: str | None,
    tail: str | None,
    query: dict[str, str],
    body: bytes,
    headers: dict[str, str],
) -> None:
    path = entity_set if key is None else f"{entity_set}({urllib.parse.quote(key, safe=KEY_SAFE)})"
    path += f"/{tail}" if tail else ""
    response = api.request(method, path, params=query, content=body, headers=headers)
    assert response.status_code < 500
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"code", "message"}


# -- running it -------------------------------------------------------------------------------


def test_the_command_line_serves_the_demo_tables_until_terminated(tmp_path: t.Any) -> None:
    ca_file = tmp_path / "local-dataverse.pem"
    process = subprocess.Popen(
        [sys.executable, "-m", "flask_dynamics_sync.testing", "--tables", "demo", "--ca-file", str(ca_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[3]
        lines = [process.stdout.readline() for _ in range(4)]
        token = httpx.post(
            f"{url}/local-tenant/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "local-client",
                "client_secret": "local-secret",
                "scope": f"{url}/.default",
            },
            verify=ssl.create_default_context(cafile=str(ca_file)),
        ).json()["access_token"]
        response = httpx.patch(
            f"{url}/api/data/v9.2/opportunities(dsync_hostid='42')",
            json={"name": "Big deal"},
            headers={"Authorization": f"Bearer {token}"},
            verify=ssl.create_default_context(cafile=str(ca_file)),
        )
        assert response.status_code == 204
        assert lines[-1].split(":", 1)[1].split() == ["accounts,", "contacts,", "leads,", "opportunities"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_the_first_example_of_the_documentation_runs() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "local-dataverse.md").read_text(encoding="utf-8")
    example = re.search(r"^```python\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    assert example is not None
    namespace: dict[str, t.Any] = {}
    exec(compile(example.group(1), "docs/local-dataverse.md", "exec"), namespace)  # noqa: S102 - the page's own example
    assert [row["firstname"] for row in namespace["dv"].rows("contacts")] == ["Ada"]
