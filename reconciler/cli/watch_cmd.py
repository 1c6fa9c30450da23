"""``watch``: reconcile continuously, serve metrics and a status page, notify webhooks.
Terminal, signal and network I/O; the loop itself is ``reconciler.watch``."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import click

from reconciler.cli.common import EXIT_ERROR, chdir_option, err
from reconciler.cli.progress import describe
from reconciler.manifest import load_manifests
from reconciler.render.common import plural
from reconciler.watch.cycle import LOCK_TIMEOUT_SECONDS, Cycle, WatchConfig
from reconciler.watch.http import StatusServer, parse_listen
from reconciler.watch.loop import Watcher
from reconciler.watch.metrics import WatchMetrics
from reconciler.watch.notify import Notifier, targets
from reconciler.watch.policy import ApplyMode
from reconciler.watch.status import CycleReport

# What is left of the 10 s a service manager grants after SIGTERM, once the calls in flight returned.
NOTIFY_FLUSH_SECONDS = 3.0


def _cycle_line(report: CycleReport) -> str:
    if not report.ok:
        return f"cycle {report.number}: FAILED ({report.duration_seconds:.1f}s): {report.error}"
    what = "another run holds the lock: reported only" if report.lock_busy else "nothing to apply"
    if report.applied:
        summary = report.summary
        what = f"applied: {plural(summary.get('rebuilds_submitted', 0), 'rebuild')} submitted, {summary.get('failed', 0)} failed"
    commit = f" at {report.commit[:12]}" if report.commit else ""
    return f"cycle {report.number}{commit}: ok ({report.duration_seconds:.1f}s), {what}"


def _print_event(event: dict[str, Any]) -> None:
    line = describe(event)
    if line:
        err(line)


def _on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            err(f"{signal.Signals(signum).name}: stopping after the calls in flight")
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


@click.command()
@chdir_option
@click.argument("path", default=".", type=click.Path(dir_okay=True, file_okay=True))
@click.option("--interval", type=click.FloatRange(min=0.1), default=300, show_default=True, metavar="SECONDS",
              help="Seconds between cycles (a window with pending rebuilds that opens sooner starts one sooner).")
@click.option("--apply", "mode", type=click.Choice([m.value for m in ApplyMode]), default=ApplyMode.DRIFT.value,
              show_default=True, help="What to apply: none (report only), drift (rebuild drifted and failed desktops), all (the whole plan).")
@click.option("--listen", default="127.0.0.1:9108", show_default=True, metavar="HOST:PORT",
              help="Where to serve /metrics, /healthz, /readyz, /api/status and the status page (port 0 picks one).")
@click.option("--notify", "notify_urls", multiple=True, metavar="URL",
              help="POST events to this webhook (repeatable); Slack, Feishu/Lark, DingTalk and WeCom robots are recognised by host.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=LOCK_TIMEOUT_SECONDS, show_default=True, metavar="SECONDS",
              help="How long a cycle waits for the state lock before it only reports.")
@click.option("--git-pull", is_flag=True, help="Run `git pull --ff-only` in PATH's repository before each cycle.")
@click.option("--once", is_flag=True, help="Run one cycle and exit (0 if it succeeded, else 1).")
def watch(path: str, interval: float, mode: str, listen: str, notify_urls: tuple[str, ...], lock_timeout: float, git_pull: bool,
          once: bool) -> None:
    """Reconcile continuously: plan every SECONDS and apply what --apply allows.

    Each cycle optionally pulls the manifests' Git repository, reads the manifests (keeping the
    last good ones if they break), takes the state lock (another run holding it: report only),
    refreshes, plans, and applies within every rollout rule and maintenance window. Several
    replicas may run: the lock makes one of them the applier. SIGTERM or SIGINT stops after the
    calls in flight; running jobs go on in the cloud and the next start follows them.

    \b
    Examples:
      reconciler watch manifests/ --apply drift --interval 300
      reconciler watch . --git-pull --apply all --listen 0.0.0.0:9108 --notify http://alerts.internal/hook
      curl -s http://127.0.0.1:9108/api/status | jq .groups
    """
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    config = WatchConfig(path, interval, ApplyMode(mode), git_pull=git_pull, env=dict(os.environ), lock_timeout=lock_timeout)
    watcher, notifier = _watcher(config, notify_urls)
    try:
        server = StatusServer(watcher, host, port)
    except OSError as exc:
        notifier.close(0)
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    server.start()
    _on_signals(watcher.stop)
    err(f"reconciler watch: serving {server.url} (--apply {mode}, every {interval:g}s)")
    sys.stderr.flush()
    report = None
    try:
        report = watcher.run(once=once)
    finally:
        notifier.close(NOTIFY_FLUSH_SECONDS)
        server.stop()
    if once and (report is None or not report.ok):
        raise SystemExit(EXIT_ERROR)


def _watcher(config: WatchConfig, notify_urls: tuple[str, ...]) -> tuple[Watcher, Notifier]:
    """The loop and its notifier. The manifests must be valid to start: later breakage only
    makes the watch fall back to these (its last good ones)."""
    manifests = load_manifests([config.path])
    metrics = WatchMetrics()
    notifier = Notifier(targets(notify_urls, manifests.settings, config.env), on_failure=metrics.notifications_failed.inc)
    stop = threading.Event()
    cycle = Cycle(config, metrics, notifier.notify, stop, on_event=_print_event)
    cycle.last_good = manifests
    watcher = Watcher(cycle, metrics, interval=config.interval, mode=config.mode, stop=stop,
                      on_cycle=lambda report: err(_cycle_line(report)))
    return watcher, notifier

