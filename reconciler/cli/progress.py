"""Apply progress on the terminal: JSON lines for machines, a progress line on a terminal,
plain lines when piped. Terminal I/O only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from reconciler import render
from reconciler.apply.events import JSON_EVENTS  # the events `apply --json` streams; others are text only
from reconciler.cli.common import err, style
from reconciler.plan import Plan, plan_to_json
from reconciler.render.common import plural

if TYPE_CHECKING:
    from reconciler.cloud.client import WorkspaceClient



@contextmanager
def refresh_progress(client: WorkspaceClient, enabled: bool | None = None) -> Iterator[None]:
    """Pages read and desktops seen while the live fleet is read, on one line of a terminal that
    is erased when the reading is done; nothing when stderr is piped (CI logs stay clean)."""
    if not (sys.stderr.isatty() if enabled is None else enabled):
        yield
        return
    pages = seen = width = 0

    def on_page(count: int) -> None:
        nonlocal pages, seen, width
        pages, seen = pages + 1, seen + count
        line = f"  reading the fleet: {plural(pages, 'page')}, {plural(seen, 'desktop')} seen"
        width = len(line)
        err(f"\r{line}", nl=False)

    client.on_desktop_page = on_page
    try:
        yield
    finally:
        client.on_desktop_page = None
        if pages:
            err("\r" + " " * width + "\r", nl=False)  # blank the line: the plan follows on a clean one


class EventPrinter:
    """Callable event sink for the applier (thread-safe by the applier's own lock)."""

    def __init__(self, *, as_json: bool, interactive: bool, full: bool = False) -> None:
        self.as_json = as_json
        self.full = full
        self.interactive = interactive
        self._bar_shown = False
        self._last_progress: tuple[int, int] | None = None
        self.submitted = (0, 0)  # (jobs, desktops) submitted so far, for an interrupted run's message

    def plan(self, plan: Plan) -> None:
        if self.as_json:
            document = plan_to_json(plan)
            self({"event": "plan", "at": datetime.now(UTC).isoformat(timespec="seconds"), "created_at": plan.created_at, "summary": document["summary"], "state": document["state"],
                  "changes": document["changes"]})
        else:
            click.echo(render.plan_text(plan, style, full=self.full), nl=False)

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "batch_submitted":
            jobs, desktops = self.submitted
            self.submitted = (jobs + 1, desktops + len(event.get("desktop_ids", ())))
        if self.as_json:
            if event["event"] in JSON_EVENTS:
                click.echo(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
            return
        if event["event"] == "wait_progress":
            self._progress(event["finished"], event["total"])
            return
        line = describe(event)
        if line:
            self._clear_bar()
            err(line)

    def finish(self) -> None:
        """End the progress bar's line, so what follows starts on a line of its own."""
        self._clear_bar()

    def _progress(self, finished: int, total: int) -> None:
        if (finished, total) == self._last_progress or not total:  # nothing to wait for: say nothing
            return
        self._last_progress = (finished, total)
        if self.interactive:
            width = 30
            filled = int(width * finished / total) if total else width
            err(f"\r  [{'#' * filled}{'.' * (width - filled)}] {finished}/{plural(total, 'rebuild')} finished", nl=False)
            self._bar_shown = True
        else:
            err(f"waiting: {finished}/{plural(total, 'rebuild')} finished")

    def _clear_bar(self) -> None:
        if self._bar_shown:
            err("")
            self._bar_shown = False


def describe(event: dict[str, Any]) -> str | None:
    kind = event["event"]
    group = event.get("group", "")
    count = len(event.get("desktop_ids", ()))
    desktops = plural(count, "desktop")
    if kind == "wave_started":
        return f"{group}: {event['wave']} wave, {plural(event['desktops'], 'desktop')}"
    if kind == "batch_submitted":
        return f"{group}: rebuild of {desktops} submitted (job {event['job_id']})"
    if kind == "batch_failed":
        return style(f"{group}: rebuild of {desktops} failed: {event['error']}", fg="red")
    if kind == "batch_unknown":
        return style(f"{group}: no answer for {desktops} ({event['error']}); checking the live API before re-sending", fg="yellow")
    if kind == "desktops_busy":
        verb = "is" if count == 1 else "are"
        return style(f"{group}: {desktops} {verb} busy and left for a later run: {', '.join(event['desktop_ids'][:10])}", fg="yellow")
    if kind == "job_finished":
        colour = "green" if event["status"] == "SUCCESS" else "red"
        return style(f"job {event['job_id']}: {event['status']} ({event['succeeded']} succeeded, {event['failed']} failed)", fg=colour)
    if kind == "group_halted":
        return style(f"{group}: HALTED: {event['reason']}", fg="red", bold=True)
    if kind in ("group_deferred", "desktops_deferred"):
        return style(f"{group}: {desktops} deferred to a later run ({event['reason']})", fg="yellow")
    if kind == "poll_failed":
        return style(f"could not read the jobs' status ({event['error']}); trying again", fg="yellow")
    if kind in ("adopted", "forgotten"):
        return f"{kind} {plural(event['desktops'], 'desktop')} in the state"
    return None
