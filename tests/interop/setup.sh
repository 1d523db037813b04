#!/usr/bin/env bash
# Install the interop authorization server (panva's oidc-provider, pinned in
# tests/interop/oidc_provider/package-lock.json). Run from anywhere; `./dev test` runs it
# from the repo root before pytest.
#
# Idempotent: `npm ci` runs only when node_modules is missing or older than the lock file
# (or package.json). Set TOKENGUARD_SKIP_INTEROP=1 to skip it (the interop tests then skip too).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
app="$here/oidc_provider"

if [ "${TOKENGUARD_SKIP_INTEROP:-}" = "1" ]; then
    echo "interop setup: TOKENGUARD_SKIP_INTEROP=1, skipping" >&2
    exit 0
fi

fail() {
    echo "interop setup: ERROR: $*" >&2
    echo "interop setup: the interop tests need Node.js >= 20.18 and npm;" \
        "set TOKENGUARD_SKIP_INTEROP=1 to skip them deliberately" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || fail "node not found on PATH"
command -v npm >/dev/null 2>&1 || fail "npm not found on PATH"

# oidc-provider 9 uses URL.parse (Node >= 20.18). Upstream supports Node 22 LTS and later and
# prints an "Unsupported runtime" notice on Node 20, but it works there (tested on 20.20.2).
node -e '
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 18)) {
  console.error(`interop setup: ERROR: Node.js ${process.versions.node} is too old, need >= 20.18`);
  process.exit(1);
}' || fail "unsupported Node.js version"

stamp="$app/node_modules/.package-lock.json" # written by every npm ci/install
if [ ! -f "$stamp" ] || [ "$app/package-lock.json" -nt "$stamp" ] || [ "$app/package.json" -nt "$stamp" ]; then
    echo "interop setup: npm ci in ${app#"$PWD"/}" >&2
    (cd "$app" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed"
    touch "$stamp"
else
    echo "interop setup: node_modules up to date" >&2
fi

# Cheap sanity check that the installed package can be imported.
if ! out="$(cd "$app" && node --input-type=module -e 'await import("oidc-provider")' 2>&1)"; then
    echo "$out" >&2
    fail "oidc-provider is not importable from $app/node_modules"
fi
