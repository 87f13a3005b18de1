"""The README's embedding section, run as a reader runs it: in a new virtualenv, from its own commands.

The README's install command is run against a copy of the working tree
(offline: ``--no-index --no-deps``, the dependencies coming from the test
environment through a ``.pth`` file, as in ``tests/test_packaging.py``); its
``crm.py`` is written to an empty folder and served by its own run command,
``flask --app crm run``; Chromium opens Sync Status as an anonymous visitor,
goes through the sign-in stub and back, with no CSP violation; the rollup
command runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TREE_NOT_COPIED
from .conftest import assert_clean
from .conftest import offline_virtualenv
from .test_docs import code_blocks
from .test_docs import section

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
STATUS = "/backoffice/dynamics/status/"


def embedding() -> str:
    return section("Embedding it in an existing app")


def readme_commands() -> list[str]:
    """The section's shell commands, one per line, in order: install, run, rollup."""
    return [line for block in code_blocks(embedding(), "sh") for line in block.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReaderEnv(t.NamedTuple):
    bin: Path
    folder: Path


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> ReaderEnv:
    """A new virtualenv with the plugin installed by the README's command, and crm.py in an empty folder."""
    install = readme_commands()[0]
    [requirement] = re.findall(r'pip install "([^"]+)"', install)
    assert requirement == "/path/to/the/clone[babel]"
    clone = tmp_path_factory.mktemp("clone") / "flask-dynamics-sync"
    shutil.copytree(ROOT, clone, ignore=TREE_NOT_COPIED)
    env = tmp_path_factory.mktemp("venv") / ".venv"
    python = offline_virtualenv(env, requirement.replace("/path/to/the/clone", str(clone)))
    # Flask's console script, as installing Flask into this virtualenv would write it.
    flask_script = env / "bin" / "flask"
    flask_script.write_text(f"#!{python}\nimport sys\nfrom flask.cli import main\nsys.exit(main())\n")
    flask_script.chmod(0o755)

    folder = tmp_path_factory.mktemp("reader")
    [example] = [block for block in code_blocks(embedding(), "python") if "sync.init_app(" in block]
    (folder / "crm.py").write_text(example)
    return ReaderEnv(env / "bin", folder)


def run_env(reader: ReaderEnv, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FLASK_", "PYTHON"))}
    env["PATH"] = f"{reader.bin}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


@pytest.fixture(scope="module")
def served(reader: ReaderEnv) -> Iterator[str]:
    """crm.py served by the README's run command; its base URL."""
    run = readme_commands()[1]
    assert run == "flask --app crm run"
    port = free_port()
    process = subprocess.Popen(
        shlex.split(run), cwd=reader.folder, env=run_env(reader, FLASK_RUN_PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base_url + "/sign-in?next=/", timeout=1)
                break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.05)
        yield base_url
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
        assert "Traceback" not in output, output


def test_the_readme_installs_the_plugin_into_the_new_virtualenv(reader: ReaderEnv) -> None:
    found = subprocess.run(
        [str(reader.bin / "python"), "-c", "import flask_dynamics_sync, flask_babel; print(flask_dynamics_sync.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()

    assert Path(found).is_relative_to(reader.bin.parent)


def test_a_reader_signs_in_through_the_stub_and_sees_sync_status_with_no_csp_violation(served: str, page: t.Any) -> None:
    from playwright.sync_api import expect

    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))  # crm.py has no icon: not a page error
    response = page.goto(served + STATUS)  # anonymous: to the sign-in stub, and back

    assert page.url == served + STATUS
    assert "img-src 'self' data:" in response.headers["content-security-policy"]
    expect(page.locator("#ds-status")).to_be_visible()
    page.goto(served + "/backoffice/dynamics/errors/")
    expect(page.locator(".ds-filter-bar")).to_be_visible()
    assert_clean(page)


def test_an_anonymous_reader_is_sent_to_the_sign_in_stub(served: str) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: t.Any) -> None:
            return None

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(NoRedirect).open(served + STATUS)

    location = urllib.parse.unquote(refused.value.headers["Location"])
    assert (refused.value.code, location) == (302, f"/sign-in?next={STATUS}?")


def test_the_readmes_rollup_command_runs(reader: ReaderEnv, served: str) -> None:
    rollup = readme_commands()[2]
    assert rollup == "flask --app crm dynamics-sync rollup"

    result = subprocess.run(shlex.split(rollup), cwd=reader.folder, env=run_env(reader), capture_output=True,
                            text=True, timeout=120)

    assert (result.returncode, result.stderr) == (0, "")
