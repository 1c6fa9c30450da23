"""Command-line interface: parse arguments, call the library, render, map errors to exit codes."""

from __future__ import annotations

import os

import click

from reconciler.cli.apply_cmd import apply
from reconciler.cli.common import ReconcilerGroup, configure_logging
from reconciler.cli.plan_cmds import plan, show, validate
from reconciler.cli.state_cmds import force_unlock, jobs, state
from reconciler.simulator.cli import simulator


@click.group(cls=ReconcilerGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


for command in (validate, plan, apply, show, state, jobs, force_unlock, simulator):
    main.add_command(command)
