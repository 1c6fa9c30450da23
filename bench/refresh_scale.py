"""Refresh at fleet scale: 100,000 desktops in 1,000 groups listed by id (plus optional selector
groups), a state recording all of them, planned with a refresh.

    python bench/refresh_scale.py [--desktops 100000] [--groups 1000] [--selectors 0]
                                  [--rate 100] [--burst 1] [--served]

In-process (the default), the simulator answers through its WSGI transport and the time it takes
is told apart from reconciler's; the client is paced by a limiter at --rate/--burst whose waits
are counted on a virtual clock, so one run gives both the uncapped time and the time at that
pacing. --served runs `reconciler plan` against a served simulator instead and reports the
plan process's own peak memory and CPU time.

Budgets (issues 6 and 15): API calls <= ceil(N/500) + one per selector filter; peak memory of a
refreshed plan <= 1.5 KB per desktop (150 MB at 100,000).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml
from measure import Run, machine, run, table

from reconciler.cloud.auth import AkSkAuth
from reconciler.cloud.client import WorkspaceClient
from reconciler.cloud.pacing import RateLimiter
from reconciler.cloud.transport import PacedTransport
from reconciler.manifest import load_manifests
from reconciler.model import ApiSettings
from reconciler.planner import PlanOptions
from reconciler.session import build_plan, snapshot, utc_now
from reconciler.simulator import Simulator, load_fleet_data
from reconciler.state import LocalStateStore
from reconciler.state.state import DesktopRecord, State

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "AKBENCH0001", "bench-secret"


class Counting(httpx.BaseTransport):
    """Counts the API calls, and the time the in-process simulator takes to answer them (its
    share of the wall time is not reconciler's)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.calls, self.seconds = inner, 0, 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        started = time.perf_counter()
        response = self.inner.handle_request(request)
        response.read()
        self.seconds += time.perf_counter() - started
        return response


def simulator(desktops: int, selectors: int) -> Simulator:
    generate = [{"count": desktops, "name_prefix": "pc-", "image_id": "img-a", "tags": {"dept": "ops"}}]
    generate += [{"count": 50, "name_prefix": f"sel{s}-", "image_id": "img-a", "tags": {"team": f"t{s}"}} for s in range(selectors)]
    return Simulator(load_fleet_data({
        "project_id": PROJECT, "credentials": [{"ak": AK, "sk": SK}],
        "images": [{"id": "img-a", "type": "private"}, {"id": "img-b", "type": "private"}],
        "generate": generate, "behaviour": {"seed": 1},
    }))


def write_manifests(root: Path, ids: list[str], groups: int, selectors: int) -> None:
    (root / "settings.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: Settings\nspec:\n  project_id: {PROJECT}\n  endpoint: http://127.0.0.1\n"
    )
    per_group = len(ids) // groups
    for g in range(groups):
        lines = "".join(f"      - {i}\n" for i in ids[g * per_group:(g + 1) * per_group])
        (root / f"group-{g:04d}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: DesktopGroup\nmetadata:\n  name: group-{g:04d}\nspec:\n"
            f"  desktops:\n    ids:\n{lines}  image:\n    id: img-a\n    type: private\n"
        )
    for s in range(selectors):
        (root / f"selector-{s:03d}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: DesktopGroup\nmetadata:\n  name: selector-{s:03d}\nspec:\n"
            f"  desktops:\n    selector:\n      tags: {{team: t{s}}}\n  image:\n    id: img-b\n    type: private\n"
        )


class VirtualWaits:
    """A clock that a limiter's sleeps move forward without waiting: the run goes uncapped and
    ``waited`` says how long pacing would have held it back."""

    def __init__(self) -> None:
        self.waited = 0.0

    def clock(self) -> float:
        return time.monotonic() + self.waited

    def sleep(self, seconds: float) -> None:
        self.waited += seconds


def write_state(root: Path, ids: list[str], groups: int) -> None:
    store = LocalStateStore(root / ".reconciler" / "state.json")
    records = {i: DesktopRecord(f"group-{n // (len(ids) // groups):04d}", "img-a", None, None, "2026-11-01T00:00:00+00:00")
               for n, i in enumerate(ids)}
    store.write(State(str(uuid.uuid4()), 1, records))


def in_process(args: argparse.Namespace) -> list[tuple[str, str]]:
    started = time.perf_counter()
    sim = simulator(args.desktops, args.selectors)
    with httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1") as admin:
        ids = [d["id"] for d in admin.get("/_simulator/desktops").json()["desktops"] if d["name"].startswith("pc-")]
    setup = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_manifests(root, ids, args.groups, args.selectors)
        write_state(root, ids, args.groups)
        manifests = load_manifests([root])
        snap = snapshot(LocalStateStore(root / ".reconciler" / "state.json"))
        counting = Counting(sim.transport())
        virtual = VirtualWaits()
        limiter = RateLimiter(args.rate, burst=args.burst, clock=virtual.clock, sleep=virtual.sleep)
        client = WorkspaceClient("http://127.0.0.1", PROJECT, AkSkAuth(AK, SK, project_id=PROJECT),
                                 transport=PacedTransport(counting, limiter))
        began, cpu = time.perf_counter(), time.process_time()
        planned = build_plan(manifests, snap, client, PlanOptions(now=utc_now()), utc_now())
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return [
        ("plan summary", str(planned.plan.summary())),
        ("API calls", f"{counting.calls}"),
        ("budget: ceil(N/500) + selectors", f"{math.ceil(args.desktops / 500) + args.selectors}"),
        ("refresh + plan, uncapped: wall s", f"{elapsed:.2f}"),
        ("  of which the simulator answering (s)", f"{counting.seconds:.2f}"),
        ("  of which reconciler (s)", f"{elapsed - counting.seconds:.2f}"),
        ("  CPU s, simulator and reconciler", f"{cpu:.2f}"),
        (f"refresh + plan paced at {args.rate:g}/min, burst {args.burst}: s", f"{elapsed + virtual.waited:.1f}"),
        ("simulator setup (s, not counted)", f"{setup:.2f}"),
    ]


def served(args: argparse.Namespace) -> list[tuple[str, str]]:
    fleet = {
        "project_id": PROJECT, "credentials": [{"ak": AK, "sk": SK}],
        "images": [{"id": "img-a", "type": "private"}, {"id": "img-b", "type": "private"}],
        "generate": [{"count": args.desktops, "name_prefix": "pc-", "image_id": "img-a", "tags": {"dept": "ops"}}],
        "behaviour": {"seed": 1},
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "fleet.yaml").write_text(yaml.safe_dump(fleet))
        server = subprocess.Popen([sys.executable, "-m", "reconciler", "simulator", "serve", "--fleet",
                                   str(Path(tmp) / "fleet.yaml"), "--port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[-1]
            ids = [d["id"] for d in httpx.get(f"{url}/_simulator/desktops", timeout=120).json()["desktops"]]
            root = Path(tmp) / "m"
            root.mkdir()
            write_manifests(root, ids, args.groups, 0)
            settings = root / "settings.yaml"
            settings.write_text(settings.read_text().replace("http://127.0.0.1", url) +
                                "  api: {rate_limit_per_minute: 100000, burst: 100}\n")
            write_state(root, ids, args.groups)
            env = {**os.environ, "HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK}
            runs = [run_with_env([sys.executable, "-m", "reconciler", "plan", str(root)], env) for _ in range(args.repeat)]
        finally:
            server.terminate()
            server.wait()
    peak = min(r.peak_mb for r in runs)
    return [
        ("plan summary", next((line for line in runs[0].stdout.decode().splitlines() if line.startswith("Plan:")), "?")),
        (f"reconciler plan, CPU s (min / median of {args.repeat})",
         f"{min(r.cpu for r in runs):.2f} / {statistics.median(r.cpu for r in runs):.2f}"),
        ("reconciler plan, wall s (min)", f"{min(r.wall for r in runs):.2f}"),
        ("peak memory of the plan process (MB)", f"{peak:.0f} ({peak * 1024 * 1024 / args.desktops / 1024:.2f} KB per desktop, budget 1.5)"),
    ]


def run_with_env(command: list[str], env: dict[str, str]) -> Run:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        result = run(command)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if result.returncode not in (0, 2):
        raise SystemExit(result.stderr.decode()[-2000:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--desktops", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--selectors", type=int, default=0, help="extra groups with a tag selector (50 desktops each)")
    parser.add_argument("--rate", type=float, default=ApiSettings().rate_limit_per_minute, help="pacing: calls per minute")
    parser.add_argument("--burst", type=int, default=ApiSettings().burst, help="pacing: the bucket's size")
    parser.add_argument("--served", action="store_true", help="run `reconciler plan` against a served simulator")
    parser.add_argument("--repeat", type=int, default=3, help="runs of `reconciler plan` with --served")
    args = parser.parse_args()
    rows = served(args) if args.served else in_process(args)
    label = f"{args.desktops:,} / {args.groups:,} / {args.selectors}"
    table([("machine", machine()), ("desktops / id groups / selector groups", label), *rows])


if __name__ == "__main__":
    main()
