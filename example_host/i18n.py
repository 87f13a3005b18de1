"""The host's own locale and time zone selectors (Flask-Babel), which the plugin follows.

The language comes from a ``?lang=`` switch remembered in the session, else the
browser's ``Accept-Language``; the time zone is the signed-in user's.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask
from flask import g
from flask import has_request_context
from flask import request
from flask import session
from flask_babel import Babel

#: Offered languages, each named in itself for the switcher.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "it": "Italiano",
    "pt_BR": "Português (Brasil)",
    "de": "Deutsch",
    "es": "Español",
    "fr": "Français",
}
SESSION_KEY = "lang"


def select_locale() -> str:
    """The session's choice, else the browser's best match, else English."""
    chosen = session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return chosen
    # Werkzeug compares tags loosely ("pt-br" matches "pt_BR", "de-CH" matches "de").
    return request.accept_languages.best_match(LANGUAGES, default="en")


def select_timezone() -> str | None:
    """The signed-in user's time zone (``None``: Flask-Babel's default, UTC)."""
    user = g.get("user")
    return user.timezone if user is not None else None


def remember_lang_switch() -> None:
    """``?lang=xx`` on any page switches the language for the rest of the session."""
    lang = request.args.get("lang")
    if lang in LANGUAGES:
        session[SESSION_KEY] = lang


def lang_url(code: str) -> str:
    """The current page with ``lang=<code>``, other query arguments kept."""
    args = request.args.to_dict(flat=False)
    args["lang"] = [code]
    return f"{request.path}?{urlencode(args, doseq=True)}"


def init_i18n(app: Flask) -> Babel:
    """Set up Flask-Babel with the host's selectors and the switcher's template helpers."""
    babel = Babel(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.before_request(remember_lang_switch)

    @app.context_processor
    def language_switcher() -> dict[str, object]:
        if not has_request_context():
            return {}
        return {"host_languages": LANGUAGES, "host_lang_url": lang_url, "host_current_lang": select_locale()}

    return babel
