"""Apply at fleet scale: 20,000 desktops rebuilt through `reconciler apply` against a served
simulator that allows R calls per minute.

    python bench/apply_scale.py [--desktops 20000] [--rate 1200] [--server-burst 10] [--client-burst 1]

The ideal is the fewest calls any client could make, at R per minute: the listing in pages of
500 (the documented maximum of desktops/detail) and one rebuild call per 100 desktops. The time
is split into start-up (until the first call: interpreter, imports, manifests, state, lock),
the calls, and wrap-up (after the last call: state write, exit), from reconciler's own log.

Budget (issue 6): wall time <= 1.1 x the ideal, 429s under 1% of calls, the state written once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
# reconciler's CLI with its log lines stamped in milliseconds since start (the log says when
# each call ended).
TIMED_LOG = (
    "import logging, sys; logging.basicConfig(format='%(relativeCreated)d %(message)s');"
    "from reconciler.cli import main; main(sys.argv[1:])"
)
AK, SK = "AKBENCH0001", "bench-secret"


def serve(fleet: dict, directory: Path) -> tuple[subprocess.Popen[str], str]:
    path = directory / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "simulator", "serve", "--fleet", str(path), "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().split()[-1]


def write_manifests(root: Path, url: str, rate: float, burst: int = 1) -> None:
    root.mkdir()
    api = {"rate_limit_per_minute": rate, "burst": burst, "max_concurrent_calls": 4}
    documents = [
        {"apiVersion": "reconciler/v1", "kind": "Settings", "spec": {"project_id": PROJECT, "endpoint": url, "api": api}},
        {"apiVersion": "reconciler/v1", "kind": "DesktopGroup", "metadata": {"name": "fleet"}, "spec": {
            "desktops": {"selector": {"tags": {"dept": "ops"}}}, "image": {"id": "img-b", "type": "private"},
            "rollout": {"batch_size": 100, "delay_time": 0}}},
    ]
    (root / "manifests.yaml").write_text(yaml.safe_dump_all(documents))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--desktops", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1200, help="calls per minute the simulator allows (and the client is told)")
    parser.add_argument("--server-burst", type=int, default=10, help="the simulator's token-bucket capacity")
    parser.add_argument("--client-burst", type=int, default=1, help="api.burst: the client's token-bucket capacity")
    args = parser.parse_args()
    fleet = {
        "project_id": PROJECT, "credentials": [{"ak": AK, "sk": SK}],
        "images": [{"id": "img-a", "type": "private"}, {"id": "img-b", "type": "private"}],
        "generate": [{"count": args.desktops, "name_prefix": "pc-", "image_id": "img-a", "tags": {"dept": "ops"}}],
        "behaviour": {"seed": 1, "job_seconds": 30, "rate_limit_per_minute": args.rate, "rate_limit_burst": args.server_burst},
    }
    with tempfile.TemporaryDirectory() as tmp:
        process, url = serve(fleet, Path(tmp))
        try:
            root = Path(tmp) / "m"
            write_manifests(root, url, args.rate, args.client_burst)
            env = {**os.environ, "HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK, "RECONCILER_LOG": "info"}
            time.sleep(60 * args.server_burst / args.rate)  # let the server's bucket fill, as after idle time
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-c", TIMED_LOG, "apply", str(root), "--auto-approve", "--json"],
                                    env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - started
            stats = httpx.get(f"{url}/_simulator/stats").json()
            state = json.loads((root / ".reconciler" / "state.json").read_text())
        finally:
            process.terminate()
            process.wait()
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    summary = json.loads(result.stdout.splitlines()[-1])
    calls, throttled = stats["total"], stats["throttled"]
    fewest = math.ceil(args.desktops / 500) + math.ceil(args.desktops / 100)
    ideal = fewest / args.rate * 60
    call_times = [int(line.split()[0]) / 1000 for line in result.stderr.splitlines() if " -> HTTP " in line]
    rows = [
        ("desktops / rate (calls per minute)", f"{args.desktops:,} / {args.rate:g}"),
        ("rebuilds submitted / jobs", f"{summary['rebuilds_submitted']:,} / {summary['jobs']}"),
        ("API calls (all kinds) / fewest possible", f"{calls} / {fewest}"),
        ("429 responses", f"{throttled} ({100 * throttled / calls:.2f}% of calls, budget < 1%)"),
        ("ideal: fewest calls / rate (s)", f"{ideal:.1f}"),
        ("apply wall time (s)", f"{elapsed:.1f}"),
        ("  start-up, until the first call (s)", f"{call_times[0]:.2f}"),
        ("  first to last call (s)", f"{call_times[-1] - call_times[0]:.2f}"),
        ("  wrap-up, after the last call (s)", f"{elapsed - call_times[-1]:.2f}"),
        ("ratio to ideal (budget <= 1.1)", f"{elapsed / ideal:.3f}"),
        ("state writes (serial after one run)", f"{state['serial']}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
