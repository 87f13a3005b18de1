"""A strict Content-Security-Policy with a fresh nonce per request.

No inline script or style runs unless it carries the nonce; nothing loads from
another origin. The same nonce is given to Flask-Admin (``csp_nonce_generator``),
so Flask-Admin's and the plugin's pages work under this policy unchanged.
"""

from __future__ import annotations

import secrets

from flask import Flask
from flask import g
from flask.wrappers import Response


def csp_nonce() -> str:
    """This request's nonce (created on first use)."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(18)
    return nonce


def content_security_policy(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            f"style-src 'self' 'nonce-{nonce}'",
            # Bootstrap's CSS draws a few icons from data: URIs.
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def add_security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def init_security(app: Flask) -> None:
    """Send the policy on every response; templates get ``csp_nonce()``."""
    app.after_request(add_security_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
