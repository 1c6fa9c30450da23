"""The ``reconciler simulator`` command group: ``serve`` a fleet file over HTTP.

Terminal and network I/O. Prints ``Simulator listening on http://HOST:PORT`` (flushed) once the
socket is bound, serves until SIGINT or SIGTERM, then exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click

from reconciler.simulator.core import Simulator
from reconciler.simulator.loader import FleetError, load_fleet
from reconciler.simulator.server import base_url, is_loopback_host, make_server


@click.group()
def simulator() -> None:
    """Run the simulated Huawei Cloud Workspace API.

    \b
    Example:
      reconciler simulator serve --fleet examples/quickstart/fleet.yaml
    """


@simulator.command()
@click.option("--fleet", "fleet_path", required=True, type=click.Path(dir_okay=False),
              help="Fleet file (YAML) declaring the project, credentials, images, desktops and behaviour.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free port (the printed URL shows which).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host (the admin API still answers loopback clients only).")
def serve(fleet_path: str, host: str, port: int, allow_remote: bool) -> None:
    """Serve the Workspace API endpoints of FLEET over HTTP until interrupted.

    Point a Settings block at it with `endpoint: http://127.0.0.1:PORT` and the fleet's AK/SK
    in HW_ACCESS_KEY / HW_SECRET_KEY. The admin API under /_simulator/ changes desktops behind
    reconciler's back (drift, busy desktops) and switches faults on and off.

    \b
    Example:
      reconciler simulator serve --fleet examples/quickstart/fleet.yaml --port 8080
      curl -s http://127.0.0.1:8080/_simulator/desktops | jq '.desktops | length'
    """
    if not allow_remote and not is_loopback_host(host):
        raise click.ClickException(f"--host {host} is not a loopback address; add --allow-remote to listen on it")
    try:
        fleet = load_fleet(fleet_path)
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{fleet_path}: cannot read the fleet file: {exc.strerror or exc}") from None
    try:
        server = make_server(Simulator(fleet).app, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must run on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    click.echo(f"Simulator listening on {base_url(server, host)}")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
