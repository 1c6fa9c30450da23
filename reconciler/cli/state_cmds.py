"""``state``, ``jobs`` and ``force-unlock``: looking at and repairing the recorded state."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any

import click

from reconciler import render
from reconciler.cli.common import F, announce_lock_wait, chdir_option, err, json_option, out, out_json
from reconciler.cli.plan_cmds import load, store_for
from reconciler.cli.progress import EventPrinter
from reconciler.connect import open_client
from reconciler.session import repair_journal, snapshot, state_transaction, track_jobs
from reconciler.state import state_to_json


def manifests_option(func: F) -> F:
    """``-m PATH`` names the manifests whose Settings name the state; ``-C DIR`` works here too."""
    option = click.option("-m", "--manifests", "manifests_path", default=".", show_default=True, type=click.Path(exists=True),
                          help="The manifest directory whose Settings name the state.")
    return chdir_option(option(func))


def manifests_argument(func: F) -> F:
    """For commands with no other argument: the manifests as ``PATH`` (as in plan and apply) or
    ``-m PATH``."""

    @functools.wraps(func)
    def merged(*args: Any, path: str | None = None, **kwargs: Any) -> Any:
        if path is not None:
            if kwargs["manifests_path"] not in (".", path):
                raise click.UsageError("name the manifests once: PATH or -m PATH")
            kwargs["manifests_path"] = path
        return func(*args, **kwargs)

    argument = click.argument("path", required=False, type=click.Path(exists=True), metavar="[PATH]")
    return manifests_option(argument(merged))  # type: ignore[return-value]


@click.group()
def state() -> None:
    """Inspect or edit the recorded state.

    \b
    Examples:
      reconciler state list
      reconciler state show 3f1c0000-0000-0000-0000-000000000001
      reconciler state rm 3f1c0000-0000-0000-0000-000000000001
      reconciler state pull > state.json
      reconciler state push state.json
      reconciler state repair-journal
    """


@state.command("list")
@manifests_argument
@json_option()
def state_list(manifests_path: str, as_json: bool) -> None:
    """List every desktop in the state with its group, image and last job.

    \b
    Example:
      reconciler state list manifests/ --json | jq '.desktops | length'
    """
    current = snapshot(store_for(load((manifests_path,)))).state
    if as_json:
        out_json(state_to_json(current))
    else:
        out(render.state_list(current), nl=False)


@state.command("show")
@click.argument("desktop_id")
@manifests_option
def state_show(desktop_id: str, manifests_path: str) -> None:
    """Show everything recorded about one desktop.

    \b
    Example:
      reconciler state show 3f1c0000-0000-0000-0000-000000000001 -m manifests/
    """
    current = snapshot(store_for(load((manifests_path,)))).state
    if desktop_id not in current.desktops:
        raise click.UsageError(f"desktop {desktop_id} is not in the state")
    out(render.state_show(desktop_id, current), nl=False)


@state.command("rm")
@click.argument("desktop_ids", nargs=-1, required=True)
@manifests_option
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="How long to wait for a locked state.")
def state_rm(desktop_ids: tuple[str, ...], manifests_path: str, lock_timeout: float) -> None:
    """Stop tracking desktops (the desktops themselves are not touched).

    The next plan treats them as not recorded; saved plans made before become stale.

    \b
    Example:
      reconciler state rm 3f1c0000-0000-0000-0000-000000000001 -m manifests/
    """
    store = store_for(load((manifests_path,)))
    announce_lock_wait(store, lock_timeout)
    with state_transaction(store, lock_timeout=lock_timeout, operation="state rm") as session:
        missing = [i for i in desktop_ids if i not in session.snap.state.desktops]
        if missing:
            raise click.UsageError(f"not in the state: {', '.join(missing)}")
        session.record([{"type": "forget", "at": session.now().isoformat(timespec="seconds"), "desktop_ids": list(desktop_ids)}])
    out(f"Removed {len(desktop_ids)} desktops from the state.")


@state.command("pull")
@manifests_argument
def state_pull(manifests_path: str) -> None:
    """Write the state as JSON to stdout (with a leftover journal folded in).

    Together with `state push` it moves a state between backends.

    \b
    Examples:
      reconciler state pull manifests/ > state.json
      reconciler state pull -m manifests/ | jq '.serial'
    """
    snap = snapshot(store_for(load((manifests_path,))))
    if snap.journal:
        err("Note: the journal of an interrupted run is folded into this output; the stored state does not have it yet.")
    out_json(state_to_json(snap.state))


@state.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@manifests_option
@click.option("--force", is_flag=True, help="Replace the state even if FILE has another lineage, a lower serial, or other content at the same serial.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="How long to wait for a locked state.")
def state_push(file: str, manifests_path: str, force: bool, lock_timeout: float) -> None:
    """Replace the state with FILE (a state pulled from any backend), under the lock.

    Refused without --force when FILE does not descend from the state there: another lineage,
    a lower serial, or different content at the same serial.

    \b
    Example (move a local state into the backend the manifests now name):
      reconciler state pull old-manifests/ > state.json
      reconciler state push state.json -m manifests/
    """
    from reconciler.state import StateError, state_from_json
    from reconciler.state.transfer import push_state

    try:
        with open(file, "rb") as handle:
            pushed = state_from_json(json.load(handle), file)
    except (OSError, ValueError) as exc:
        raise StateError(f"{file}: cannot read a state from it: {exc}") from None
    store = store_for(load((manifests_path,)))
    announce_lock_wait(store, lock_timeout)
    written = push_state(store, pushed, force=force, source=file, lock_timeout=lock_timeout)
    out(f"Pushed {file}: {len(written.desktops)} desktops, {len(written.jobs)} jobs, lineage {written.lineage}, serial {written.serial}.")


@state.command("repair-journal")
@manifests_argument
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="How long to wait for a locked state.")
def state_repair_journal(manifests_path: str, lock_timeout: float) -> None:
    """Fold a damaged journal's readable records into the state; set its bad lines aside.

    For a journal every command refuses ("unreadable journal record"). Nothing is deleted: the
    original journal is copied beside it (.orig) and its unreadable lines are written to a
    .rejected file. Desktops whose records were on those lines are looked up in the live API by
    the next plan or apply before anything is sent again, so no job id is lost.

    \b
    Example:
      reconciler state repair-journal -m manifests/
    """
    repair = repair_journal(store_for(load((manifests_path,))), lock_timeout=lock_timeout)
    salvage = repair.salvage
    written = f" (state serial {repair.state.serial})" if repair.state else ""
    out(f"Folded {salvage.kept - len(repair.unfoldable)} journal records into the state{written}.")
    if salvage.set_aside:
        lines = ", ".join(map(str, salvage.set_aside))
        out(f"Set aside {len(salvage.set_aside)} unreadable lines (line {lines}) in {salvage.aside}; the original journal is kept as {salvage.backup}.")
    if repair.unfoldable:
        out(f"Skipped {len(repair.unfoldable)} malformed records (records {', '.join(map(str, repair.unfoldable))}); the journal's copy keeps them.")
    if salvage.set_aside or repair.unfoldable:
        out("Run `reconciler plan` next: it looks up the desktops those records were about in the live API.")


@click.command()
@manifests_argument
@click.option("--refresh", is_flag=True, help="Update unfinished jobs from the API and record them.")
@click.option("--wait", is_flag=True, help="Poll until every tracked job has finished (implies --refresh).")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help="How long to wait for a locked state.")
@json_option()
def jobs(manifests_path: str, refresh: bool, wait: bool, lock_timeout: float, as_json: bool) -> None:
    """List the rebuild jobs reconciler submitted, with per-status counts.

    \b
    Examples:
      reconciler jobs
      reconciler jobs --refresh
      reconciler jobs manifests/ --wait
    """
    manifests = load((manifests_path,))
    store = store_for(manifests)
    if refresh or wait:
        printer = EventPrinter(as_json=False, interactive=sys.stderr.isatty())
        announce_lock_wait(store, lock_timeout)
        with state_transaction(store, lock_timeout=lock_timeout, operation="jobs") as session:
            with open_client(manifests.settings, os.environ) as client:
                track_jobs(session, client, wait=wait, poll_interval=manifests.settings.api.poll_interval_seconds, emit=printer)
    current = snapshot(store).state
    if as_json:
        out_json({"format_version": 1, "jobs": state_to_json(current)["jobs"]})
    else:
        out(render.jobs_text(current), nl=False)
    if any(j.status == "FAILED" for j in current.jobs.values()):
        err("Some rebuilds FAILED; the next plan proposes retry_failed for them.")


@click.command("force-unlock")
@click.argument("lock_id")
@manifests_option
def force_unlock(lock_id: str, manifests_path: str) -> None:
    """Release a state lock held by a run that is gone.

    Only do this when you are sure the holder (see the lock message) no longer runs: two
    concurrent applies could rebuild desktops twice.

    \b
    Example:
      reconciler force-unlock 5a0c2f0e-8d0c-4d55-9d2b-0f3b0c1d2e3f
    """
    store_for(load((manifests_path,))).force_unlock(lock_id)
    out(f"Released lock {lock_id}.")
