"""The API docs (Swagger UI) work on a machine with no internet: every asset they load is
served by SCEP itself, and the security policy allows no other origin."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings


@pytest.mark.django_db
def test_swagger_ui_loads_only_assets_scep_serves(viewer_client: Any) -> None:
    page = viewer_client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
    assert any(a.endswith(".js") for a in assets), html[:500]
    for url in assets:
        assert url.startswith("/static/"), f"{url} is not served by SCEP"
        response = viewer_client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body, url


def test_the_content_security_policy_names_no_other_origin() -> None:
    assert "http" not in settings.SCEP_CSP
