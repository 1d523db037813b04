#!/usr/bin/env bash
# Install nginx (Debian's package, with the auth_request module) for the gateway tests,
# and wrk for the gateway benchmark (benchmarks/gateway.py, smoke-tested in the suite).
# Idempotent and quick when it is already there. `./dev test` runs it before pytest;
# set TOKENGUARD_SKIP_NGINX=1 to skip it (the nginx tests then skip, except under CI=true).
set -euo pipefail

if [ "${TOKENGUARD_SKIP_NGINX:-}" = "1" ]; then
    echo "nginx setup: TOKENGUARD_SKIP_NGINX=1, skipping" >&2
    exit 0
fi

has_nginx() {
    local bin
    bin="$(command -v nginx || echo /usr/sbin/nginx)"
    [ -x "$bin" ] && "$bin" -V 2>&1 | grep -q -- --with-http_auth_request_module
}

if has_nginx && command -v wrk >/dev/null 2>&1; then
    echo "nginx setup: nginx with auth_request and wrk present" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "nginx setup: ERROR: nginx is missing and apt-get is not available" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
    sudo="sudo"
fi
echo "nginx setup: installing Debian's nginx and wrk" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# nginx-light is the smallest build with auth_request (bookworm); later releases ship one nginx.
$sudo apt-get install -y -qq --no-install-recommends nginx-light wrk >/dev/null 2>&1 \
    || $sudo apt-get install -y -qq --no-install-recommends nginx wrk >/dev/null
# The package may start a system nginx on port 80; the tests run their own.
if command -v service >/dev/null 2>&1; then
    $sudo service nginx stop >/dev/null 2>&1 || true
fi
has_nginx || { echo "nginx setup: ERROR: installed nginx lacks auth_request" >&2; exit 1; }
command -v wrk >/dev/null 2>&1 || { echo "nginx setup: ERROR: wrk did not install" >&2; exit 1; }
