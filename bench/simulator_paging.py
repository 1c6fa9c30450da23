"""Benchmark: page through 100,000 simulated desktops in-process, signed with AK/SK.

Run: ``python bench/simulator_paging.py [--desktops N] [--limit 500]``. Prints one table row per
scenario (pages, desktops, seconds, desktops/s). Not a test: it only reports figures.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from reconciler.cloud.auth import AkSkAuth
from reconciler.simulator import Simulator, load_fleet_data

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "AKBENCH0001", "sk-bench-0001"
DEPARTMENTS = ("finance", "hr", "lab", "sales")


@dataclass(frozen=True)
class Row:
    scenario: str
    pages: int
    desktops: int
    seconds: float


def build(count: int) -> tuple[Simulator, float]:
    """A fleet of `count` desktops: four departments (tags), each split over two pools."""
    share = count // (2 * len(DEPARTMENTS))
    generate = [
        {"count": share, "name_prefix": f"{dept[:3]}{pool}-", "image_id": "img-1", "tags": {"dept": dept},
         "pool_id": f"pool-{pool}"}
        for dept in DEPARTMENTS
        for pool in (0, 1)
    ]
    started = time.perf_counter()
    fleet = load_fleet_data({
        "project_id": PROJECT,
        "credentials": [{"ak": AK, "sk": SK}],
        "images": [{"id": "img-1", "type": "private"}],
        "generate": generate,
    }, source="bench")
    sim = Simulator(fleet)
    return sim, time.perf_counter() - started


def page_all(client: httpx.Client, params: dict[str, str], limit: int) -> tuple[int, int]:
    pages = seen = offset = 0
    while True:
        response = client.get(f"/v2/{PROJECT}/desktops/detail", params={**params, "offset": offset, "limit": limit})
        response.raise_for_status()
        body = response.json()
        pages += 1
        seen += len(body["desktops"])
        offset += limit
        if offset >= body["total_count"]:
            return pages, seen


def timed(name: str, run: Callable[[], tuple[int, int]]) -> Row:
    started = time.perf_counter()
    pages, seen = run()
    return Row(name, pages, seen, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--desktops", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args()

    sim, build_seconds = build(args.desktops)
    print(f"built a fleet of {args.desktops} desktops in {build_seconds:.2f} s")
    auth = AkSkAuth(AK, SK, project_id=PROJECT)
    with httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1", auth=auth) as client:
        rows = [
            timed("all desktops", lambda: page_all(client, {}, args.limit)),
            timed("tag dept=finance", lambda: page_all(client, {"tag": "dept=finance"}, args.limit)),
            timed("tag + pool_id", lambda: page_all(client, {"tag": "dept=hr", "pool_id": "pool-1"}, args.limit)),
        ]
    print(f"{'scenario':<20} {'pages':>6} {'desktops':>9} {'seconds':>8} {'desktops/s':>11}")
    for row in rows:
        rate = row.desktops / row.seconds if row.seconds else float("inf")
        print(f"{row.scenario:<20} {row.pages:>6} {row.desktops:>9} {row.seconds:>8.2f} {rate:>11.0f}")


if __name__ == "__main__":
    main()
