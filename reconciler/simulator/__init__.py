"""A simulated Huawei Cloud Workspace project, for tests, benchmarks and the quickstart.

No I/O on import. ``load_fleet`` reads a fleet file; ``Simulator`` serves it as a WSGI app
(in-process through ``sim.transport()``, or over a socket with ``reconciler simulator serve``).

Modules: ``spec`` (fleet values), ``loader`` (fleet files), ``fleet`` (desktops and indexes),
``jobs`` (rebuild jobs over time), ``state`` (the whole mutable cloud), ``security`` (AK/SK,
tokens), ``limits`` (rate limit, faults), ``validation`` (API input), ``render`` (JSON shapes),
``app`` / ``admin`` (WSGI routes), ``core`` (``Simulator``), ``server`` (threaded HTTP server),
``cli`` (the ``simulator serve`` command).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.simulator.core import Simulator, SimulatorTransport
    from reconciler.simulator.loader import FleetError, fleet_schema, load_fleet, load_fleet_data
    from reconciler.simulator.spec import Behaviour, FleetSpec

# Names are imported on first use: checking a fleet file offline (validate) needs the loader,
# not the WSGI app and httpx.
_HOMES = {
    "Simulator": "core",
    "SimulatorTransport": "core",
    "FleetError": "loader",
    "fleet_schema": "loader",
    "load_fleet": "loader",
    "load_fleet_data": "loader",
    "Behaviour": "spec",
    "FleetSpec": "spec",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'reconciler.simulator' has no attribute {name!r}")
    return getattr(importlib.import_module(f"reconciler.simulator.{home}"), name)

__all__ = [
    "Behaviour",
    "FleetError",
    "FleetSpec",
    "Simulator",
    "SimulatorTransport",
    "fleet_schema",
    "load_fleet",
    "load_fleet_data",
]
