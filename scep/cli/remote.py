"""``scep run SPEC --server URL --token TOKEN``: the CI/CD client of a remote SCEP.

Everything goes through the public REST API, so a pipeline needs only the ``scep``
package, a URL and an operator's token: the experiment is created (or updated to the
spec, which versions it), a run is started, its status is polled with a progress line,
and the run's JUnit export is downloaded for the CI system to show. Exit codes are the
same as for a local run: 0 passed, 1 hypothesis failed (or not proven), 2 error — every
error as one readable line (bad token, server unreachable, invalid spec with its field).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["RemoteError", "run_remote"]

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
TERMINAL = {"completed", "aborted", "failed"}


class RemoteError(Exception):
    """One line for stderr; the command exits 2."""


class Client:
    """A thin wrapper that turns HTTP and network failures into RemoteError lines."""

    def __init__(self, server: str, token: str, timeout: float = 30.0):
        self.base = server.rstrip("/")
        if not self.base.startswith(("http://", "https://")):
            raise RemoteError(f"--server {server!r}: expected an http:// or https:// URL")
        self.http = httpx.Client(
            base_url=self.base,
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise RemoteError(f"cannot reach SCEP at {self.base}: {reason}") from None
        if response.status_code == 401:
            raise RemoteError(f"{self.base} refused the token (401): check --token / SCEP_TOKEN")
        if response.status_code == 403:
            raise RemoteError(f"{self.base}: forbidden: {_detail(response)}")
        return response

    def json(self, method: str, path: str, expect: tuple[int, ...], **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code not in expect:
            raise RemoteError(
                f"{method} {path} answered {response.status_code}: {_detail(response)}"
            )
        try:
            return response.json()
        except ValueError:
            raise RemoteError(f"{method} {path}: the answer is not JSON (is this SCEP?)") from None


def _detail(response: httpx.Response) -> str:
    """The server's one-line reason (``detail``), or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return str(body)[:200]


def _spec_errors(response: httpx.Response) -> str:
    """``path: reason`` for each field the server refused."""
    try:
        body = response.json()
    except ValueError:
        return _detail(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return _detail(response)
    parts = []
    for path, reasons in errors.items():
        shown = path.removeprefix("spec.") if path.startswith("spec.") else path
        parts.append(f"{shown}: {'; '.join(reasons)}")
    return ", ".join(parts)


def _find_experiment(client: Client, name: str) -> dict[str, Any] | None:
    path: str | None = "/api/v1/experiments/?limit=200"
    while path:
        page = client.json("GET", path, (200,))
        for experiment in page.get("results", []):
            if experiment.get("name") == name:
                return experiment
        following = page.get("next")
        path = following.removeprefix(client.base) if following else None
    return None


def upsert_experiment(client: Client, spec: dict[str, Any]) -> dict[str, Any]:
    """Create the experiment, or replace its spec (the server versions a changed one)."""
    existing = _find_experiment(client, str(spec.get("name", "")))
    if existing is None:
        response = client.request("POST", "/api/v1/experiments/", json={"spec": spec})
        expected = 201
    else:
        response = client.request(
            "PUT", f"/api/v1/experiments/{existing['id']}/", json={"spec": spec}
        )
        expected = 200
    if response.status_code == 400:
        raise RemoteError(f"invalid spec: {_spec_errors(response)}")
    if response.status_code != expected:
        raise RemoteError(
            f"saving the experiment answered {response.status_code}: {_detail(response)}"
        )
    return response.json()


def follow(client: Client, run_id: int, *, timeout: float, quiet: bool, poll: float) -> dict:
    """Poll the run until it is terminal, printing a line whenever its phase changes."""
    started = time.monotonic()
    last = None
    while True:
        run = client.json("GET", f"/api/v1/runs/{run_id}/", (200,))
        status = run.get("status")
        if status != last and not quiet:
            elapsed = time.monotonic() - started
            print(f"run {run_id}: {status} ({elapsed:.0f} s)", file=sys.stderr, flush=True)
        last = status
        if status in TERMINAL:
            return run
        if time.monotonic() - started > timeout:
            raise RemoteError(f"run {run_id} still {status} after {timeout:g} s")
        time.sleep(poll)


def exit_code(run: dict[str, Any]) -> int:
    """0 passed (or a completed dry run), 1 hypothesis failed / not proven, 2 error."""
    if run.get("status") == "failed":
        return EXIT_ERROR
    if run.get("verdict") == "passed" or (run.get("dry_run") and run.get("status") == "completed"):
        return EXIT_OK
    return EXIT_FAILED


def download_junit(client: Client, run_id: int, target: str) -> None:
    response = client.request("GET", f"/api/v1/runs/{run_id}/export/junit/")
    if response.status_code != 200:
        raise RemoteError(
            f"JUnit export of run {run_id} answered {response.status_code}: {_detail(response)}"
        )
    try:
        Path(target).write_bytes(response.content)
    except OSError as exc:
        raise RemoteError(f"--junit {target}: {exc.strerror or exc}") from None


def run_remote(
    spec: dict[str, Any],
    *,
    server: str,
    token: str,
    wait: bool,
    junit: str | None,
    timeout: float,
    quiet: bool,
    dry_run: bool,
    poll: float = 1.0,
) -> int:
    """The whole remote run; returns the exit code (raises RemoteError for code 2)."""
    client = Client(server, token)
    experiment = upsert_experiment(client, spec)
    response = client.request(
        "POST", "/api/v1/runs/", json={"experiment": str(experiment["id"]), "dry_run": dry_run}
    )
    if response.status_code != 201:
        raise RemoteError(f"starting the run answered {response.status_code}: {_detail(response)}")
    run = response.json()
    print(
        f"run {run['id']} of {experiment['name']} v{experiment.get('version', '?')} queued "
        f"on {client.base}",
        file=sys.stderr,
    )
    if not wait:
        print(run["id"])
        return EXIT_OK
    run = follow(client, run["id"], timeout=timeout, quiet=quiet, poll=poll)
    reason = f" — {run['status_reason']}" if run.get("status_reason") else ""
    print(
        f"run {run['id']} {run['status']}: verdict {run.get('verdict') or 'none'}{reason}",
        file=sys.stderr,
    )
    if junit:
        download_junit(client, run["id"], junit)
        print(f"JUnit report written to {junit}", file=sys.stderr)
    return exit_code(run)
