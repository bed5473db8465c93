"""`make notebooks` (dev.py notebooks): JupyterLab serves notebooks/ and opens the jupytext
`.py` notebooks as notebooks on a double click, not as text."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NOTEBOOK_DIR, load_dev_py

STARTUP_SECONDS = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Lab:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab started with exactly dev.py's `notebooks` command line."""
    dev = load_dev_py()
    [command] = dev.COMMANDS["notebooks"]
    assert command[0] == "jupyter"
    jupyter = str(Path(sys.executable).parent / "jupyter")
    port, token = free_port(), secrets.token_urlsafe(16)
    home = tmp_path_factory.mktemp("jupyter")
    env = dict(
        os.environ,  # the user's own JupyterLab settings and runtime files stay out of it
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    args = [jupyter, *command[1:], *dev.notebooks_args(), "--no-browser", f"--port={port}"]
    args.append(f"--IdentityProvider.token={token}")
    log = (home / "lab.log").open("w")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Lab(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, (home / "lab.log").read_text()
            try:
                server.get("/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_python_files_open_as_jupytext_notebooks(lab: Lab) -> None:
    plugin = lab.get("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    default = plugin["schema"]["properties"]["defaultViewers"]["default"]
    assert default.get("python") == "Jupytext Notebook"


def test_the_lab_serves_the_notebooks_folder_as_notebooks(lab: Lab) -> None:
    listing = lab.get("/api/contents/")
    names = {item["name"] for item in listing["content"]}
    expected = {p.name for p in NOTEBOOK_DIR.glob("*.py")}
    assert expected and expected <= names
    notebook = lab.get("/api/contents/explore_swipes_and_events.py?type=notebook&content=1")
    cells = notebook["content"]["cells"]
    assert notebook["type"] == "notebook" and len(cells) > 3
    assert cells[0]["cell_type"] == "markdown"
