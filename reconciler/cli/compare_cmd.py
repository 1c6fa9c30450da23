"""``plan-diff``: does a plan made later carry out what a reviewed plan showed?"""

from __future__ import annotations

import click

from reconciler.cli.common import EXIT_CHANGES, out, out_json
from reconciler.plan import read_plan
from reconciler.plan_compare import compare, comparison_json, comparison_text


@click.command("plan-diff")
@click.argument("reviewed", type=click.Path(exists=True, dir_okay=False), metavar="REVIEWED")
@click.argument("candidate", type=click.Path(exists=True, dir_okay=False), metavar="PLANFILE")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def plan_diff(reviewed: str, candidate: str, as_json: bool) -> None:
    """Compare PLANFILE with the REVIEWED plan it should carry out.

    They agree when they act for the same groups (images, selectors, rollouts), with the same
    settings and options, and mean the same for every desktop: a rebuild to the same image (now,
    or deferred by a window), an adoption or a forget. Desktops that joined a group's selector
    since the review are listed and do not count as a difference. Exit 0 when they agree, 2 when
    they differ (each difference is listed), 1 on error.

    \b
    Example (a merge job: re-plan from the merged commit, compare with the reviewed plan):
      reconciler plan manifests -o merged.json
      reconciler plan-diff reviewed/plan.json merged.json && reconciler apply merged.json
    """
    result = compare(read_plan(reviewed), read_plan(candidate))
    if as_json:
        out_json(comparison_json(result))
    else:
        out(comparison_text(result), nl=False)
    if not result.same:
        raise SystemExit(EXIT_CHANGES)
