"""Refresh at fleet scale: 100,000 desktops in 1,000 groups listed by id (plus optional selector
groups), a state recording all of them, planned with a refresh from the in-process simulator.

    python bench/refresh_scale.py [--desktops 100000] [--groups 1000] [--selectors 0]

Budget (issue 6): API calls <= ceil(N/500) + one per selector filter.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from reconciler.cloud.auth import AkSkAuth
from reconciler.cloud.client import WorkspaceClient
from reconciler.manifest import load_manifests
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--desktops", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--selectors", type=int, default=0, help="extra groups with a tag selector (50 desktops each)")
    args = parser.parse_args()
    started = time.perf_counter()
    sim = simulator(args.desktops, args.selectors)
    with httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1") as admin:
        ids = [d["id"] for d in admin.get("/_simulator/desktops").json()["desktops"] if d["name"].startswith("pc-")]
    setup = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_manifests(root, ids, args.groups, args.selectors)
        store = LocalStateStore(root / ".reconciler" / "state.json")
        records = {i: DesktopRecord(f"group-{n // (len(ids) // args.groups):04d}", "img-a", None, None, "2026-11-01T00:00:00+00:00")
                   for n, i in enumerate(ids)}
        store.write(State(str(uuid.uuid4()), 1, records))
        manifests = load_manifests([root])
        transport = Counting(sim.transport())
        client = WorkspaceClient("http://127.0.0.1", PROJECT, AkSkAuth(AK, SK, project_id=PROJECT), transport=transport)
        began = time.perf_counter()
        planned = build_plan(manifests, snapshot(store), client, PlanOptions(now=utc_now()), utc_now())
        elapsed = time.perf_counter() - began
    budget = math.ceil(args.desktops / 500) + args.selectors
    rows = [
        ("desktops / id groups / selector groups", f"{args.desktops:,} / {args.groups:,} / {args.selectors}"),
        ("plan summary", str(planned.plan.summary())),
        ("API calls", f"{transport.calls}"),
        ("budget: ceil(N/500) + selectors", f"{budget}"),
        ("refresh + plan wall time (s)", f"{elapsed:.2f}"),
        ("  of which the simulator answering (s)", f"{transport.seconds:.2f}"),
        ("  of which reconciler (s)", f"{elapsed - transport.seconds:.2f}"),
        ("simulator setup (s, not counted)", f"{setup:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
