"""Plan at fleet scale: 100,000 desktops in 1,000 groups listed by id, a state recording all of
them (a few thousand needing a rebuild), `reconciler plan --no-refresh` timed against the floor
(parsing the same manifests and state in one process).

    python bench/plan_scale.py [--desktops 100000] [--groups 1000] [--stale 3000] [--repeat 3] [--busy]

Floor and plan runs take turns, free and pinned to one core (taskset -c 0); each is reported as
min / median of wall and CPU time (user + system, the worker process included). CPU time is
what the budget is about: on a shared machine wall time also counts waiting for a core.

Budget (issue 15): plan CPU time <= 1.5x the floor's, peak memory <= 400 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from measure import Series, interleaved, machine, pinned, spinning, table

FLOOR_SCRIPT = """
import json, sys, pathlib, yaml
loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
root = pathlib.Path(sys.argv[1])
for path in sorted(root.rglob("*.yaml")):
    list(yaml.load_all(path.read_bytes(), Loader=loader))
json.loads((root / ".reconciler" / "state.json").read_bytes())
"""


def desktop_id(index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{index}"))


def write_fleet(root: Path, desktops: int, groups: int, stale: int) -> None:
    (root / "settings.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Settings\nspec:\n  project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\n  region: cn-north-4\n"
    )
    per_group = desktops // groups
    records = {}
    for g in range(groups):
        ids = [desktop_id(g * per_group + i) for i in range(per_group)]
        lines = "".join(f"      - {i}\n" for i in ids)
        (root / f"group-{g:04d}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: DesktopGroup\nmetadata:\n  name: group-{g:04d}\nspec:\n"
            f"  desktops:\n    ids:\n{lines}  image:\n    id: img-new-{g % 7}\n    type: private\n"
        )
        for n, i in enumerate(ids):
            old = (g * per_group + n) % (desktops // stale) == 0 if stale else False
            records[i] = {"group": f"group-{g:04d}", "image_id": "img-old" if old else f"img-new-{g % 7}",
                          "name": f"pc-{g:04d}-{n:03d}", "updated_at": "2026-11-01T00:00:00+00:00"}
    state = {"format_version": 1, "lineage": str(uuid.uuid4()), "serial": 7, "desktops": records, "jobs": {}}
    (root / ".reconciler").mkdir()
    (root / ".reconciler" / "state.json").write_text(json.dumps(state, indent=1))


def ratios(floor: Series, plan: Series, field: str) -> str:
    (floor_min, floor_median), (plan_min, plan_median) = floor.stat(field), plan.stat(field)
    return (f"floor {floor_min:.2f} / {floor_median:.2f}, plan {plan_min:.2f} / {plan_median:.2f}, "
            f"ratio {plan_min / floor_min:.2f} / {plan_median / floor_median:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--desktops", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--stale", type=int, default=3_000, help="desktops whose recorded image is not the desired one")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="keep one core busy with a spinning process meanwhile")
    parser.add_argument("--write-fleet", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_fleet:
        write_fleet(Path(args.write_fleet), args.desktops, args.groups, args.stale)
        return
    with tempfile.TemporaryDirectory() as tmp, spinning(args.busy):
        root = Path(tmp) / "fleet"
        root.mkdir()
        # Written by a child: a child's peak memory counts what its parent held when it started.
        sizes = ["--desktops", str(args.desktops), "--groups", str(args.groups), "--stale", str(args.stale)]
        subprocess.run([sys.executable, __file__, "--write-fleet", str(root), *sizes], check=True)
        floor = [sys.executable, "-c", FLOOR_SCRIPT, str(root)]
        plan = [sys.executable, "-m", "reconciler", "plan", "--no-refresh", str(root)]
        results = interleaved({"floor": floor, "plan": plan, "floor pinned": pinned(floor), "plan pinned": pinned(plan)},
                              args.repeat)
        summary = results["plan"].runs[0].stdout.decode().strip().splitlines()
        line = next((s for s in summary if s.startswith("Plan:")), summary[-1] if summary else "")
    peak = max(r.peak_mb for r in results["plan"].runs)
    table([
        ("machine", machine() + (", one core kept busy" if args.busy else "")),
        ("desktops / groups", f"{args.desktops:,} / {args.groups:,}"),
        ("plan summary", line),
        (f"CPU s, min / median of {args.repeat} (budget: ratio <= 1.5)", ratios(results["floor"], results["plan"], "cpu")),
        ("wall s, min / median", ratios(results["floor"], results["plan"], "wall")),
        ("pinned to one core: CPU s", ratios(results["floor pinned"], results["plan pinned"], "cpu")),
        ("pinned to one core: wall s", ratios(results["floor pinned"], results["plan pinned"], "wall")),
        ("plan peak memory (MB, budget <= 400)", f"{peak:.0f}"),
        ("floor peak memory (MB)", f"{max(r.peak_mb for r in results['floor'].runs):.0f}"),
    ])


if __name__ == "__main__":
    main()
