"""The merge job's report, in Markdown: what was applied, which groups wait for their
maintenance window (not applied yet), or why nothing was applied.

    python .github/reconciler/outcome.py merged.json "$APPLY_OUTCOME" apply.txt compare.txt > outcome.md

APPLY_OUTCOME is the apply step's outcome: success, failure, or skipped (the comparison with the
reviewed plan failed first). Missing text files are read as empty.
"""

import json
import sys
from collections import Counter
from pathlib import Path

ROLL_OUT_LATER = ("Nothing was rebuilt there yet: `reconciler watch` (the controller) or the nightly "
                  "`reconciler drift` job (with `correct`) rolls them out when the window opens.")


def text(path: str) -> str:
    file = Path(path)
    return file.read_text(encoding="utf-8") if file.is_file() else ""


def fenced(body: str, lines: int = 25) -> list[str]:
    tail = "\n".join([line for line in body.splitlines() if line.strip()][-lines:])
    return ["```", tail[-6000:], "```"]


def waiting(plan: dict) -> dict[str, tuple[int, str]]:
    """Groups whose rebuilds wait for their maintenance window: desktops and the window."""
    found: dict[str, tuple[int, str]] = {}
    for change in plan["changes"]:
        if change["action"] == "wait" and change["reason"] == "outside_window":
            count, _ = found.get(change["group"], (0, ""))
            found[change["group"]] = (count + 1, change.get("detail") or "")
    return found


def applied_lines(plan: dict) -> list[str]:
    rebuilt = Counter(c["group"] for c in plan["changes"] if c["action"] == "rebuild")
    adopted = sum(c["action"] == "adopt" for c in plan["changes"])
    later = waiting(plan)
    signed = plan.get("signature", {}).get("key_id")
    head = ":white_check_mark: Applied the plan of the merged commit"
    head += f" (signed, key `{signed}`)" if signed else ""
    lines = [head + ", which does what the reviewed plan showed.", ""]
    if rebuilt:
        lines.append("Rebuilds submitted: " + ", ".join(f"`{g}` ({n})" for g, n in sorted(rebuilt.items())) + ".")
    elif not later:
        lines.append("Nothing to rebuild.")
    if adopted:
        lines.append(f"{adopted} desktops adopted (they already run their group's image).")
    if later:
        lines += ["", ":hourglass: **Not applied yet: waiting for the maintenance window**", ""]
        lines += [f"- `{group}`: {n} desktops, {detail}" for group, (n, detail) in sorted(later.items())]
        lines += ["", ROLL_OUT_LATER]
    return lines


def report(plan_path: str, outcome: str, apply_log: str, comparison: str) -> str:
    lines = ["### reconciler apply", ""]
    if outcome == "success":
        lines += applied_lines(json.loads(Path(plan_path).read_text(encoding="utf-8")))
    elif outcome == "skipped":
        lines += [":no_entry: Not applied: the plan of the merged commit does not do what the reviewed plan "
                  "showed (the job summary has both plans). Re-plan and review again.", "", *fenced(comparison)]
    elif "the plan is stale" in apply_log:
        lines += [":warning: Not applied: the state changed between planning and applying (another run). "
                  "The nightly drift check shows what is left to do (or run it by hand).", "", *fenced(apply_log)]
    else:
        lines += [":x: The apply failed.", "", *fenced(apply_log)]
    if outcome != "skipped" and "Joined a selector" in comparison:
        joined = comparison[comparison.index("Joined a selector"):]
        lines += ["", "Desktops that joined a selector since the review, and were planned with it:", "", *fenced(joined, 60)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    plan_file, apply_outcome, log, compared = sys.argv[1:5]
    sys.stdout.write(report(plan_file, apply_outcome, text(log), text(compared)))
