"""OpenTelemetry through the SDK's in-memory exporters: exact spans, attributes and metric
values, through both shells, against a real loopback authorization server."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from freezegun import freeze_time
from opentelemetry.trace import SpanKind, StatusCode

from tokenguard import (
    ExpiredToken,
    InsufficientScope,
    InvalidSignature,
    MissingToken,
    TokenGuard,
    UntrustedIssuer,
    ValidationUnavailable,
)
from tokenguard.otel import Instrumentation, instrument
from tokenguard.testing import AuthServer

from ..conftest import Driver, guard_for
from .conftest import Telemetry, attrs


def instrumented(telemetry: Telemetry, guard: TokenGuard) -> Instrumentation:
    return guard.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )


def request_span(
    server: AuthServer, method: str, path: str, kind: str, status: int | None = 200
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "http.request.method": method,
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "url.full": server.issuer + path,
        "tokenguard.request.kind": kind,
        "tokenguard.issuer": server.issuer,
    }
    if status is not None:
        found["http.response.status_code"] = status
    return found


def counted(result: str, path: str, *, cached: bool = False, error: str | None = None) -> Any:
    """The attributes of a ``tokenguard.validations`` point of the default policy."""
    found: dict[str, Any] = {
        "tokenguard__policy": "default",
        "tokenguard__result": result,
        "tokenguard__path": path,
        "tokenguard__cached": cached,
    }
    if error is not None:
        found["error__type"] = error
    return attrs(**found)


def validation_span(
    fmt: str, path: str, result: str = "success", error: str | None = None, cached: bool = False
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "tokenguard.policy": "default",
        "tokenguard.token.format": fmt,
        "tokenguard.path": path,
        "tokenguard.result": result,
        "tokenguard.cached": cached,
    }
    if error is not None:
        found["error.type"] = error
    return found


def test_a_valid_jwt_then_its_cached_hit(
    auth_server: AuthServer, check: Driver, telemetry: Telemetry
) -> None:
    guard = guard_for(auth_server)
    instrumented(telemetry, guard)
    token = auth_server.issue_jwt()
    check(guard, token)
    check(guard, token)  # the verified-token cache: no span
    spans = telemetry.spans()
    assert [(s.name, s.kind) for s in spans] == [
        ("GET", SpanKind.CLIENT),
        ("GET", SpanKind.CLIENT),
        ("tokenguard.validate", SpanKind.INTERNAL),
    ]
    metadata, jwks, validate = spans
    assert dict(metadata.attributes or {}) == request_span(
        auth_server, "GET", "/.well-known/oauth-authorization-server", "metadata"
    )
    assert dict(jwks.attributes or {}) == request_span(auth_server, "GET", "/jwks.json", "jwks")
    assert dict(validate.attributes or {}) == validation_span("jws", "jwt")
    assert validate.parent is None
    for child in (metadata, jwks):
        assert child.parent is not None
        assert child.parent.span_id == validate.context.span_id
        assert child.context.trace_id == validate.context.trace_id
        assert child.status.status_code is StatusCode.UNSET
    assert validate.status.status_code is StatusCode.UNSET

    assert telemetry.nonzero("tokenguard.validations") == {
        counted("success", "jwt"): 1,
        counted("success", "cache", cached=True): 1,
    }
    assert telemetry.metrics()["tokenguard.cache.lookups"] == {
        attrs(tokenguard__cache=cache, tokenguard__cache__result=result): n
        for cache, hits, misses in (
            ("verified", 1, 1),
            ("introspection", 0, 0),
            ("jwks", 0, 1),
            ("metadata", 0, 1),
        )
        for result, n in (("hit", hits), ("miss", misses))
    }
    assert telemetry.nonzero("tokenguard.jwks.refreshes") == {
        attrs(tokenguard__issuer=auth_server.issuer, tokenguard__jwks__result="success"): 1
    }
    durations = telemetry.metrics()["tokenguard.validation.duration"]
    assert list(durations) == [
        attrs(tokenguard__policy="default", tokenguard__path="jwt", tokenguard__result="success")
    ]
    count, total = durations[next(iter(durations))]
    assert count == 1
    assert 0 < total < 5
    assert "tokenguard.introspection.duration" not in telemetry.metrics()
    assert "tokenguard.fleet.circuit" not in telemetry.metrics()  # no fleet: no point


def test_an_opaque_token(auth_server: AuthServer, check: Driver, telemetry: Telemetry) -> None:
    guard = guard_for(
        auth_server, issuer={"introspection_endpoint": auth_server.introspection_endpoint}
    )
    instrumented(telemetry, guard)
    check(guard, auth_server.issue_opaque())
    introspect, validate = telemetry.spans()
    assert (introspect.name, introspect.kind) == ("POST", SpanKind.CLIENT)
    assert dict(introspect.attributes or {}) == request_span(
        auth_server, "POST", "/introspect", "introspection"
    )
    assert introspect.parent is not None
    assert introspect.parent.span_id == validate.context.span_id
    assert dict(validate.attributes or {}) == validation_span("opaque", "introspection")
    histogram = telemetry.metrics()["tokenguard.introspection.duration"]
    key = attrs(
        server__address="127.0.0.1",
        tokenguard__issuer=auth_server.issuer,
        http__response__status_code=200,
    )
    assert list(histogram) == [key]
    assert histogram[key][0] == 1
    assert 0 < histogram[key][1] < 5
    assert telemetry.nonzero("tokenguard.validations") == {counted("success", "introspection"): 1}
    lookups = telemetry.nonzero("tokenguard.cache.lookups")
    assert lookups == {
        attrs(tokenguard__cache="verified", tokenguard__cache__result="miss"): 1,
        attrs(tokenguard__cache="introspection", tokenguard__cache__result="miss"): 1,
    }


def test_an_introspection_cache_hit_is_a_span_marked_cached(
    auth_server: AuthServer, check: Driver, telemetry: Telemetry
) -> None:
    guard = guard_for(
        auth_server,
        issuer={"introspection_endpoint": auth_server.introspection_endpoint},
        verified_cache_ttl=0,
    )
    instrumented(telemetry, guard)
    token = auth_server.issue_opaque()
    check(guard, token)
    check(guard, token)
    names = [s.name for s in telemetry.spans()]
    assert names == ["POST", "tokenguard.validate", "tokenguard.validate"]
    assert dict(telemetry.spans()[2].attributes or {}) == validation_span(
        "opaque", "introspection", cached=True
    )


@pytest.mark.parametrize(
    ("make", "error", "result", "fmt", "path", "requests"),
    [
        (lambda s: s.issue_jwt(lifetime=-600), ExpiredToken, "invalid", "jws", "jwt", 0),
        (
            lambda s: s.issue_jwt(claims={"iss": "https://elsewhere.example"}),
            UntrustedIssuer,
            "invalid",
            "jws",
            "jwt",
            0,
        ),
        (
            lambda s: s.issue_jwt()[:-8] + "AAAAAAAA",
            InvalidSignature,
            "invalid",
            "jws",
            "jwt",
            2,  # the keys were fetched (metadata, then the key set) before the check
        ),
        (lambda s: s.issue_jwt(scopes=["other"]), InsufficientScope, "forbidden", "jws", "jwt", 2),
    ],
    ids=["expired", "untrusted-issuer", "bad-signature", "insufficient-scope"],
)
def test_each_refusal_has_its_span_and_count(
    auth_server: AuthServer,
    check: Driver,
    telemetry: Telemetry,
    make: Any,
    error: type[Exception],
    result: str,
    fmt: str,
    path: str,
    requests: int,
) -> None:
    guard = guard_for(auth_server, required_scopes=["orders:read"])
    instrumented(telemetry, guard)
    with pytest.raises(error):
        check(guard, make(auth_server))
    *children, validate = telemetry.spans()
    assert len(children) == requests
    kind = f"tokenguard.{error.__name__}"
    assert dict(validate.attributes or {}) == validation_span(fmt, path, result, kind)
    # A refused token is the guard's decision, not a failure of the guard.
    assert validate.status.status_code is StatusCode.UNSET
    assert not validate.events  # no exception event: its message stays out of traces
    assert telemetry.nonzero("tokenguard.validations") == {counted(result, path, error=kind): 1}


def test_a_missing_token_is_counted_without_a_span(
    auth_server: AuthServer, check: Driver, telemetry: Telemetry
) -> None:
    guard = guard_for(auth_server)
    instrumented(telemetry, guard)
    for token in ("", None):
        with pytest.raises(MissingToken):
            check(guard, token)  # type: ignore[arg-type]
    assert telemetry.spans() == []
    assert telemetry.nonzero("tokenguard.validations") == {
        counted("missing", "none", error="tokenguard.MissingToken"): 2
    }


def test_an_unreachable_server_is_an_error_span(
    auth_server: AuthServer, check: Driver, telemetry: Telemetry
) -> None:
    guard = guard_for(
        auth_server,
        issuer={"introspection_endpoint": auth_server.introspection_endpoint},
        settings={"http_timeout": 1},
    )
    instrumented(telemetry, guard)
    auth_server.go_down()
    with pytest.raises(ValidationUnavailable):
        check(guard, auth_server.issue_opaque())
    introspect, validate = telemetry.spans()
    assert dict(introspect.attributes or {}) == {
        **request_span(auth_server, "POST", "/introspect", "introspection", status=None),
        "error.type": "connection_failed",
    }
    assert introspect.status.status_code is StatusCode.ERROR
    assert dict(validate.attributes or {}) == validation_span(
        "opaque", "introspection", "unavailable", "tokenguard.ValidationUnavailable"
    )
    assert validate.status.status_code is StatusCode.ERROR
    histogram = telemetry.metrics()["tokenguard.introspection.duration"]
    assert list(histogram) == [
        attrs(
            server__address="127.0.0.1",
            tokenguard__issuer=auth_server.issuer,
            error__type="connection_failed",
        )
    ]


def test_a_jwks_outage(auth_server: AuthServer, check: Driver, telemetry: Telemetry) -> None:
    guard = guard_for(
        auth_server,
        issuer={"jwks_uri": auth_server.jwks_uri},
        settings={"jwks_stale_window": 600, "http_timeout": 0.5},
    )
    instrumented(telemetry, guard)
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        check(guard, auth_server.issue_jwt())
        auth_server.set_failure("jwks", 503, "down")
        clock.tick(400)  # the keys expired: the refresh fails, last-known-good keys serve
        check(guard, auth_server.issue_jwt(lifetime=1000))
        clock.tick(600)  # past the stale window too: nothing left to verify with
        clock.tick(60)
        with pytest.raises(ValidationUnavailable):
            check(guard, auth_server.issue_jwt(lifetime=2000))
    spans = telemetry.spans()
    assert [s.name for s in spans] == [
        "GET", "tokenguard.validate", "GET", "tokenguard.validate", "GET", "tokenguard.validate"
    ]  # fmt: skip
    assert dict(spans[2].attributes or {}) == {
        **request_span(auth_server, "GET", "/jwks.json", "jwks", status=503),
        "error.type": "503",
    }
    assert spans[2].status.status_code is StatusCode.ERROR
    assert dict(spans[3].attributes or {}) == validation_span("jws", "jwt")
    assert dict(spans[5].attributes or {}) == validation_span(
        "jws", "jwt", "unavailable", "tokenguard.ValidationUnavailable"
    )
    assert spans[5].status.status_code is StatusCode.ERROR
    where = {"tokenguard__issuer": auth_server.issuer}
    assert telemetry.nonzero("tokenguard.jwks.refreshes") == {
        attrs(**where, tokenguard__jwks__result="success"): 1,
        attrs(**where, tokenguard__jwks__result="failure"): 2,
    }
    assert telemetry.metrics()["tokenguard.keys.stale_used"] == {attrs(**where): 1}


def test_the_fleet_errors_and_circuit(auth_server: AuthServer, telemetry: Telemetry) -> None:
    import socket

    from tokenguard.redis import RedisFleet

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fleet = RedisFleet(f"redis://127.0.0.1:{port}/0", "s" * 32, prefix="o", startup_timeout=0)
    guard = TokenGuard.from_config(guard_for(auth_server).config.model_dump(), fleet=fleet)
    try:
        instrumented(telemetry, guard)
        assert telemetry.metrics()["tokenguard.fleet.circuit"] == {frozenset(): 0}
        for _ in range(3):
            guard.validate(auth_server.issue_opaque())
        found = telemetry.metrics()
        assert found["tokenguard.fleet.errors"] == {frozenset(): 3}
        assert found["tokenguard.fleet.circuit"] == {frozenset(): 1}
        assert found["tokenguard.fleet.circuit.trips"] == {frozenset(): 1}
        # Two lookups asked Redis (and failed); the third skipped it: the circuit was open.
        assert found["tokenguard.cache.lookups"][
            attrs(tokenguard__cache="fleet", tokenguard__cache__result="miss")
        ] == 2  # fmt: skip
    finally:
        guard.close()


def test_two_guards_on_one_provider_add_up(auth_server: AuthServer, telemetry: Telemetry) -> None:
    first, second = guard_for(auth_server), guard_for(auth_server)
    instrumented(telemetry, first)
    instrumented(telemetry, second)
    first.validate(auth_server.issue_jwt())
    second.validate(auth_server.issue_jwt())
    key = counted("success", "jwt")
    assert telemetry.nonzero("tokenguard.validations") == {key: 2}


def test_uninstrument_stops_spans_and_metrics(
    auth_server: AuthServer, telemetry: Telemetry
) -> None:
    guard = guard_for(auth_server)
    instrumentation = instrumented(telemetry, guard)
    guard.validate(auth_server.issue_jwt())
    instrumentation.uninstrument()
    guard.validate(auth_server.issue_jwt())
    assert [s.name for s in telemetry.spans()] == ["GET", "GET", "tokenguard.validate"]
    assert telemetry.nonzero("tokenguard.validations") == {}
    assert guard.stats().total() == 2  # the counters go on


def test_no_attribute_ever_holds_a_token_or_claim_value(
    auth_server: AuthServer, check: Driver, telemetry: Telemetry
) -> None:
    """Every kind of validation, with claim values no configuration holds: no span
    attribute, span name, event or metric attribute holds a token, a digest of one or
    a claim value."""
    guard = guard_for(
        auth_server,
        issuer={"introspection_endpoint": auth_server.introspection_endpoint},
        required_scopes=["orders:read"],
    )
    instrumented(telemetry, guard)
    claims = {"sub": "subject-7e1f0c", "jti": "jti-51c2ab", "client_id": "client-93d4ee"}
    scopes = ["orders:read", "scope-b7a61d"]
    tokens = [
        auth_server.issue_jwt(
            subject=claims["sub"], scopes=scopes, client_id=claims["client_id"],
            claims={"jti": claims["jti"], "email": "person-4f2e@example.org"},
        ),
        auth_server.issue_opaque(subject=claims["sub"], scopes=scopes),
        auth_server.issue_jwt(subject=claims["sub"], scopes=["scope-b7a61d"]),  # forbidden
        auth_server.issue_jwt(subject=claims["sub"], lifetime=-600),  # expired
        "opaque-token-" + "q" * 40,  # inactive
    ]  # fmt: skip
    for token in tokens:
        for _ in range(2):  # and the cached hits
            with contextlib.suppress(Exception):
                check(guard, token)
    secrets = [*claims.values(), "scope-b7a61d", "person-4f2e@example.org"]
    for token in tokens:
        digest = hashlib.sha256(token.encode()).digest()
        secrets += [token, digest.hex(), base64.urlsafe_b64encode(digest).decode().rstrip("=")]
        secrets += token.split(".")  # no part of a JWT either
    seen: list[str] = []
    for span in telemetry.spans():
        seen.append(span.name)
        seen += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            seen += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    for name, points in telemetry.metrics().items():
        for key in points:
            seen += [f"{name} {k}={v}" for k, v in key]
    assert len(seen) > 50
    text = json.dumps(seen)
    leaked = [s for s in secrets if s and len(s) >= 8 and s in text]
    assert not leaked


def test_global_providers_no_op_until_configured() -> None:
    """Without providers the guard uses the application's global ones: a no-op until
    it sets them (a real process, as the global providers can be set only once)."""
    code = textwrap.dedent(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from tokenguard.otel import instrument
        from tokenguard.testing import AuthServer, guard_for

        with AuthServer() as server:
            guard = guard_for(server)
            instrument(guard)  # nothing configured yet: no-op, and no error
            guard.validate(server.issue_jwt())
            spans = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(spans))
            trace.set_tracer_provider(provider)
            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            guard.validate(server.issue_jwt(subject="someone-else"))
            names = [s.name for s in spans.get_finished_spans()]
            found = {
                m.name: sum(p.value for p in m.data.data_points)
                for r in reader.get_metrics_data().resource_metrics
                for s in r.scope_metrics
                for m in s.metrics
                if m.name == "tokenguard.validations"
            }
            print(names, found)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # The first validation had no provider (no span); the counters include it.
    assert done.stdout.strip() == "['tokenguard.validate'] {'tokenguard.validations': 2}"


def test_instrumenting_again_replaces(auth_server: AuthServer, telemetry: Telemetry) -> None:
    guard = guard_for(auth_server)
    instrumented(telemetry, guard)
    instrument(
        guard, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    guard.validate(auth_server.issue_jwt())
    assert [s.name for s in telemetry.spans()].count("tokenguard.validate") == 1
    assert sum(telemetry.nonzero("tokenguard.validations").values()) == 1


def test_opentelemetry_is_not_imported_by_tokenguard() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tokenguard; tokenguard.GuardStats; "
            "print(any(m.startswith('opentelemetry') for m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_no_op_or_sampled_out_tracing_still_counts(
    auth_server: AuthServer, check: Driver, telemetry: Telemetry
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
    from opentelemetry.trace import NoOpTracerProvider

    quiet = TracerProvider(sampler=ALWAYS_OFF)
    quiet.add_span_processor(SimpleSpanProcessor(telemetry.spans_out))
    for tracer_provider in (NoOpTracerProvider(), quiet):
        guard = guard_for(auth_server)
        guard.instrument(tracer_provider=tracer_provider, meter_provider=telemetry.meter_provider)
        check(guard, auth_server.issue_jwt())
        guard.instrument(tracer_provider=tracer_provider).uninstrument()
    assert telemetry.spans() == []
    durations = telemetry.metrics()["tokenguard.validation.duration"]
    assert [count for count, _ in durations.values()] == [2]


def test_a_configuration_problem_found_while_validating_is_an_error(
    auth_server: AuthServer, check: Driver, telemetry: Telemetry
) -> None:
    """The issuer's metadata names no introspection endpoint: the guard cannot decide
    (result ``error``, a failed span), and says so as a ConfigurationError."""
    from tokenguard import ConfigurationError

    guard = guard_for(auth_server)
    instrumented(telemetry, guard)
    metadata = {"issuer": auth_server.issuer, "jwks_uri": auth_server.jwks_uri}
    auth_server.set_failure("metadata", 200, metadata)
    with pytest.raises(ConfigurationError):
        check(guard, auth_server.issue_opaque())
    metadata_span, validate = telemetry.spans()
    assert metadata_span.name == "GET"
    assert dict(validate.attributes or {}) == validation_span(
        "opaque", "introspection", "error", "tokenguard.ConfigurationError"
    )
    assert validate.status.status_code is StatusCode.ERROR
    assert telemetry.nonzero("tokenguard.validations") == {
        counted("error", "introspection", error="tokenguard.ConfigurationError"): 1
    }
    assert guard.stats().total(result="error") == 1


def test_the_gateway_reports_to_the_global_providers_when_asked() -> None:
    """``[gateway] opentelemetry = true``: the gateway's guard reports to the process's
    global providers (as ``opentelemetry-instrument`` sets them up); a real process, as
    the global providers can be set only once."""
    code = textwrap.dedent(
        """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from tokenguard.gateway import create_app
        from tokenguard.testing import AuthServer

        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)

        async def main(server):
            config = {
                "issuers": [{"issuer": server.issuer, "allow_insecure_http": True}],
                "policies": [{"name": "api", "audience": "urn:test:api"}],
                "routes": [{"path": "/**", "policy": "api"}],
                "gateway": {"access_log": False, "opentelemetry": True},
            }
            app = create_app(config)
            sent = []

            async def send(message):
                sent.append(message)

            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            token = server.issue_jwt()
            scope = {"type": "http", "method": "GET", "path": "/envoy/x", "raw_path": b"/envoy/x",
                     "query_string": b"", "client": ("127.0.0.1", 1),
                     "headers": [(b"authorization", f"Bearer {token}".encode())]}
            await app(scope, receive, send)
            await app.aclose()
            return sent[0]["status"]

        with AuthServer() as server:
            status = asyncio.run(main(server))
        print(status, [s.name for s in spans.get_finished_spans()])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200 ['GET', 'GET', 'tokenguard.validate']"


def test_without_the_api_instrumenting_says_what_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
        from tokenguard.testing import AuthServer, guard_for
        from tokenguard.gateway.config import GatewaySettings

        with AuthServer() as server:
            try:
                guard_for(server).instrument()
            except ImportError as error:
                print(error)
        try:
            GatewaySettings(opentelemetry=True)
        except ValueError as error:
            print("gateway:", "tokenguard[otel]" in str(error))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == [
        "tokenguard.otel needs opentelemetry-api: pip install 'tokenguard[otel]'",
        "gateway: True",
    ]
