"""Command-line interface: parse arguments, call the library, render, map errors to exit codes."""

from __future__ import annotations

import click

from reconciler.simulator.cli import simulator


@click.group()
@click.version_option(package_name="reconciler")
def main() -> None:
    """Declarative image rollouts for Huawei Cloud Workspace desktops."""


main.add_command(simulator)
