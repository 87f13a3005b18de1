"""Both views and their details pages in the six locales, worded as the product pages word them.

The host uses Flask-Babel with its own locale selector (``Accept-Language``);
times are UTC and the clock stands at 2026-03-10 14:20, so the *Last Hour* is
13:00-14:00. Status pages read ``status_dataset``, error pages ``errors_dataset``.
"""

from __future__ import annotations

import functools
import re
import typing as t
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from flask_dynamics_sync import i18n
from flask_dynamics_sync.i18n_tools import TEMPLATE_NAME
from flask_dynamics_sync.i18n_tools import po_path
from flask_dynamics_sync.i18n_tools import read_catalog

from .conftest import SQLITE_ONLY
from .conftest import UI_LOCALES
from .conftest import page_text

#: Rendering in six locales does not depend on the database.
pytestmark = SQLITE_ONLY

STATUS = "/admin/dynamics/status/"
ERRORS = "/admin/dynamics/errors/"

#: page -> (URL, the data set it reads)
PAGES = {
    "backlog": (STATUS, "status_dataset"),
    "last_hour": (STATUS + "?view=last_hour", "status_dataset"),
    "status_details": (STATUS + "details/Lead", "status_dataset"),
    "errors": (ERRORS, "errors_dataset"),
    "error_details": (ERRORS + "details/?id=700001", "errors_dataset"),
    "export": (ERRORS + "export/csv/", "errors_dataset"),
}

#: The terms of each product page, per locale and page: view and tab names, the View selector and its
#: Last Hour option, columns, N/A as the page writes it, operation and direction values, export.
TERMS: dict[str, dict[str, list[str]]] = {
    "en": {
        "backlog": ["Microsoft Dynamics", "Sync Status", "Sync Errors", "View:", "Backlog", "Last Hour", "Inserts", "Updates"],
        "last_hour": ["Throughput", "Last Hour", "Inserts", "Updates", "N/A", "Records synced in the last full hour: 1:00 – 2:00 PM"],
        "status_details": ["Sync status details: Lead", "Pending inserts", "Pending updates", "Oldest insert", "Oldest update"],
        "errors": ["Sync Errors", "Search", "Export", "Operation", "Direction", "Error code", "Error message", "Insert", "To Dynamics"],
        "error_details": ["Operation", "Direction", "Error code", "Error message", "Insert", "To Dynamics"],
        "export": ["Time (UTC)", "Record ID", "Operation", "Direction", "Error code", "Error message", "State"],
    },
    "it": {
        "backlog": ["Microsoft Dynamics", "Stato di sincronizzazione", "Errori di sincronizzazione", "Visualizza:", "Backlog", "Ultima ora", "Inserimenti", "Aggiornamenti"],
        "last_hour": ["Throughput", "Ultima ora", "Inserimenti", "Aggiornamenti", "N/D", "Record sincronizzati nell'ultima ora completa: 13:00–14:00"],
        "status_details": ["Dettagli dello stato di sincronizzazione: Lead", "Inserimenti in attesa", "Aggiornamenti in attesa", "Inserimento più vecchio", "Aggiornamento più vecchio"],
        "errors": ["Errori di sincronizzazione", "Cerca", "Esporta", "Operazione", "Direzione", "Codice di errore", "Messaggio di errore", "Inserimento", "Verso Dynamics"],
        "error_details": ["Operazione", "Direzione", "Codice di errore", "Messaggio di errore", "Inserimento", "Verso Dynamics"],
        "export": ["Data e ora (UTC)", "ID record", "Operazione", "Direzione", "Codice di errore", "Messaggio di errore", "Stato"],
    },
    "pt_BR": {
        "backlog": ["Microsoft Dynamics", "Status da sincronização", "Erros de sincronização", "Visualização:", "Backlog", "Última hora", "Inserções", "Atualizações"],
        "last_hour": ["Throughput", "Última hora", "Inserções", "Atualizações", "N/A", "Registros sincronizados na última hora completa: 13:00 – 14:00"],
        "status_details": ["Detalhes de status de sincronização: Lead", "Inserções pendentes", "Atualizações pendentes", "Inserção mais antiga", "Atualização mais antiga"],
        "errors": ["Erros de sincronização", "Pesquisar", "Exportar", "Operação", "Direção", "Código de erro", "Mensagem de erro", "Inserção", "Para o Dynamics"],
        "error_details": ["Operação", "Direção", "Código de erro", "Mensagem de erro", "Inserção", "Para o Dynamics"],
        "export": ["Data e hora (UTC)", "ID do registro", "Operação", "Direção", "Código de erro", "Mensagem de erro", "Status"],
    },
    "de": {
        "backlog": ["Microsoft Dynamics", "Synchronisierungsstatus", "Synchronisierungsfehler", "Ansicht:", "Rückstand", "Letzte Stunde", "Einfügungen", "Aktualisierungen"],
        "last_hour": ["Durchsatz", "Letzte Stunde", "Einfügungen", "Aktualisierungen", "Nicht zutreffend", "In der letzten vollen Stunde synchronisierte Datensätze: 13:00–14:00 Uhr"],
        "status_details": ["Details des Synchronisierungsstatus: Lead", "Ausstehende Einfügungen", "Ausstehende Aktualisierungen", "Älteste Einfügung", "Älteste Aktualisierung"],
        "errors": ["Synchronisierungsfehler", "Suchen", "Exportieren", "Vorgang", "Richtung", "Fehlercode", "Fehlermeldung", "Einfügung", "Nach Dynamics"],
        "error_details": ["Vorgang", "Richtung", "Fehlercode", "Fehlermeldung", "Einfügung", "Nach Dynamics"],
        "export": ["Zeitpunkt (UTC)", "Datensatz-ID", "Vorgang", "Richtung", "Fehlercode", "Fehlermeldung", "Status"],
    },
    "es": {
        "backlog": ["Microsoft Dynamics", "Estado de sincronización", "Errores de sincronización", "Ver:", "Registro de pendientes", "Última hora", "Inserciones", "Actualizaciones"],
        "last_hour": ["Rendimiento", "Última hora", "Inserciones", "Actualizaciones", "N/D", "Registros sincronizados en la última hora completa: 13:00–14:00"],
        "status_details": ["Detalles del estado de sincronización: Lead", "Inserciones pendientes", "Actualizaciones pendientes", "Inserción más antigua", "Actualización más antigua"],
        "errors": ["Errores de sincronización", "Buscar", "Exportar", "Operación", "Dirección", "Código de error", "Mensaje de error", "Inserción", "Hacia Dynamics"],
        "error_details": ["Operación", "Dirección", "Código de error", "Mensaje de error", "Inserción", "Hacia Dynamics"],
        "export": ["Fecha y hora (UTC)", "ID de registro", "Operación", "Dirección", "Código de error", "Mensaje de error", "Estado"],
    },
    # page_text() turns the no-break space before French colons into a plain space.
    "fr": {
        "backlog": ["Microsoft Dynamics", "Statut de la synchronisation", "Erreurs de synchronisation", "Affichage :", "Liste d'attente", "Dernière heure", "Insertions", "Mises à jour"],
        "last_hour": ["Débit", "Dernière heure", "Insertions", "Mises à jour", "Sans objet", "Enregistrements synchronisés au cours de la dernière heure complète : 13:00 – 14:00"],
        "status_details": ["Détails du statut de synchronisation : Lead", "Insertions en attente", "Mises à jour en attente", "Insertion la plus ancienne", "Mise à jour la plus ancienne"],
        "errors": ["Erreurs de synchronisation", "Rechercher", "Exporter", "Opération", "Sens", "Code d'erreur", "Message d'erreur", "Insertion", "Vers Dynamics"],
        "error_details": ["Opération", "Sens", "Code d'erreur", "Message d'erreur", "Insertion", "Vers Dynamics"],
        "export": ["Date et heure (UTC)", "ID d'enregistrement", "Opération", "Sens", "Code d'erreur", "Message d'erreur", "État"],
    },
}

#: Machine-translation slips of the product pages that the catalogs correct (see the .po comments).
SLIPS = {
    "en": [],
    "it": ["Inserti", "Funzionamento", "funzionamento"],
    "pt_BR": ["Sincronizar status"],
    "de": ["Fehler synchronisieren"],
    "es": [],
    "fr": [],
}


class RecordingTranslations:
    """The plugin's catalog for a request, noting every message the page asks for."""

    def __init__(self, inner: t.Any, asked: list[str]) -> None:
        self.inner, self.asked = inner, asked

    def ugettext(self, message: str) -> str:
        self.asked.append(message)
        return self.inner.ugettext(message)

    def ungettext(self, singular: str, plural: str, n: int) -> str:
        self.asked.append(singular)
        return self.inner.ungettext(singular, plural, n)


def _render(request: pytest.FixtureRequest, babel_client: t.Any, page: str, locale: str) -> str:
    url, dataset = PAGES[page]
    request.getfixturevalue(dataset)
    response = babel_client.get(url, headers={"Accept-Language": locale})
    assert response.status_code == 200
    return page_text(response.get_data(as_text=True))


@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("locale", UI_LOCALES)
def test_the_page_uses_the_product_pages_terms_without_their_slips(
    request: pytest.FixtureRequest, babel_client: t.Any, locale: str, page: str
) -> None:
    text = _render(request, babel_client, page, locale)
    assert [term for term in TERMS[locale][page] if term not in text] == []
    assert [slip for slip in SLIPS[locale] if slip in text] == []


@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("locale", UI_LOCALES)
def test_every_message_the_page_asks_for_is_in_the_catalogs_and_translated(
    request: pytest.FixtureRequest,
    babel_client: t.Any,
    monkeypatch: pytest.MonkeyPatch,
    locale: str,
    page: str,
) -> None:
    # Catches strings built at run time that extraction cannot see, as well as untranslated ones.
    asked: list[str] = []
    get_translations = i18n.get_translations
    monkeypatch.setattr(i18n, "get_translations", lambda: RecordingTranslations(get_translations(), asked))
    _render(request, babel_client, page, locale)

    catalog = _catalog(locale)
    assert asked
    assert sorted({message for message in asked if not _translated(catalog, message)}) == []


@functools.cache
def _catalog(locale: str) -> Catalog:
    """The locale's catalog; for English, the template extracted from the sources."""
    if locale == "en":
        return read_catalog(Path(i18n.TRANSLATIONS_DIR, TEMPLATE_NAME))
    return read_catalog(po_path(locale), locale)


def _translated(catalog: Catalog, message: str) -> bool:
    entry = catalog.get(message)
    if entry is None:
        return False
    if catalog.locale is None:  # the English template: being extracted is enough
        return True
    strings = entry.string if isinstance(entry.string, (list, tuple)) else [entry.string]
    return all(strings) and not entry.fuzzy


# -- confirmations and notifications of the error actions ------------------------------------------

CONFIRM_RETRY_TWO = {
    "en": "Retry 2 sync errors? Their records are queued again.",
    "it": "Riprovare 2 errori di sincronizzazione? I loro record tornano in coda.",
    "pt_BR": "Tentar novamente 2 erros de sincronização? Os registros voltam para a fila.",
    "de": "2 Synchronisierungsfehler erneut versuchen? Ihre Datensätze werden wieder in die Warteschlange gestellt.",
    "es": "¿Reintentar 2 errores de sincronización? Sus registros vuelven a la cola.",
    "fr": "Relancer 2 erreurs de synchronisation ? Leurs enregistrements sont remis en file d'attente.",
}

IGNORED_ONE = {
    "en": "1 sync error ignored.",
    "it": "1 errore di sincronizzazione ignorato.",
    "pt_BR": "1 erro de sincronização ignorado.",
    "de": "1 Synchronisierungsfehler ignoriert.",
    "es": "1 error de sincronización ignorado.",
    "fr": "1 erreur de synchronisation ignorée.",
}


def _post_action(babel_client: t.Any, locale: str, **data: t.Any) -> str:
    headers = {"Accept-Language": locale}
    form = babel_client.get(ERRORS, headers=headers).get_data(as_text=True)
    data["csrf_token"] = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = babel_client.post(ERRORS + "action/", data=data, headers=headers, follow_redirects=True)
    assert response.status_code == 200
    return page_text(response.get_data(as_text=True))


@pytest.mark.parametrize("locale", UI_LOCALES)
def test_an_action_asks_for_confirmation_in_the_viewers_language_and_plural(
    babel_client: t.Any, errors_dataset: t.Any, locale: str
) -> None:
    text = _post_action(babel_client, locale, action="retry", scope="selected", rowid=["700001", "700002"])
    assert CONFIRM_RETRY_TWO[locale] in text


@pytest.mark.parametrize("locale", UI_LOCALES)
def test_a_confirmed_action_reports_in_the_viewers_language_and_plural(
    babel_client: t.Any, errors_dataset: t.Any, locale: str
) -> None:
    text = _post_action(babel_client, locale, action="ignore", scope="selected", rowid=["700001"], confirmed="1")
    assert IGNORED_ONE[locale] in text
