"""Packaging for Flask-Dynamics-Sync (import name ``flask_dynamics_sync``, under ``plugin/``).

``python setup.py build`` / ``pip install .`` / ``python -m build`` compile the
``.po`` catalogs into ``.mo`` files first, so the wheel and the sdist both carry
compiled translations next to the templates and static files.
"""

import os

from setuptools import find_packages
from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
TRANSLATIONS = os.path.join(HERE, "plugin", "flask_dynamics_sync", "translations")


def compile_catalogs() -> None:
    """Compile every translations/<locale>/LC_MESSAGES/dynamics_sync.po into its .mo."""
    if not os.path.isdir(TRANSLATIONS):
        return
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for locale in sorted(os.listdir(TRANSLATIONS)):
        po_path = os.path.join(TRANSLATIONS, locale, "LC_MESSAGES", "dynamics_sync.po")
        if not os.path.isfile(po_path):
            continue
        with open(po_path, "rb") as po_file:
            catalog = read_po(po_file, locale=locale, domain="dynamics_sync")
        with open(po_path[:-3] + ".mo", "wb") as mo_file:
            write_mo(mo_file, catalog, use_fuzzy=False)


class BuildPyWithCatalogs(build_py):
    def run(self):
        compile_catalogs()
        super().run()


class SdistWithCatalogs(sdist):
    def run(self):
        compile_catalogs()
        super().run()


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as readme:
    long_description = readme.read()

# Lower bounds only: the versions the plugin is known to work with and newer.
EXTRAS = {
    "postgres": ["psycopg[binary]>=3.1"],
    "mysql": ["PyMySQL>=1.1"],
    "xlsx": ["XlsxWriter>=3.1"],
    "babel": ["Flask-Babel>=4.0"],
}
# The example host (python -m example_host): its own Flask-Babel, Excel export.
EXTRAS["demo"] = EXTRAS["babel"] + EXTRAS["xlsx"]
# The whole suite: every database driver, the example host, a browser driver,
# and the build tools the packaging tests run offline (--no-isolation).
EXTRAS["test"] = sorted(
    {
        *EXTRAS["demo"],
        *EXTRAS["postgres"],
        *EXTRAS["mysql"],
        "pytest>=8",
        "ruff>=0.8",
        "mypy>=1.13",
        "hypothesis>=6.100",
        "playwright>=1.45",
        "Flask-Migrate>=4.0",
        "Flask-WTF>=1.2",
        # The host kinds of tests/hosts: a Flask-Login console and a Flask-Security-Too one
        # (its fsqla models and default argon2 password hashing).
        "Flask-Login>=0.6.3",
        "Flask-Security-Too[fsqla,common]>=5.4",
        "openpyxl>=3.1",
        "waitress>=3.0",
        "gunicorn>=22",
        "build>=1.0",
        "setuptools>=64",
        "wheel>=0.40",
    },
    key=str.lower,
)

setup(
    name="Flask-Dynamics-Sync",
    version="0.1.0",
    description="Flask-Admin plugin: Microsoft Dynamics sync status, throughput and errors.",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    package_dir={"": "plugin"},
    packages=find_packages("plugin"),
    include_package_data=True,
    package_data={
        "flask_dynamics_sync": [
            "py.typed",
            "templates/dynamics_sync/**/*",
            "static/dynamics_sync/**/*",
            "translations/*.pot",
            "translations/*/LC_MESSAGES/*.po",
            "translations/*/LC_MESSAGES/*.mo",
            "migrations/script.py.mako",
        ]
    },
    zip_safe=False,
    python_requires=">=3.10",
    install_requires=[
        "Flask>=2.3",
        # Bounded to the releases the tests run on: the Sync Errors view overrides a few of
        # ModelView's underscored hooks (_apply_search, _get_list_filter_args...). .ci/run also runs
        # the host tests against the lower bound.
        "Flask-Admin>=2.0,<2.3",
        "Flask-SQLAlchemy>=3.1",
        "SQLAlchemy>=2.0",
        # The one upper bound: APScheduler 4 is an incompatible rewrite (another API, no BackgroundScheduler).
        "APScheduler>=3.10,<4",
        "Babel>=2.12",
        "alembic>=1.12",
        "blinker>=1.6",
        "WTForms>=3.0",
        # The connector's Web API client: a connection pool sized for the requests in flight, and a
        # timeout on every request (an unknown outcome is sent again as an upsert).
        "httpx>=0.27",
        # Dataverse tokens (OAuth2 client credentials); the local Dataverse's certificates, its
        # MSAL-ready requests session and its check of certificate assertions use msal's own
        # dependencies directly.
        "msal>=1.28",
        "requests>=2.25",
        "cryptography>=3.4",
        "PyJWT>=2.0",
        # zoneinfo has no time zone database of its own on Windows.
        'tzdata>=2023.3; sys_platform == "win32"',
    ],
    extras_require=EXTRAS,
    cmdclass={"build_py": BuildPyWithCatalogs, "sdist": SdistWithCatalogs},
    classifiers=[
        "Framework :: Flask",
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Database",
        "Typing :: Typed",
    ],
)
