"""A process of a test fleet: ``python -m tests.fleet._worker`` with a JSON job on stdin.

The job names the authorization server (issuer, client credentials), the fleet (Redis
URL, prefix) and what to do:

* ``validate``: validate ``tokens`` with ``concurrency`` threads (or tasks with
  ``async``), print ``{"ok": n, "errors": {class: n}}``.
* ``watch``: validate every token once, print ``ready``, then for each token in turn
  validate it until it is refused and print the time it was first refused.
* ``load``: validate ``tokens`` round and round until stdin closes (or ``seconds``
  pass), print the counts.
* ``dpop``: validate each of ``requests`` (token, DPoP proof, method, URL) in turn
  (``async``: through ``avalidate``), print ``{"outcomes": [class or "ok", ...]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tokenguard import (
    ClientSecretBasic,
    DPoPProof,
    InactiveToken,
    Issuer,
    Policy,
    TokenGuard,
    TokenGuardError,
)
from tokenguard.redis import RedisFleet


def build(job: dict[str, Any]) -> TokenGuard:
    fleet = RedisFleet(
        job["redis_url"], job["secret"], prefix=job["prefix"], **job.get("fleet", {})
    )
    return TokenGuard(
        issuers=[
            Issuer(
                job["issuer"],
                client_auth=ClientSecretBasic(job["client_id"], job["client_secret"]),
                allow_insecure_http=True,
            )
        ],
        policies=[Policy(name="p", audience=job["audience"], **job.get("policy", {}))],
        settings=job.get("settings"),
        fleet=fleet,
    )


def validate_all(
    guard: TokenGuard, tokens: list[str], concurrency: int, use_async: bool
) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    if use_async:

        async def run() -> None:
            gate = asyncio.Semaphore(concurrency)

            async def one(token: str) -> None:
                async with gate:
                    try:
                        await guard.avalidate(token)
                        outcomes["ok"] += 1
                    except Exception as error:
                        outcomes[type(error).__name__] += 1

            await asyncio.gather(*(one(t) for t in tokens))
            await guard.aclose()

        asyncio.run(run())
        return outcomes

    def one(token: str) -> str:
        try:
            guard.validate(token)
            return "ok"
        except Exception as error:
            return type(error).__name__

    with ThreadPoolExecutor(concurrency) as pool:
        outcomes.update(pool.map(one, tokens))
    return outcomes


def validate_proofs(
    guard: TokenGuard, requests: list[dict[str, str]], use_async: bool
) -> list[str]:
    """Each request in turn: "ok", or the error's class and status ("InvalidDPoPProof 401")."""

    def outcome(error: TokenGuardError | None) -> str:
        return "ok" if error is None else f"{type(error).__name__} {error.status_code}"

    def proof(request: dict[str, str]) -> DPoPProof:
        return DPoPProof(request["proof"], request["method"], request["url"], "DPoP")

    if use_async:

        async def run() -> list[str]:
            outcomes = []
            for request in requests:
                try:
                    await guard.avalidate(request["token"], dpop=proof(request))
                    outcomes.append(outcome(None))
                except TokenGuardError as error:
                    outcomes.append(outcome(error))
            await guard.aclose()
            return outcomes

        return asyncio.run(run())
    outcomes = []
    for request in requests:
        try:
            guard.validate(request["token"], dpop=proof(request))
            outcomes.append(outcome(None))
        except TokenGuardError as error:
            outcomes.append(outcome(error))
    return outcomes


def main() -> None:
    job = json.loads(sys.stdin.readline())
    guard = build(job)
    tokens: list[str] = job.get("tokens", [])
    if job["do"] == "dpop":
        outcomes = validate_proofs(guard, job["requests"], job.get("async", False))
        print(
            json.dumps({"outcomes": outcomes, "counters": vars(guard.fleet.counters)}), flush=True
        )
    elif job["do"] == "validate":
        print("ready", flush=True)
        sys.stdin.readline()  # go
        outcomes = validate_all(guard, tokens, job.get("concurrency", 16), job.get("async", False))
        print(
            json.dumps({"outcomes": outcomes, "counters": vars(guard.fleet.counters)}), flush=True
        )
    elif job["do"] == "watch":
        for token in tokens:
            guard.validate(token)
        print("ready", flush=True)
        seen = []
        for token in tokens:
            while True:
                try:
                    guard.validate(token)
                except InactiveToken:
                    seen.append(time.time())
                    break
                time.sleep(0.0005)
        print(json.dumps({"seen": seen}), flush=True)
    elif job["do"] == "load":
        # New tokens one after another (paced), round and round, until told to stop;
        # then, in sync with the fleet again, check the tokens of job["check"].
        import select

        print("ready", flush=True)
        outcomes = Counter[str]()
        deadline = time.monotonic() + job.get("seconds", 30)
        stop = False
        while not stop and time.monotonic() < deadline:
            for token in tokens:
                try:
                    guard.validate(token)
                    outcomes["ok"] += 1
                except Exception as error:
                    outcomes[type(error).__name__] += 1
                time.sleep(job.get("pace", 0.0))
                if select.select([sys.stdin], [], [], 0)[0]:
                    sys.stdin.readline()
                    stop = True
                    break
            guard._engine.introspection_cache.clear()  # next round: new again
            guard._engine.verified_cache.clear()
        print(
            json.dumps({"outcomes": outcomes, "counters": vars(guard.fleet.counters)}), flush=True
        )
        guard.fleet.wait_in_sync(15)
        checked = []
        for token in job.get("check", []):
            until = time.monotonic() + 5  # the revocation may still be on its way
            while True:
                try:
                    guard.validate(token)
                    outcome = "ok"
                except Exception as error:
                    outcome = type(error).__name__
                if outcome != "ok" or time.monotonic() > until:
                    break
                time.sleep(0.01)
            checked.append(outcome)
        print(json.dumps({"check": checked}), flush=True)
    guard.close()


if __name__ == "__main__":
    main()
