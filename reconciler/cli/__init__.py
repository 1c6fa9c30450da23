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
    "state": "reconciler.cli.state_cmds:state",
    "jobs": "reconciler.cli.state_cmds:jobs",
    "force-unlock": "reconciler.cli.state_cmds:force_unlock",
    "simulator": "reconciler.simulator.cli:simulator",
}


@click.group(cls=ReconcilerGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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

