"""A third-party injector, installed as a real package into this virtualenv, is found
through the ``scep.injectors`` entry point by the registry, the API, spec validation and
a real agent process — with no change to SCEP itself."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from experiments.services.catalog import create_target
from experiments.spec import SpecError, validate_spec
from injectors import registry
from injectors.base import InvalidParams
from injectors.models import FaultState
from injectors.services import inject_fault, open_fault, revert_fault

PLUGIN_SOURCE = Path(__file__).parent / "plugin_example"
DISTRIBUTION = "scep-example-plugin"
FAULT_TYPE = "example.noop"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _forget() -> None:
    importlib.invalidate_caches()
    sys.modules.pop("scep_example_plugin", None)
    registry.clear_cache()


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pip-install the example plugin for this module's tests; always uninstall after.

    It is built from a copy so that nothing (bytecode, build output) lands in the tree.
    """
    source = tmp_path_factory.mktemp("plugin") / "plugin_example"
    shutil.copytree(PLUGIN_SOURCE, source)
    _pip("uninstall", "-y", DISTRIBUTION)  # a leftover of a killed run, if any
    try:
        result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
        assert result.returncode == 0, result.stdout + result.stderr
        _forget()
        yield
    finally:
        result = _pip("uninstall", "-y", DISTRIBUTION)
        _forget()
        assert result.returncode == 0, result.stdout + result.stderr
        # Gone again once uninstalled and the cache is cleared: discovery is not sticky.
        assert FAULT_TYPE not in registry.known_types()


pytestmark = pytest.mark.usefixtures("installed_plugin")


def test_the_registry_finds_the_plugin() -> None:
    assert FAULT_TYPE in registry.known_types()
    injector = registry.get_injector(FAULT_TYPE)
    assert type(injector).__module__ == "scep_example_plugin"
    assert injector.family == "example"


def test_the_api_lists_it_with_its_schema(viewer_client) -> None:
    listed = {t["name"]: t for t in viewer_client.get("/api/v1/fault-types/").json()}
    assert listed[FAULT_TYPE]["summary"].startswith("Does nothing")
    detail = viewer_client.get(f"/api/v1/fault-types/{FAULT_TYPE}/").json()
    assert detail["params_schema"]["required"] == ["message"]


def test_params_are_validated_by_the_plugin(make_spec) -> None:
    injector = registry.get_injector(FAULT_TYPE)
    assert injector.validate({"message": "hi"}) == {"message": "hi", "repeat": 1}
    with pytest.raises(InvalidParams, match="repeat"):
        injector.validate({"message": "hi", "repeat": 99})

    spec = make_spec(fault={"type": FAULT_TYPE, "params": {"message": ""}})
    with pytest.raises(SpecError) as info:
        validate_spec(spec)
    assert "fault.params.message" in info.value.as_dict()
    spec["fault"]["params"] = {"message": "ok", "repeat": 2}
    assert validate_spec(spec).fault.params == {"message": "ok", "repeat": 2}


@pytest.mark.slow
def test_a_real_agent_applies_and_reverts_it(start_agent) -> None:
    target = create_target(
        actor="test", source="system", name="plugged", agent="plugin-agent", config={}
    )
    agent = start_agent("plugin-agent")
    fault = open_fault(
        run=None,
        target=target,
        injector=FAULT_TYPE,
        params={"message": "ab", "repeat": 2},
        intensity=1.0,
        expires_at=timezone.now() + timedelta(seconds=30),
        owner_worker="test",
    )

    fault = inject_fault(fault, timeout=10)

    assert fault.state == FaultState.ACTIVE
    # Applied in the agent subprocess, which loaded the plugin from the installed package.
    assert fault.handle == {"echo": "abab", "pid": agent.pid}
    assert revert_fault(fault, "test over", timeout=20), agent.log()
    fault.refresh_from_db()
    assert (fault.state, fault.revert_reason) == (FaultState.REVERTED, "test over")
