"""``apply``: execute a saved plan, or plan and (after confirmation) execute."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from reconciler import render
from reconciler.apply.engine import ApplyOptions, ApplyResult
from reconciler.catalogue import verify_images
from reconciler.cli.common import (
    EXIT_ERROR,
    announce_lock_wait,
    err,
    full_option,
    manifests_alias,
    out,
    style,
    target_options,
)
from reconciler.cli.notifying import NotifyingPrinter
from reconciler.cli.plan_cmds import is_plan_file, load, plan_options, replace_option, store_for
from reconciler.cli.progress import EventPrinter, refresh_progress
from reconciler.connect import open_client
from reconciler.errors import ReconcilerError
from reconciler.manifest_check import check_manifests
from reconciler.plan import Plan, manifest_root, read_plan_document, settings_for_apply
from reconciler.plan_signing import plan_key, signed_by, verify
from reconciler.render.common import plural
from reconciler.safety import refuse_mass_rebuild
from reconciler.session import StateTransaction, build_plan, refresh_only_plan, state_transaction, track_jobs, utc_now
from reconciler.state import open_store

NOT_A_TERMINAL = ("stdin is not a terminal, so apply cannot ask for confirmation: add --auto-approve to apply "
                  "what it plans, or save a plan with `reconciler plan -o plan.json` and apply that file")


def _confirm(auto_approve: bool) -> bool:
    if auto_approve:
        return True
    try:
        answer = click.prompt(
            "Do you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value",
            default="", show_default=False, err=True,
        )
    except click.Abort:
        if sys.stdin.isatty():
            raise
        err("")  # end the prompt's line
        raise ReconcilerError(NOT_A_TERMINAL) from None
    return answer.strip() == "yes"


def interrupted(printer: EventPrinter) -> ReconcilerError:
    """Ctrl-C: what was already sent keeps running in the cloud, and the state knows it."""
    jobs, desktops = printer.submitted
    if not jobs:
        return ReconcilerError("interrupted before any rebuild was submitted; nothing was changed")
    return ReconcilerError(
        f"interrupted after submitting {plural(desktops, 'rebuild')} in {plural(jobs, 'job')}: they keep running in the "
        "cloud and are recorded in the state. `reconciler jobs --wait` follows them; the next apply carries on with the rest")


def _finish_running(session: StateTransaction, client: Any, plan: Plan, printer: EventPrinter) -> None:
    """``--wait`` also waits for rebuilds still running from earlier runs (the plan's ``wait``
    entries): an explicit wait ends with nothing in progress."""
    assert plan.settings is not None
    track_jobs(session, client, wait=True, poll_interval=plan.settings.api.poll_interval_seconds, emit=printer)


def _execute(session: StateTransaction, plan: Plan, client: Any, options: ApplyOptions, printer: EventPrinter) -> ApplyResult:
    result = session.execute(plan, client, options, printer)
    if options.wait:
        _finish_running(session, client, plan, printer)
    printer({"event": "summary", **result.summary(), "ok": result.ok, "at": utc_now().isoformat(timespec="seconds")})
    printer.finish()
    if not printer.as_json:
        out(render.apply_summary(result.summary(), result.halted, result.failed), nl=False)
    return result


def _options(plan: Plan, wait: bool | None) -> ApplyOptions:
    assert plan.settings is not None
    api = plan.settings.api
    return ApplyOptions(wait=wait, poll_interval=api.poll_interval_seconds, max_concurrent_calls=api.max_concurrent_calls)


def _check_signature(document: dict[str, Any], path: str) -> None:
    """With a plan key: only a plan signed with it. Without: any plan, and a word when the plan
    is signed, because nothing checked that signature."""
    key = plan_key(os.environ)
    if key is not None:
        verify(key, document, path)
        return
    signer = signed_by(document)
    if signer is not None:
        err(style("Warning: ", fg="yellow", bold=True)
            + f"{path} is signed (key {signer}), but RECONCILER_PLAN_KEY is not set: the signature was not verified")


def _check_manifests(saved: Plan, root: Path | None, path: str, manifest_check: bool) -> None:
    if manifest_check:
        check_manifests(saved, root, path)
        return
    err(style("Warning: ", fg="yellow", bold=True) + f"--no-manifest-check: {path} is applied without comparing it with the manifests")


def _apply_saved(path: str, wait: bool | None, lock_timeout: float, printer: EventPrinter, manifest_check: bool,
                 allow_mass: bool = False) -> ApplyResult:
    # Every check that needs no state and no network comes first: a refused plan takes no lock.
    saved, document = read_plan_document(path)
    _check_signature(document, path)
    root = manifest_root(saved)
    settings = settings_for_apply(saved, path, root)
    _check_manifests(saved, root, path, manifest_check)
    refuse_mass_rebuild(saved, allow_mass)
    store = open_store(settings)
    announce_lock_wait(store, lock_timeout)
    with state_transaction(store, lock_timeout=lock_timeout) as session:
        session.check_saved(saved)
        printer.plan(saved)
        with open_client(settings, os.environ) as client:
            session.observe(client)
            verify_images(client, saved)  # the catalogue or the desktops may have changed since the plan
            return _execute(session, saved, client, _options(saved, wait), printer)


def _apply_fresh(paths: tuple[str, ...], args: dict[str, Any], printer: EventPrinter) -> ApplyResult | None:
    manifests = load(paths)
    options = plan_options(args["targets"], args["excludes"], args["ignore_window"], args["replace"])
    store = store_for(manifests)
    announce_lock_wait(store, args["lock_timeout"])
    with state_transaction(store, lock_timeout=args["lock_timeout"]) as session:
        with open_client(manifests.settings, os.environ) as client:
            with refresh_progress(client, enabled=sys.stderr.isatty() and not printer.as_json):
                if args["refresh_only"]:
                    planned = refresh_only_plan(manifests, session.snap, client, options)
                else:
                    planned = build_plan(manifests, session.snap, client, options, options.now)
            printer.plan(planned.plan)
            refuse_mass_rebuild(planned.plan, args["allow_mass_rebuild"])
            if not planned.plan.has_actions:
                session.record(planned.observed)  # jobs seen finished are still worth recording
                if args["wait"]:
                    _finish_running(session, client, planned.plan, printer)
                return None
            if not _confirm(args["auto_approve"]):
                err("Apply cancelled.")
                raise SystemExit(EXIT_ERROR)
            session.record(planned.observed)
            return _execute(session, planned.plan, client, _options(planned.plan, args["wait"]), printer)


@click.command()
@manifests_alias
@click.argument("paths", nargs=-1, type=click.Path(exists=True), metavar="[PLANFILE | PATH...]")
@click.option("--auto-approve", is_flag=True, help="Skip the interactive 'yes' confirmation.")
@target_options
@replace_option
@click.option("--allow-mass-rebuild", is_flag=True, help="Apply a plan over safety.max_rebuilds_per_run (refused without it).")
@click.option("--wait/--no-wait", default=None, help="Wait for the rebuild jobs to finish (default: each group's rollout.wait).")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, show_default=True, metavar="SECONDS", help="How long to wait for a locked state.")
@click.option("--ignore-window", is_flag=True, help="Rebuild even outside maintenance windows (prints a warning).")
@click.option("--refresh-only", is_flag=True, help="Record the live images in the state and rebuild nothing (onboarding).")
@click.option("--no-manifest-check", is_flag=True,
              help="Apply a PLANFILE without comparing it with the manifests it was made from (when they are not here).")
@full_option
@click.option("--notify", "notify_urls", multiple=True, metavar="URL",
              help="POST events (drift, apply started/finished, halted groups, failed rebuilds) to this webhook (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Stream events as JSON lines on stdout.")
def apply(paths: tuple[str, ...], auto_approve: bool, targets: tuple[str, ...], excludes: tuple[str, ...],
          replacements: tuple[str, ...], allow_mass_rebuild: bool, wait: bool | None, lock_timeout: float, ignore_window: bool, refresh_only: bool, no_manifest_check: bool, full: bool,
          notify_urls: tuple[str, ...], as_json: bool) -> None:
    """Rebuild the desktops a plan lists, and record every job in the state.

    With a PLANFILE (from `plan -o`) it applies exactly that plan, and refuses it if the state
    has moved on since, if the manifests it was made from changed (they are found where `plan`
    found them, relative to the current directory or -C), or, with RECONCILER_PLAN_KEY set, if it
    is not signed with that key. Otherwise it plans, shows the plan and asks for 'yes'.

    \b
    Examples:
      reconciler apply manifests/
      reconciler apply plan.json
      reconciler apply examples/quickstart --auto-approve --wait
      reconciler apply manifests/ --replace 3f1c0000-0000-0000-0000-000000000001
    """
    printer = NotifyingPrinter(notify_urls=notify_urls, as_json=as_json, interactive=sys.stderr.isatty(), full=full)
    is_saved = len(paths) == 1 and is_plan_file(paths[0])
    if as_json and not (auto_approve or is_saved):
        raise click.UsageError("apply --json cannot ask for confirmation: add --auto-approve, or apply a saved plan")
    try:
        result = _run(paths, is_saved, printer, dict(
            targets=targets, excludes=excludes, ignore_window=ignore_window, refresh_only=refresh_only,
            lock_timeout=lock_timeout, auto_approve=auto_approve, wait=wait, manifest_check=not no_manifest_check,
            replace=replacements, allow_mass_rebuild=allow_mass_rebuild))
    except KeyboardInterrupt:
        printer.finish()
        raise interrupted(printer) from None
    finally:
        printer.close()
    if result is not None and not result.ok:
        raise SystemExit(EXIT_ERROR)


def _run(paths: tuple[str, ...], is_saved: bool, printer: EventPrinter, args: dict[str, Any]) -> ApplyResult | None:
    result: ApplyResult | None
    if is_saved:
        if args["targets"] or args["excludes"] or args["refresh_only"] or args["ignore_window"] or args["replace"]:
            raise click.UsageError("a saved plan is applied as it is: --target, --exclude, --replace, --refresh-only and "
                                   "--ignore-window belong to `plan`")
        result = _apply_saved(paths[0], args["wait"], args["lock_timeout"], printer, args["manifest_check"],
                              args["allow_mass_rebuild"])
    else:
        if args["refresh_only"] and args["replace"]:
            raise click.UsageError("--refresh-only rebuilds nothing: --replace cannot go with it")
        if not args["manifest_check"]:
            raise click.UsageError("--no-manifest-check is for a saved plan: `apply PATH...` plans from the manifests it reads")
        result = _apply_fresh(paths, args, printer)
        if result is None:
            printer({"event": "summary", "ok": True, "rebuilds_submitted": 0, "at": utc_now().isoformat(timespec="seconds")})
    return result

