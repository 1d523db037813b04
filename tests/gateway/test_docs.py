"""docs/gateway.md shows the configurations the tests run, verbatim."""

from __future__ import annotations

import pytest

from tokenguard.gateway import load_gateway_config

from .conftest import ROOT

EXAMPLES = ROOT / "examples" / "gateway"


@pytest.mark.parametrize("name", ["nginx.conf", "traefik.yml", "envoy.yaml", "gateway.toml"])
def test_documented_configuration_is_the_example_file(name: str) -> None:
    doc = (ROOT / "docs" / "gateway.md").read_text()
    assert (EXAMPLES / name).read_text().rstrip() + "\n```" in doc


def test_example_gateway_configuration_loads() -> None:
    config = load_gateway_config(EXAMPLES / "gateway.toml")
    assert [route.path for route in config.routes] == ["/public/**", "/orders/**", "/orders/**"]
