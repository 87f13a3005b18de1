"""Catalog maintenance for the plugin's gettext domain: extract, update, check, compile.

The ``.po`` files under ``translations/`` are the source; ``.mo`` files are
built from them and never edited (they are git-ignored). Builds compile them in
``setup.py``; code running from a source checkout (editable install, test
suite, development server) calls :func:`compile_catalogs`, which only rewrites a ``.mo`` that is missing or
older than its ``.po``, so an installed wheel (whose ``.mo`` files are up to
date) is never written to. ``scripts/update_catalogs.py`` runs the whole cycle.

Only Babel is needed here: nothing in this module runs inside a request.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import typing as t
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.messages.pofile import write_po

from . import __version__
from .i18n import DOMAIN
from .i18n import TRANSLATIONS_DIR

#: Locales the plugin ships, besides English (the source language).
LOCALES: tuple[str, ...] = ("it", "pt_BR", "de", "es", "fr")

#: Call names whose string arguments are messages: Babel's defaults, plus the
#: plugin's ``lazy_gettext`` and the ``ds_gettext``/``ds_ngettext`` template helpers.
KEYWORDS: dict[str, t.Any] = {
    **DEFAULT_KEYWORDS,
    "lazy_gettext": None,
    "ds_gettext": None,
    "ds_ngettext": (1, 2),
}

PROJECT = "Flask-Dynamics-Sync"
TEMPLATE_NAME = f"{DOMAIN}.pot"
#: Comment tag for notes to translators in the sources: ``# Translators: ...``.
COMMENT_TAG = "Translators:"
_WIDTH = 100
# Header lines that change on every run and say nothing about the messages.
_VOLATILE_HEADERS = (b'"POT-Creation-Date:', b'"PO-Revision-Date:', b'"Generated-By:')


def po_path(locale: str, directory: str | os.PathLike[str] = TRANSLATIONS_DIR, domain: str = DOMAIN) -> Path:
    """``<directory>/<locale>/LC_MESSAGES/<domain>.po`` (by default the plugin's ``dynamics_sync.po``)."""
    return Path(directory, locale, "LC_MESSAGES", f"{domain}.po")


def catalog_locales(directory: str | os.PathLike[str] = TRANSLATIONS_DIR, domain: str = DOMAIN) -> list[str]:
    """Locales that have a ``<domain>.po`` file in ``directory``, sorted."""
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if po_path(entry.name, root, domain).is_file())


def read_catalog(path: str | os.PathLike[str], locale: str | None = None) -> Catalog:
    """Parse a ``.po`` or ``.pot`` file."""
    with open(path, "rb") as po_file:
        return read_po(po_file, locale=locale, domain=DOMAIN)


# -- compiling ------------------------------------------------------------------


def compile_catalogs(
    directory: str | os.PathLike[str] = TRANSLATIONS_DIR, *, force: bool = False, domain: str = DOMAIN
) -> list[Path]:
    """Compile each ``<locale>/LC_MESSAGES/<domain>.po`` whose ``.mo`` is missing or older.

    The default is the plugin's own catalogs; a host may compile its own
    (``domain="messages"``, Flask-Babel's default domain) from a source checkout.

    Fuzzy entries are left out, so they show in English rather than with a
    doubtful translation. Each ``.mo`` is written to a temporary file and
    renamed, so a process reading catalogs meanwhile never sees half a file.
    Returns the ``.mo`` paths written (empty when everything was up to date).
    """
    written: list[Path] = []
    for locale in catalog_locales(directory, domain):
        source = po_path(locale, directory, domain)
        target = source.with_suffix(".mo")
        if not force and target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        catalog = read_catalog(source, locale)
        buffer = io.BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)
        _replace(target, buffer.getvalue())
        written.append(target)
    return written


def _replace(target: Path, content: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


# -- extracting and updating ------------------------------------------------------


def extract_messages(root: str | os.PathLike[str], mapping: str | os.PathLike[str] | None = None) -> Catalog:
    """The message template: every message in the Python and template sources under ``root``.

    ``mapping`` is the Babel mapping file (default ``<root>/babel.cfg``), whose
    patterns are relative to ``root``. Locations are recorded without line
    numbers so that catalogs change only when messages do.
    """
    root = Path(root)
    with open(mapping or root / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    template = Catalog(project=PROJECT, version=__version__, domain=DOMAIN, charset="utf-8", fuzzy=False)
    template.header_comment = (
        f"# Message template for {PROJECT} (gettext domain {DOMAIN}).\n"
        "# Generated by scripts/update_catalogs.py from the Python and template sources: do not edit.\n"
        "#"
    )
    for filename, lineno, message, comments, context in extract_from_dir(
        root, method_map, options_map, keywords=KEYWORDS, comment_tags=(COMMENT_TAG,), strip_comment_tags=True
    ):
        template.add(message, locations=[(filename, lineno)], auto_comments=comments, context=context)
    return template


def render_catalog(catalog: Catalog) -> bytes:
    """The ``.po``/``.pot`` text of ``catalog`` as this project writes it."""
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=_WIDTH, ignore_obsolete=True, include_lineno=False)
    return buffer.getvalue()


def is_current(path: str | os.PathLike[str], content: bytes) -> bool:
    """True when the file at ``path`` already says ``content``, header dates aside."""
    path = Path(path)
    return path.exists() and _stable(path.read_bytes()) == _stable(content)


def write_if_changed(path: str | os.PathLike[str], content: bytes) -> bool:
    """Write ``content`` unless the file is already current; True if written."""
    path = Path(path)
    if is_current(path, content):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, content)
    return True


def _stable(content: bytes) -> list[bytes]:
    return [line for line in content.splitlines() if not line.startswith(_VOLATILE_HEADERS)]


def updated_catalog(template: Catalog, locale: str, directory: str | os.PathLike[str] = TRANSLATIONS_DIR) -> Catalog:
    """The catalog of ``locale`` brought in line with ``template`` (not written).

    New messages arrive untranslated, or ``fuzzy`` with the translation of a
    similar old message; messages gone from the sources are dropped.
    Translator comments (the glossary at the top, notes on entries) are kept.
    """
    path = po_path(locale, directory)
    if path.exists():
        catalog = read_catalog(path, locale)
    else:
        catalog = Catalog(locale=locale, domain=DOMAIN, project=PROJECT, charset="utf-8", fuzzy=False)
        catalog.header_comment = f"# {catalog.locale.english_name} translations for {PROJECT}.\n#"
    catalog.update(template, update_creation_date=False)
    catalog.project, catalog.version = PROJECT, __version__
    return catalog


# -- checking -----------------------------------------------------------------------


@dataclasses.dataclass
class CatalogReport:
    """What is wrong with one locale's catalog; empty lists mean nothing."""

    locale: str
    missing: list[str] = dataclasses.field(default_factory=list)
    """In the sources but not in the catalog."""
    obsolete: list[str] = dataclasses.field(default_factory=list)
    """In the catalog but no longer in the sources."""
    untranslated: list[str] = dataclasses.field(default_factory=list)
    fuzzy: list[str] = dataclasses.field(default_factory=list)
    invalid: list[str] = dataclasses.field(default_factory=list)
    """Translations whose placeholders or plural forms do not match their msgid."""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.obsolete or self.untranslated or self.fuzzy or self.invalid)

    def lines(self) -> list[str]:
        """A human-readable account, one problem per line."""
        out: list[str] = []
        for label, entries in (
            ("missing", self.missing),
            ("obsolete", self.obsolete),
            ("untranslated", self.untranslated),
            ("fuzzy", self.fuzzy),
            ("invalid", self.invalid),
        ):
            out.extend(f"{self.locale}: {label}: {entry}" for entry in entries)
        return out


def message_keys(catalog: Catalog) -> set[str]:
    """The messages of ``catalog`` (header excluded), as their msgid (singular) with context."""
    return {_key(message) for message in catalog if message.id}


def _key(message: t.Any) -> str:
    msgid = message.id[0] if isinstance(message.id, (list, tuple)) else message.id
    return f"{message.context}\x04{msgid}" if message.context else msgid


def check_catalog(catalog: Catalog, template: Catalog) -> CatalogReport:
    """Compare one locale's catalog with the template extracted from the sources."""
    report = CatalogReport(str(catalog.locale))
    expected, present = message_keys(template), message_keys(catalog)
    report.missing = sorted(expected - present)
    report.obsolete = sorted(present - expected)
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, (list, tuple)) else [message.string]
        if not all(strings):
            report.untranslated.append(_key(message))
        if message.fuzzy:
            report.fuzzy.append(_key(message))
    for message, errors in catalog.check():
        if _key(message) not in report.untranslated:
            report.invalid.extend(f"{_key(message)}: {error}" for error in errors)
    return report


def check_catalogs(
    template: Catalog,
    directory: str | os.PathLike[str] = TRANSLATIONS_DIR,
    locales: Iterable[str] = LOCALES,
) -> list[CatalogReport]:
    """:func:`check_catalog` for each shipped locale, as the files on disk are."""
    reports = []
    for locale in locales:
        path = po_path(locale, directory)
        if not path.exists():
            reports.append(CatalogReport(locale, missing=sorted(message_keys(template))))
            continue
        reports.append(check_catalog(read_catalog(path, locale), template))
    return reports
