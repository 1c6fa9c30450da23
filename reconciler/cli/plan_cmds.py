"""``validate``, ``plan`` and ``show``: the read-only commands."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler import render
from reconciler.cli.common import (
    EXIT_CHANGES,
    F,
    chdir_option,
    err,
    full_option,
    json_option,
    manifest_paths,
    out,
    out_json,
    style,
    target_options,
)
from reconciler.errors import ReconcilerError
from reconciler.manifest import ManifestError, load_manifests
from reconciler.manifest_check import recorded_sources, root_as_named
from reconciler.model import ManifestSet, Note
from reconciler.plan import PLAN_KIND, Plan, check_writable, plan_to_json, read_plan_document, write_plan
from reconciler.plan_signing import PlanSignatureError, plan_key, signed_by, verify
from reconciler.planner import PlanOptions
from reconciler.state import StateStore, open_store, state_to_json

if TYPE_CHECKING:
    from reconciler.session import Planned, Snapshot

DIAGNOSTICS_FORMAT_VERSION = 1


def tell_notes(notes: Iterable[Note]) -> None:
    """Files the reader skipped (not manifests, FIFOs), on stderr: worth knowing, not errors."""
    for note in notes:
        err(style("Note: ", fg="cyan", bold=True) + str(note))


def load(paths: tuple[str, ...]) -> ManifestSet:
    try:
        manifests = load_manifests(list(paths) or ["."])
    except ManifestError as exc:
        tell_notes(exc.notes)
        raise
    tell_notes(manifests.notes)
    return manifests


def store_for(manifests: ManifestSet) -> StateStore:
    return open_store(manifests.settings)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Reading a large fleet allocates millions of objects, none of them in reference cycles:
    the cyclic garbage collector would run hundreds of times for nothing (about 8% of a plan of
    100,000 desktops). Afterwards what was read is frozen (never walked again) and the collector
    runs on: an HTTP response is a reference cycle (httpx's response and its stream), and with
    the collector off a refresh of 100,000 desktops kept all 200 pages, 143 MB."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def load_with_state(paths: tuple[str, ...]) -> tuple[ManifestSet, Snapshot]:
    """The manifests and the state they name (problems in the manifests are reported first)."""
    from reconciler.session import snapshot

    manifests = load(paths)
    return manifests, snapshot(store_for(manifests))


def make_plan(manifests: ManifestSet, snap: Snapshot, refresh: bool, options: PlanOptions) -> Planned:
    # Imported here: the applier is not needed by validate or show, the HTTP client only to refresh.
    from reconciler.session import build_plan

    if not refresh:
        check_fleet(manifests)  # offline, as validate: a fleet that would not load is still an error
        return build_plan(manifests, snap, None, options, options.now)
    from reconciler.cli.progress import refresh_progress
    from reconciler.connect import open_client

    with open_client(manifests.settings, os.environ) as client, refresh_progress(client):
        return build_plan(manifests, snap, client, options, options.now)


@click.command()
@manifest_paths
@json_option("Write diagnostics as JSON (for editors and CI annotations).")
def validate(paths: tuple[str, ...], as_json: bool) -> None:
    """Check manifests offline: YAML, schema and cross-document rules.

    Needs no network and no credentials, so it suits a pre-commit hook. YAML files that are
    not manifests (a simulator fleet, a CI workflow) are skipped with a note on stderr; the
    embedded simulator's fleet file, when the Settings name one, is checked too.

    \b
    Example:
      reconciler validate manifests/
    """
    if as_json:
        _validate_json(paths)
        return
    manifests = load(paths)
    check_fleet(manifests)
    ids = sum(len(g.ids) for g in manifests.groups)
    out(f"The manifests are valid: {len(manifests.groups)} groups, {ids} desktops listed by id, {len(manifests.files)} files.")


def check_fleet(manifests: ManifestSet) -> None:
    """The embedded simulator's fleet file parses and validates (``FleetError`` if not)."""
    settings = manifests.settings
    if settings.simulator_fleet is not None:
        from reconciler.simulator import load_fleet

        load_fleet(settings.resolve(settings.simulator_fleet))


def _notices(notes: Iterable[Note]) -> list[dict[str, Any]]:
    return [{"severity": "notice", "file": n.file, "line": 0, "column": 0, "field": "", "message": n.message} for n in notes]


def _validate_json(paths: tuple[str, ...]) -> None:
    """validate --json: problems as ``error`` diagnostics, skipped files as ``notice`` ones."""
    try:
        manifests = load_manifests(list(paths) or ["."])
    except ManifestError as exc:
        out_json({"format_version": DIAGNOSTICS_FORMAT_VERSION, "valid": False, "diagnostics": [
            {"severity": "error", "file": p.file, "line": p.line, "column": p.column, "field": p.field, "message": p.message}
            for p in exc.problems] + _notices(exc.notes)})
        raise SystemExit(1) from None
    try:
        check_fleet(manifests)
    except ReconcilerError as exc:
        file = manifests.settings.resolve(manifests.settings.simulator_fleet or "")
        out_json({"format_version": DIAGNOSTICS_FORMAT_VERSION, "valid": False, "diagnostics": [
            {"severity": "error", "file": str(file), "line": 0, "column": 0, "field": "", "message": str(exc)}
        ] + _notices(manifests.notes)})
        raise SystemExit(1) from None
    ids = sum(len(g.ids) for g in manifests.groups)
    out_json({"format_version": DIAGNOSTICS_FORMAT_VERSION, "valid": True, "diagnostics": _notices(manifests.notes),
              "files": list(manifests.files), "groups": len(manifests.groups), "desktop_ids": ids})


def plan_options(targets: tuple[str, ...], excludes: tuple[str, ...], ignore_window: bool,
                 replace: tuple[str, ...] = ()) -> PlanOptions:
    if ignore_window:
        err(style("Warning: ", fg="yellow", bold=True) + "--ignore-window: maintenance windows are ignored")
    return PlanOptions(targets=targets, excludes=excludes, ignore_window=ignore_window, replace=replace, now=datetime.now(UTC))


def replace_option(func: F) -> F:
    return click.option("--replace", "replacements", multiple=True, metavar="ID|GROUP",
                        help="Rebuild this desktop, or every desktop of this group, even if it runs the desired image (repeatable).")(func)


@click.command()
@manifest_paths
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False), help="Save the plan to FILE for `reconciler apply FILE` (signed with RECONCILER_PLAN_KEY when it is set).")
@click.option("--refresh/--no-refresh", default=True, show_default=True, help="Read the live fleet (desktops, jobs) before planning.")
@target_options
@replace_option
@click.option("--ignore-window", is_flag=True, help="Plan rebuilds even for groups outside their maintenance window.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there are no changes, 2 when there are (deferred rebuilds count), 1 on error.")
@full_option
@json_option("Write the plan document (the same JSON as -o) to stdout.")
def plan(paths: tuple[str, ...], out_file: str | None, refresh: bool, targets: tuple[str, ...], excludes: tuple[str, ...],
         replacements: tuple[str, ...], ignore_window: bool, detailed_exitcode: bool, full: bool, as_json: bool) -> None:
    """Show which desktops need a rebuild, and why. Changes nothing.

    Compares the manifests with the recorded state and (by default) the live fleet. A plan
    saved with -o is applied exactly as reviewed by `reconciler apply FILE`.

    \b
    Examples:
      reconciler plan manifests/
      reconciler plan manifests/ -o plan.json --detailed-exitcode
      reconciler plan manifests/ --replace finance-win11   # re-image a whole group
    """
    key = plan_key(os.environ)  # a bad key is refused before any work
    if out_file:
        check_writable(out_file)
    with collector_paused():
        manifests, snap = load_with_state(paths)
    planned = make_plan(manifests, snap, refresh, plan_options(targets, excludes, ignore_window, replacements))
    base_dir = manifests.settings.base_dir
    made = replace(planned.plan, manifest_root=root_as_named(base_dir), manifest_sources=recorded_sources(paths, base_dir))
    document = plan_to_json(made, key) if out_file or as_json else {}
    if out_file:
        write_plan(document, out_file)
    if as_json:
        out_json(document)
    else:
        out(render.plan_text(planned.plan, style, full=full), nl=False)
        if out_file:
            signed = f", signed with key {key.key_id}" if key else ""
            out(f"Saved the plan to {out_file}{signed}. Apply exactly this plan with: reconciler apply {out_file}")
    if detailed_exitcode and planned.plan.has_changes:
        raise SystemExit(EXIT_CHANGES)


def is_plan_file(path: str) -> bool:
    """A JSON file whose ``kind`` says it is a saved plan (checked without trusting it)."""
    candidate = Path(path)
    if not candidate.is_file() or candidate.suffix in (".yaml", ".yml"):
        return False
    try:
        with candidate.open("rb") as handle:
            head = handle.read(4096)
        return head.lstrip().startswith(b"{") and PLAN_KIND.encode() in head
    except OSError:
        return False


def signature_report(document: dict[str, Any]) -> dict[str, Any]:
    """``signed`` and ``key_id`` as the plan says, and ``verified`` against RECONCILER_PLAN_KEY
    (None when the key is not set)."""
    signer = signed_by(document)
    key = plan_key(os.environ)
    verified: bool | None = None
    if key is not None:
        try:
            verify(key, document, "plan")
            verified = True
        except PlanSignatureError:
            verified = False
    return {"signed": signer is not None, "key_id": signer, "verified": verified}


def _show_plan(path: str, as_json: bool, markdown: bool, full: bool) -> None:
    saved, document = read_plan_document(path)
    if as_json:
        out_json({**document, **signature_report(document)})
    elif markdown:
        out(render.plan_markdown(saved), nl=False)
    else:
        out(render.plan_text(saved, style, full=full), nl=False)


@click.command()
@click.argument("target", required=False, type=click.Path(exists=True), metavar="[PLANFILE | PATH]")
@chdir_option
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON. For a plan: the plan file, plus `signed`, `key_id` and `verified` (against RECONCILER_PLAN_KEY; null without it).")
@click.option("--markdown", is_flag=True, help="Print Markdown for a pull-request comment (plans only).")
@full_option
def show(target: str | None, as_json: bool, markdown: bool, full: bool) -> None:
    """Render a saved PLANFILE, or the current state of the manifests at PATH (default: .).

    \b
    Examples:
      reconciler show plan.json --markdown > plan.md
      reconciler show            # the state of the manifests in the current directory
    """
    if as_json and markdown:
        raise click.UsageError("choose one of --json and --markdown")
    if target and is_plan_file(target):
        _show_plan(target, as_json, markdown, full)
        return
    if markdown:
        raise click.UsageError("--markdown renders plans; give a PLANFILE")
    from reconciler.session import snapshot

    manifests = load((target,) if target else ())
    state = snapshot(store_for(manifests)).state
    if as_json:
        out_json(state_to_json(state))
    else:
        out(render.state_list(state), nl=False)


def plan_event(saved: Plan) -> dict[str, Any]:
    document = plan_to_json(saved)
    return {"event": "plan", "summary": document["summary"], "changes": document["changes"], "state": document["state"]}


def dumps_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
