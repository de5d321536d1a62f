"""``GET /api/v1/failure-flags/active/``: what applications see, and who may see it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from injectors.base import InvalidParams
from injectors.models import ActiveFault, FaultState
from injectors.registry import get_injector

URL = "/api/v1/failure-flags/active/"


def flag_params(flag: str = "checkout.charge", **extra: Any) -> dict[str, Any]:
    params = {"flag": flag, "effect": "exception", **extra}
    return get_injector("code.flag").validate(params)


@pytest.fixture
def make_fault(target: Any):
    def _make(
        injector: str = "code.flag",
        params: dict[str, Any] | None = None,
        state: str = FaultState.ACTIVE,
        expires_in: float = 60,
        **fields: Any,
    ) -> ActiveFault:
        return ActiveFault.objects.create(
            target=fields.pop("target", target),
            injector=injector,
            params=flag_params() if params is None else params,
            state=state,
            agent="local",
            expires_at=timezone.now() + timedelta(seconds=expires_in),
            **fields,
        )

    return _make


def test_only_active_unexpired_flag_faults_are_listed(make_fault, viewer_client) -> None:
    wanted = make_fault(params=flag_params(labels={"region": "eu"}), intensity=0.25, expires_in=30)
    make_fault(state=FaultState.PENDING)
    make_fault(state=FaultState.REVERTED)
    make_fault(state=FaultState.FAILED)
    make_fault(expires_in=-1)  # ACTIVE in the ledger, but past its expiry
    make_fault(injector="network.latency", params={"proxy": "downstream", "latency_ms": 5})

    before = timezone.now()
    response = viewer_client.get(URL)
    after = timezone.now()

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    flags = response.json()["flags"]
    assert [f["fault"] for f in flags] == [wanted.pk]
    (flag,) = flags
    assert flag["flag"] == "checkout.charge"
    assert flag["labels"] == {"region": "eu"}
    assert flag["effect"] == "exception"
    assert flag["params"]["exception"]["type"] == "FailureFlagError"
    assert flag["intensity"] == 0.25
    assert flag["target"] == "demo"
    # Counted from when the server answered (between our two clock readings).
    remaining = flag["expires_in_s"]
    assert (wanted.expires_at - after).total_seconds() - 0.01 <= remaining
    assert remaining <= (wanted.expires_at - before).total_seconds() + 0.01
    assert flag["expires_at"].endswith("Z")


def test_target_filter(make_fault, make_target, viewer_client) -> None:
    other = make_target("other", agent="elsewhere")
    make_fault()
    mine = make_fault(target=other, params=flag_params("x.y"))
    flags = viewer_client.get(URL, {"target": "other"}).json()["flags"]
    assert [f["fault"] for f in flags] == [mine.pk]


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_role_may_read(role: str, client_for, make_fault) -> None:
    make_fault()
    assert client_for(role).get(URL).status_code == 200


def test_anonymous_gets_401(anon_client, db) -> None:
    assert anon_client.get(URL).status_code == 401


def test_a_user_without_role_gets_403(norole_user) -> None:
    from tests.conftest import _client

    assert _client(norole_user).get(URL).status_code == 403


def test_the_endpoint_is_one_query_whatever_the_number_of_flags(
    make_fault, viewer_client, django_assert_max_num_queries
) -> None:
    for i in range(20):
        make_fault(params=flag_params(f"flag.n{i}"))
    viewer_client.get(URL)  # warm the role cache path
    # token lookup + role lookup + the flags query
    with django_assert_max_num_queries(3):
        assert len(viewer_client.get(URL).json()["flags"]) == 20


def test_code_flag_is_a_known_fault_type(viewer_client, db) -> None:
    types = {t["name"]: t for t in viewer_client.get("/api/v1/fault-types/").json()}
    assert types["code.flag"]["family"] == "code"
    assert "flag" in types["code.flag"]["params_schema"]["properties"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"flag": "Checkout", "effect": "exception"}, "flag"),
        ({"flag": "a.b", "effect": "latency"}, ""),
        ({"flag": "a.b", "effect": "latency", "latency_ms": 5, "response": 1}, ""),
        ({"flag": "a.b", "effect": "response"}, ""),
        ({"flag": "a.b", "effect": "exception", "exception": {"type": "SystemExit"}}, "type"),
        ({"flag": "a.b", "effect": "latency", "latency_ms": 10**9}, "latency_ms"),
        ({"flag": "a.b", "effect": "exception", "labels": {"bad key": "x"}}, "labels"),
        ({"flag": "a.b", "effect": "teleport"}, "effect"),
    ],
)
def test_params_are_checked(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        get_injector("code.flag").validate(params)
    assert field in str(info.value)


def test_normalised_params_validate_again_unchanged() -> None:
    injector = get_injector("code.flag")
    for params in (
        {"flag": "a.b", "effect": "exception"},
        {"flag": "a.b", "effect": "response", "response": None},
        {"flag": "a.b", "effect": "latency", "latency_ms": 5, "labels": {"path": "/api/*"}},
    ):
        normalised = injector.validate(params)
        assert injector.validate(normalised) == normalised
