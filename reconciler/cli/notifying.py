"""``apply --notify``: the apply progress printer, also posting webhook notifications
(drift_detected, apply_started, apply_finished, group_halted, rebuild_failed). Terminal and
network I/O; the notices come from ``reconciler.watch.events``, the sending from
``reconciler.watch.notify``."""

from __future__ import annotations

import os
from typing import Any

from reconciler.cli.progress import EventPrinter
from reconciler.model import Action
from reconciler.plan import Plan
from reconciler.watch import events
from reconciler.watch.notify import Notifier, targets

# Notifications still queued when apply ends get this long to go out.
CLOSE_SECONDS = 10.0


class NotifyingPrinter(EventPrinter):
    """The targets are known once the plan is: ``--notify`` URLs, plus the ``notifications`` of
    the Settings a fresh plan was made from (saved plans carry none: their URLs hold tokens)."""

    def __init__(self, *, notify_urls: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._urls = notify_urls
        self._notifier: Notifier | None = None
        self._rebuilds: list[str] = []
        self._groups: list[str] = []
        self._started = False

    def plan(self, plan: Plan) -> None:
        super().plan(plan)
        found = targets(self._urls, plan.settings, os.environ)
        if not found:
            return
        self._notifier = Notifier(found)
        drifted = [c for c in plan.changes if c.drifted]
        if drifted:
            self._notifier.notify(events.drift_notice(drifted))
        self._rebuilds = [c.desktop_id for c in plan.changes if c.action is Action.REBUILD]
        self._groups = sorted({c.group or "" for c in plan.changes if c.action is Action.REBUILD})

    def __call__(self, event: dict[str, Any]) -> None:
        super().__call__(event)
        if self._notifier is None or event["event"] == "plan":
            return
        if event["event"] == "summary":
            if self._started:
                self._notifier.notify(events.apply_finished(event, bool(event.get("ok"))))
            return
        if not self._started:  # the first event of the applier: the plan was approved
            self._started = True
            self._notifier.notify(events.apply_started(len(self._rebuilds), self._groups))
        notice = events.notice_for(event)
        if notice is not None:
            self._notifier.notify(notice)

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.close(CLOSE_SECONDS)
