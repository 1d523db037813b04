"""Django and DRF under waitress, adversarially: one ``Retry-After`` on a 503 (the
guard's own value), an ``Authorization`` value holding two credentials refused, and DRF's
conventions (``authenticate_header``, its exception classes, the headers they carry)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import httpx
import pytest

from tokenguard.testing import AuthServer

from ..contract import AUDIENCE
from ..servers import waitress_server


def _get(base: str, path: str, *authorization: bytes) -> httpx.Response:
    headers = [(b"authorization", value) for value in authorization]
    with httpx.Client(base_url=base, timeout=20) as http:
        return http.get(path, headers=headers)


@pytest.mark.parametrize("path", ["/orders", "/report"])  # DRF, plain Django (async)
def test_a_503_carries_one_retry_after(example: ModuleType, auth: AuthServer, path: str) -> None:
    good = auth.issue_jwt(audience=AUDIENCE, scopes=["orders:read"])
    unknown = auth.issue_jwt(
        audience=AUDIENCE, scopes=["orders:read"], header={"kid": "not-published-yet"}
    )
    with waitress_server(example.application) as base:
        assert _get(base, path, f"Bearer {good}".encode()).status_code == 200
        answers = [_get(base, path, f"Bearer {unknown}".encode()) for _ in range(3)]
    unavailable = [a for a in answers if a.status_code == 503]
    assert unavailable, [a.status_code for a in answers]
    for answer in unavailable:
        values = answer.headers.get_list("retry-after")
        assert len(values) == 1, values
        assert values[0] != "5", values  # the guard's own, not the configured default


@pytest.mark.parametrize("path", ["/orders", "/report"])
def test_two_credentials_are_400(example: ModuleType, auth: AuthServer, path: str) -> None:
    token = auth.issue_jwt(audience=AUDIENCE, scopes=["orders:read"]).encode()
    with waitress_server(example.application) as base:
        # waitress joins the two headers with a comma: the same value as one header.
        joined = _get(base, path, b"Basic dTpw", b"Bearer " + token)
        single = _get(base, path, b"Basic dTpw, Bearer " + token)
        tab = _get(base, path, b"Bearer\t" + token)
    for response in (joined, single, tab):
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
        assert 'error="invalid_request"' in response.headers["www-authenticate"]


def test_drf_refusals_are_drfs_own_exceptions(example: ModuleType, auth: AuthServer) -> None:
    from django.test import Client, override_settings
    from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
    from rest_framework.exceptions import PermissionDenied as DRFPermissionDenied
    from rest_framework.views import exception_handler

    seen: list[Exception] = []

    def recording_handler(exc: Exception, context: dict[str, Any]) -> Any:
        seen.append(exc)
        return exception_handler(exc, context)

    handler = f"{__name__}.HANDLER"
    globals()["HANDLER"] = recording_handler
    rest = {**example.settings.REST_FRAMEWORK, "EXCEPTION_HANDLER": handler}
    with override_settings(REST_FRAMEWORK=rest):
        client = Client()
        expired = auth.issue_jwt(audience=AUDIENCE, scopes=["orders:read"], lifetime=-600)
        refused = client.get("/orders", HTTP_AUTHORIZATION=f"Bearer {expired}")
        assert refused.status_code == 401
        # DRF asked authenticate_header() for the 401's challenge: the token's own.
        assert 'error="invalid_token"' in refused["WWW-Authenticate"]
        assert isinstance(seen[-1], AuthenticationFailed)
        anonymous = client.get("/orders")
        assert anonymous.status_code == 401
        assert "error=" not in anonymous["WWW-Authenticate"]
        assert isinstance(seen[-1], NotAuthenticated)
        narrow = auth.issue_jwt(audience=AUDIENCE, scopes=["profile"])
        assert client.get("/orders", HTTP_AUTHORIZATION=f"Bearer {narrow}").status_code == 403
        assert isinstance(seen[-1], DRFPermissionDenied)


def test_drf_exception_handler_sends_every_header(example: ModuleType, auth: AuthServer) -> None:
    from django.test import override_settings

    rest = {
        **example.settings.REST_FRAMEWORK,
        "EXCEPTION_HANDLER": "tokenguard.drf.exception_handler",
    }
    unknown = auth.issue_opaque(audience=AUDIENCE, scopes=["orders:read"])
    with (
        override_settings(REST_FRAMEWORK=rest, TOKENGUARD_RETRY_AFTER=0),
        waitress_server(example.application) as base,
    ):
        auth.go_down()
        try:
            opaque = _get(base, "/orders", f"Bearer {unknown}".encode())
        finally:
            auth.come_up()
        expired = auth.issue_jwt(audience=AUDIENCE, scopes=["orders:read"], lifetime=-600)
        refused = _get(base, "/orders", f"Bearer {expired}".encode())
    assert opaque.status_code == 503, opaque.text
    # DRF's own handler drops a zero wait; tokenguard's sends it, once.
    assert opaque.headers.get_list("retry-after") == ["0"]
    assert refused.status_code == 401
    assert refused.headers.get_list("cache-control") == ["no-store"]
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
