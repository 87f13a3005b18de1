"""The translation catalogs: in sync with the sources, complete, compiled from the ``.po`` files."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.support import Translations

from flask_dynamics_sync.i18n import DOMAIN
from flask_dynamics_sync.i18n import TRANSLATIONS_DIR
from flask_dynamics_sync.i18n_tools import LOCALES
from flask_dynamics_sync.i18n_tools import TEMPLATE_NAME
from flask_dynamics_sync.i18n_tools import CatalogReport
from flask_dynamics_sync.i18n_tools import catalog_locales
from flask_dynamics_sync.i18n_tools import check_catalogs
from flask_dynamics_sync.i18n_tools import compile_catalogs
from flask_dynamics_sync.i18n_tools import extract_messages
from flask_dynamics_sync.i18n_tools import is_current
from flask_dynamics_sync.i18n_tools import po_path
from flask_dynamics_sync.i18n_tools import read_catalog
from flask_dynamics_sync.i18n_tools import render_catalog
from flask_dynamics_sync.i18n_tools import updated_catalog

ROOT = Path(__file__).resolve().parent.parent
FIX = "run `python scripts/update_catalogs.py`, then translate what it lists"


@pytest.fixture(scope="module")
def template() -> Catalog:
    """Every message of the plugin's Python and template sources, extracted now."""
    return extract_messages(ROOT)


@pytest.fixture(scope="module")
def reports(template: Catalog) -> dict[str, CatalogReport]:
    return {report.locale: report for report in check_catalogs(template)}


def test_the_shipped_locales_are_italian_brazilian_portuguese_german_spanish_and_french() -> None:
    assert catalog_locales() == sorted(LOCALES) == ["de", "es", "fr", "it", "pt_BR"]


def test_the_message_template_matches_the_sources(template: Catalog) -> None:
    assert is_current(Path(TRANSLATIONS_DIR, TEMPLATE_NAME), render_catalog(template)), FIX


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_has_every_message_of_the_sources_and_no_other(reports: dict[str, CatalogReport], locale: str) -> None:
    report = reports[locale]
    assert (report.missing, report.obsolete) == ([], []), FIX


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_translates_every_message(reports: dict[str, CatalogReport], locale: str) -> None:
    assert reports[locale].untranslated == []


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_has_no_fuzzy_entry(reports: dict[str, CatalogReport], locale: str) -> None:
    assert reports[locale].fuzzy == []


@pytest.mark.parametrize("locale", LOCALES)
def test_translations_keep_the_placeholders_and_plural_forms_of_their_message(
    reports: dict[str, CatalogReport], locale: str
) -> None:
    assert reports[locale].invalid == []


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_file_is_as_the_update_script_writes_it(template: Catalog, locale: str) -> None:
    assert is_current(po_path(locale), render_catalog(updated_catalog(template, locale))), FIX


def test_the_update_script_check_mode_passes() -> None:
    spec = importlib.util.spec_from_file_location("update_catalogs", ROOT / "scripts" / "update_catalogs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0


def test_the_menu_category_is_a_product_name_and_never_a_message(template: Catalog) -> None:
    assert "Microsoft Dynamics" not in template


# -- extraction ---------------------------------------------------------------------


def test_extraction_reads_python_and_template_messages(tmp_path: Path) -> None:
    package = tmp_path / "plugin" / "flask_dynamics_sync"
    (package / "templates" / "dynamics_sync").mkdir(parents=True)
    shutil.copy(ROOT / "babel.cfg", tmp_path / "babel.cfg")
    (package / "views.py").write_text(
        "from .i18n import gettext, lazy_gettext, ngettext\n"
        "TITLE = lazy_gettext('Lazy title')\n"
        "def f(n):\n"
        "    # Translators: shown above the table\n"
        "    return gettext('Now %(n)s', n=n), ngettext('%(num)s error', '%(num)s errors', n)\n",
        encoding="utf-8",
    )
    (package / "templates" / "dynamics_sync" / "page.html").write_text(
        '{{ _("In a template") }} {{ ds_ngettext("%(num)s record", "%(num)s records", 2) }}', encoding="utf-8"
    )
    catalog = extract_messages(tmp_path)
    assert sorted(str(m.id) for m in catalog if m.id) == sorted(
        [
            "Lazy title",
            "Now %(n)s",
            str(("%(num)s error", "%(num)s errors")),
            "In a template",
            str(("%(num)s record", "%(num)s records")),
        ]
    )
    assert catalog["Now %(n)s"].auto_comments == ["shown above the table"]
    assert catalog["In a template"].locations == [("plugin/flask_dynamics_sync/templates/dynamics_sync/page.html", 1)]


def test_extraction_fails_on_a_template_with_a_syntax_error(tmp_path: Path) -> None:
    templates = tmp_path / "plugin" / "flask_dynamics_sync" / "templates" / "dynamics_sync"
    templates.mkdir(parents=True)
    shutil.copy(ROOT / "babel.cfg", tmp_path / "babel.cfg")
    (templates / "broken.html").write_text('{% if %}{{ _("Lost") }}', encoding="utf-8")
    with pytest.raises(Exception, match="broken.html|Expected an expression"):
        extract_messages(tmp_path)


# -- compiling ----------------------------------------------------------------------


def _po(directory: Path, locale: str, entries: str) -> Path:
    path = po_path(locale, directory)
    path.parent.mkdir(parents=True)
    path.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n' + entries, encoding="utf-8"
    )
    return path


def _load(directory: Path, locale: str) -> Translations:
    return Translations.load(str(directory), [locale], DOMAIN)


def test_compile_writes_a_mo_file_per_catalog(tmp_path: Path) -> None:
    _po(tmp_path, "de", 'msgid "Sync Status"\nmsgstr "Synchronisierungsstatus"\n')
    assert compile_catalogs(tmp_path) == [tmp_path / "de" / "LC_MESSAGES" / "dynamics_sync.mo"]
    assert _load(tmp_path, "de").gettext("Sync Status") == "Synchronisierungsstatus"


def test_compile_skips_catalogs_whose_mo_file_is_up_to_date(tmp_path: Path) -> None:
    _po(tmp_path, "de", 'msgid "Sync Status"\nmsgstr "Synchronisierungsstatus"\n')
    compile_catalogs(tmp_path)
    assert compile_catalogs(tmp_path) == []


def test_compile_rewrites_a_mo_file_older_than_its_po_file(tmp_path: Path) -> None:
    po = _po(tmp_path, "de", 'msgid "Sync Status"\nmsgstr "Synchronisierungsstatus"\n')
    (mo,) = compile_catalogs(tmp_path)
    po.write_text(po.read_text(encoding="utf-8").replace("Synchronisierungsstatus", "Status"), encoding="utf-8")
    os.utime(mo, (0, 0))
    assert compile_catalogs(tmp_path) == [mo]
    assert _load(tmp_path, "de").gettext("Sync Status") == "Status"


def test_compile_leaves_fuzzy_translations_out(tmp_path: Path) -> None:
    _po(tmp_path, "de", '#, fuzzy\nmsgid "Sync Status"\nmsgstr "Synchronisierung"\n')
    compile_catalogs(tmp_path)
    assert _load(tmp_path, "de").gettext("Sync Status") == "Sync Status"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_shipped_mo_files_are_compiled_from_the_po_files(locale: str) -> None:
    source = read_catalog(po_path(locale), locale)
    compiled = _load(Path(TRANSLATIONS_DIR), locale)
    translated = [m for m in source if m.id and m.string and not m.pluralizable and not m.fuzzy]
    assert [compiled.gettext(m.id) for m in translated] == [m.string for m in translated]


def test_french_puts_no_break_spaces_before_double_punctuation() -> None:
    # An ordinary space there lets the line break before the ":" (typography rule of the fr glossary).
    catalog = read_catalog(po_path("fr"), "fr")
    strings = [s for m in catalog if m.id for s in (m.string if isinstance(m.string, tuple) else (m.string,))]
    assert [s for s in strings if re.search(r" [:;?!]", s)] == []
