"""A local ``moto_server`` standing in for AWS, and an environment that cannot reach AWS.

One server process serves the whole session (it starts in about a second); tests stay
independent by giving their resources unique names and tags (see ``unique``). Every
boto3 call goes to it through ``endpoint_url``; on top of that ``AWS_ENDPOINT_URL``
points there too, fake credentials are set and config files and the instance metadata
service are switched off, so even a client created without an endpoint override has no
path to real AWS.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from injectors.base import InjectionContext

REGION = "eu-west-1"
#: A distinctive fake secret: tests assert it never shows up in handles or texts.
FAKE_SECRET = "scep-fake-secret-must-never-appear"
STARTUP_TIMEOUT = 20.0


def _moto_server_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("moto_server")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("moto_server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _isolated_env(base: dict[str, str], endpoint: str, home: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        AWS_CONFIG_FILE=os.path.join(home, "config"),
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(home, "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Base URL of a moto_server subprocess on 127.0.0.1 and a free port."""
    binary = _moto_server_binary()
    if binary is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    home = tempfile.mkdtemp(prefix="scep-moto-")
    log_path = Path(home, "moto.log")
    for _attempt in range(3):  # the free port may be taken between probing and binding
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [binary, "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_isolated_env(dict(os.environ), url, home),
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline and not _answers(url):
            time.sleep(0.05)
        if proc.poll() is None and _answers(url):
            break
        proc.kill()
        proc.wait(5)
    else:
        pytest.fail(f"moto_server did not start: {log_path.read_text(errors='replace')[-2000:]}")
    try:
        yield url
    finally:
        # SIGKILL: moto keeps nothing worth flushing, and a polite SIGTERM made the
        # server spend seconds tearing down its in-memory backends.
        proc.kill()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Fake credentials and AWS_ENDPOINT_URL pointing at moto, for every test."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in _isolated_env({}, moto_server, str(tmp_path)).items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture
def unique() -> str:
    """A name part no other test uses: tests isolate their AWS resources by name/tag.

    Resetting moto between tests would be simpler, but moto rebuilds its backends (EC2's
    AMI catalogue …) after a reset, which doubled the run time of these tests.
    """
    return uuid.uuid4().hex[:10]


@pytest.fixture
def target_config(moto_server: str) -> dict[str, Any]:
    return {"aws": {"region": REGION, "endpoint_url": moto_server}}


@pytest.fixture
def make_ctx(target_config: dict[str, Any]) -> Callable[..., InjectionContext]:
    def _make(intensity: float = 1.0, config: dict[str, Any] | None = None) -> InjectionContext:
        return InjectionContext(
            fault_id=42,
            target_name="cloud-demo",
            target_config=config if config is not None else target_config,
            intensity=intensity,
            expires_at=time.time() + 60,
        )

    return _make


@pytest.fixture
def aws(moto_server: str) -> Callable[[str], Any]:
    """``aws("ec2")``: a plain boto3 client on moto, for arranging and checking state."""
    import boto3

    def _client(service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=moto_server)

    return _client
