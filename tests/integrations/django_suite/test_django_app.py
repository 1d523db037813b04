"""Django and DRF: the example under waitress, and the adapter through Django's clients."""

from __future__ import annotations

import logging
import time
from types import ModuleType
from typing import Any

import pytest

from tokenguard.testing import AuthServer

from ..contract import AUDIENCE, check_contract
from ..servers import waitress_server


def test_example_under_waitress(
    example: ModuleType, auth: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with waitress_server(example.application) as base:
        check_contract(base, auth, caplog.records)


def _bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_request_user_is_built_from_the_token(example: ModuleType, auth: AuthServer) -> None:
    from django.test import Client

    from tokenguard.django import TokenUser

    seen: dict[str, Any] = {}

    class Probe(example.Orders):  # type: ignore[misc, name-defined]
        def get(self, request: Any) -> Any:
            seen["user"], seen["auth"] = request.user, request.auth
            return super().get(request)

    from django.urls import path

    example.urlpatterns.append(path("probe", Probe.as_view()))
    from django.urls import clear_url_caches

    clear_url_caches()
    token = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE, subject="hal")
    response = Client().get("/probe", **_bearer(token))
    assert response.status_code == 200
    user = seen["user"]
    assert isinstance(user, TokenUser)
    assert (user.username, user.pk, user.is_authenticated, user.is_anonymous) == (
        "hal",
        "hal",
        True,
        False,
    )
    assert not user.has_perm("any.thing")
    assert not user.has_perms(["a"])
    assert not user.has_module_perms("a")
    assert user.get_all_permissions() == set()
    assert str(user) == "hal"
    assert repr(user) == "TokenUser()"  # no claim in a repr
    with pytest.raises(NotImplementedError):
        user.save()
    assert seen["auth"].subject == "hal"


async def test_async_plain_view(example: ModuleType, auth: AuthServer) -> None:
    from django.test import AsyncClient

    token = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE, subject="ida")
    client = AsyncClient()
    response = await client.get("/report", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"subject": "ida"}
    refused = await client.get("/report")
    assert refused.status_code == 401
    assert refused.json() == {"error_description": "An access token is required"}
    assert "error=" not in refused["WWW-Authenticate"]


def test_view_policy_step_up_and_settings(example: ModuleType, auth: AuthServer) -> None:
    from django.conf import settings
    from django.http import JsonResponse
    from django.test import Client, override_settings
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from tokenguard.django import get_guard, token_required

    config = dict(settings.TOKENGUARD)
    config["policies"] = [
        {"name": "orders", "audience": AUDIENCE},
        {"name": "billing", "audience": "urn:billing", "required_scopes": ["bill"]},
    ]

    class Billing(APIView):
        tokenguard_policy = "billing"
        tokenguard_max_age = 60
        required_scopes = ("bill",)

        def get(self, request: Any) -> Any:
            return Response({"ok": True})

    @token_required("billing", scopes=["bill"])
    def plain_billing(request: Any) -> Any:
        return JsonResponse({"subject": request.user.username})

    from django.urls import clear_url_caches, path

    example.urlpatterns += [path("billing", Billing.as_view()), path("plain", plain_billing)]
    clear_url_caches()
    with override_settings(TOKENGUARD=config, TOKENGUARD_ALLOW_FORM_TOKEN=True):
        assert len(get_guard().config.policies) == 2
        client = Client()
        fresh = {"auth_time": int(time.time())}
        billing = auth.issue_jwt(scopes=["bill"], audience="urn:billing", claims=fresh)
        assert client.get("/billing", **_bearer(billing)).json() == {"ok": True}
        stale = auth.issue_jwt(scopes=["bill"], audience="urn:billing")
        refused = client.get("/billing", **_bearer(stale))
        assert refused.status_code == 401
        assert 'max_age="60"' in refused["WWW-Authenticate"]
        assert refused.json()["error"] == "insufficient_user_authentication"
        orders = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE)
        assert client.get("/billing", **_bearer(orders)).status_code == 401  # wrong audience
        # A form token, accepted here because the setting allows it (urlencoded POST only).
        form = f"access_token={billing}"
        urlencoded = "application/x-www-form-urlencoded"
        assert client.post("/plain", form, content_type=urlencoded).status_code == 200
        assert client.post("/plain", {"access_token": billing}).status_code == 401  # multipart
        assert client.get("/plain", {"access_token": billing}).status_code == 400
    assert len(get_guard().config.policies) == 1


def test_drf_errors_and_the_anonymous_challenge(example: ModuleType, auth: AuthServer) -> None:
    from django.test import Client

    client = Client()
    refused = client.get("/orders", **_bearer(auth.issue_jwt(scopes=["x"], audience=AUDIENCE)))
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "insufficient_scope",
        "error_description": "The access token lacks the required scope",
    }
    assert 'scope="orders:read"' in refused["WWW-Authenticate"]
    anonymous = client.get("/orders")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith('Bearer realm="orders"')
    metadata = client.get("/.well-known/oauth-protected-resource").json()
    assert metadata["authorization_servers"] == [auth.issuer]


def test_client_certificate_header_setting(example: ModuleType, auth: AuthServer) -> None:
    """``TOKENGUARD_CLIENT_CERTIFICATE_HEADER`` names the header a trusted proxy sets to
    the client certificate (RFC 8705), for DRF and ``token_required`` alike; unset, the
    header is ignored."""
    import hashlib
    from urllib.parse import quote

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from django.test import Client, override_settings

    from ...security import forge

    mine, theirs = (
        forge.self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), name)
        for name in ("client.example", "victim.example")
    )
    x5t = forge.b64url(hashlib.sha256(mine.public_bytes(Encoding.DER)).digest())
    cnf = {"cnf": {"x5t#S256": x5t}}
    token = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE, claims=cnf)

    def escaped(certificate: Any) -> str:
        return quote(certificate.public_bytes(Encoding.PEM).decode(), safe="")

    client = Client()
    with override_settings(TOKENGUARD_CLIENT_CERTIFICATE_HEADER="X-Client-Cert"):
        for path in ("/orders", "/report"):
            ok = client.get(path, **_bearer(token), HTTP_X_CLIENT_CERT=escaped(mine))
            assert ok.status_code == 200, (path, ok.content)
            other = client.get(path, **_bearer(token), HTTP_X_CLIENT_CERT=escaped(theirs))
            assert other.status_code == 401, path
            assert client.get(path, **_bearer(token)).status_code == 401, path
    for path in ("/orders", "/report"):
        ignored = client.get(path, **_bearer(token), HTTP_X_CLIENT_CERT=escaped(mine))
        assert ignored.status_code == 401, path
