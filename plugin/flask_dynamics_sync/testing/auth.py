"""The token side of the local Dataverse: a tiny Microsoft Entra ID for one application.

It serves what MSAL for Python reads (msal/authority.py): the OpenID configuration at
``{authority}/v2.0/.well-known/openid-configuration`` and the token endpoint
``{authority}/oauth2/v2.0/token`` (powerapps-docs authenticate-oauth.md: client credentials,
scope ``{environment url}/.default``). Errors use Entra ID's bodies
(``error``, ``error_description`` with the AADSTS code, ``error_codes``): a wrong secret is
401 ``invalid_client``. The application may also prove itself with a certificate: a JWT
assertion (RFC 7523) signed with its private key, checked against the registered certificate,
its audience (the token endpoint), issuer and subject (the client id) and its expiry. Access tokens are opaque, bound to the client, and expire after
``token_lifetime`` seconds; the Web API answers 401 without one, with an unknown, revoked or
expired one.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Callable

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from . import errors

RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenError(Exception):
    """An OAuth error answer of the token endpoint."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def body(self) -> dict[str, object]:
        trace = str(uuid.uuid4())
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace}",
            "error_codes": [self.aadsts],
            "timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        }


class TokenIssuer:
    """Issues and checks access tokens for one tenant and one confidential client."""

    def __init__(
        self,
        *,
        tenant: str,
        client_id: str,
        client_secret: str,
        token_lifetime: float,
        clock: Callable[[], float],
        client_certificate: str | None = None,
    ) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self._client_secret = client_secret
        self._certificate_key: rsa.RSAPublicKey | None = None
        if client_certificate:
            key = x509.load_pem_x509_certificate(client_certificate.encode()).public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise ValueError("the client certificate must hold an RSA key: MSAL signs with PS256 or RS256")
            self._certificate_key = key
        self.token_lifetime = token_lifetime
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def openid_configuration(self, authority: str) -> dict[str, object]:
        """The discovery document MSAL reads before asking for a token."""
        return {
            "issuer": f"{authority}/v2.0",
            "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
            "token_endpoint": f"{authority}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "LOCAL",
        }

    def check_tenant(self, tenant: str) -> None:
        if tenant != self.tenant:
            raise TokenError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud.",
            )

    def issue(self, form: dict[str, str], authorization: str, resource: str, endpoint: str) -> dict[str, object]:
        """Answer a client-credentials token request (form fields, ``Authorization`` header) sent to ``endpoint``."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except ValueError:
                decoded = ":"
            basic_id, _, basic_secret = decoded.partition(":")
            client_id = client_id or urllib.parse.unquote_plus(basic_id)
            secret = secret or urllib.parse.unquote_plus(basic_secret)
        if form.get("grant_type") != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type; this local Entra ID issues client credentials only.",
            )
        if client_id != self.client_id:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.tenant}'.",
            )
        if form.get("client_assertion_type") == JWT_BEARER:
            self._check_assertion(form.get("client_assertion", ""), client_id, endpoint)
        elif not hmac.compare_digest(secret.encode(), self._client_secret.encode()):
            raise TokenError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scopes = set(form.get("scope", "").split()) - RESERVED_SCOPES
        wanted = {f"{resource}/.default", f"{resource}//.default"}
        if len(scopes) != 1 or not scopes <= wanted:
            raise TokenError(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"{form.get('scope', '')} is not valid; ask for {resource}/.default.",
            )
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            for stale in [known for known, (_, expires) in self._tokens.items() if expires <= now]:
                del self._tokens[stale]  # tokens past their lifetime answer 401 either way
            self._tokens[token] = (client_id, now + self.token_lifetime)
        lifetime = int(self.token_lifetime)
        return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}

    def _check_assertion(self, assertion: str, client_id: str, endpoint: str) -> None:
        if self._certificate_key is None:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation: no certificate is registered for app '{client_id}'.",
            )
        try:
            claims = jwt.decode(
                assertion,
                self._certificate_key,
                algorithms=["PS256", "RS256"],
                audience=endpoint,
                options={"require": ["aud", "iss", "sub", "exp"]},
            )
        except jwt.InvalidTokenError as error:
            raise TokenError(401, "invalid_client", 700027, f"Client assertion failed validation: {error}.") from None
        if claims["iss"] != client_id or claims["sub"] != client_id:
            raise TokenError(
                401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id'."
            )

    def client_for(self, authorization: str, authority: str, resource: str) -> str:
        """The client a ``Bearer`` token belongs to; a 401 error when there is no valid token."""
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            found = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if found is not None and self._clock() < found[1]:
            return found[0]
        reason = "token_expired" if found is not None else "invalid_token"
        raise errors.DataverseError(
            401,
            reason,
            "",
            {
                "WWW-Authenticate": f'Bearer error="invalid_token", authorization_uri={authority}/oauth2/authorize, '
                f"resource_id={resource}/"
            },
        )

    def revoke_all(self) -> None:
        """Every token issued so far answers 401 from now on."""
        with self._lock:
            self._tokens.clear()
