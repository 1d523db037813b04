"""Gateway benchmark: wrk through a real nginx (auth_request) to ``tokenguard gateway``.

Measures, on a cached token (the verified-token cache, the steady state of a gateway):

1. decisions/s with 1 and 2 gateway workers, through nginx and straight at the gateway;
2. the latency the gateway adds at a fixed rate (1,000 requests/s by default): p50/p99
   through nginx with auth_request, against the same nginx proxying to the same
   upstream without auth_request, in the same run;
3. uvicorn against granian as the gateway's server (1 worker, straight at the gateway).

Needs nginx and wrk (Debian: ``apt-get install nginx-light wrk``). Everything runs on
ephemeral loopback ports and is stopped at the end. ``--quick`` runs each step for 1 s.

    python benchmarks/gateway.py [--quick] [--duration 10] [--rate 1000] [--json out.json]
                                 [--realtime] [--skip-granian]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.gateway.processes import die_with_parent, free_port, stop, wait_for_port  # noqa: E402

NGINX_EXAMPLE = ROOT / "examples" / "gateway" / "nginx.conf"

_WRK_SCRIPT = """
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
if delay_ms > 0 then
  function delay() return delay_ms end
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.1f %.1f %.1f %d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
"""


def gateway_config(server: AuthServer) -> str:
    return f"""
[[issuers]]
issuer = "{server.issuer}"
allow_insecure_http = true

[[policies]]
name = "orders"
audience = "{DEFAULT_AUDIENCE}"
required_scopes = ["orders:read"]
mode = "jwt"

[[routes]]
path = "/orders/**"
policy = "orders"
"""


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system) of ``root`` and every process below it, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in tree)


def per_cpu_second(run: dict[str, float], cpu_seconds: float) -> float:
    """Requests per CPU-second of the gateway (NaN when too little CPU was used to
    measure: /proc counts in 10 ms ticks)."""
    return run["requests"] / cpu_seconds if cpu_seconds >= 0.05 else float("nan")


@contextmanager
def gateway(
    config: Path, workers: int, server: str = "uvicorn", prefix: tuple[str, ...] = ()
) -> Iterator[tuple[int, int]]:
    port = free_port()
    env = {**os.environ, "TOKENGUARD_GATEWAY_CONFIG": str(config)}
    command = [
        *prefix,
        str(Path(sys.executable).with_name("tokenguard")),
        "gateway",
        "--config",
        str(config),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--server",
        server,
    ]
    # The access log is on, as by default; it goes to /dev/null here.
    process = subprocess.Popen(  # noqa: S603 - our own command line
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the death signal
    )
    try:
        wait_for_port(port)
        time.sleep(0.5 * workers)  # every worker up
        yield port, process.pid
    finally:
        stop(process)


@contextmanager
def nginx(tmp: Path, gateway_port: int, prefix: tuple[str, ...] = ()) -> Iterator[tuple[int, int]]:
    """The documented nginx config, an upstream (nginx answering 200 itself) and a
    baseline server proxying to the same upstream without auth_request."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    front, base, app = free_port(), free_port(), free_port()
    conf = (
        NGINX_EXAMPLE.read_text()
        .replace("127.0.0.1:8181", f"127.0.0.1:{gateway_port}")
        .replace("127.0.0.1:8080", f"127.0.0.1:{app}")
        .replace("listen 127.0.0.1:8000", f"listen 127.0.0.1:{front}")
        .replace("worker_processes 1;", "worker_processes 1;\nworker_rlimit_nofile 4096;")
    )
    extra = f"""
    server {{
        listen 127.0.0.1:{app};
        location / {{ default_type text/plain; return 200 "ok"; }}
    }}
    server {{
        listen 127.0.0.1:{base};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }}
    }}
"""
    conf = conf[: conf.rstrip().rfind("}")] + extra + "}\n"
    (tmp / "tmp").mkdir(exist_ok=True)
    (tmp / "nginx.conf").write_text(conf)
    process = subprocess.Popen(  # noqa: S603 - our own command line
        [*prefix, binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the death signal
    )
    try:
        for port in (front, base, app):
            wait_for_port(port)
        yield front, base
    finally:
        stop(process)


def _wrk_command(
    url: str, headers: dict[str, str], duration: float, connections: int, script: Path
) -> list[str]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    return [*command, url]


def _wrk_result(out: str) -> dict[str, float]:
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output: {out}")
    requests, micros, p50, p99, worst, errors = match.groups()
    return {
        "requests": int(requests),
        "rps": int(requests) / (int(micros) / 1e6),
        "p50_ms": float(p50) / 1000,
        "p99_ms": float(p99) / 1000,
        "max_ms": float(worst) / 1000,
        "errors": int(errors),
    }


def wrk(
    url: str,
    headers: dict[str, str],
    duration: float,
    *,
    connections: int,
    delay_ms: int = 0,
    script: Path,
    prefix: tuple[str, ...] = (),
) -> dict[str, float]:
    """One wrk run: requests, rate, p50/p99/max latency, errors."""
    return wrk_together([url], headers, duration, connections, delay_ms, script, prefix)[0]


def wrk_together(
    urls: list[str],
    headers: dict[str, str],
    duration: float,
    connections: int,
    delay_ms: int,
    script: Path,
    prefix: tuple[str, ...] = (),
) -> list[dict[str, float]]:
    """One wrk per URL, all at the same time: what slows one down (other load on the
    machine) slows the others too, so their difference is the fairer comparison."""
    env = {**os.environ, "WRK_DELAY_MS": str(delay_ms)}
    processes = [
        subprocess.Popen(  # noqa: S603 - our own command line
            [*prefix, *_wrk_command(url, headers, duration, connections, script)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the death signal
        )
        for url in urls
    ]
    return [_wrk_result(process.communicate()[0]) for process in processes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per step (a smoke run)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--rate", type=int, default=1000, help="fixed rate for latency")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--skip-granian", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run the fixed-rate latency step at real-time priority (chrt -f; root)",
    )
    args = parser.parse_args()
    duration = 1.0 if args.quick else args.duration
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is not installed (Debian: apt-get install nginx-light wrk)")
    figures: dict[str, object] = {}
    with AuthServer(token_lifetime=3600) as server, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        config = tmp / "gateway.toml"
        config.write_text(gateway_config(server))
        script = tmp / "wrk.lua"
        script.write_text(_WRK_SCRIPT)
        token = server.issue_jwt(scopes=["orders:read"])
        auth = {"Authorization": f"Bearer {token}"}
        direct = {**auth, "X-Original-Method": "GET", "X-Original-URI": "/orders/1"}

        # --realtime: nginx, the gateway and wrk at SCHED_FIFO priority, so that on a
        # shared machine the figures show what the gateway does, not the scheduler.
        rt: tuple[str, ...] = ("chrt", "-f", "20") if args.realtime else ()
        if not args.skip_throughput:
            print("Decisions/s on a cached token (wrk -c32, 1 thread); per gateway CPU-second")
            print(
                f"{'workers':<8} {'through nginx':>14} {'gateway alone':>14} "
                f"{'per CPU-s (nginx)':>18} {'per CPU-s (alone)':>18}"
            )
            throughput = {}
            for workers in (1, 2):
                with (
                    gateway(config, workers, prefix=rt) as (gw_port, pid),
                    nginx(tmp, gw_port, prefix=rt) as (front, _),
                ):
                    if not args.quick:  # warm up
                        wrk(
                            f"http://127.0.0.1:{front}/orders/1",
                            auth,
                            1,
                            connections=32,
                            script=script,
                            prefix=rt,
                        )
                    cpu = tree_cpu_seconds(pid)
                    through = wrk(
                        f"http://127.0.0.1:{front}/orders/1",
                        auth,
                        duration,
                        connections=32,
                        script=script,
                        prefix=rt,
                    )
                    through["per_cpu_s"] = per_cpu_second(through, tree_cpu_seconds(pid) - cpu)
                    cpu = tree_cpu_seconds(pid)
                    alone = wrk(
                        f"http://127.0.0.1:{gw_port}/nginx",
                        direct,
                        duration,
                        connections=32,
                        script=script,
                        prefix=rt,
                    )
                    alone["per_cpu_s"] = per_cpu_second(alone, tree_cpu_seconds(pid) - cpu)
                throughput[workers] = {"nginx": through, "direct": alone}
                print(
                    f"{workers:<8} {through['rps']:>14,.0f} {alone['rps']:>14,.0f} "
                    f"{through['per_cpu_s']:>18,.0f} {alone['per_cpu_s']:>18,.0f}"
                )
            for path in ("nginx", "direct"):
                ratio = throughput[2][path]["rps"] / throughput[1][path]["rps"]
                print(f"  2 workers / 1 worker ({path}): {ratio:.2f}x")
            print(f"  load average while measuring: {os.getloadavg()[0]:.1f} (2 cores)")
            figures["throughput"] = throughput

        # Fixed rate: N connections, each waiting delay ms between requests.
        connections = 10
        delay = max(0, round(connections * 1000 / args.rate) - 1)
        print(
            f"\nLatency at ~{args.rate} requests/s each, both at once "
            f"(wrk -c{connections}, {delay} ms between)"
        )
        print(f"{'':<26} {'rate':>8} {'p50 ms':>8} {'p99 ms':>8}")
        # Both at once (one wrk each), so that load from elsewhere hits both alike.
        with (
            gateway(config, 1, prefix=rt) as (gw_port, _),
            nginx(tmp, gw_port, prefix=rt) as (front, base),
        ):
            names = ("nginx, no auth_request", "nginx + tokenguard")
            urls = [f"http://127.0.0.1:{port}/orders/1" for port in (base, front)]
            if not args.quick:  # warm up
                wrk_together(urls, auth, 1, connections, delay, script, rt)
            runs = dict(
                zip(
                    names,
                    wrk_together(urls, auth, duration, connections, delay, script, rt),
                    strict=False,
                )
            )
            for name, run in runs.items():
                print(f"{name:<26} {run['rps']:>8,.0f} {run['p50_ms']:>8.3f} {run['p99_ms']:>8.3f}")
            base_run, auth_run = runs[names[0]], runs[names[1]]
            added = {
                "p50_ms": auth_run["p50_ms"] - base_run["p50_ms"],
                "p99_ms": auth_run["p99_ms"] - base_run["p99_ms"],
            }
            print(
                f"{'added by the gateway':<26} {'':>8} {added['p50_ms']:>8.3f} "
                f"{added['p99_ms']:>8.3f}   (target: p99 added <= 2 ms)"
            )
            print(f"  load average while measuring: {os.getloadavg()[0]:.1f} (2 cores)")
        figures["latency"] = {**runs, "added": added}

        if not args.skip_granian:
            print("\nServer: decisions per gateway CPU-second, 1 worker, straight at it (wrk -c32)")
            servers: dict[str, list[float]] = {"uvicorn": [], "granian": []}
            for _ in range(2):  # interleaved, so load from elsewhere hits both alike
                for name, results in servers.items():
                    with gateway(config, 1, server=name) as (gw_port, pid):
                        url = f"http://127.0.0.1:{gw_port}/nginx"
                        wrk(url, direct, 1, connections=32, script=script)
                        cpu = tree_cpu_seconds(pid)
                        result = wrk(url, direct, duration, connections=32, script=script)
                        results.append(per_cpu_second(result, tree_cpu_seconds(pid) - cpu))
            for name, values in servers.items():
                print(f"{name:<8} {max(values):>10,.0f}  (best of {len(values)})")
            print(f"  granian / uvicorn: {max(servers['granian']) / max(servers['uvicorn']):.2f}x")
            figures["servers"] = servers
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
