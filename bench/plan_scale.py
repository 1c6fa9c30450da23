"""Plan at fleet scale: 100,000 desktops in 1,000 groups listed by id, a state recording all of
them (a few thousand needing a rebuild), `reconciler plan --no-refresh` timed against the floor
(parsing the same manifests and state in one process).

    python bench/plan_scale.py [--desktops 100000] [--groups 1000] [--stale 3000] [--repeat 3]

Budget (issue 6): ratio to the floor <= 1.5, peak memory <= 400 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

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


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True)
    return time.perf_counter() - started, result


def best(command: list[str], repeat: int) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    return min((timed(command) for _ in range(repeat)), key=lambda r: r[0])


def peak_rss(command: list[str]) -> float:
    """Peak resident memory (MB) of ``command``, measured by a wrapper process."""
    wrapper = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--desktops", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--stale", type=int, default=3_000, help="desktops whose recorded image is not the desired one")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reconciler = [sys.executable, "-m", "reconciler"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleet"
        root.mkdir()
        write_fleet(root, args.desktops, args.groups, args.stale)
        floor_command = [sys.executable, "-c", FLOOR_SCRIPT, str(root)]
        plan_command = [*reconciler, "plan", "--no-refresh", str(root)]
        floor_s, _ = best(floor_command, args.repeat)
        plan_s, result = best(plan_command, args.repeat)
        if result.returncode != 0:
            raise SystemExit(result.stderr.decode())
        peak, floor_mb = peak_rss(plan_command), peak_rss(floor_command)
        summary = result.stdout.decode().strip().splitlines()
        line = next((s for s in summary if s.startswith("Plan:")), summary[-1] if summary else "")
    rows = [
        ("desktops / groups", f"{args.desktops:,} / {args.groups:,}"),
        ("plan summary", line),
        ("floor: parse manifests + state (s)", f"{floor_s:.2f}"),
        ("reconciler plan --no-refresh (s)", f"{plan_s:.2f}"),
        ("ratio to floor (budget <= 1.5)", f"{plan_s / floor_s:.2f}"),
        ("plan peak memory (MB, budget <= 400)", f"{peak:.0f}"),
        ("floor peak memory (MB)", f"{floor_mb:.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")



if __name__ == "__main__":
    main()
