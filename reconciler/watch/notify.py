"""Webhook notifications: plain JSON, or the text message of a Slack, Feishu/Lark, DingTalk or
WeCom group robot. Network I/O, on a worker thread of its own.

A notification is retried a few times with a timeout and then given up: it never fails or
delays a cycle. Robot URLs carry their token in the path or query, so a URL is only ever shown
as ``scheme://host/***``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from reconciler.errors import ConfigurationError
from reconciler.model import Settings
from reconciler.watch.events import Notice

log = logging.getLogger("reconciler.watch.notify")

HOST_FORMATS = {
    "hooks.slack.com": "slack",
    "open.feishu.cn": "feishu",
    "open.larksuite.com": "feishu",
    "oapi.dingtalk.com": "dingtalk",
    "qyapi.weixin.qq.com": "wecom",
}
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = 0.5


def mask_url(url: str) -> str:
    """What a log may show of a webhook URL: its scheme and host, never credentials, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    hidden = "/***" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def format_for(url: str, given: str | None) -> str:
    if given:
        return given
    host = (urlsplit(url).hostname or "").lower()
    return HOST_FORMATS.get(host, "json")


@dataclass(frozen=True)
class Target:
    url: str
    format: str
    events: frozenset[str] = frozenset()  # empty: every event

    def wants(self, kind: str) -> bool:
        return not self.events or kind in self.events

    @property
    def shown(self) -> str:
        return mask_url(self.url)


def check_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{where}: expected an http:// or https:// URL, got {mask_url(url)}")
    return url


def targets(urls: Iterable[str], settings: Settings | None, env: Mapping[str, str]) -> list[Target]:
    """``--notify`` URLs (every event, format by host) and the Settings' ``notifications``."""
    found = [Target(check_url(url, "--notify"), format_for(url, None)) for url in urls]
    for index, entry in enumerate(settings.notifications if settings else ()):
        where = f"{settings.source if settings else 'Settings'}: notifications[{index}]"
        url = entry.url
        if entry.url_env is not None:
            url = env.get(entry.url_env)
            if not url:
                raise ConfigurationError(f"{where}.url_env: environment variable {entry.url_env} is not set")
        assert url is not None  # the manifest checks give exactly one of url and url_env
        found.append(Target(check_url(url, where), format_for(url, entry.format), frozenset(entry.events)))
    return found


def message(format_name: str, notice: Notice, at: datetime) -> dict[str, Any]:
    """The POST body for one notice in a target's format."""
    text = f"[reconciler] {notice.text}"
    if format_name == "slack":
        return {"text": text}
    if format_name == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    if format_name in ("dingtalk", "wecom"):
        return {"msgtype": "text", "text": {"content": text}}
    return {"source": "reconciler", "event": notice.kind, "at": at.isoformat(timespec="seconds"), "text": notice.text,
            **notice.fields}


def delivered(response: httpx.Response) -> str | None:
    """None when the receiver took the message, else why not. Robots answer 200 with an error
    code in the body (Feishu ``code``, DingTalk and WeCom ``errcode``)."""
    if not 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        code = body.get("errcode", body.get("code", 0))
        if code not in (0, "0", None):
            return f"error code {code}: {str(body.get('errmsg') or body.get('msg') or '')[:200]}"
    return None


_STOP = object()


class Notifier:
    """Queues notices and POSTs them from a worker thread. ``on_failure`` is called once per
    notification given up (``reconciler_notifications_failed_total``)."""

    def __init__(self, targets: Sequence[Target], *, on_failure: Callable[[], None] = lambda: None,
                 transport: httpx.BaseTransport | None = None, timeout: float = TIMEOUT_SECONDS,
                 attempts: int = ATTEMPTS, backoff: float = BACKOFF_SECONDS) -> None:
        self.targets = list(targets)
        self.on_failure = on_failure
        self.attempts, self.backoff = attempts, backoff
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closing = threading.Event()
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False,
                                  headers={"User-Agent": "reconciler-watch"})
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        if self.targets:
            self._thread.start()

    def notify(self, notice: Notice) -> None:
        if any(t.wants(notice.kind) for t in self.targets):
            self._queue.put((notice, datetime.now(UTC)))

    def flush(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until every queued notice was sent or given up."""
        done = threading.Event()
        self._queue.put(done)
        if self.targets:
            done.wait(timeout)

    def close(self, timeout: float) -> None:
        """Send what is queued (up to ``timeout``), then stop; retries are cut short."""
        if self.targets:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._closing.set()
            self._thread.join(1.0)
        self._http.close()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            notice, at = item
            for target in self.targets:
                if target.wants(notice.kind):
                    self._send(target, notice, at)

    def _send(self, target: Target, notice: Notice, at: datetime) -> None:
        body = message(target.format, notice, at)
        problem = "not sent"
        for attempt in range(1, self.attempts + 1):
            try:
                problem = delivered(self._http.post(target.url, json=body)) or ""
            except httpx.HTTPError as exc:
                # httpx messages do not carry the URL, but be sure: the token must never show.
                problem = f"{type(exc).__name__}: {exc}".replace(target.url, target.shown)
            if not problem:
                return
            if attempt < self.attempts and self._closing.wait(self.backoff * 2 ** (attempt - 1)):
                break
        self.on_failure()  # counted before it is logged: whoever reads the log sees it counted
        log.warning("notification %s to %s failed after retries: %s", notice.kind, target.shown, problem)
