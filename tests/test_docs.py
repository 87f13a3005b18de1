"""The README and the reference pages in docs/ stay true: every config key with its real default,
the two Quickstart commands, CI running the test command verbatim, and links that lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flask_dynamics_sync.config import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIG_ROW = re.compile(r"^\| `(DYNAMICS_SYNC_[A-Z0-9_]+)` \| `(.*?)` \|", re.MULTILINE)
CONFIG_KEY = re.compile(r"\bDYNAMICS_SYNC_[A-Z0-9_]+")


DOCS = ROOT / "docs"
LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")


def page(name: str) -> str:
    """A reference page of ``docs/``."""
    return (DOCS / name).read_text(encoding="utf-8")


def section(heading: str) -> str:
    """The README text under ``## <heading>``, up to the next ``## `` heading."""
    marker = re.search(rf"^## {re.escape(heading)}\n", README, re.MULTILINE)
    assert marker, f"README has no section {heading!r}"
    rest = README[marker.end():]
    end = re.search(r"^## ", rest, re.MULTILINE)
    return rest[: end.start() if end else len(rest)]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def documented_defaults() -> dict[str, str]:
    return dict(CONFIG_ROW.findall(page("configuration.md")))


def quickstart_commands() -> list[str]:
    return [line for block in code_blocks(section("Quickstart"), "sh") for line in block.splitlines() if line.strip()]


# -- configuration ------------------------------------------------------------------


def test_every_config_key_is_documented():
    assert sorted(set(DEFAULTS) - set(documented_defaults())) == []


def test_the_documented_defaults_are_the_real_ones():
    documented = documented_defaults()

    assert {key: documented[key] for key in DEFAULTS if key in documented} == {
        key: repr(value) for key, value in DEFAULTS.items() if key in documented
    }


def test_the_configuration_table_has_no_key_that_does_not_exist():
    assert sorted(set(documented_defaults()) - set(DEFAULTS)) == []


def test_every_config_key_the_package_mentions_is_declared():
    sources = [*(ROOT / "plugin").rglob("*.py"), *(ROOT / "plugin").rglob("*.html")]
    mentioned = {key for path in sources for key in CONFIG_KEY.findall(path.read_text(encoding="utf-8"))}

    # A trailing underscore is a family in prose ("DYNAMICS_SYNC_SMTP_*"), not a key.
    assert sorted(key for key in mentioned if not key.endswith("_") and key not in DEFAULTS) == []


# -- the front door and the reference pages ---------------------------------------------------


def test_the_readme_is_a_front_door():
    assert len(README.splitlines()) <= 300


def test_every_reference_page_is_linked_from_the_readme():
    linked = {target.removeprefix("docs/") for target in LINK.findall(section("Reference"))}

    assert sorted(path.name for path in DOCS.glob("*.md") if path.name not in linked) == []


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings (outside code blocks)."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    headings = re.findall(r"^#{1,6} (.+)$", prose, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("document", ["README.md", *sorted(f"docs/{path.name}" for path in DOCS.glob("*.md"))])
def test_every_local_link_leads_to_a_file_and_heading_that_exist(document):
    source = ROOT / document
    broken = []
    for target in LINK.findall(source.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        resolved = (source.parent / path).resolve() if path else source
        if not resolved.exists() or (fragment and fragment not in anchors(resolved.read_text(encoding="utf-8"))):
            broken.append(target)
    assert broken == []


# -- Quickstart and CI ------------------------------------------------------------------


def test_the_quickstart_has_exactly_two_commands():
    assert len(quickstart_commands()) == 2


def test_the_first_command_starts_the_example_host_on_its_demo_extra():
    demo = quickstart_commands()[0]

    assert 'pip install -e ".[demo]"' in demo and demo.endswith("&& python -m example_host")
    assert (ROOT / "example_host" / "__main__.py").is_file()


def test_the_second_command_installs_the_test_extra_and_runs_pytest():
    assert quickstart_commands()[1] == (
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest'
    )


def test_ci_runs_the_readmes_test_command_verbatim():
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()

    assert f"{quickstart_commands()[1]} || status=$?" in ci_lines


def test_ci_forbids_skipping_databases_and_the_browser():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

    assert "export DYNAMICS_SYNC_REQUIRE_ALL_DATABASES=1 DYNAMICS_SYNC_REQUIRE_BROWSER=1" in ci


# The README's embedding example runs in a new virtualenv: tests/test_readme_embedding.py.
