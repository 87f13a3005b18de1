#!/usr/bin/env python
"""Bring the plugin's translation catalogs in line with its sources.

    python scripts/update_catalogs.py            # extract, update the .pot and the .po files, report
    python scripts/update_catalogs.py --check    # write nothing; exit 1 if anything is out of date or untranslated
    python scripts/update_catalogs.py --compile  # also compile the .mo files (as builds and tests do)

Steps: extract every message from the Python and template sources (mapping in
``babel.cfg``) into ``translations/dynamics_sync.pot``; merge it into each
locale's ``.po`` (new messages arrive untranslated or fuzzy, removed ones are
dropped, translations and translator comments are kept); list what still needs
a translator. Files are rewritten only when their messages change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flask_dynamics_sync.i18n import TRANSLATIONS_DIR
from flask_dynamics_sync.i18n_tools import LOCALES
from flask_dynamics_sync.i18n_tools import TEMPLATE_NAME
from flask_dynamics_sync.i18n_tools import check_catalog
from flask_dynamics_sync.i18n_tools import compile_catalogs
from flask_dynamics_sync.i18n_tools import extract_messages
from flask_dynamics_sync.i18n_tools import is_current
from flask_dynamics_sync.i18n_tools import po_path
from flask_dynamics_sync.i18n_tools import render_catalog
from flask_dynamics_sync.i18n_tools import updated_catalog
from flask_dynamics_sync.i18n_tools import write_if_changed

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on any problem")
    parser.add_argument("--compile", action="store_true", help="compile the .mo files afterwards")
    parser.add_argument("--locale", action="append", help="only this locale (repeatable); default: all shipped")
    args = parser.parse_args(argv)

    template = extract_messages(ROOT)
    stale: list[str] = []
    pot = Path(TRANSLATIONS_DIR, TEMPLATE_NAME)
    if _store(pot, render_catalog(template), args.check):
        stale.append(str(pot.relative_to(ROOT)))

    problems: list[str] = []
    for locale in args.locale or LOCALES:
        catalog = updated_catalog(template, locale)
        path = po_path(locale)
        if _store(path, render_catalog(catalog), args.check):
            stale.append(str(path.relative_to(ROOT)))
        report = check_catalog(catalog, template)
        problems.extend(report.lines())
        print(
            f"{locale:6} {len(template) - len(report.untranslated):4}/{len(template)} translated, "
            f"{len(report.fuzzy)} fuzzy, {len(report.invalid)} invalid"
        )

    for line in problems:
        print("  " + line)
    if args.check:
        for name in stale:
            print(f"out of date: {name} (run scripts/update_catalogs.py)")
        return 1 if stale or problems else 0
    for name in stale:
        print(f"updated {name}")
    if args.compile:
        for mo in compile_catalogs(force=True):
            print(f"compiled {Path(mo).relative_to(ROOT)}")
    return 0


def _store(path: Path, content: bytes, dry_run: bool) -> bool:
    """True when ``path`` differs from ``content``; written unless ``dry_run``."""
    if dry_run:
        return not is_current(path, content)
    return write_if_changed(path, content)


if __name__ == "__main__":
    sys.exit(main())
