"""The fleet's capacity model on paper (docs/fleet.md), as a calculator.

    python benchmarks/fleet_capacity.py                    # 1,000 processes, 100,000/s
    python benchmarks/fleet_capacity.py --processes 200 --validations 20000 --opaque 0.5

For each routing (how many processes serve one token), it prints the local hit ratio,
Redis operations/s, introspection calls/s, Redis memory and pub/sub fan-out, and which
limit is reached first. Entry sizes are the measured ones (docs/fleet.md).
"""

from __future__ import annotations

import argparse

ANSWER_BYTES = 488  # one shared answer in Redis (MEMORY USAGE), typical claims
REVOCATION_BYTES = 222  # one stored revocation (sorted-set member, MEMORY USAGE / count)
MESSAGE_BYTES = 250  # one pub/sub delivery, framing included
REDIS_OPS_PER_CORE = 150_000  # simple commands/s a Redis core executes (order of magnitude)
FANOUT_PER_NODE = 1_000_000  # pub/sub deliveries/s one node sustains (order of magnitude)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--validations", type=float, default=100_000, help="per second")
    parser.add_argument("--rate", type=float, default=1.0, help="requests/s of one token")
    parser.add_argument("--opaque", type=float, default=1.0, help="share of opaque tokens")
    parser.add_argument("--ttl", type=float, default=60.0, help="local answer lifetime, s")
    parser.add_argument("--new", type=float, default=100.0, help="new tokens/s")
    parser.add_argument("--revocations", type=float, default=10.0, help="per second")
    parser.add_argument("--keep", type=float, default=86400.0, help="revocation life, s")
    args = parser.parse_args()
    tokens = args.validations / args.rate
    opaque_tokens = tokens * args.opaque
    print(
        f"{args.processes:,} processes, {args.validations:,.0f} validations/s, {tokens:,.0f} "
        f"active tokens ({args.opaque:.0%} opaque), local TTL {args.ttl:.0f} s"
    )
    head = ("serving processes per token", "local hits", "Redis ops/s", "Redis cores")
    print(f"{head[0]:>28} {head[1]:>10} {head[2]:>12} {head[3]:>11}")
    for k in sorted({args.processes, 100, 10, 1} - {p for p in (100, 10) if p > args.processes}):
        seen = args.rate * args.ttl / k
        hits = seen / (1 + seen)
        reads = args.validations * args.opaque * (1 - hits)
        ops = reads + args.new * args.opaque * 4 + args.revocations * 5
        print(f"{k:>28,} {hits:>10.1%} {ops:>12,.0f} {ops / REDIS_OPS_PER_CORE:>11.2f}")
    introspections = opaque_tokens / args.ttl + args.new * args.opaque
    kept = args.revocations * args.keep
    fanout = args.revocations * args.processes
    print(f"introspection calls at the AS: {introspections:,.0f}/s for the whole fleet")
    print(
        f"Redis memory: answers {opaque_tokens * ANSWER_BYTES / 1e6:,.0f} MB, "
        f"revocations {kept:,.0f} kept -> {kept * REVOCATION_BYTES / 1e6:,.0f} MB "
        f"(and about as much in each process)"
    )
    print(
        f"pub/sub fan-out: {fanout:,.0f} deliveries/s, {fanout * MESSAGE_BYTES / 1e6:.1f} MB/s "
        f"({fanout / FANOUT_PER_NODE:.1%} of one node); saturates at "
        f"~{FANOUT_PER_NODE / args.processes:,.0f} revocations/s"
    )
    print(f"catch-up of one (re)connecting process: {kept * REVOCATION_BYTES / 1e6:,.0f} MB")


if __name__ == "__main__":
    main()
