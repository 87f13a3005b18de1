"""Access tokens for the Dataverse Web API: MSAL client credentials, or the host's own callable.

The OAuth2 client credentials flow (``authenticate-oauth.md``): the app
registration's client id and a secret or certificate, scope
``<environment URL>/.default``. MSAL caches the token and asks for a new one
shortly before it expires; after a 401 the worker asks once for a fresh token
(:meth:`TokenProvider.token` with ``force_refresh=True``), which drops MSAL's
cached one first. Neither the credential nor a token is ever logged.
"""

from __future__ import annotations

import threading
import typing as t
from collections.abc import Callable

from .settings import ConnectorSettings

DEFAULT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"


class AuthenticationError(RuntimeError):
    """No token could be obtained; ``code`` and ``message`` are what the token endpoint said."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TokenProvider(t.Protocol):
    """Something that hands out bearer tokens for the environment."""

    def token(self, *, force_refresh: bool = False) -> str: ...


class MsalTokenProvider:
    """Client credentials through MSAL's :class:`msal.ConfidentialClientApplication`.

    :param credential: the client secret, or MSAL's certificate mapping.
    :param authority: the token authority (default: Microsoft Entra for ``tenant``).
    :param msal_options: more keyword arguments for MSAL (e.g. ``instance_discovery=False``
        for a local token endpoint).
    """

    def __init__(
        self,
        *,
        client_id: str,
        credential: str | t.Mapping[str, t.Any],
        scope: str,
        tenant: str | None = None,
        authority: str | None = None,
        **msal_options: t.Any,
    ) -> None:
        import msal

        self._scopes = [scope]
        self._lock = threading.Lock()
        self._app = msal.ConfidentialClientApplication(
            client_id,
            client_credential=dict(credential) if isinstance(credential, t.Mapping) else credential,
            authority=authority or DEFAULT_AUTHORITY.format(tenant=tenant),
            **msal_options,
        )

    def __repr__(self) -> str:
        return f"<MsalTokenProvider scope={self._scopes[0]!r}>"

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            if force_refresh:
                cache = self._app.token_cache
                for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(entry)
            result = self._app.acquire_token_for_client(scopes=self._scopes)
        if "access_token" not in result:
            raise AuthenticationError(
                str(result.get("error") or "token_error"), str(result.get("error_description") or "no access token")
            )
        return str(result["access_token"])


class CallableTokenProvider:
    """The host's own ``get_token(force_refresh=False) -> str``."""

    def __init__(self, get_token: Callable[..., str]) -> None:
        self._get_token = get_token

    def __repr__(self) -> str:
        return "<CallableTokenProvider>"

    def token(self, *, force_refresh: bool = False) -> str:
        value = self._get_token(force_refresh=force_refresh)
        if not isinstance(value, str) or not value:
            raise AuthenticationError("token_error", "DYNAMICS_SYNC_DATAVERSE_TOKEN returned no token")
        return value


def _session_trusting(ca_bundle: str) -> t.Any:
    """A ``requests`` session for MSAL that trusts ``ca_bundle``.

    With ``trust_env`` on, requests would let ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
    replace a session's own CA bundle, so the environment is not consulted (nor its proxies).
    """
    import requests

    session = requests.Session()
    session.verify = ca_bundle
    session.trust_env = False
    return session


def token_provider(settings: ConnectorSettings, **msal_options: t.Any) -> TokenProvider:
    """The token provider the settings describe (the host's callable wins)."""
    if settings.token is not None:
        return CallableTokenProvider(settings.token)
    credential = settings.certificate if settings.certificate is not None else settings.client_secret
    assert settings.client_id and credential, "checked by load_connector_settings"
    if settings.authority:
        msal_options.setdefault("instance_discovery", False)
    if isinstance(settings.verify, str):
        msal_options.setdefault("http_client", _session_trusting(settings.verify))
    else:
        msal_options.setdefault("verify", settings.verify)
    return MsalTokenProvider(
        client_id=settings.client_id,
        credential=credential,
        scope=settings.scope,
        tenant=settings.tenant,
        authority=settings.authority,
        **msal_options,
    )
