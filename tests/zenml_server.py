"""A real ZenML server on 127.0.0.1 for tests that need a remote store (e.g. Kubernetes).

Started the way ``zenml login --local`` starts one (``uvicorn zenml.zen_server.zen_server_api:app``
with ``ZENML_SERVER=true``), but with its own config and SQLite store under a temporary folder and
password authentication, as a deployed server has. Clients connect through environment variables
(``ZENML_STORE_URL``/``_USERNAME``/``_PASSWORD``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port


@dataclass(frozen=True)
class ZenServer:
    """Where the server listens and how a client logs in."""

    url: str
    username: str
    password: str
    log: Path

    def client_env(self, config_dir: Path) -> dict[str, str]:
        """Environment variables that make a ZenML client (CLI or Python) use this server."""
        return {
            "ZENML_CONFIG_PATH": str(config_dir),
            "ZENML_STORE_URL": self.url,
            "ZENML_STORE_USERNAME": self.username,
            "ZENML_STORE_PASSWORD": self.password,
            "ZENML_ANALYTICS_OPT_IN": "false",
        }


@contextmanager
def local_zenml_server(root: Path, timeout_s: float = 120.0) -> Iterator[ZenServer]:
    """Run a ZenML server under ``root`` until the block ends.

    Raises:
        RuntimeError: when the server does not answer ``/health`` within ``timeout_s``.
    """
    port = free_port()
    password = secrets.token_urlsafe(12)
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(
        ZENML_SERVER="true",
        ZENML_CONFIG_PATH=str(root / "config"),
        ZENML_LOCAL_STORES_PATH=str(root / "stores"),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_SERVER_AUTO_ACTIVATE="true",
        ZENML_SERVER_DEPLOYMENT_TYPE="other",
        ZENML_DEFAULT_USER_NAME="default",
        ZENML_DEFAULT_USER_PASSWORD=password,
    )
    log = root / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "zenml.zen_server.zen_server_api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ZenML server did not start; see {log}:\n{log.read_text()}")
            time.sleep(0.5)
        yield ZenServer(url=url, username="default", password=password, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
