"""Command-line interface: parse arguments, call the library, render, map errors to exit codes."""

from __future__ import annotations

import os

import click

from reconciler.cli.common import ReconcilerGroup, configure_logging

COMMANDS = {
    "validate": "reconciler.cli.plan_cmds:validate",
    "plan": "reconciler.cli.plan_cmds:plan",
    "apply": "reconciler.cli.apply_cmd:apply",
    "show": "reconciler.cli.plan_cmds:show",
    "plan-diff": "reconciler.cli.compare_cmd:plan_diff",
    "state": "reconciler.cli.state_cmds:state",
    "jobs": "reconciler.cli.state_cmds:jobs",
    "force-unlock": "reconciler.cli.state_cmds:force_unlock",
    "simulator": "reconciler.simulator.cli:simulator",
    "watch": "reconciler.cli.watch_cmd:watch",
}
# What `reconciler --help` lists, so that listing imports none of the commands (the simulator
# brings jsonschema and httpx). A new command needs its line here: tests/test_startup.py checks
# each is its command's own first sentence.
SUMMARIES = {
    "validate": "Check manifests offline: YAML, schema and cross-document rules.",
    "plan": "Show which desktops need a rebuild, and why.",
    "apply": "Rebuild the desktops a plan lists, and record every job in the state.",
    "show": "Render a saved PLANFILE, or the current state of the manifests at PATH (default: .).",
    "plan-diff": "Compare PLANFILE with the REVIEWED plan it should carry out.",
    "state": "Inspect or edit the recorded state.",
    "jobs": "List the rebuild jobs reconciler submitted, with per-status counts.",
    "force-unlock": "Release a state lock held by a run that is gone.",
    "simulator": "Run the simulated Huawei Cloud Workspace API.",
    "watch": "Reconcile continuously: plan every SECONDS and apply what --apply allows.",
}


@click.group(cls=ReconcilerGroup, lazy=COMMANDS, summaries=SUMMARIES, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="reconciler")
@click.option("-C", "--chdir", type=click.Path(exists=True, file_okay=False), help="Run as if started in this directory.")
def main(chdir: str | None) -> None:
    """Declarative image rollouts for Huawei Cloud Workspace desktops.

    Manifests declare the image each desktop group must run; `plan` shows which desktops need
    their system disk rebuilt and why; `apply` rebuilds them in paced batches and records every
    job in the state. Exit codes: 0 ok, 1 error, 2 changes (plan --detailed-exitcode), 3 locked.

    \b
    Quickstart (embedded simulator, no account needed):
      reconciler apply examples/quickstart --auto-approve
    """
    configure_logging()
    if chdir:
        os.chdir(chdir)

