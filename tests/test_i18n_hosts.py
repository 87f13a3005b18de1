"""The plugin's language comes from the host: its Flask-Babel locale selector, or English."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_dynamics_sync import i18n
from flask_dynamics_sync.config import load_settings
from flask_dynamics_sync.i18n_tools import compile_catalogs
from flask_dynamics_sync.i18n_tools import po_path

from .conftest import UI_LOCALES
from .conftest import page_text

PAGES = {"status": "/admin/dynamics/status/", "errors": "/admin/dynamics/errors/"}

#: The two menu entries, and Flask-Admin's own "Home", in each locale.
MENU = {
    "en": ("Sync Status", "Sync Errors", "Home"),
    "it": ("Stato di sincronizzazione", "Errori di sincronizzazione", "Pagina Principale"),
    "pt_BR": ("Status da sincronização", "Erros de sincronização", "Início"),
    "de": ("Synchronisierungsstatus", "Synchronisierungsfehler", "Start"),
    "es": ("Estado de sincronización", "Errores de sincronización", "Inicio"),
    "fr": ("Statut de la synchronisation", "Erreurs de synchronisation", "Accueil"),
}


def _get(app: Flask, path: str, language: str) -> str:
    response = app.test_client().get(path, headers={"Accept-Language": language})
    assert response.status_code == 200
    return page_text(response.get_data(as_text=True))


# -- a host with Flask-Babel and its own locale selector ---------------------------------


@pytest.mark.parametrize("page", sorted(PAGES))
@pytest.mark.parametrize("locale", UI_LOCALES)
def test_a_host_locale_selector_sets_the_plugins_language_and_flask_admins(
    make_babel_app: Callable[..., Flask], locale: str, page: str
) -> None:
    text = _get(make_babel_app(), PAGES[page], locale)
    for term in MENU[locale]:
        assert term in text
    assert "Microsoft Dynamics" in text


def test_the_language_follows_each_request(make_babel_app: Callable[..., Flask]) -> None:
    app = make_babel_app()
    assert [MENU["de"][0] in _get(app, PAGES["status"], language) for language in ("de", "fr", "de-AT")] == [
        True,
        False,
        True,
    ]


def test_a_regional_variant_gets_its_languages_catalog(make_babel_app: Callable[..., Flask]) -> None:
    app = make_babel_app(locale_selector=lambda: "de_CH")
    assert MENU["de"][0] in _get(app, PAGES["status"], "de-CH")


def test_a_locale_without_a_catalog_gets_english(make_babel_app: Callable[..., Flask]) -> None:
    app = make_babel_app(locale_selector=lambda: "nl")
    assert MENU["en"][0] in _get(app, PAGES["status"], "nl")


# -- hosts without Flask-Babel ----------------------------------------------------------


def test_a_host_with_flask_babel_installed_but_not_initialised_gets_english_pages(
    make_app: Callable[..., Flask], sqlite_url: str
) -> None:
    app = make_app(sqlite_url)
    for path in PAGES.values():
        text = _get(app, path, "de")
        assert all(term in text for term in MENU["en"])
        assert MENU["de"][0] not in text


NO_FLASK_BABEL = textwrap.dedent(
    """
    import json, sys
    sys.modules["flask_babel"] = None  # what "pip uninstall flask-babel" leaves: ImportError
    from flask import Flask
    from flask_admin import Admin
    from flask_sqlalchemy import SQLAlchemy
    from flask_dynamics_sync import DynamicsSync, i18n

    app = Flask("host_without_babel")
    app.config.update(SQLALCHEMY_DATABASE_URI=sys.argv[1], SECRET_KEY="x", TESTING=True)
    db = SQLAlchemy(app)
    sync = DynamicsSync(app, admin=Admin(app, name="Host console"), db=db)
    with app.app_context():
        sync.create_all()
    client = app.test_client()
    pages = {}
    for path in sys.argv[2:]:
        response = client.get(path, headers={"Accept-Language": "de"})
        pages[path] = [response.status_code, response.get_data(as_text=True)]
    print(json.dumps({"flask_babel": i18n.flask_babel is not None, "pages": pages}))
    """
)


def test_a_host_without_flask_babel_gets_english_pages(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_FLASK_BABEL, f"sqlite:///{tmp_path / 'host.db'}", *PAGES.values()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["flask_babel"] is False
    for path, (status, body) in outcome["pages"].items():
        assert status == 200, path
        text = page_text(body)
        assert all(term in text for term in MENU["en"]), path
        assert MENU["de"][0] not in text


def test_outside_a_request_messages_are_english(babel_app: Flask) -> None:
    assert i18n.gettext("Sync Status") == "Sync Status"


# -- a host's own catalogs (DYNAMICS_SYNC_TRANSLATION_DIRECTORIES) ----------------------------


def _host_catalog(directory: Path, locale: str, plural_forms: str, entries: str) -> Path:
    path = po_path(locale, directory)
    path.parent.mkdir(parents=True)
    path.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n'
        f'"Plural-Forms: {plural_forms}\\n"\n\n{entries}',
        encoding="utf-8",
    )
    compile_catalogs(directory)
    return directory


def test_a_host_adds_a_language_in_its_own_translation_directory(
    make_babel_app: Callable[..., Flask], tmp_path: Path
) -> None:
    directory = _host_catalog(
        tmp_path,
        "nl",
        "nplurals=2; plural=(n != 1);",
        'msgid "Sync Status"\nmsgstr "Synchronisatiestatus"\n\nmsgid "Sync Errors"\nmsgstr "Synchronisatiefouten"\n',
    )
    app = make_babel_app(
        config={"DYNAMICS_SYNC_TRANSLATION_DIRECTORIES": [str(directory)]}, locale_selector=lambda: "nl"
    )
    text = _get(app, PAGES["status"], "nl")
    assert "Synchronisatiestatus" in text and "Synchronisatiefouten" in text


def test_a_host_rewords_one_message_and_keeps_the_plugins_other_translations(
    make_babel_app: Callable[..., Flask], tmp_path: Path
) -> None:
    directory = _host_catalog(
        tmp_path, "de", "nplurals=2; plural=(n != 1);", 'msgid "Sync Status"\nmsgstr "Sync-Status"\n'
    )
    app = make_babel_app(config={"DYNAMICS_SYNC_TRANSLATION_DIRECTORIES": str(directory)})
    text = _get(app, PAGES["status"], "de")
    assert "Sync-Status" in text and MENU["de"][0] not in text
    assert MENU["de"][1] in text


def test_host_catalogs_keep_the_locales_plural_rule(make_babel_app: Callable[..., Flask], tmp_path: Path) -> None:
    # A catalog without a Plural-Forms header must not switch French to English plurals (0 is singular in French).
    path = po_path("fr", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "%(num)s record"\nmsgid_plural "%(num)s records"\n'
        'msgstr[0] "%(num)s enregistrement"\nmsgstr[1] "%(num)s enregistrements"\n',
        encoding="utf-8",
    )
    compile_catalogs(tmp_path)
    app = make_babel_app(config={"DYNAMICS_SYNC_TRANSLATION_DIRECTORIES": [str(tmp_path)]})
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        assert [i18n.ngettext("%(num)s record", "%(num)s records", n) for n in (0, 1, 2)] == [
            "0 enregistrement",
            "1 enregistrement",
            "2 enregistrements",
        ]


def test_relative_translation_directories_are_relative_to_the_apps_root_path(
    make_babel_app: Callable[..., Flask],
) -> None:
    app = make_babel_app(config={"DYNAMICS_SYNC_TRANSLATION_DIRECTORIES": ["translations", "/srv/i18n"]})
    with app.app_context():
        assert i18n.translation_directories() == [
            str(Path(app.root_path, "translations")),
            "/srv/i18n",
            i18n.TRANSLATIONS_DIR,
        ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [([], ()), ("a;b", ("a", "b")), (["a", Path("/b")], ("a", "/b")), (None, ())],
)
def test_translation_directories_setting_takes_a_list_or_a_semicolon_separated_string(
    value: object, expected: tuple[str, ...]
) -> None:
    assert load_settings({"DYNAMICS_SYNC_TRANSLATION_DIRECTORIES": value}).translation_directories == expected


def test_translation_directories_setting_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="DYNAMICS_SYNC_TRANSLATION_DIRECTORIES"):
        load_settings({"DYNAMICS_SYNC_TRANSLATION_DIRECTORIES": 3})


# -- text made outside a request ------------------------------------------------------------------


def test_force_locale_translates_and_formats_outside_a_request(make_app: Callable[..., Flask], sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    with app.app_context(), i18n.force_locale("de"):
        assert (i18n.gettext("Sync Status"), i18n.format_number(1234.5)) == ("Synchronisierungsstatus", "1.234,5")


def test_force_locale_overrides_the_hosts_selector_and_ends_with_its_block(babel_app: Flask) -> None:
    with babel_app.test_request_context(headers={"Accept-Language": "fr"}):
        with i18n.force_locale("it"):
            assert i18n.gettext("Sync Status") == "Stato di sincronizzazione"
        assert i18n.gettext("Sync Status") == "Statut de la synchronisation"
