"""Each recipe of docs/recipes/ does what it says with tokens shaped like its server's.

A recipe page has, in this order:

* its configuration: the first ``python`` block, which builds ``guard`` (a TokenGuard);
  secrets it reads with ``os.environ["NAME"]`` are set here;
* examples of what the server sends, each a ``json`` block preceded by a comment:
  ``<!-- recipe-token: policy=NAME -->`` for a JWT, written ``{"header": {...},
  "payload": {...}}``, or ``<!-- recipe-introspection: policy=NAME -->`` for an
  introspection answer about an opaque token; ``expect=ErrorClass`` says the recipe's
  configuration refuses it (and the page says why).

For every example, the configuration is pointed at an embedded authorization server
(its issuer takes the place of the one in the example, every other member stays), a
token with exactly the example's header and claims is minted (times moved to now), and
the recipe's policy must accept it, or refuse it with the error named. Where the policy
relaxes a default (``accept_plain_jwt``, ``require_introspection_audience``,
``require_rfc9068_claims``, ``audience_claim``), the same
token must be refused under the default, so the relaxation is shown to be needed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tokenguard
from tokenguard import ClientSecretBasic, GuardConfig, Issuer, Policy, TokenGuard
from tokenguard.testing import AuthServer

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for p in (ROOT / "docs" / "recipes").glob("*.md") if p.name != "index.md")

_FENCE = re.compile(
    r"^(?P<before>[^\n]*)\n```(?P<lang>\w*)[^\n]*\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL
)
_EXAMPLE = re.compile(r"<!--\s*recipe-(?P<kind>token|introspection):\s*(?P<args>.*?)\s*-->")
_TIMES = ("exp", "iat", "nbf", "auth_time")
#: What AuthServer puts in every token or answer; an example's own members replace them.
_DEFAULT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope")


def _blocks(page: Path) -> list[tuple[str, str, str]]:
    """(line before the fence, language, code) for each fenced block of a page."""
    text = "\n" + page.read_text(encoding="utf-8")
    return [(m["before"], m["lang"], m["code"]) for m in _FENCE.finditer(text)]


def _examples(page: Path) -> Iterator[tuple[str, dict[str, str], Any]]:
    for before, lang, code in _blocks(page):
        marker = _EXAMPLE.search(before)
        if marker and lang == "json":
            args = dict(item.split("=", 1) for item in marker["args"].split())
            yield marker["kind"], args, json.loads(code)


def _cases() -> list[Any]:
    cases = []
    for page in RECIPES:
        for number, (kind, args, example) in enumerate(_examples(page), 1):
            cases.append(pytest.param(page, kind, args, example, id=f"{page.stem}-{number}"))
    return cases


def test_every_recipe_has_a_configuration_and_an_example() -> None:
    assert RECIPES, "docs/recipes/ has no recipe"
    for page in RECIPES:
        languages = [lang for _, lang, _ in _blocks(page)]
        assert "python" in languages, f"{page.name}: no configuration (a python block)"
        assert list(_examples(page)), f"{page.name}: no recipe-token/introspection example"
        assert "## Sources" in page.read_text(), f"{page.name}: cite the vendor's docs"


def _configuration(page: Path, monkeypatch: pytest.MonkeyPatch) -> GuardConfig:
    code = next(code for _, lang, code in _blocks(page) if lang == "python")
    for name in re.findall(r"os\.environ\[\"(\w+)\"\]", code):
        monkeypatch.setenv(name, "recipe-secret")
    namespace: dict[str, Any] = {}
    exec(compile(code, str(page), "exec"), namespace)  # noqa: S102 - our own docs
    guard = namespace["guard"]
    assert isinstance(guard, TokenGuard), f"{page.name}: the configuration must build `guard`"
    config = guard.config
    guard.close()
    return config


def _pointed_at(config: GuardConfig, issuer: str, server: AuthServer) -> GuardConfig:
    """The recipe's configuration with ``issuer`` replaced by the embedded server."""
    original = next((i for i in config.issuers if i.issuer == issuer), None)
    assert original is not None, f"the example's iss {issuer!r} is not a configured issuer"
    replacement = Issuer(
        server.issuer,
        allow_insecure_http=True,
        jwks_uri=server.jwks_uri if original.jwks_uri else None,
        introspection_endpoint=(
            server.introspection_endpoint if original.introspection_endpoint else None
        ),
        client_auth=(
            ClientSecretBasic(server.client_id, server.client_secret)
            if original.client_auth
            else None
        ),
    )
    policies = []
    for policy in config.policies:
        data = policy.model_dump()
        trusted = policy.issuers or [i.issuer for i in config.issuers]
        if issuer not in trusted:
            continue
        data["issuers"] = [server.issuer]
        if policy.introspection_issuer is not None:
            data["introspection_issuer"] = server.issuer
        policies.append(Policy(**data))
    return GuardConfig(issuers=(replacement,), policies=tuple(policies), settings=config.settings)


def _moved_to_now(members: dict[str, Any]) -> dict[str, Any]:
    anchor = members.get("iat", members.get("exp", 0) - 300)
    now = int(time.time())
    return {
        name: (now + value - anchor if name in _TIMES and isinstance(value, int) else value)
        for name, value in members.items()
    }


def _mint(server: AuthServer, kind: str, example: Any, issuer: str) -> str:
    if kind == "token":
        header = dict(example["header"])
        claims = _moved_to_now(example["payload"])
        claims["iss"] = server.issuer
        overrides = {name: None for name in _DEFAULT_CLAIMS if name not in claims} | claims
        alg = header.pop("alg")
        header.pop("kid", None)  # the server signs with its own key
        typ = header.pop("typ", None)
        return server.issue_jwt(alg=alg, typ=typ, header=header, claims=overrides)
    answer = _moved_to_now({k: v for k, v in example.items() if k != "active"})
    if "iss" in answer:
        answer["iss"] = server.issuer
    extra = {name: None for name in _DEFAULT_CLAIMS if name not in answer} | answer
    return server.issue_opaque(extra=extra)


def _relaxed(policy: Policy, kind: str, example: Any) -> dict[str, Any]:
    """The defaults this policy turns off that this example needs turned off, with their
    default values."""
    needed: dict[str, Any] = {}
    if kind == "token":
        typ = str(example["header"].get("typ", "")).lower()
        typed = typ in ("at+jwt", "application/at+jwt")
        if policy.accept_plain_jwt and not typed:
            needed["accept_plain_jwt"] = False
        profile = {"sub", "client_id", "jti"}
        if not policy.require_rfc9068_claims and typed and profile - set(example["payload"]):
            needed["require_rfc9068_claims"] = True
        if policy.audience_claim != "aud" and "aud" not in example["payload"]:
            needed["audience_claim"] = "aud"
    elif not policy.require_introspection_audience and "aud" not in example:
        needed["require_introspection_audience"] = True
    return needed


def _guard(config: GuardConfig) -> TokenGuard:
    return TokenGuard(config.issuers, config.policies, settings=config.settings)


@pytest.fixture(scope="module")
def server() -> Iterator[AuthServer]:
    with AuthServer() as started:
        yield started


@pytest.mark.parametrize(("page", "kind", "args", "example"), _cases())
def test_recipe_handles_its_servers_tokens(
    page: Path,
    kind: str,
    args: dict[str, str],
    example: Any,
    server: AuthServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issuer = example["payload"]["iss"] if kind == "token" else args["issuer"]
    config = _pointed_at(_configuration(page, monkeypatch), issuer, server)
    policy_name = args["policy"]
    policy = next(p for p in config.policies if p.name == policy_name)
    token = _mint(server, kind, example, issuer)
    with _guard(config) as guard:
        if "expect" in args:
            expected = getattr(tokenguard, args["expect"])
            with pytest.raises(expected):
                guard.validate(token, policy=policy_name)
            return
        info = guard.validate(token, policy=policy_name)
        assert info.issuer == server.issuer
        assert set(policy.required_scopes) <= info.scopes
    relaxed = _relaxed(policy, kind, example)
    if relaxed:
        strict = Policy(**{**policy.model_dump(), **relaxed, "name": "strict"})
        with (
            _guard(config.model_copy(update={"policies": (strict,)})) as guard,
            pytest.raises(tokenguard.InvalidToken),
        ):
            guard.validate(token, policy="strict")
